// Primary side of replication (HAST-SPEC §6): opens both connections to the secondary, runs the
// handshake, provides the remote leg of the data path (many requests in flight, matched by seq),
// keepalives, timeouts, reconnects every 10 s, and drives resync after every connect.
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { parsePeerAddress } from '../config/index.js';
import type { ResourceConfig } from '../config/types.js';
import type { WorkerStats } from '../control/messages.js';
import type { WorkerToParent } from '../daemon/worker-ipc.js';
import { log } from '../log/log.js';
import {
  decodePayload,
  encodeFrame,
  encodeRequest,
  type Frame,
  FrameReader,
  type NvFields,
  nvBytes,
  nvI8,
  nvString,
  nvU64,
  nvU8,
  SYNCSRC,
} from '../secondary/wire.js';
import { ErrnoError, fromFreeBsdErrno } from '../util/errno.js';
import { MAXPHYS, type PrimaryResource, type RemoteLeg } from './resource.js';
import { runSync, type SyncPeer } from './sync.js';

const HIO = { READ: 1, WRITE: 2, DELETE: 3, FLUSH: 4, KEEPALIVE: 5 } as const;
const PROTO_VERSION = 2;
const RECONNECT_MS = 10_000;
/** Retry interval of the startup wait while the peer is still primary. */
const STARTUP_RETRY_MS = 1000;
const KEEPALIVE_MS = 10_000;
/** nv type codes used when reading replies. */
const NVT = { INT8: 1, UINT8: 2, INT16: 3, INT32: 5, UINT32: 6, INT64: 7, UINT64: 8 } as const;
const ZEROES = Buffer.alloc(MAXPHYS);

export interface Replication {
  /**
   * Settles when the first connection attempt is over, including the startup wait while the peer
   * is still primary (HAST-SPEC §5.5, §6.3): the worker serves no I/O before.
   */
  readonly ready: Promise<void>;
  stop(): Promise<void>;
  reload(cfg: ResourceConfig): void;
  queueStats(): Partial<WorkerStats>;
  /** Bytes moved by the last completed sync, for status and tests. */
  lastSync(): { bytes: number; seconds: number } | null;
}

interface Pending {
  readonly cmd: number;
  readonly sentAt: number;
  onReceived: ((ok: boolean) => void) | null;
  onDone: (ok: boolean, data: Buffer | null, errno: string | null) => void;
}

/** Read one framed message from a socket (handshake phase only). */
function readFrame(sock: Socket, reader: FrameReader, timeoutMs: number): Promise<Frame> {
  return new Promise((resolve, reject) => {
    const tryNext = (): boolean => {
      try {
        const f = reader.next();
        if (f !== null) {
          finish(null, f);
          return true;
        }
      } catch (err) {
        finish(err as Error);
        return true;
      }
      return false;
    };
    const timer = setTimeout(() => finish(new ErrnoError('ETIMEDOUT', 'Timeout while waiting for the handshake reply')), timeoutMs);
    const onData = (chunk: Buffer): void => {
      reader.push(chunk);
      tryNext();
    };
    const onEnd = (): void => finish(new ErrnoError('ECONNRESET', 'Connection closed by the peer'));
    const onError = (err: Error): void => finish(err);
    function finish(err: Error | null, f?: Frame): void {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('close', onEnd);
      sock.off('error', onError);
      sock.pause();
      if (err !== null) reject(err);
      else if (f !== undefined) resolve(f);
    }
    if (tryNext()) return;
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('close', onEnd);
    sock.on('error', onError);
    sock.resume();
  });
}

function num(nv: NvFields, name: string, type: number): number | null {
  const v = nv.int(name, type);
  return v === null ? null : Number(v);
}

class Replicator implements Omit<Replication, 'ready'>, RemoteLeg {
  readonly #res: PrimaryResource;
  #cfg: ResourceConfig;
  readonly #send: (msg: WorkerToParent) => void;
  #out: Socket | null = null;
  #in: Socket | null = null;
  #version = PROTO_VERSION;
  #mode: ResourceConfig['replication'];
  #seq = 0n;
  readonly #pending = new Map<bigint, Pending>();
  #lastSend = Date.now();
  #lastRecv = Date.now();
  #timer: NodeJS.Timeout | null = null;
  #reconnectAt = 0;
  #connecting = false;
  #stopped = false;
  #everConnected = false;
  #syncing: Promise<void> | null = null;
  #lastSync: { bytes: number; seconds: number } | null = null;
  #sendQueue = 0;

