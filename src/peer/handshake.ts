// Handshake I/O on a freshly accepted peer socket (HAST-SPEC §6.3 steps 2, 3, 6): read exactly one
// header, refuse with `{errmsg, [wait]}`, or send the first reply `{version, token}`. The socket may
// be handed to a worker afterwards, so nothing past the one header is ever consumed here.
import type { Socket } from 'node:net';
import type { NvList } from '../nv/codec.js';
import { HAST_PROTO_VERSION } from './constants.js';
import { PeerProtocolError } from './errors.js';
import { encodeMessage, type EncodeOptions, MessageReader } from './framing.js';
import { buildErrorReply, buildHandshakeReply } from './messages.js';

/** Handshake messages carry no payload: nothing is checksummed or compressed. */
const PLAIN = { compression: 'none', checksum: 'none' } as const;

/**
 * Read exactly one header from a fresh socket within `timeoutMs`, then pause the socket.
 * @throws PeerProtocolError on garbage, an oversized header, a payload, bytes after the header,
 *   EOF or timeout; or the socket's own error
 */
export function readFirstHeader(sock: Socket, timeoutMs: number): Promise<NvList> {
  const reader = new MessageReader({ maxPayload: 0 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        finish(
          new PeerProtocolError('EPEER_CONNECTION', 'Timeout while waiting for the handshake header', {
            errno: 'ETIMEDOUT',
          }),
        ),
      timeoutMs,
    );
    const finish = (err: Error | null, nv?: NvList): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
      sock.pause();
      if (err !== null) reject(err);
      else if (nv !== undefined) resolve(nv);
    };
    const onData = (chunk: Buffer): void => {
      try {
        const [msg] = reader.push(chunk);
        if (msg === undefined) return;
        // The primary sends nothing more before our reply: extra bytes are not a handshake.
        if (reader.buffered > 0) {
          throw new PeerProtocolError('EPEER_HEADER', 'Unexpected data after the handshake header');
        }
        finish(null, msg.nv);
      } catch (err) {
        finish(err instanceof Error ? err : new PeerProtocolError('EPEER_HEADER', String(err)));
      }
    };
    const onEnd = (): void =>
      finish(new PeerProtocolError('EPEER_CONNECTION', 'Connection closed before the handshake header'));
    const onError = (err: Error): void => finish(err);
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('error', onError);
    sock.resume();
  });
}

/**
 * Frame `nv` (+ `payload`) and write it; resolves once the bytes are handed to the kernel, with
 * `end` after a FIN. Rejects when the socket is not writable or the write fails.
 */
export function writeMessage(
  sock: Socket,
  nv: NvList,
  payload: Buffer | undefined,
  opts: EncodeOptions,
  end = false,
): Promise<void> {
  return new Promise((resolve, reject) => {
    if (sock.destroyed || !sock.writable) {
      reject(new PeerProtocolError('EPEER_CONNECTION', 'Socket is not writable', { errno: 'ENOTCONN' }));
      return;
    }
    const parts = encodeMessage(nv, payload, opts);
    sock.cork();
    const last = parts.length - 1;
    parts.forEach((b, i) => {
      if (i < last) sock.write(b);
      else if (end) sock.end(b, () => resolve());
      else sock.write(b, (err) => (err == null ? resolve() : reject(err)));
    });
    sock.uncork();
  });
}

/**
 * Refuse a handshake: send `{errmsg, [wait]}` with version 2 (no resource context yet, as upstream),
 * then close. Never throws: the refusal is only a courtesy to a peer that may be gone already.
 */
export async function sendRefusal(sock: Socket, errmsg: string, wait: boolean): Promise<void> {
  try {
    await writeMessage(sock, buildErrorReply(errmsg, wait), undefined, { ...PLAIN, version: HAST_PROTO_VERSION }, true);
  } catch {
    // The peer is gone already.
  }
  sock.destroy();
}

/**
 * First-connection reply `{version, token}`, framed with the negotiated version (step 3), with
 * `extra`'s fields (our extensions: auth.ts) appended when given.
 */
export function sendFirstReply(sock: Socket, version: number, token: Uint8Array, extra?: NvList): Promise<void> {
  const nv = buildHandshakeReply(version, token);
  for (const el of extra?.elements ?? []) nv.addElement(el);
  return writeMessage(sock, nv, undefined, { ...PLAIN, version });
}
