// Primary side of replication (HAST-SPEC §6): the lifecycle of the remote leg. Connects at start
// (waiting while the peer is still primary), reconnects every 10 s, drives the guard tick and runs
// resync after every connect. The handshake is ./connect.ts, the data phase ./remote.ts.
import type { ResourceConfig } from '../config/types.js';
import {
  type DiskState,
  type LastSync,
  type PeerLinkStatus,
  type SyncControlStatus,
  syncedPercent,
  type VerifyProgress,
  type VerifyReport,
  type WorkerStats,
} from '../control/messages.js';
import type { WorkerToParent } from '../daemon/worker-ipc.js';
import { log } from '../log/log.js';
import { ErrnoError } from '../util/errno.js';
import { connectToSecondary } from './connect.js';
import { PeerLink } from './peer-link.js';
import { PeerRemote } from './remote.js';
import type { PrimaryResource } from './resource.js';
import { runSync, type SyncPeer } from './sync.js';
import { SyncThrottle } from './sync-rate.js';
import { runVerify } from './verify.js';

const RECONNECT_MS = 10_000;
/** Retry interval of the startup wait while the peer is still primary. */
const STARTUP_RETRY_MS = 1000;

export type StartOutcome = 'started' | 'refused';

/** The log line of a refused promotion: what happened and what the administrator can do. */
export function peerPrimaryMessage(name: string): string {
  return (
    `Remote node is primary for ${name}: demote it first ('hastctl role secondary ${name}' on the other node), ` +
    `or use 'hastctl role primary --force ${name}'.`
  );
}

export interface Replication {
  /**
   * Settles when the first connection attempt is over, including the startup wait while the peer
   * is still primary (HAST-SPEC §5.5, §6.3): the worker serves no I/O before. `refused`: the peer
   * stayed primary for `timeout` seconds and the role change was not forced; the worker must exit
   * with WORKER_EXIT.PEER_PRIMARY without serving anything.
   */
  readonly ready: Promise<StartOutcome>;
  stop(): Promise<void>;
  reload(cfg: ResourceConfig): void;
  queueStats(): Partial<WorkerStats>;
  /** The link to the peer for status: why degraded, the peer's role, last (dis)connect. */
  peerStatus(): PeerLinkStatus;
  /** Bytes moved by the last completed sync, for status and tests. */
  lastSync(): LastSync | null;
  /** Ours: the peer's copy as far as we know it while connected (null: not connected). */
  peerDisk(): DiskState | null;
  /** Ours (`hastctl sync pause|resume`): hold or release the resync; true when the state changed. */
  pauseSync(pause: boolean): boolean;
  /** Ours: the resync's rate control for status. */
  syncControl(): SyncControlStatus;
  /** Ours (`hastctl verify`): compare both copies of [start, stop); a string is a refusal. */
  verify(range: { start: number; stop: number; mark: boolean }): Promise<VerifyReport | string>;
  /** Ours: the running verify's progress and the last report, for status. */
  verifyStatus(): { running: VerifyProgress | null; last: VerifyReport | null };
}

class Replicator implements Omit<Replication, 'ready'> {
  readonly #res: PrimaryResource;
  #cfg: ResourceConfig;
  readonly #send: (msg: WorkerToParent) => void;
  readonly #force: boolean;
  #remote: PeerRemote | null = null;
  #timer: NodeJS.Timeout | null = null;
  #reconnectAt = 0;
  #connecting = false;
  #stopped = false;
  #everConnected = false;
  #syncing: Promise<void> | null = null;
  #lastSync: LastSync | null = null;
  /** The peer speaks the consistency extension (this session). */
  #peerExt = false;
  /** The peer's copy is marked inconsistent, as it said in the handshake or we told it since. */
  #peerInconsistent = false;
  readonly #link = new PeerLink();
  readonly #throttle: SyncThrottle;
  #verifyProgress: VerifyProgress | null = null;
  #lastVerify: VerifyReport | null = null;

