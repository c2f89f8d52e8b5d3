// The primary's data path (HAST-SPEC §4.2, §6.6, §8): range lock → write-ahead activemap → local
// component and remote peer → acknowledgement per replication mode. The NBD server calls it as its
// backend; it knows nothing of NBD framing.
import { Activemap } from '../activemap/activemap.js';
import type { Component } from '../component/component.js';
import { DataArea } from '../component/data-area.js';
import type { ResourceConfig } from '../config/types.js';
import { emptyStats, type SyncProgress, type WorkerStats } from '../control/messages.js';
import { log } from '../log/log.js';
import { type Metadata, readBitmap, writeBitmap, writeMetadata } from '../metadata/metadata.js';
import { ErrnoError } from '../util/errno.js';
import { Histogram } from '../util/histogram.js';
import { AsyncBudget } from './async-budget.js';
import { BitmapWriter } from './bitmap-writer.js';
import { PrimaryCounters, type Persist } from './counters.js';
import { FlushCover } from './flush-cover.js';
import { type LockHandle, RangeLock } from './range-lock.js';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * The remote leg of the data path, provided by the replication layer while connected. Each method
 * resolves with the outcome of the peer's part; `false` means the peer did not positively apply it.
 */
export interface RemoteLeg {
  /** Resolves `received` when the ack rule of the mode is met, `done` when the peer finished. */
  write(offset: number, data: Buffer): { received: Promise<boolean>; done: Promise<boolean> };
  writeZeroes(offset: number, length: number, discard: boolean): Promise<boolean>;
  /** Resolves false when the peer did not flush; a failure other than "unsupported" disconnects. */
  flush(): Promise<boolean>;
  read(offset: number, length: number): Promise<Buffer>;
  /** The peer answered a FLUSH with EOPNOTSUPP: it has no cache it can flush (HAST-SPEC §8). */
  readonly flushUnsupported?: boolean;
  /** Resolves when the send buffer has room again (at once if it has, or once disconnected). */
  whenWritable?(): Promise<void>;
}

export class PrimaryResource {
  readonly cfg: ResourceConfig;
  /** The whole component: metadata and bitmap I/O (src/metadata) and close. */
  readonly comp: Component;
  /** User data, addressed by data-area offset: every data read, write, trim and flush. */
  readonly data: DataArea;
  readonly md: Mutable<Metadata>;
  readonly amap: Activemap;
  readonly lock = new RangeLock();
  readonly stats: Mutable<WorkerStats> = emptyStats();
  /** Request latencies of the local leg (component) and the remote leg (sent until the peer's reply). */
  readonly latency = { local: new Histogram(), remote: new Histogram() };
  readonly bitmapWriter: BitmapWriter;
  /** async mode: writes acknowledged locally and not yet confirmed by the peer (./async-budget.ts). */
  readonly asyncBudget = new AsyncBudget();
  /** Set by the replication layer while both connections are up. */
  remote: RemoteLeg | null = null;
  /** When localcnt/remotecnt move (HAST-SPEC §7.1, and our detection rule in ./counters.ts). */
  readonly counters: PrimaryCounters;
  /** Metadata writes in order, each encoding md as it is when it runs: the newest always lands last. */
  #mdChain: Promise<void> = Promise.resolve();
  /** While syncing from the secondary, reads of extents not yet synced go to the peer. */
  staleLocal = false;
  sync: SyncProgress | null = null;
  /**
   * Extents whose local copy missed a write (local write error, peer succeeded). Upstream leaves
   * the local copy silently different (HAST-SPEC §8); we serve those extents from the peer, refuse
   * them with EIO while disconnected, and a resync that meets the extent repairs it from the peer.
   * Kept in memory only: the on-disk bitmap cannot say "the other side is newer" per extent.
   */
  readonly #staleExtents = new Set<number>();
  /**
   * A local flush failed while the peer's succeeded: some acknowledged writes may never have
   * reached the local disk (on Linux a failed writeback is only reported by fsync), so no local
   * byte is trusted any more for the rest of this worker's life: every read goes to the peer.
   */
  #localFailed = false;
  /** The metadata write that made the current divergence durable (null: none pending or failed). */
  #bumpDurable: Promise<void> | null = null;
  /**
   * Extents sent to the peer since the last FLUSH the peer completed (one issued after them). If a
   * remote flush fails, the peer's copy of any of them may be lost: all are marked for resync.
   */
  readonly #remoteCover = new FlushCover();
  /** Extents written locally since the last local flush that covered them completed. */
  readonly #localCover = new FlushCover();
  /**
   * The divergence record (issue 17, ../metadata/divergence.ts): extents both copies hold alike
   * since this primary diverged from its peer, kept in the metadata block; null: no record (the
   * activemap alone says what a split-brain recovery resyncs).
   */
  #agreed: Set<number> | null;
  /** The record is being dropped (the copies agree): no longer written, still maintained until then. */
  #agreedDropped = false;
  /** Extents taken out of the record whose metadata write has not landed yet → the removal's number. */
  readonly #leaving = new Map<number, number>();
  #removals = 0;
  /** The metadata write on its way for the removals numbered up to `upto`. */
  #agreedWrite: { readonly upto: number; readonly done: Promise<void> } | null = null;
  #warnedFlushUnsupported = false;
  #inFlight = 0;
  #idleWaiters: (() => void)[] = [];
  #closed = false;