  constructor(res: PrimaryResource, cfg: ResourceConfig, send: (msg: WorkerToParent) => void) {
    this.#res = res;
    this.#cfg = cfg;
    this.#send = send;
    this.#mode = cfg.replication;
  }

  get connected(): boolean {
    return this.#out !== null && this.#in !== null;
  }

  /**
   * First connection attempt. If the peer answers that it is still primary (`wait`), retry every
   * second for up to `timeout` seconds, then start anyway (HAST-SPEC §6.3 startup special case).
   * Afterwards the guard tick keeps the connection alive and reconnects every 10 s.
   */
  async start(): Promise<void> {
    let result = await this.#connect();
    if (result === 'busy') {
      const deadline = Date.now() + this.#cfg.timeout * 1000;
      while (result === 'busy' && !this.#stopped && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, STARTUP_RETRY_MS));
        result = await this.#connect();
      }
      if (result === 'busy') log.warning('Remote node is still primary, starting anyway.');
    }
    if (!this.#stopped) this.#timer = setInterval(() => this.#tick(), 1000);
  }

  #event(event: 'connect' | 'disconnect' | 'syncstart' | 'syncdone' | 'syncintr' | 'split-brain'): void {
    this.#send({ type: 'event', event, args: [] });
  }

  #tick(): void {
    const now = Date.now();
    if (this.connected) {
      // A reply overdue beyond `timeout` means the peer is gone (HAST-SPEC §6.5).
      const timeoutMs = this.#cfg.timeout * 1000;
      for (const p of this.#pending.values()) {
        if (now - p.sentAt > timeoutMs && now - this.#lastRecv > timeoutMs) {
          this.#disconnect('Timeout while waiting for a reply');
          return;
        }
        break; // Map order = send order: the oldest is first.
      }
      if (now - this.#lastSend >= KEEPALIVE_MS && this.#pending.size === 0) {
        this.#write(encodeRequest(this.#version, { cmd: HIO.KEEPALIVE }, this.#payloadOpts()));
      }
    } else if (!this.#connecting && !this.#stopped && now >= this.#reconnectAt) {
      void this.#connect();
    }
  }

  #payloadOpts(): { compression: ResourceConfig['compression']; checksum: ResourceConfig['checksum'] } {
    return { compression: this.#cfg.compression, checksum: this.#cfg.checksum };
  }

  #open(timeoutMs: number): Promise<Socket> {
    const remote = parsePeerAddress(this.#cfg.remoteAddr);
    const source = this.#cfg.sourceAddr !== null ? parsePeerAddress(this.#cfg.sourceAddr, 0) : null;
    return new Promise((resolve, reject) => {
      const sock = connect({
        host: remote.host,
        port: remote.port,
        ...(remote.family !== 0 ? { family: remote.family } : {}),
        ...(source !== null ? { localAddress: source.host, ...(source.port !== 0 ? { localPort: source.port } : {}) } : {}),
        noDelay: true,
      });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new ErrnoError('ETIMEDOUT', `Unable to connect to ${this.#cfg.remoteAddr}: timed out`));
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

  /** One connection attempt: `busy` when the peer says it is still primary (`wait`). */
  async #connect(): Promise<'connected' | 'busy' | 'failed'> {
    if (this.#connecting || this.#stopped || this.connected) return 'failed';
    this.#connecting = true;
    this.#reconnectAt = Date.now() + RECONNECT_MS;
    const timeoutMs = this.#cfg.timeout * 1000;
    let out: Socket | null = null;
    let inn: Socket | null = null;
    const res = this.#res;
    try {
      out = await this.#open(timeoutMs);
      out.on('error', () => undefined);
      const outReader = new FrameReader({ maxNv: 64 * 1024, maxPayload: 0 });
      out.write(Buffer.concat(encodeFrame(PROTO_VERSION, [nvString('resource', this.#cfg.name), nvU8('version', PROTO_VERSION)], null, { compression: 'none', checksum: 'none' })));
      const r1 = await readFrame(out, outReader, timeoutMs);
      const err1 = r1.nv.string('errmsg');
      if (err1 !== null && r1.nv.has('wait')) {
        log.warning(err1);
        out.destroy();
        return 'busy';
      }
      if (err1 !== null) throw new Error(`Remote node refused the connection: ${err1}`);
      const version = num(r1.nv, 'version', NVT.UINT8) ?? 1;
      if (version > PROTO_VERSION) throw new Error(`Invalid version received (${version})`);
      const token = r1.nv.bytes('token');
      if (token === null || token.length !== 16) throw new Error("Handshake header from the peer has no 'token' field");
      this.#version = version;

      inn = await this.#open(timeoutMs);
      inn.on('error', () => undefined);
      const md = res.md;
      let virgin = false;
      if (md.resuid === 0n) {
        md.resuid = randomBytes(8).readBigUInt64LE(0) || 1n;
        await res.saveMetadata();
        virgin = true;
      }
      const fields = [nvString('resource', this.#cfg.name), nvBytes('token', token)];
      if (virgin) fields.push(nvI8('virgin', 1));
      fields.push(nvU64('resuid', md.resuid), nvU64('localcnt', md.localCnt), nvU64('remotecnt', md.remoteCnt));
      inn.write(Buffer.concat(encodeFrame(version, fields, null, { compression: 'none', checksum: 'none' })));

      // The bitmap travels as the payload of the secondary's answer on "out".
      const mapLimit = res.amap.diskMapSize + 1024;
      const replyReader = new FrameReader({ maxNv: 64 * 1024, maxPayload: mapLimit });
      const r2 = await readFrame(out, replyReader, timeoutMs);
      const err2 = r2.nv.string('errmsg');
      if (err2 !== null) {
        if (err2 === 'Split-brain condition!') {
          log.error('Split-brain detected, exiting.'.replace(', exiting', ''));
          this.#event('split-brain');
        }
        throw new Error(`Remote node refused the connection: ${err2}`);
      }
      const dataSize = num(r2.nv, 'datasize', NVT.INT64);
      const extentSize = num(r2.nv, 'extentsize', NVT.INT32);
      if (dataSize !== md.dataSize) throw new Error(`Data size differs between nodes (local=${md.dataSize}, remote=${dataSize}).`);
      if (extentSize !== md.extentSize) throw new Error(`Extent size differs between nodes (local=${md.extentSize}, remote=${extentSize}).`);
      const peerLocal = r2.nv.int('localcnt', NVT.UINT64) ?? 0n;
      const peerRemote = r2.nv.int('remotecnt', NVT.UINT64) ?? 0n;
      const syncSrc = num(r2.nv, 'syncsrc', NVT.UINT8) ?? SYNCSRC.PRIMARY;
      const mapSize = num(r2.nv, 'mapsize', NVT.UINT32) ?? 0;
      if (r2.nv.has('virgin') && md.localCnt === 0n) {
        md.localCnt = 1n;
        await res.saveMetadata();
      }
      if (mapSize > 0) {
        if (r2.payload === null) throw new Error('Handshake reply announces a bitmap but carries none');
        const map = decodePayload(r2.nv, r2.payload, mapLimit);
        res.amap.mergeRemote(map.subarray(0, Math.min(map.length, res.amap.diskMapSize)));
      }
      // The merged map is on disk before resync starts: an interrupted sync resumes after a crash.
      await res.bitmapWriter.persist();
      this.#peerCounters = { local: peerLocal, remote: peerRemote };
      res.peerRemoteCnt = peerRemote;
      this.#mode = this.#cfg.replication;
      if (this.#mode === 'memsync' && version < 2) {
        log.warning('The connected node uses an old protocol version, falling back to fullsync.');
        this.#mode = 'fullsync';
      }
      this.#attach(out, inn);
      res.staleLocal = syncSrc === SYNCSRC.SECONDARY;
      log.info(`${this.#everConnected ? 'Successfully reconnected' : 'Connected'} to ${this.#cfg.remoteAddr}.`);
      this.#everConnected = true;
      this.#event('connect');
      this.#startSync(syncSrc === SYNCSRC.SECONDARY ? 'secondary' : 'primary');
      return 'connected';
    } catch (err) {
      out?.destroy();
      inn?.destroy();
      const msg = (err as Error).message;
      log.debug(1, `Unable to connect to ${this.#cfg.remoteAddr}: ${msg}`);
      if (!/ECONNREFUSED|timed out/.test(msg)) log.warning(`Unable to connect to ${this.#cfg.remoteAddr}`, err);
      return 'failed';
    } finally {
      this.#connecting = false;
    }
  }

  #peerCounters: { local: bigint; remote: bigint } = { local: 0n, remote: 0n };

  #attach(out: Socket, inn: Socket): void {
    this.#out = out;
    this.#in = inn;
    this.#lastRecv = Date.now();
    this.#lastSend = Date.now();
    const reader = new FrameReader({ maxNv: 64 * 1024, maxPayload: MAXPHYS + 1024 });
    const onBroken = (why: string) => () => this.#disconnect(why);
    out.on('close', onBroken('Connection closed'));
    inn.on('close', onBroken('Connection closed'));
    out.on('data', () => this.#disconnect('Unexpected data from the peer'));
    inn.on('data', (chunk: Buffer) => {
      this.#lastRecv = Date.now();
      reader.push(chunk);
      try {
        for (let f = reader.next(); f !== null; f = reader.next()) this.#onReply(f);
      } catch (err) {
        this.#disconnect(`Unable to receive reply header: ${(err as Error).message}`);
      }
    });
    out.resume();
    inn.resume();
    this.#res.remote = this;
  }

  #onReply(f: Frame): void {
    const seq = f.nv.int('seq', NVT.UINT64);
    if (seq === null) throw new Error("Header has no 'seq' field");
    const p = this.#pending.get(seq);
    if (p === undefined) {
      log.warning(`Unknown request with seq ${seq}, ignoring.`);
      return;
    }
    if (f.nv.has('received')) {
      p.onReceived?.(true);
      p.onReceived = null;
      return;
    }
    this.#pending.delete(seq);
    const errNum = num(f.nv, 'error', NVT.INT16);
    const errno = errNum !== null && errNum !== 0 ? fromFreeBsdErrno(errNum) : null;
    let data: Buffer | null = null;
    if (errno === null && p.cmd === HIO.READ) {
      if (f.payload === null) {
        p.onDone(false, null, 'EIO');
        return;
      }
      data = decodePayload(f.nv, f.payload, MAXPHYS);
    }
    p.onReceived?.(errno === null);
    p.onReceived = null;
    p.onDone(errno === null, data, errno);
  }

  #write(bufs: Buffer[]): boolean {
    const out = this.#out;
    if (out === null) return false;
    this.#lastSend = Date.now();
    out.cork();
    for (const b of bufs) out.write(b);
    process.nextTick(() => out.uncork());
    return true;
  }

  #request(cmd: number, offset: number, length: number, data: Buffer | null, memsync: boolean, onReceived: Pending['onReceived'], onDone: Pending['onDone']): void {
    if (!this.connected) {
      onReceived?.(false);
      onDone(false, null, 'ENOTCONN');
      return;
    }
    const seq = ++this.#seq;
    // Register before sending: a reply can never find its request missing.
    this.#pending.set(seq, { cmd, sentAt: Date.now(), onReceived, onDone });
    const req: Parameters<typeof encodeRequest>[1] = { cmd, seq, offset: BigInt(offset), length: BigInt(length), memsync };
    if (data !== null) req.data = data;
    this.#write(encodeRequest(this.#version, req, this.#payloadOpts()));
  }

  // RemoteLeg ------------------------------------------------------------------------------

  write(offset: number, data: Buffer): { received: Promise<boolean>; done: Promise<boolean> } {
    let onReceived: (ok: boolean) => void = () => undefined;
    const received = new Promise<boolean>((r) => {
      onReceived = r;
    });
    const done = new Promise<boolean>((resolve) => {
      this.#request(HIO.WRITE, offset, data.length, data, this.#mode === 'memsync', onReceived, (ok) => resolve(ok));
    });
    return { received: this.#mode === 'memsync' ? received : done, done };
  }

  async writeZeroes(offset: number, length: number, discard: boolean): Promise<boolean> {
    if (discard) {
      return new Promise((resolve) => this.#request(HIO.DELETE, offset, length, null, false, null, (ok) => resolve(ok)));
    }
    const parts: Promise<boolean>[] = [];
    for (let at = offset; at < offset + length; at += MAXPHYS) {
      const n = Math.min(MAXPHYS, offset + length - at);
      parts.push(new Promise((resolve) => this.#request(HIO.WRITE, at, n, ZEROES.subarray(0, n), false, null, (ok) => resolve(ok))));
    }
    return (await Promise.all(parts)).every(Boolean);
  }

  flush(): Promise<boolean> {
    return new Promise((resolve) => this.#request(HIO.FLUSH, 0, 0, null, false, null, (ok) => resolve(ok)));
  }

  read(offset: number, length: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.#request(HIO.READ, offset, length, null, false, null, (ok, data, errno) => {
        if (ok && data !== null && data.length === length) resolve(data);
        else reject(new ErrnoError(errno ?? 'EIO', `Remote request failed (${errno ?? 'EIO'})`));
      });
    });
  }

  // Sync -----------------------------------------------------------------------------------

  #startSync(from: 'primary' | 'secondary'): void {
    if (this.#syncing !== null) return;
    const res = this.#res;
    const peer: SyncPeer = {
      get connected(): boolean {
        return res.remote !== null;
      },
      read: (offset, length) => this.read(offset, length),
      write: (offset, data) => this.write(offset, data).done,
    };
    this.#syncing = (async () => {
      let direction = from;
      for (;;) {
        const result = await runSync(res, peer, direction, (e) => this.#event(e));
        if (result.outcome === 'complete') this.#lastSync = { bytes: result.bytes, seconds: result.seconds };
        if (result.outcome === 'interrupted' || !this.connected) break;
        if (direction === 'secondary') res.staleLocal = false;
        // Equalise the counters (HAST-SPEC §7.1) once everything is copied.
        if (res.amap.nextSyncExtent(0) < 0) {
          res.md.localCnt = this.#peerCounters.remote;
          res.md.remoteCnt = this.#peerCounters.local;
          res.peerRemoteCnt = this.#peerCounters.local;
          await res.saveMetadata();
          break;
        }
        direction = 'primary';
      }
    })()
      .catch((err: unknown) => log.error('Synchronization failed', err))
      .finally(() => {
        this.#syncing = null;
        res.sync = null;
      });
  }

  // Lifecycle ------------------------------------------------------------------------------

  #disconnect(why: string): void {
    if (this.#out === null && this.#in === null) return;
    const out = this.#out;
    const inn = this.#in;
    this.#out = null;
    this.#in = null;
    this.#res.remote = null;
    out?.destroy();
    inn?.destroy();
    log.warning(`Disconnected from ${this.#cfg.remoteAddr} (${why}).`);
    this.#event('disconnect');
    // Every outstanding remote request fails; the data path marks their extents for resync.
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      p.onReceived?.(false);
      p.onReceived = null;
      p.onDone(false, null, 'ENOTCONN');
    }
    this.#reconnectAt = Date.now() + RECONNECT_MS;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#disconnect('Shutting down');
    await this.#syncing;
  }

  reload(cfg: ResourceConfig): void {
    const addrChanged = cfg.remoteAddr !== this.#cfg.remoteAddr || cfg.sourceAddr !== this.#cfg.sourceAddr;
    this.#cfg = cfg;
    this.#mode = cfg.replication;
    if (addrChanged) this.#disconnect('Remote address changed');
  }

  queueStats(): Partial<WorkerStats> {
    return { recvQueue: this.#pending.size, sendQueue: this.#sendQueue };
  }

  lastSync(): { bytes: number; seconds: number } | null {
    return this.#lastSync;
  }
}

export function startReplication(res: PrimaryResource, cfg: ResourceConfig, send: (msg: WorkerToParent) => void): Replication {
  const r = new Replicator(res, cfg, send);
  const ready = r.start();
  return Object.assign(r, { ready });
}
