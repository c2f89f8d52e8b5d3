// The primary's remote leg in the data phase (HAST-SPEC §6.4, §6.5): requests go out on "out",
// replies come back on "in", many in flight and matched by seq; keepalive when idle, a reply
// timeout, and a send timeout when the peer stops reading.
import type { ResourceConfig } from '../config/types.js';
import { log } from '../log/log.js';
import { type PeerConnection, PendingMap } from '../peer/connection.js';
import { CSUM_SIZE, HAST_PROTO_VERSION, HIO, type HioCmd, MAXPHYS } from '../peer/constants.js';
import { PeerProtocolError } from '../peer/errors.js';
import type { PeerMessage } from '../peer/framing.js';
import type { NvList } from '../nv/codec.js';
import {
  buildCsumRequest,
  buildKeepalive,
  buildRequest,
  buildSyncProgress,
  buildSyncStateRequest,
  type HioReply,
  readReply,
} from '../peer/messages.js';
import type { SyncState } from '../peer/constants.js';
import { ErrnoError, fromFreeBsdErrno } from '../util/errno.js';
import type { RemoteLeg } from './resource.js';

/** Idle time after which a KEEPALIVE goes out (HAST-SPEC §6.5). */
const KEEPALIVE_MS = 10_000;
/** Largest reply payload: a READ of MAXPHYS, plus room for what a compressor may add. */
const MAX_REPLY_PAYLOAD = MAXPHYS + 1024;
const ZEROES = Buffer.alloc(MAXPHYS);

interface Pending {
  readonly cmd: HioCmd;
  readonly sentAt: number;
  onReceived: ((ok: boolean) => void) | null;
  onDone: (ok: boolean, data: Buffer | null, errno: string | null) => void;
}

export interface RemoteOptions {
  /** Requests go here (the primary's first connection). */
  readonly out: PeerConnection;
  /** Replies arrive here (the second connection). */
  readonly in: PeerConnection;
  readonly cfg: ResourceConfig;
  /** The replication mode of this session (memsync may have fallen back to fullsync). */
  readonly mode: ResourceConfig['replication'];
  /** The negotiated protocol version: below 2, memsync stays fullsync across reloads. */
  readonly version?: number;
  /** Called once when the leg is gone, before the outstanding requests fail. */
  readonly onDisconnect: (why: string) => void;
  /** Ours: checksum-assisted sync was agreed in this session's handshake (readHash() may be used). */
  readonly csums?: boolean;
}

/** One connected session's remote leg; unusable after disconnect() (a reconnect builds a new one). */
export class PeerRemote implements RemoteLeg {
  readonly #out: PeerConnection;
  readonly #in: PeerConnection;
  #cfg: ResourceConfig;
  #mode: ResourceConfig['replication'];
  readonly #onDisconnect: (why: string) => void;
  readonly #version: number;
  readonly #csums: boolean;
  #seq = 0n;
  #flushUnsupported = false;
  readonly #drainWaiters: (() => void)[] = [];
  readonly #pending = new PendingMap<Pending>();
  #lastSend = Date.now();
  #lastRecv = Date.now();
  #closed = false;