  constructor(res: PrimaryResource, cfg: ResourceConfig, send: (msg: WorkerToParent) => void, force: boolean) {
    this.#res = res;
    this.#cfg = cfg;
    this.#throttle = new SyncThrottle(
      cfg,
      () => res.stats.reads + res.stats.writes + res.stats.deletes + res.stats.flushes,
    );
    this.#send = send;
    this.#force = force;
  }

  get connected(): boolean {
    return this.#remote !== null;
  }

  /**
   * First connection attempt. If the peer answers that it is still primary (`wait`), retry every
   * second for up to `timeout` seconds (it may be demoting right now, as in a planned switchover),
   * then refuse: two primaries is how both copies get written (HAST-SPEC §6.3 startup special
   * case; upstream "starts anyway"). Only a forced role change starts anyway.
   * Afterwards the guard tick keeps the connection alive and reconnects every 10 s.
   */
  async start(): Promise<StartOutcome> {
    let result = await this.#connect();
    if (result === 'busy') {
      const deadline = Date.now() + this.#cfg.timeout * 1000;
      while (result === 'busy' && !this.#stopped && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, STARTUP_RETRY_MS));
        result = await this.#connect();
      }
      if (result === 'busy' && !this.#force) {
        this.#stopped = true;
        log.error(peerPrimaryMessage(this.#cfg.name));
        return 'refused';
      }
      if (result === 'busy') log.warning('Remote node is still primary, starting anyway (forced).');
    }
    if (!this.#stopped) this.#timer = setInterval(() => this.#tick(), 1000);
    return 'started';
  }

  #event(event: 'connect' | 'disconnect' | 'syncstart' | 'syncdone' | 'syncintr' | 'split-brain'): void {
    this.#send({ type: 'event', event, args: [] });
  }

  #tick(): void {
    const now = Date.now();
    const remote = this.#remote;
    if (remote !== null) {
      remote.tick(now);
      // tick drops the connection when a reply timed out (#remote is null then): nothing to report.
      if (this.#remote !== remote) return;
      // Progress for the target's own status (consistency extension), once a second.
      const sync = this.#res.sync;
      if (this.#peerExt && this.#peerInconsistent && sync !== null && sync.direction === 'primary') {
        remote.syncProgress(sync.leftBytes);
      }
    } else if (!this.#connecting && !this.#stopped && now >= this.#reconnectAt) void this.#connect();
  }

  /** One connection attempt: `busy` when the peer says it is still primary (`wait`). */
  async #connect(): Promise<'connected' | 'busy' | 'failed'> {
    if (this.#connecting || this.#stopped || this.connected) return 'failed';
    this.#connecting = true;
    this.#reconnectAt = Date.now() + RECONNECT_MS;
    const res = this.#res;
    try {
      const session = await connectToSecondary(res, this.#cfg, () => this.#event('split-brain'));
      if (session.kind === 'busy') {
        this.#link.busy(session.errmsg);
        return 'busy';
      }
      this.#peerExt = session.consistency;
      this.#peerInconsistent = session.peerInconsistent;
      const remote = new PeerRemote({
        out: session.out,
        in: session.in,
        cfg: this.#cfg,
        mode: session.mode,
        version: session.version,
        csums: session.csums,
        onDisconnect: (why) => this.#onDisconnect(remote, why),
      });
      if (!remote.connected) {
        log.debug(1, `Unable to connect to ${this.#cfg.remoteAddr}: connection closed after the handshake`);
        this.#link.failed(new Error('Connection closed after the handshake'));
        return 'failed';
      }
      this.#remote = remote;
      res.remote = remote;
      res.staleLocal = session.syncSrc === 'secondary';
      log.info(`${this.#everConnected ? 'Successfully reconnected' : 'Connected'} to ${this.#cfg.remoteAddr}.`);
      this.#everConnected = true;
      this.#link.connected();
      this.#event('connect');
      this.#startSync(session.syncSrc);
      return 'connected';
    } catch (err) {
      const msg = (err as Error).message;
      this.#link.failed(err);
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
    // An outage: what the peer had only in its cache may be gone (not at our own stop, whose
    // shutdown writes the map last; see ./clean-stop.ts).
    if (!this.#stopped) this.#res.peerLost();
    // Our own stop is planned; anything else is an outage worth a warning.
    if (this.#stopped) log.info(`Disconnected from ${this.#cfg.remoteAddr} (${why}).`);
    else log.warning(`Disconnected from ${this.#cfg.remoteAddr} (${why}).`);
    this.#link.disconnected(why);
    this.#event('disconnect');
    this.#reconnectAt = Date.now() + RECONNECT_MS;
  }

  // Remote requests of the sync (ENOTCONN while disconnected) ------------------------------

  read(offset: number, length: number): Promise<Buffer> {
    const remote = this.#remote;
    if (remote === null) return Promise.reject(new ErrnoError('ENOTCONN', 'Remote request failed (ENOTCONN)'));
    return remote.read(offset, length);
  }

  #readHash(offset: number, length: number): Promise<Buffer> {
    const remote = this.#remote;
    if (remote === null) return Promise.reject(new ErrnoError('ENOTCONN', 'Remote request failed (ENOTCONN)'));
    return remote.readHash(offset, length);
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
    const csums = (): boolean => this.#remote?.csums ?? false;
    const peer: SyncPeer = {
      get connected(): boolean {
        return res.remote !== null;
      },
      read: (offset, length) => this.read(offset, length),
      write: (offset, data) => this.write(offset, data).done,
      get csums(): boolean {
        return csums();
      },
      readHash: (offset, length) => this.#readHash(offset, length),
    };
    this.#syncing = (async () => {
      let direction = from;
      for (;;) {
        if (!(await this.#markTarget(direction))) break;
        const result = await runSync(res, peer, direction, (e) => this.#event(e), this.#throttle);
        if (result.outcome === 'complete') {
          const { bytes, transferred, skipped, seconds } = result;
          this.#lastSync = { bytes, transferred, skipped, seconds };
        }
        if (result.outcome === 'interrupted' || !this.connected) break;
        if (direction === 'secondary') {
          res.staleLocal = false;
          // Every stale extent is copied: the local copy is whole again (flushed, then cleared).
          await this.#clearLocalInconsistent();
        } else if (res.amap.nextSyncExtent(0) < 0 && !(await this.#markDone())) {
          break;
        }
        // Equalise the counters (HAST-SPEC §7.1) once everything is copied; no divergence left.
        if (res.amap.nextSyncExtent(0) < 0) {
          await res.copiesAgree();
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

  /**
   * Before a pass copies a byte, its target is marked inconsistent, durably (issue 13): the local
   * metadata when we are the target; the secondary through the consistency extension, when it speaks
   * it (a FreeBSD secondary cannot be marked). False when the sync must not start.
   */
  async #markTarget(direction: 'primary' | 'secondary'): Promise<boolean> {
    const res = this.#res;
    const pending = res.amap.nextSyncExtent(0) >= 0;
    if (direction === 'secondary') {
      if (!pending) return true;
      try {
        if (res.md.inconsistent !== true) {
          await res.setInconsistent(true);
          log.info('Synchronization from the secondary starts: local copy marked inconsistent.');
        }
        return true;
      } catch (err) {
        log.error('Unable to mark the local copy inconsistent; not synchronizing', err);
        this.#remote?.disconnect('Unable to store the consistency state');
        return false;
      }
    }
    const remote = this.#remote;
    // A marked peer with nothing left to copy (it died before clearing its flag) is told it is done.
    if (!this.#peerExt || remote === null || (!pending && !this.#peerInconsistent)) return true;
    if (!(await remote.syncState('target', res.amap.syncPendingBytes))) {
      if (remote.connected) {
        log.error('The secondary could not mark its copy inconsistent; not synchronizing.');
        remote.disconnect('The secondary could not store the consistency state');
      }
      return false;
    }
    this.#peerInconsistent = true;
    return true;
  }

  /** After a pass from the secondary: the local copy is consistent again. */
  async #clearLocalInconsistent(): Promise<void> {
    if (this.#res.md.inconsistent !== true) return;
    try {
      await this.#res.setInconsistent(false);
      log.info('Local copy marked consistent.');
    } catch (err) {
      // The flag stays: the next sync from the secondary (or --force) clears it.
      log.error('Unable to mark the local copy consistent', err);
    }
  }

  /** Everything copied to the secondary and acknowledged: tell it (it flushes, then clears its flag). */
  async #markDone(): Promise<boolean> {
    const remote = this.#remote;
    if (!this.#peerExt || !this.#peerInconsistent || remote === null) return true;
    if (await remote.syncState('done')) {
      this.#peerInconsistent = false;
      return true;
    }
    if (remote.connected)
      log.warning('The secondary could not mark its copy consistent; it will be told again at the next connection.');
    return false;
  }

  peerDisk(): DiskState | null {
    if (this.#remote === null) return null;
    const sync = this.#res.sync;
    const toPeer = sync !== null && sync.direction === 'primary';
    // Without the extension we still know a peer we are copying to is incomplete.
    if (!this.#peerInconsistent && !toPeer) return { consistent: true, synchronized: null };
    return { consistent: false, synchronized: toPeer ? syncedPercent(sync.totalBytes, sync.leftBytes) : null };
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
    this.#throttle.setRates(cfg);
    this.#remote?.reload(cfg);
    if (addrChanged) this.#remote?.disconnect('Remote address changed');
  }

  queueStats(): Partial<WorkerStats> {
    return { recvQueue: this.#remote?.pending ?? 0, sendQueue: this.#remote?.unwritten.messages ?? 0 };
  }

  peerStatus(): PeerLinkStatus {
    return this.#link.snapshot(this.#remote?.unwritten.bytes ?? 0);
  }

  lastSync(): LastSync | null {
    return this.#lastSync;
  }

  pauseSync(pause: boolean): boolean {
    const changed = pause ? this.#throttle.pause() : this.#throttle.resume();
    if (changed) log.info(pause ? 'Synchronization paused.' : 'Synchronization resumed.');
    return changed;
  }

  async verify(range: { start: number; stop: number; mark: boolean }): Promise<VerifyReport | string> {
    const res = this.#res;
    if (this.#verifyProgress !== null) return 'A verify of this resource is already running.';
    if (this.#remote === null) return 'Not connected to the secondary: there is nothing to compare with.';
    if (res.staleLocal) return 'A synchronization from the secondary is running: verify after it completed.';
    const peer = {
      get connected(): boolean {
        return res.remote !== null;
      },
      read: (offset: number, length: number) => this.read(offset, length),
    };
    this.#verifyProgress = { start: range.start, stop: range.stop, doneBytes: 0, differingBytes: 0, rate: 0 };
    try {
      const report = await runVerify(res, peer, range, (p) => {
        this.#verifyProgress = p;
      });
      this.#lastVerify = report;
      // Marked extents are copied by a sync pass now (a running pass picks them up).
      if (report.markedExtents > 0 && this.connected) this.#startSync('primary');
      return report;
    } finally {
      this.#verifyProgress = null;
    }
  }

  verifyStatus(): { running: VerifyProgress | null; last: VerifyReport | null } {
    return { running: this.#verifyProgress, last: this.#lastVerify };
  }

  syncControl(): SyncControlStatus {
    return {
      paused: this.#throttle.paused,
      rate: this.#cfg.syncRate ?? 0,
      minRate: this.#cfg.syncMinRate ?? 0,
      currentRate: this.#throttle.currentRate(),
    };
  }
}

export function startReplication(
  res: PrimaryResource,
  cfg: ResourceConfig,
  send: (msg: WorkerToParent) => void,
  force = false,
): Replication {
  const r = new Replicator(res, cfg, send, force);
  const ready = r.start();
  return Object.assign(r, { ready });
}