  private constructor(cfg: ResourceConfig, comp: Component, md: Metadata, amap: Activemap) {
    this.cfg = cfg;
    this.comp = comp;
    this.md = { ...md };
    this.data = new DataArea(comp, md.localOff, md.dataSize);
    this.amap = amap;
    this.counters = new PrimaryCounters(this.md);
    this.#agreed = md.agreed !== undefined ? new Set(md.agreed.extents) : null;
    this.bitmapWriter = new BitmapWriter({
      image: () => this.amap.bitmap(),
      // metaflush: the bitmap write itself is durable (O_DSYNC on its range), so that a new dirty
      // extent does not cost an fdatasync of every dirty page of the component.
      write: (image) => writeBitmap(this.comp, this.md, image, cfg.metaFlush),
      flush: null,
      onError: (kind) => {
        if (kind === 'write') this.stats.writeErrors++;
        else this.stats.flushErrors++;
      },
    });
  }

  /** Load metadata state into a ready data path; marks the role in metadata (prevrole). */
  static async open(cfg: ResourceConfig, comp: Component, md: Metadata): Promise<PrimaryResource> {
    const amap = new Activemap({
      dataSize: md.dataSize,
      extentSize: md.extentSize,
      keepDirty: md.keepDirty,
      sectorSize: comp.sectorSize,
    });
    const onDisk = await readBitmap(comp, md);
    amap.loadFromDisk(onDisk);
    const res = new PrimaryResource(cfg, comp, md, amap);
    res.md.prevRole = 'primary';
    await res.saveMetadata();
    return res;
  }

  get size(): number {
    return this.md.dataSize;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  #enter(): void {
    if (this.#closed) throw new ErrnoError('ESHUTDOWN', 'the resource is shutting down');
    this.#inFlight++;
  }

  #leave(): void {
    this.#inFlight--;
    if (this.#inFlight === 0) for (const w of this.#idleWaiters.splice(0)) w();
  }

  /** Refuse new requests and wait for those in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#inFlight > 0) await new Promise<void>((r) => this.#idleWaiters.push(r));
    await this.bitmapWriter.persist();
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.#enter();
    try {
      this.stats.reads++;
      return await this.#readData(offset, length);
    } finally {
      this.#leave();
    }
  }

  /** Local read, or the peer's copy while the local one is stale or after a local read error (fixes of upstream bugs 11 and 12). */
  async #readData(offset: number, length: number): Promise<Buffer> {
    const remote = this.remote;
    if (this.staleLocal && remote !== null) return await this.#remoteRead(remote, offset, length);
    if (this.isLocalStale(offset, length)) {
      if (remote === null) throw new ErrnoError('EIO', 'the local copy missed a write and the peer is not connected');
      return await this.#remoteRead(remote, offset, length);
    }
    const buf = Buffer.allocUnsafe(length);
    try {
      const t0 = Histogram.now();
      await this.data.read(buf, offset);
      this.latency.local.since(t0);
      return buf;
    } catch (err) {
      this.stats.readErrors++;
      if (remote === null) throw err;
      log.warning(`Local request failed (${(err as Error).message}), trying remote node.`);
      return await this.#remoteRead(remote, offset, length);
    }
  }

