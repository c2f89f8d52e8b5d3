// The primary's side of connection setup (HAST-SPEC §6.3): open "out" and "in", run the handshake,
// and act on what the secondary's answer decides: counters, bitmap merge, sync source, the
// negotiated version and the memsync fallback.
import { connect, type Socket } from 'node:net';
import { parsePeerAddress } from '../config/index.js';
import type { ResourceConfig } from '../config/types.js';
import { log } from '../log/log.js';
import { NvList } from '../nv/codec.js';
import {
  addAuthMac,
  addAuthNonce,
  authMac,
  macMatches,
  newNonce,
  readAuthMac,
  readAuthNonce,
  readSecret,
} from '../peer/auth.js';
import { PeerConnection } from '../peer/connection.js';
import { readFirstHeader, writeMessage } from '../peer/handshake.js';
import { addTlsOffer, offersTls, startTls, wantsTls } from '../peer/tls.js';
import { CSUMS_SHA256, HAST_PROTO_VERSION, SPLIT_BRAIN_ERRMSG } from '../peer/constants.js';
import type { SyncSrc } from '../peer/decide.js';
import {
  agreeCsums,
  buildFirstConnect,
  buildSecondConnect,
  isErrorReply,
  readHandshakeReply,
  readSyncReply,
} from '../peer/messages.js';
import { ErrnoError } from '../util/errno.js';
import { ConnectError } from './peer-link.js';
import type { PrimaryResource } from './resource.js';

/** A finished handshake: both connections, ready for the data phase. */
export interface Session {
  readonly kind: 'connected';
  readonly out: PeerConnection;
  readonly in: PeerConnection;
  /** Replication mode for this session (memsync falls back to fullsync below version 2). */
  readonly mode: ResourceConfig['replication'];
  /** The negotiated protocol version. */
  readonly version: number;
  readonly syncSrc: SyncSrc;
  /** Ours: the secondary acknowledged the consistency extension (a FreeBSD one never does). */
  readonly consistency: boolean;
  /** Ours, with `consistency`: the secondary's copy is marked inconsistent (an unfinished sync). */
  readonly peerInconsistent: boolean;
  /** Ours: checksum-assisted sync was offered (`checksumsync on`) and the secondary agreed. */
  readonly csums: boolean;
}

/** `busy`: the peer answered that it is still primary (`wait`). */
export type ConnectResult = Session | { readonly kind: 'busy'; readonly errmsg: string };

/** Handshake messages carry no payload except the bitmap, which follows the resource's settings. */
const PLAIN = { compression: 'none', checksum: 'none' } as const;

function open(cfg: ResourceConfig, timeoutMs: number): Promise<Socket> {
  const remote = parsePeerAddress(cfg.remoteAddr);
  const source = cfg.sourceAddr !== null ? parsePeerAddress(cfg.sourceAddr, 0) : null;
  return new Promise((resolve, reject) => {
    const sock = connect({
      host: remote.host,
      port: remote.port,
      ...(remote.family !== 0 ? { family: remote.family } : {}),
      ...(source !== null
        ? { localAddress: source.host, ...(source.port !== 0 ? { localPort: source.port } : {}) }
        : {}),
      noDelay: true,
    });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ErrnoError('ETIMEDOUT', `Unable to connect to ${cfg.remoteAddr}: timed out`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onErr);
      resolve(sock);
    });
    const onErr = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    sock.once('error', onErr);
  });
}

/**
 * Check the secondary's answer to our challenge in its first reply and compute ours to its.
 * `failure` is set when its answer was wrong: we still send ours (bound to its fresh nonce, it is
 * worth nothing to anyone else) so that a real secondary with another secret logs the refusal too.
 * @throws ConnectError('refused') when it sent no answer or reflected our challenge
 */
function authenticate(
  secret: Buffer,
  primaryNonce: Uint8Array,
  resource: string,
  token: Uint8Array,
  reply: NvList,
  addr: string,
): { readonly answer: Buffer; readonly failure: ConnectError | null } {
  const secondaryNonce = readAuthNonce(reply, addr);
  const mac = readAuthMac(reply, addr);
  if (secondaryNonce === undefined || mac === undefined) {
    throw new ConnectError(
      'refused',
      `Remote node ${addr} did not answer the authentication challenge (is authkey configured there?): refused`,
    );
  }
  if (Buffer.compare(Buffer.from(secondaryNonce), Buffer.from(primaryNonce)) === 0) {
    throw new ConnectError('refused', `Remote node ${addr} reflected our authentication challenge: refused`);
  }
  const ctx = { resource, primaryNonce, secondaryNonce, token };
  const answer = authMac(secret, 'primary', ctx);
  if (!macMatches(authMac(secret, 'secondary', ctx), mac)) {
    return {
      answer,
      failure: new ConnectError('refused', `Remote node ${addr} failed authentication (wrong authkey?): refused`),
    };
  }
  return { answer, failure: null };
}