  constructor(opts: RemoteOptions) {
    this.#out = opts.out;
    this.#in = opts.in;
    this.#cfg = opts.cfg;
    this.#mode = opts.mode;
    this.#version = opts.version ?? HAST_PROTO_VERSION;
    this.#onDisconnect = opts.onDisconnect;
    this.#csums = opts.csums === true;
    this.#applyConfig();
    this.#in.setMaxPayload(MAX_REPLY_PAYLOAD);
    // Every chunk counts as a sign of life, also one in the middle of a large READ reply.
    this.#in.socket.on('data', () => {
      this.#lastRecv = Date.now();
    });
    this.#in.onMessage = (msg) => this.#onReply(msg);
    this.#in.onClose = (reason) => this.#onClosed(reason, 'in');
    // Nothing is expected on "out" after the handshake.
    this.#out.onMessage = () => this.disconnect('Unexpected data from the peer');
    this.#out.onClose = (reason) => this.#onClosed(reason, 'out');
    // Closed between the handshake and here: the session never starts (nothing is pending yet).
    if (this.#in.closed || this.#out.closed) {
      this.#closed = true;
      this.#out.close();
      this.#in.close();
    }
  }

  get connected(): boolean {
    return !this.#closed;
  }

  /** Checksum-assisted sync was agreed for this session. */
  get csums(): boolean {
    return this.#csums;
  }

  /** Requests awaiting their final reply. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Messages not yet written to the socket, and their bytes (status `send` queue). */
  get unwritten(): { readonly messages: number; readonly bytes: number } {
    return this.#out.unwritten;
  }

  /** The peer answered a FLUSH with EOPNOTSUPP (remembered as upstream does, HAST-SPEC §8). */
  get flushUnsupported(): boolean {
    return this.#flushUnsupported;
  }

  /**
   * A reloaded configuration: framing and timeouts apply at once, and the configured mode, except
   * that memsync stays fullsync with a version-1 peer (the fallback of the handshake).
   */
  reload(cfg: ResourceConfig): void {
    this.#cfg = cfg;
    this.#mode = cfg.replication === 'memsync' && this.#version < HAST_PROTO_VERSION ? 'fullsync' : cfg.replication;
    this.#applyConfig();
  }

  /** Resolves when the send buffer has room again: at once if it has, or once disconnected. */
  whenWritable(): Promise<void> {
    if (this.#closed || !this.#out.needsDrain) return Promise.resolve();
    return new Promise((resolve) => {
      if (this.#drainWaiters.push(resolve) === 1) this.#out.onDrain(() => this.#wakeDrainWaiters());
    });
  }

  #wakeDrainWaiters(): void {
    for (const w of this.#drainWaiters.splice(0)) w();
  }

  #applyConfig(): void {
    const { compression, checksum, timeout } = this.#cfg;
    this.#out.setSendOptions({ compression, checksum });
    // A peer that stops reading for longer than `timeout` is gone (HAST-SPEC §6.5).
    this.#out.setSendTimeout(timeout * 1000);
  }

  /**
   * Once a second from the guard: a reply overdue beyond `timeout` (with nothing received for as
   * long) means the peer is gone; an idle link gets a KEEPALIVE every 10 s.
   */
  tick(now: number): void {
    if (this.#closed) return;
    const timeoutMs = this.#cfg.timeout * 1000;
    const oldest = this.#pending.oldest();
    if (oldest !== undefined && now - oldest.sentAt > timeoutMs && now - this.#lastRecv > timeoutMs) {
      this.disconnect('Timeout while waiting for a reply');
      return;
    }
    if (now - this.#lastSend >= KEEPALIVE_MS && this.#pending.size === 0) {
      this.#lastSend = now;
      this.#out.send(buildKeepalive());
    }
  }

  /** Close both connections and fail every outstanding request with ENOTCONN (idempotent). */
  disconnect(why: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out.close();
    this.#in.close();
    this.#onDisconnect(why);
    this.#wakeDrainWaiters();
    // Every outstanding remote request fails; the data path marks their extents for resync.
    this.#pending.drainAll((p) => complete(p, false, null, 'ENOTCONN'));
  }

  #onClosed(reason: Error | undefined, which: 'in' | 'out'): void {
    if (this.#closed) return;
    if (!(reason instanceof PeerProtocolError) || reason.code === 'EPEER_CONNECTION') {
      this.disconnect(closeCause(reason));
      return;
    }
    if (which === 'out') {
      this.disconnect('Unexpected data from the peer');
      return;
    }
    // A reply whose payload failed (checksum, decompression) still names its request: that one
    // fails with EIO rather than waiting for the disconnect's ENOTCONN like the others.
    if (reason.header !== undefined) this.#failReply(reason.header.getUint64('seq'));
    this.disconnect(`Unable to receive reply header: ${reason.message}`);
  }

  #failReply(seq: bigint | undefined): void {
    const p = seq === undefined ? undefined : this.#pending.take(seq);
    if (p !== undefined) complete(p, false, null, 'EIO');
  }

  #onReply(msg: PeerMessage): void {
    let r: HioReply;
    try {
      r = readReply(msg.nv);
    } catch (err) {
      this.disconnect(`Unable to receive reply header: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    const p = this.#pending.get(r.seq);
    if (p === undefined) {
      log.warning(`Unknown request with seq ${r.seq}, ignoring.`);
      return;
    }
    if (r.received) {
      // memsync early ack: the request keeps waiting for its final reply.
      p.onReceived?.(true);
      p.onReceived = null;
      return;
    }
    this.#pending.take(r.seq);
    const errno = r.error !== 0 ? fromFreeBsdErrno(r.error) : null;
    if (errno === null && p.cmd === HIO.READ && msg.payload === undefined) {
      complete(p, false, null, 'EIO');
      this.disconnect('READ reply carries no data');
      return;
    }
    complete(p, errno === null, errno === null && p.cmd === HIO.READ ? (msg.payload ?? null) : null, errno);
  }

  #request(
    cmd: HioCmd,
    offset: number,
    length: number,
    data: Buffer | null,
    memsync: boolean,
    onReceived: Pending['onReceived'],
    onDone: Pending['onDone'],
    /** Ours: a request header other than buildRequest()'s (the extensions), given its seq. */
    header?: (seq: bigint) => NvList,
  ): void {
    if (this.#closed) {
      onReceived?.(false);
      onDone(false, null, 'ENOTCONN');
      return;
    }
    const seq = ++this.#seq;
    // Register before sending: a reply can never find its request missing.
    this.#pending.add(seq, { cmd, sentAt: Date.now(), onReceived, onDone });
    this.#lastSend = Date.now();
    const nv = header !== undefined ? header(seq) : buildRequest(cmd, seq, offset, length, memsync);
    this.#out.send(nv, data ?? undefined);
  }

  // RemoteLeg ------------------------------------------------------------------------------

  write(offset: number, data: Buffer): { received: Promise<boolean>; done: Promise<boolean> } {
    if (this.#mode !== 'memsync') {
      // No early reply to wait for: "received" is the final reply (no second promise per write).
      const done = new Promise<boolean>((resolve) => {
        this.#request(HIO.WRITE, offset, data.length, data, false, null, (ok) => resolve(ok));
      });
      return { received: done, done };
    }
    let onReceived: (ok: boolean) => void = () => undefined;
    const received = new Promise<boolean>((r) => {
      onReceived = r;
    });
    const done = new Promise<boolean>((resolve) => {
      this.#request(HIO.WRITE, offset, data.length, data, true, onReceived, (ok) => resolve(ok));
    });
    return { received, done };
  }

  async writeZeroes(offset: number, length: number, discard: boolean): Promise<boolean> {
    if (discard) {
      return new Promise((resolve) =>
        this.#request(HIO.DELETE, offset, length, null, false, null, (ok) => resolve(ok)),
      );
    }
    const parts: Promise<boolean>[] = [];
    for (let at = offset; at < offset + length; at += MAXPHYS) {
      const n = Math.min(MAXPHYS, offset + length - at);
      parts.push(
        new Promise((resolve) =>
          this.#request(HIO.WRITE, at, n, ZEROES.subarray(0, n), false, null, (ok) => resolve(ok)),
        ),
      );
    }
    return (await Promise.all(parts)).every(Boolean);
  }

  /**
   * A failed FLUSH (other than EOPNOTSUPP, or the disconnect itself) disconnects: the peer's disk
   * may have lost acknowledged writes, and the degraded path with its resync on reconnect takes
   * over (the data path marks the extents first, resource.ts #remoteFlush).
   */
  flush(): Promise<boolean> {
    return new Promise((resolve) =>
      this.#request(HIO.FLUSH, 0, 0, null, false, null, (ok, _data, errno) => {
        if (!ok && (errno === 'EOPNOTSUPP' || errno === 'ENOTSUP')) this.#flushUnsupported = true;
        else if (!ok && errno !== 'ENOTCONN') this.disconnect(`Remote flush failed (${errno ?? 'EIO'})`);
        resolve(ok);
      }),
    );
  }

  /**
   * Ours (consistency extension, only when negotiated): tell the secondary it is a sync target, or
   * that the sync is done. Resolves true once the secondary has made the state durable.
   */
  syncState(state: SyncState, totalBytes = 0): Promise<boolean> {
    return new Promise((resolve) =>
      this.#request(
        HIO.FLUSH,
        0,
        0,
        null,
        false,
        null,
        (ok) => resolve(ok),
        (seq) => buildSyncStateRequest(seq, state, totalBytes),
      ),
    );
  }

  /** Ours (negotiated): the bytes still to copy, in a KEEPALIVE (no reply). */
  syncProgress(leftBytes: number): void {
    if (this.#closed) return;
    this.#lastSend = Date.now();
    this.#out.send(buildSyncProgress(leftBytes));
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.#read(offset, length, length);
  }

  /**
   * Ours (checksum-assisted sync, only when agreed): the SHA-256 of the peer's copy of the range,
   * computed on the peer (a READ carrying `csum`): CSUM_SIZE bytes cross the network, not `length`.
   */
  readHash(offset: number, length: number): Promise<Buffer> {
    if (!this.#csums) return Promise.reject(new Error('checksum-assisted sync was not agreed with the peer'));
    return this.#read(offset, length, CSUM_SIZE, (seq) => buildCsumRequest(seq, offset, length));
  }

  /**
   * A READ whose reply must carry exactly `expect` bytes. A checksum reply (`header` given) of
   * another size is a peer that does not speak what it agreed to: the connection is closed.
   */
  #read(offset: number, length: number, expect: number, header?: (seq: bigint) => NvList): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const done: Pending['onDone'] = (ok, data, errno) => {
        if (ok && data !== null && data.length === expect) {
          resolve(data);
          return;
        }
        if (ok && data !== null && header !== undefined) {
          this.disconnect(`Checksum reply of ${data.length} bytes, expected ${expect}`);
        }
        reject(new ErrnoError(errno ?? 'EIO', `Remote request failed (${errno ?? 'EIO'})`));
      };
      this.#request(HIO.READ, offset, length, null, false, null, done, header);
    });
  }
}

/**
 * Why a connection closed, for the log and status: a reset (ECONNRESET, EPIPE) reads differently
 * from the peer closing it, a send timeout, or bad bytes.
 */
function closeCause(reason: Error | undefined): string {
  if (reason === undefined) return 'Connection closed';
  if (reason instanceof PeerProtocolError)
    return reason.errno === 'ETIMEDOUT' ? 'Timeout while sending' : reason.message;
  const code = (reason as NodeJS.ErrnoException).code;
  return code !== undefined && !reason.message.includes(code)
    ? `${reason.message} (${code})`
    : `Connection error: ${reason.message}`;
}

/** Finish a request: a failed one also releases a memsync writer waiting for `received`. */
function complete(p: Pending, ok: boolean, data: Buffer | null, errno: string | null): void {
  p.onReceived?.(ok);
  p.onReceived = null;
  p.onDone(ok, data, errno);
}