  /** The peer protocol carries whole sectors only: widen an unaligned read and cut the answer. */
  async #remoteRead(remote: RemoteLeg, offset: number, length: number): Promise<Buffer> {
    const ss = this.comp.sectorSize;
    const start = offset - (offset % ss);
    const end = Math.ceil((offset + length) / ss) * ss;
    if (start === offset && end === offset + length) return await remote.read(offset, length);
    const wide = await remote.read(start, end - start);
    return wide.subarray(offset - start, offset - start + length);
  }

  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.stats.writes++;
    return this.#splitBySector(offset, data.length, fua, 'write', data);
  }

  trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.stats.deletes++;
    return this.#splitBySector(offset, length, fua, 'trim', null);
  }

  writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    this.stats.writes++;
    return this.#splitBySector(offset, length, fua, 'zero', null);
  }

  /**
   * NBD lets a client address single bytes (we advertise a minimum block size of 1), but the
   * component and the peer protocol work in whole sectors. An unaligned request becomes: a
   * read-modify-write of its partial first and last sectors (each under the range lock of its
   * whole sector) and the aligned middle as is. A trim only hints, so its partial sectors are
   * dropped: both copies keep the same bytes there.
   */
  async #splitBySector(
    offset: number,
    length: number,
    fua: boolean,
    kind: 'write' | 'zero' | 'trim',
    data: Buffer | null,
  ): Promise<void> {
    const ss = this.comp.sectorSize;
    const end = offset + length;
    if (offset % ss === 0 && end % ss === 0) return await this.#modify(offset, length, fua, kind, data);
    const midStart = Math.min(Math.ceil(offset / ss) * ss, end);
    const midEnd = Math.max(end - (end % ss), midStart);
    const parts: Promise<void>[] = [];
    const patch = (from: number, to: number): void => {
      if (from >= to || kind === 'trim') return;
      const sector = from - (from % ss);
      const bytes = data === null ? null : data.subarray(from - offset, to - offset);
      parts.push(
        this.#modify(sector, ss, fua, 'write', null, async () => {
          const buf = Buffer.from(await this.#readData(sector, ss));
          if (bytes === null) buf.fill(0, from - sector, to - sector);
          else bytes.copy(buf, from - sector);
          return buf;
        }),
      );
    };
    patch(offset, Math.min(midStart, end));
    if (midStart < midEnd) {
      parts.push(
        this.#modify(
          midStart,
          midEnd - midStart,
          fua,
          kind,
          data === null ? null : data.subarray(midStart - offset, midEnd - offset),
        ),
      );
    }
    // The last partial sector, unless the first patch already covered it (all in one sector).
    if (midEnd < end) patch(midEnd, end);
    await Promise.all(parts);
  }

  /**
   * Every modification (write, zero, trim) is tracked in the activemap: deletes too, unlike upstream,
   * so that a discard missed by the peer is repaired by resync instead of leaving the copies different.
   */
  async #modify(
    offset: number,
    length: number,
    fua: boolean,
    kind: 'write' | 'zero' | 'trim',
    given: Buffer | null,
    /** Builds the data once the range is locked (read-modify-write of a partial sector). */
    build?: () => Promise<Buffer>,
  ): Promise<void> {
    this.#enter();
    let handle: LockHandle;
    try {
      handle = this.lock.tryAcquire('regular', offset, length) ?? (await this.lock.lock('regular', offset, length));
    } catch (err) {
      this.#leave();
      throw err;
    }
    // Bookkeeping finishes here unless the remote leg outlives the acknowledgement.
    let completeNow = true;
    let remoteStarted = false;
    let budgetHeld = -1;
    try {
      const data = build !== undefined ? await build() : given;
      // Write-ahead record: an extent the write changes is out of the divergence record on disk
      // first. Checked again after each wait, so that the map's writeStart follows in the same tick
      // as a check that found nothing to wait for (a record made meanwhile sees the extent dirty).
      for (let w = this.#leaveAgreed(offset, length); w !== null; w = this.#leaveAgreed(offset, length)) await w;
      // Write-ahead bitmap: the extent's bit is on disk before any data of this write can be.
      if (this.amap.writeStart(offset, length)) {
        this.stats.activemapUpdates++;
        await this.bitmapWriter.persist();
      } else if (this.bitmapWriter.busy) {
        // Another write may have just made this extent dirty; its bitmap may not be on disk yet.
        // (Nothing on its way: no wait, not even a promise hop.)
        await this.bitmapWriter.settled();
      }
      const remote = this.remote;
      let remoteDone: Promise<boolean> = Promise.resolve(false);
      let remoteAck: Promise<boolean> = remoteDone;
      if (remote !== null) {
        remoteStarted = true;
        this.#noteSent(offset, length);
        const r0 = Histogram.now();
        if (data !== null) {
          const r = remote.write(offset, data);
          remoteAck = r.received;
          remoteDone = r.done;
        } else {
          remoteDone = remote.writeZeroes(offset, length, kind === 'trim');
          remoteAck = remoteDone;
        }
        remoteDone.then(
          (ok) => {
            if (ok) this.latency.remote.since(r0);
          },
          () => undefined,
        );
      }
      let localErr: unknown = null;
      let localFlushFailed = false;
      try {
        const t0 = Histogram.now();
        if (data !== null) await this.data.write([data], offset);
        else if (kind === 'trim') await this.data.discard(offset, length);
        else await this.data.writeZeroes(offset, length);
        this.latency.local.since(t0);
        this.#note(this.#localCover, offset, length);
      } catch (err) {
        localErr = err;
        if (kind === 'trim') this.stats.deleteErrors++;
        else this.stats.writeErrors++;
        log.error(`Local ${kind} request failed`, err);
      }
      if (fua && localErr === null) {
        const token = this.#localCover.begin();
        try {
          await this.data.flush();
          this.#localCover.done(token);
        } catch (err) {
          localErr = err;
          localFlushFailed = true;
          this.stats.flushErrors++;
        }
      }
      if (remote === null) {
        if (localErr !== null) throw localErr;
        await this.#degradedWrite(offset, length);
        return;
      }
      // fullsync waits for the peer's final reply, memsync for its "received" reply, async for
      // nothing — unless the local write failed: then the remote result decides (HAST-SPEC §6.6).
      const mode = this.cfg.replication;
      let remoteOk: boolean;
      if (mode === 'fullsync' || localErr !== null) remoteOk = await remoteDone;
      else if (mode === 'memsync') remoteOk = await remoteAck;
      else {
        // async: within the budget of unconfirmed writes, and not while the socket needs drain;
        // otherwise the write waits here, unacknowledged (back-pressure to the client).
        const bytes = data?.length ?? 0;
        await this.asyncBudget.acquire(bytes);
        budgetHeld = bytes;
        await remote.whenWritable?.();
        remoteOk = true;
      }
      if (localErr !== null && !remoteOk) throw localErr;
      // Only the local copy has it: as good as a degraded write (detection needs the bump).
      if (localErr === null && !remoteOk) {
        this.#markForSync(offset, length);
        await this.#unreplicated();
      }
      if (localFlushFailed) this.#distrustLocal(localErr);
      else if (localErr !== null) this.#markLocalStale(offset, length);
      if (fua && mode !== 'async') await this.#remoteFlush(remote);
      // The extent stays dirty until the peer positively finished (fix of upstream bug 12).
      completeNow = false;
      const held = budgetHeld;
      remoteDone.then(
        (ok) => this.#finishRemote(offset, length, ok, handle, held),
        () => this.#finishRemote(offset, length, false, handle, held),
      );
    } catch (err) {
      if (remoteStarted) this.#markForSync(offset, length);
      throw err;
    } finally {
      if (completeNow) {
        if (budgetHeld >= 0) this.asyncBudget.release(budgetHeld);
        this.#complete(offset, length, handle);
      }
    }
  }

  /** Does [offset, offset+length) touch an extent whose local copy missed a write? */
  isLocalStale(offset: number, length: number): boolean {
    if (this.#localFailed) return true;
    if (this.#staleExtents.size === 0) return false;
    const es = this.md.extentSize;
    for (let e = Math.floor(offset / es); e * es < offset + length; e++) if (this.#staleExtents.has(e)) return true;
    return false;
  }

  /** The local copy of this range was rewritten from the peer (resync repair). */
  clearLocalStale(offset: number, length: number): void {
    const es = this.md.extentSize;
    // Only whole extents are cleared: a partial repair leaves the rest of the extent stale.
    for (let e = Math.ceil(offset / es); (e + 1) * es <= offset + length; e++) this.#staleExtents.delete(e);
  }

  #markLocalStale(offset: number, length: number): void {
    const es = this.md.extentSize;
    for (let e = Math.floor(offset / es); e * es < offset + length; e++) {
      if (!this.#staleExtents.has(e)) {
        this.#staleExtents.add(e);
        log.warning(`Local copy of extent ${e} missed a write; it is served by the remote node until resynchronized.`);
      }
    }
    // Not marked in the on-disk bitmap: after a restart that would push the stale local data over
    // the peer's good copy. A resync that meets the extent repairs it from the peer (sync.ts).
  }

  #distrustLocal(err: unknown): void {
    if (this.#localFailed) return;
    this.#localFailed = true;
    log.error(
      `Local flush failed (${(err as Error).message}); the local copy is no longer trusted, reads are served by the remote node.`,
    );
  }

  get staleExtentCount(): number {
    return this.#localFailed ? Math.ceil(this.md.dataSize / this.md.extentSize) : this.#staleExtents.size;
  }

  #finishRemote(offset: number, length: number, ok: boolean, handle: LockHandle, budgetHeld: number): void {
    if (budgetHeld >= 0) this.asyncBudget.release(budgetHeld);
    if (!ok) {
      this.#markForSync(offset, length);
      // async: acknowledged already; record the divergence as soon as it is known.
      this.#unreplicated().catch((err: unknown) => log.error('Unable to record the divergence', err));
    }
    this.#complete(offset, length, handle);
  }

  async #degradedWrite(offset: number, length: number): Promise<void> {
    // Not replicated: the extent must be synchronised later.
    this.#markForSync(offset, length);
    await this.#unreplicated();
  }

  /**
   * A write applied locally and not by the peer is about to be acknowledged: the first one of the
   * worker (or since the last equalisation) bumps localcnt, durably, before any such write is
   * acknowledged (./counters.ts). Writes racing the bump wait for the same metadata write.
   */
  async #unreplicated(): Promise<void> {
    const persist = this.counters.onUnreplicatedWrite();
    if (persist !== 'none') {
      // The keepdirty extents stay in the map here (as upstream): they are what resyncs the writes
      // a secondary acknowledged but lost in a power failure before its cache reached the disk, and
      // a secondary that goes away (the usual reason for an unreplicated write) may have done just
      // that. Dropping them at this point made a --discard-my-data recovery smaller and such a
      // secondary silently stale (found at integration, issue 17). Instead the divergence record,
      // written with this bump, names those of them both copies are sure to hold alike.
      if (this.#agreed === null || this.#agreedDropped) {
        this.#agreed = this.#agreedNow();
        this.#agreedDropped = false;
      }
      log.debug(1, `Increasing localcnt to ${this.md.localCnt}.`);
      this.#bumpDurable = this.saveMetadata(persist).catch((err: unknown) => {
        this.counters.onPersistFailed();
        this.#bumpDurable = null;
        throw new ErrnoError('EIO', `Unable to record the divergence in metadata: ${(err as Error).message}`);
      });
    }
    if (this.#bumpDurable !== null) await this.#bumpDurable;
  }

  #markForSync(offset: number, length: number): void {
    if (this.amap.markForSync(offset, length)) void this.bitmapWriter.persist();
  }

  #complete(offset: number, length: number, handle: LockHandle): void {
    if (this.amap.writeComplete(offset, length)) void this.bitmapWriter.persist();
    this.lock.release(handle);
    this.#leave();
  }

  async flush(): Promise<void> {
    this.#enter();
    try {
      this.stats.flushes++;
      const remote = this.remote;
      const remoteP = remote !== null ? this.#remoteFlush(remote) : Promise.resolve(false);
      let localErr: unknown = null;
      const token = this.#localCover.begin();
      try {
        await this.data.flush();
        this.#localCover.done(token);
      } catch (err) {
        this.stats.flushErrors++;
        localErr = err;
      }
      const remoteOk = await remoteP;
      if (localErr !== null && !remoteOk) throw localErr;
      if (localErr !== null) this.#distrustLocal(localErr);
    } finally {
      this.#leave();
    }
  }

  /**
   * Write the metadata block (`durable`: and flush it). Serialised: two writes of the same block in
   * flight could land in either order.
   */
  saveMetadata(persist: Persist = 'write'): Promise<void> {
    if (persist === 'none') return this.#mdChain;
    const run = async (): Promise<void> => {
      this.#stampAgreed();
      await writeMetadata(this.comp, this.md, persist === 'durable');
    };
    const p = this.#mdChain.then(run, run);
    this.#mdChain = p.catch(() => undefined);
    return p;
  }

  /**
   * Mark the local copy inconsistent (it is about to become a sync target) or consistent again (the
   * sync to it completed: the data is flushed first). Durable when this resolves.
   */
  async setInconsistent(inconsistent: boolean): Promise<void> {
    if ((this.md.inconsistent === true) === inconsistent) return;
    if (!inconsistent) await this.data.flush();
    this.md.inconsistent = inconsistent;
    try {
      await this.saveMetadata('durable');
    } catch (err) {
      this.md.inconsistent = !inconsistent;
      throw err;
    }
  }

  /**
   * The peer's connection ended (the replication layer calls this as it drops `remote`). What the
   * peer acknowledged since the last FLUSH it completed may be only in its volatile write cache,
   * which a power failure — the usual reason a secondary goes away — loses; those extents are
   * marked for resync, as at a failed remote FLUSH. The keepdirty extents are in the map already;
   * this adds the ones that left the keepdirty LRU unflushed, which upstream leaves stale on such
   * a secondary (a workload that flushes — every file system — keeps the set small).
   */
  peerLost(): void {
    const lost = this.#remoteCover.lost();
    let changed = false;
    for (const e of lost) changed = this.amap.markExtentsForSync(e) || changed;
    if (!changed) return;
    log.info(`${lost.size} extent(s) written since the peer's last flush are marked for resynchronization.`);
    void this.bitmapWriter.persist();
  }

  #noteSent(offset: number, length: number): void {
    this.#note(this.#remoteCover, offset, length);
  }

  /** A write of the range that the next FLUSH of that side covers. */
  #note(cover: FlushCover, offset: number, length: number): void {
    const [first, last] = this.#extents(offset, length);
    cover.note(first, last);
  }

  /** First and last extent of a non-empty byte range. */
  #extents(offset: number, length: number): [number, number] {
    const es = this.md.extentSize;
    return [Math.floor(offset / es), Math.floor((offset + Math.max(length, 1) - 1) / es)];
  }

  // Divergence record (issue 17) -----------------------------------------------------------

  /**
   * At a divergence, the extents both copies are sure to hold alike: those of the keepdirty LRU
   * with no write in flight (each write to them finished positively on both sides) and none to
   * sync, written on neither side since the last FLUSH that covered them completed there (a
   * volatile cache may still lose them: a power failure), and none the local copy missed. Every
   * other extent of the map may differ, and stays what a recovery resyncs.
   */
  #agreedNow(): Set<number> {
    const agreed = new Set<number>();
    if (this.#localFailed) return agreed;
    for (const e of this.amap.keepDirtyExtents()) {
      if (this.amap.isDirty(e) || this.#staleExtents.has(e)) continue;
      if (this.#remoteCover.pending(e) || this.#localCover.pending(e)) continue;
      agreed.add(e);
    }
    return agreed;
  }

  /** Put the record in the metadata about to be written (tagged with its counters), or take it out. */
  #stampAgreed(): void {
    const agreed = this.#agreed;
    if (agreed === null || agreed.size === 0 || this.#agreedDropped) {
      delete this.md.agreed;
      return;
    }
    const extents = [...agreed].sort((x, y) => x - y);
    this.md.agreed = { localCnt: this.md.localCnt, remoteCnt: this.md.remoteCnt, extents };
  }

  /**
   * Write-ahead for the record: the extents of a write leave it, on disk before any byte of the
   * write can be there (a crash must never leave in the record an extent one copy changed). One
   * metadata write per extent of the record at most, shared by the writes waiting for it; a write
   * whose metadata write failed fails (EIO) and leaves the extent waiting for the next one.
   * @returns what to wait for before the write may go on, or null: nothing.
   */
  #leaveAgreed(offset: number, length: number): Promise<void> | null {
    if (this.#agreed === null && this.#leaving.size === 0) return null;
    const [first, last] = this.#extents(offset, length);
    let need = 0;
    for (let e = first; e <= last; e++) {
      if (this.#agreed?.delete(e) === true) this.#leaving.set(e, ++this.#removals);
      need = Math.max(need, this.#leaving.get(e) ?? 0);
    }
    if (need === 0) return null;
    const cur = this.#agreedWrite;
    const job = cur !== null && cur.upto >= need ? cur : this.#writeAgreed(this.cfg.metaFlush ? 'durable' : 'write');
    return job.done.catch((err: unknown) => {
      throw new ErrnoError('EIO', `Unable to record the divergence in metadata: ${(err as Error).message}`);
    });
  }

  /** A metadata write carrying every removal so far; each is settled once it landed. */
  #writeAgreed(persist: Persist): { readonly upto: number; readonly done: Promise<void> } {
    const upto = this.#removals;
    const done = this.saveMetadata(persist).then(() => {
      for (const [e, n] of this.#leaving) if (n <= upto) this.#leaving.delete(e);
    });
    const job = { upto, done };
    this.#agreedWrite = job;
    const clear = (): void => {
      if (this.#agreedWrite === job) this.#agreedWrite = null;
    };
    done.then(clear, clear);
    return job;
  }

  /**
   * A sync finished while connected: the copies agree. The counters are equalised (§7.1) and the
   * record is dropped, in one metadata write (durable when there was a record: until it lands the
   * record is still maintained by the writes).
   */
  async copiesAgree(): Promise<void> {
    const persist = this.counters.onSyncComplete();
    if (this.#agreed === null) {
      await this.saveMetadata(persist);
      return;
    }
    this.#agreedDropped = true;
    await this.#writeAgreed('durable').done;
    if (this.#agreedDropped) this.#agreed = null;
  }

  /** Extents found to differ between the copies (verify --mark) leave the record, on disk. */
  async disagree(extents: Iterable<number>): Promise<void> {
    let removed = false;
    for (const e of extents) removed = this.#agreed?.delete(e) === true || removed;
    if (removed) await this.saveMetadata(this.cfg.metaFlush ? 'durable' : 'write');
  }

  /**
   * A split-brain recovery (the connecting secondary discards its changes, --discard-my-data): the
   * extents of the record agree on both copies, so they leave this side's sync; the peer's map,
   * merged after this, brings back any it changed. Returns how many there were.
   */
  forgetAgreed(): number {
    const agreed = this.#agreed;
    if (agreed === null || this.#agreedDropped || agreed.size === 0) return 0;
    this.amap.forgetAgreed(agreed);
    return agreed.size;
  }

  /**
   * `changed extents` of the status (issue 17): the extents waiting for sync, less those of the
   * record; `by` says whether a record counted.
   */
  changedExtents(): { readonly count: number; readonly by: 'record' | 'activemap' } {
    const agreed = this.#agreed;
    if (agreed === null || this.#agreedDropped || agreed.size === 0)
      return { count: this.amap.syncPendingExtents, by: 'activemap' };
    let count = this.amap.syncPendingExtents;
    for (const e of agreed) if (this.amap.needsSync(e)) count--;
    return { count, by: 'record' };
  }

  /**
   * A FLUSH to the peer covering every extent sent before it. When it fails, the peer's copy may
   * lack acknowledged data that the client was told is durable: each such extent is marked for
   * resync and the bitmap is on disk before the caller acknowledges; the remote leg disconnects
   * (remote.ts), so the resource is degraded and the reconnect resyncs them. The client's FLUSH or
   * FUA still succeeds on the local flush alone: the data is durable on the primary, as DRBD
   * keeps a primary serving when the peer's disk fails. A peer that cannot flush at all
   * (EOPNOTSUPP, e.g. a FreeBSD node with a file component) is warned about once, as upstream
   * counts "either side succeeded".
   */
  async #remoteFlush(remote: RemoteLeg): Promise<boolean> {
    const token = this.#remoteCover.begin();
    const ok = await remote.flush();
    if (ok) {
      this.#remoteCover.done(token);
      return true;
    }
    if (remote.flushUnsupported === true) {
      if (!this.#warnedFlushUnsupported)
        log.warning('The remote node cannot flush its disk (EOPNOTSUPP); writes there are not made durable by FLUSH.');
      this.#warnedFlushUnsupported = true;
      // As upstream: a peer without a cache to flush holds what it acknowledged.
      this.#remoteCover.done(token);
      return false;
    }
    const covered = this.#remoteCover.failed(token);
    let changed = false;
    for (const e of covered) changed = this.amap.markExtentsForSync(e) || changed;
    if (covered.size > 0)
      log.warning(
        `Remote flush failed; ${covered.size} extent(s) written since the last remote flush are marked for resynchronization.`,
      );
    if (changed) await this.bitmapWriter.persist();
    return false;
  }
}