/**
 * One connection attempt (HAST-SPEC §6.3 steps 1, 4, 5, 8, 9). Writes the primary's metadata where
 * the handshake says so (a fresh resuid, the virgin bump) and merges and stores the peer's bitmap
 * before returning: an interrupted sync resumes from disk.
 * @param onSplitBrain called when the secondary refuses with exactly "Split-brain condition!"
 * @throws on any refusal, protocol error, size mismatch or timeout (both connections closed)
 */
export async function connectToSecondary(
  res: PrimaryResource,
  cfg: ResourceConfig,
  onSplitBrain: () => void,
): Promise<ConnectResult> {
  const timeoutMs = cfg.timeout * 1000;
  const addr = cfg.remoteAddr;
  let out: PeerConnection | null = null;
  let inn: PeerConnection | null = null;
  // With TLS the plain part of the handshake runs on the bare sockets, which become TLS after it.
  let rawOut: Socket | null = null;
  let rawIn: Socket | null = null;
  try {
    // Our extensions (peer/auth.ts, peer/tls.ts): only with `authkey` or TLS configured does
    // anything differ from FreeBSD's bytes.
    const secret = cfg.authKey !== undefined ? readSecret(cfg.authKey) : null;
    const primaryNonce = secret !== null ? newNonce() : null;
    const tls = wantsTls(cfg);
    let hello = buildFirstConnect(cfg.name);
    if (primaryNonce !== null) hello = addAuthNonce(hello, primaryNonce);
    if (tls) hello = addTlsOffer(hello);
    let m1: NvList;
    if (tls) {
      rawOut = await open(cfg, timeoutMs);
      await writeMessage(rawOut, hello, undefined, { ...PLAIN, version: HAST_PROTO_VERSION });
      m1 = await readFirstHeader(rawOut, timeoutMs);
    } else {
      out = new PeerConnection({ socket: await open(cfg, timeoutMs), name: addr, ...PLAIN, maxPayload: 0 });
      out.send(hello);
      m1 = (await out.receive(timeoutMs)).nv;
    }
    const r1 = readHandshakeReply(m1, addr);
    if (r1.kind === 'error' && r1.wait) {
      log.warning(r1.errmsg);
      out?.close();
      rawOut?.destroy();
      return { kind: 'busy', errmsg: r1.errmsg };
    }
    if (r1.kind === 'error') throw new ConnectError('refused', `Remote node refused the connection: ${r1.errmsg}`);
    if (tls && !offersTls(m1)) {
      throw new ConnectError(
        'refused',
        `Remote node ${addr} did not agree to TLS (are tlscert and tlskey configured there?): refused`,
      );
    }
    const version = r1.version;
    const auth =
      secret !== null && primaryNonce !== null
        ? authenticate(secret, primaryNonce, cfg.name, r1.token, m1, addr)
        : null;
    if (auth !== null && auth.failure !== null) {
      // Only our answer, none of our counters, then close: its refusal is logged on its side too.
      const sock = await open(cfg, timeoutMs);
      const nv = addAuthMac(new NvList().addString('resource', cfg.name).addUint8Array('token', r1.token), auth.answer);
      await writeMessage(sock, nv, undefined, { ...PLAIN, version }, true).catch(() => undefined);
      sock.destroy();
      throw auth.failure;
    }
    const answer = auth?.answer ?? null;
    out?.setSendOptions({ version });

    if (!tls)
      inn = new PeerConnection({ socket: await open(cfg, timeoutMs), name: addr, ...PLAIN, version, maxPayload: 0 });
    else rawIn = await open(cfg, timeoutMs);
    const md = res.md;
    const { virgin, persist } = res.counters.beforeHandshake();
    await res.saveMetadata(persist);
    // The bitmap travels as the payload of the secondary's answer on "out"; set its limit before
    // the answer can arrive.
    const mapLimit = res.amap.diskMapSize + 1024;
    out?.setMaxPayload(mapLimit);
    let second = buildSecondConnect(cfg.name, r1.token, {
      resuid: md.resuid,
      localCnt: md.localCnt,
      remoteCnt: md.remoteCnt,
      virgin,
      consistency: true,
      // Ours, only when on: otherwise the message is the one without the extension.
      ...(cfg.checksumSync === true ? { csums: CSUMS_SHA256 } : {}),
    });
    if (answer !== null) second = addAuthMac(second, answer);
    if (inn !== null) inn.send(second);
    if (rawOut !== null && rawIn !== null) {
      await writeMessage(rawIn, second, undefined, { ...PLAIN, version });
      // The secondary's worker starts TLS on both once the parent has handed them over.
      const [tOut, tIn] = await Promise.all([
        startTls(rawOut, cfg, 'server', timeoutMs),
        startTls(rawIn, cfg, 'server', timeoutMs),
      ]);
      await writeMessage(tOut, addTlsOffer(new NvList()), undefined, { ...PLAIN, version });
      out = new PeerConnection({ socket: tOut, name: addr, ...PLAIN, version, maxPayload: mapLimit });
      inn = new PeerConnection({ socket: tIn, name: addr, ...PLAIN, version, maxPayload: 0 });
    }
    if (out === null || inn === null) throw new Error('connections missing after the handshake');

    const m2 = await out.receive(timeoutMs);
    const r2 = readSyncReply(m2.nv, addr);
    if (isErrorReply(r2)) {
      if (r2.errmsg === SPLIT_BRAIN_ERRMSG) {
        log.error('Split-brain detected.');
        onSplitBrain();
      }
      throw new ConnectError(
        r2.errmsg === SPLIT_BRAIN_ERRMSG ? 'split-brain' : 'refused',
        `Remote node refused the connection: ${r2.errmsg}`,
      );
    }
    if (r2.dataSize !== md.dataSize)
      throw new ConnectError(
        'mismatch',
        `Data size differs between nodes (local=${md.dataSize}, remote=${r2.dataSize}).`,
      );
    if (r2.extentSize !== md.extentSize) {
      throw new ConnectError(
        'mismatch',
        `Extent size differs between nodes (local=${md.extentSize}, remote=${r2.extentSize}).`,
      );
    }
    // Both copies were written while apart and the secondary answered all the same: it discards its
    // changes (--discard-my-data). What this side changed is its map less the extents its
    // divergence record knows both copies hold alike (issue 17); the peer's map is merged after.
    if (r2.localCnt > md.remoteCnt && md.localCnt > r2.remoteCnt) {
      const agreed = res.forgetAgreed();
      if (agreed > 0) log.info(`Split-brain recovery: ${agreed} extent(s) of the divergence record need no resync.`);
    }
    await res.saveMetadata(
      res.counters.onSyncReply({ localCnt: r2.localCnt, remoteCnt: r2.remoteCnt, virgin: r2.virgin }),
    );
    if (r2.mapSize > 0) {
      const map = m2.payload;
      if (map === undefined) throw new Error('Handshake reply announces a bitmap but carries none');
      res.amap.mergeRemote(map.subarray(0, Math.min(map.length, res.amap.diskMapSize)));
    }
    // The merged map is on disk before resync starts: an interrupted sync resumes after a crash.
    await res.bitmapWriter.persist();
    let mode = cfg.replication;
    if (mode === 'memsync' && version < HAST_PROTO_VERSION) {
      log.warning('The connected node uses an old protocol version, falling back to fullsync.');
      mode = 'fullsync';
    }
    // An echo we did not ask for (a misconfigured or hostile peer) is ignored: the sync stays plain.
    const csums = agreeCsums(cfg.checksumSync === true, r2.csums) !== undefined;
    if (cfg.checksumSync === true) {
      log.info(
        csums
          ? 'Checksum-assisted synchronization agreed with the secondary (SHA-256).'
          : 'The secondary did not agree to checksum-assisted synchronization (checksumsync off there, or not ours): plain synchronization.',
      );
    }
    return {
      kind: 'connected',
      out,
      in: inn,
      mode,
      version,
      syncSrc: r2.syncSrc,
      consistency: r2.consistency === true,
      peerInconsistent: r2.inconsistent === true,
      csums,
    };
  } catch (err) {
    out?.close();
    inn?.close();
    rawOut?.destroy();
    rawIn?.destroy();
    throw err;
  }
}
