// Primary side of replication (HAST-SPEC §6): the lifecycle of the remote leg. Connects at start
// (waiting while the peer is still primary), reconnects every 10 s, drives the guard tick and runs
// resync after every connect. The handshake is ./connect.ts, the data phase ./remote.ts.
import type { ResourceConfig } from '../config/types.js';
import type { WorkerStats } from '../control/messages.js';
import type { WorkerToParent } from '../daemon/worker-ipc.js';
import { log } from '../log/log.js';
import { ErrnoError } from '../util/errno.js';
import { connectToSecondary } from './connect.js';
import { PeerRemote } from './remote.js';
import type { PrimaryResource } from './resource.js';
import { runSync, type SyncPeer } from './sync.js';

const RECONNECT_MS = 10_000;
/** Retry interval of the startup wait while the peer is still primary. */
const STARTUP_RETRY_MS = 1000;

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

class Replicator implements Omit<Replication, 'ready'> {
  readonly #res: PrimaryResource;
  #cfg: ResourceConfig;
  readonly #send: (msg: WorkerToParent) => void;
  #remote: PeerRemote | null = null;
  #timer: NodeJS.Timeout | null = null;
  #reconnectAt = 0;
  #connecting = false;
  #stopped = false;
  #everConnected = false;
  #syncing: Promise<void> | null = null;
  #lastSync: { bytes: number; seconds: number } | null = null;
  #sendQueue = 0;
  #peerCounters: { local: bigint; remote: bigint } = { local: 0n, remote: 0n };

  constructor(res: PrimaryResource, cfg: ResourceConfig, send: (msg: WorkerToParent) => void) {
    this.#res = res;
    this.#cfg = cfg;
    this.#send = send;
  }

  get connected(): boolean {
    return this.#remote !== null;
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
    if (this.#remote !== null) this.#remote.tick(now);
    else if (!this.#connecting && !this.#stopped && now >= this.#reconnectAt) void this.#connect();
  }

  /** One connection attempt: `busy` when the peer says it is still primary (`wait`). */
  async #connect(): Promise<'connected' | 'busy' | 'failed'> {
    if (this.#connecting || this.#stopped || this.connected) return 'failed';
    this.#connecting = true;
    this.#reconnectAt = Date.now() + RECONNECT_MS;
    const res = this.#res;
    try {
      const session = await connectToSecondary(res, this.#cfg, () => this.#event('split-brain'));
      if (session.kind === 'busy') return 'busy';
      this.#peerCounters = { local: session.peerCounters.local, remote: session.peerCounters.remote };
      res.peerRemoteCnt = session.peerCounters.remote;
      const remote = new PeerRemote({
        out: session.out,
        in: session.in,
        cfg: this.#cfg,
        mode: session.mode,
        onDisconnect: (why) => this.#onDisconnect(remote, why),
      });
      if (!remote.connected) {
        log.debug(1, `Unable to connect to ${this.#cfg.remoteAddr}: connection closed after the handshake`);
        return 'failed';
      }
      this.#remote = remote;
      res.remote = remote;
      res.staleLocal = session.syncSrc === 'secondary';
      log.info(`${this.#everConnected ? 'Successfully reconnected' : 'Connected'} to ${this.#cfg.remoteAddr}.`);
      this.#everConnected = true;
      this.#event('connect');
      this.#startSync(session.syncSrc);
      return 'connected';
    } catch (err) {
      const msg = (err as Error).message;
      log.debug(1, `Unable to connect to ${this.#cfg.remoteAddr}: ${msg}`);
      if (!/ECONNREFUSED|timed out/.test(msg)) log.warning(`Unable to connect to ${this.#cfg.remoteAddr}`, err);
      return 'failed';
    } finally {
      this.#connecting = false;
    }
  }

  #onDisconnect(remote: PeerRemote, why: string): void {
    if (this.#remote !== remote) return;
    this.#remote = null;
    this.#res.remote = null;
    log.warning(`Disconnected from ${this.#cfg.remoteAddr} (${why}).`);
    this.#event('disconnect');
    this.#reconnectAt = Date.now() + RECONNECT_MS;
  }

  // Remote requests of the sync (ENOTCONN while disconnected) ------------------------------

  read(offset: number, length: number): Promise<Buffer> {
    const remote = this.#remote;
    if (remote === null) return Promise.reject(new ErrnoError('ENOTCONN', 'Remote request failed (ENOTCONN)'));
    return remote.read(offset, length);
  }

  write(offset: number, data: Buffer): { received: Promise<boolean>; done: Promise<boolean> } {
    const remote = this.#remote;
    if (remote === null) return { received: Promise.resolve(false), done: Promise.resolve(false) };
    return remote.write(offset, data);
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

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#remote?.disconnect('Shutting down');
    await this.#syncing;
  }

  reload(cfg: ResourceConfig): void {
    const addrChanged = cfg.remoteAddr !== this.#cfg.remoteAddr || cfg.sourceAddr !== this.#cfg.sourceAddr;
    this.#cfg = cfg;
    this.#remote?.reload(cfg);
    if (addrChanged) this.#remote?.disconnect('Remote address changed');
  }

  queueStats(): Partial<WorkerStats> {
    return { recvQueue: this.#remote?.pending ?? 0, sendQueue: this.#sendQueue };
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
