// Activemap: per-extent write counts, the keepdirty LRU, the on-disk dirty bitmap and the sync
// cursor. HAST-SPEC §3.3, §4.1–4.4, §8. Pure bookkeeping like upstream activemap.c: every method
// returns a decision ("write the bitmap now"), the caller does the I/O.
import { bitmapBytes, clearBit, findFirstSet, popcount, roundUp, setBit, testBit } from './bitmap.js';

/** A broken invariant of the activemap (a bug in the caller, never bad input): the worker must exit. */
export class ActivemapInvariantError extends Error {
  override readonly name = 'ActivemapInvariantError';
  readonly code = 'ACTIVEMAP_INVARIANT';
}

/** Default size of the keepdirty LRU (`hastctl create -k`, HAST-SPEC §2.2, §4.1). */
export const KEEPDIRTY_DEFAULT = 64;

export interface ActivemapOptions {
  /** Bytes of user data (metadata `datasize`). */
  readonly dataSize: number;
  /** Bytes per extent; a power of two. */
  readonly extentSize: number;
  /** Size of the keepdirty LRU (default KEEPDIRTY_DEFAULT = 64); 0 disables it. */
  readonly keepDirty?: number;
  /** Sector size of the component; the on-disk map is rounded up to it. */
  readonly sectorSize: number;
}

// Per-extent flag bits in #flags.
const IN_LRU = 1;
/** The sync walker has begun copying the extent (syncExtentRange) and not finished it. */
const WALKING = 2;
/** The extent was marked for sync again while being walked: keep it for another pass. */
const SYNC_AGAIN = 4;

/*
 * State, per extent e (n = nExtents):
 *
 *   ops[e]      Uint32Array  regular writes between writeStart and writeComplete
 *   syncmap     bit e        e must be resynchronised (from disk at start, the peer's map, or a
 *                            write whose remote leg did not positively succeed)
 *   memmap      bit e        "dirty": ops[e] > 0 OR syncmap[e]          (nDirty = popcount)
 *   keepdirty   LRU          the keepDirty most recently written extents, newest first
 *
 *       head                                          tail
 *        │   next ▶            next ▶            next ▶ │
 *       [e17] ◀ prev ─ [e3] ◀ prev ─ ... ◀ prev ─ [e42]      (#lruNext/#lruPrev: Int32Array, -1 ends)
 *        ▲ writeStart moves/inserts here        ▲ evicted when a new extent arrives and the list is full
 *
 *   disk image  = memmap | LRU                   (bitmap(); bytes past nExtents are zero)
 *
 * Invariants, kept by every method and checked by the property tests:
 *   I1  memmap[e] ⇔ ops[e] > 0 ∨ syncmap[e];  nDirty = |memmap|;  nSync = |syncmap|.
 *   I2  (write-ahead) every extent in memmap ∪ LRU is set in the last image the caller was told to
 *       persist: a method returns true exactly when it adds an extent to memmap ∪ LRU, and nothing
 *       else ever adds one. So when writeStart returns false, every touched extent is already in
 *       that image; when it returns true, the caller persists bitmap() before issuing the data.
 *   I3  removing an extent from memmap ∪ LRU never requires a write for safety; writeComplete and
 *       syncExtentDone return true when it happened (so the bit can be cleared on disk), eviction
 *       from the LRU leaves the clearing to the next write of the image.
 *
 * Upstream counts sync work in memtab (chunks per extent); we hold the extent dirty by its syncmap
 * bit instead, so a write whose remote leg failed can be marked after its own writeComplete.
 */

/**
 * The primary's dirty-extent tracker. Offsets and lengths are bytes in the data area
 * (0 ≤ offset, offset + length ≤ dataSize); anything else throws a RangeError (the data path
 * validates requests before they get here).
 */
export class Activemap {
  readonly dataSize: number;
  readonly extentSize: number;
  readonly keepDirty: number;
  /** Number of extents: ceil(dataSize / extentSize). */
  readonly nExtents: number;
  /** Bytes of map that carry bits: ceil(nExtents / 8). */
  readonly mapSize: number;
  /** Bytes of the on-disk map: mapSize rounded up to the sector size. */
  readonly diskMapSize: number;

  readonly #ops: Uint32Array;
  readonly #memmap: Uint8Array;
  readonly #syncmap: Uint8Array;
  readonly #flags: Uint8Array;
  readonly #lruPrev: Int32Array;
  readonly #lruNext: Int32Array;
  #lruHead = -1;
  #lruTail = -1;
  #lruCount = 0;
  #nDirty = 0;
  #nSync = 0;
  #opsTotal = 0;

  constructor(opts: ActivemapOptions) {
    const { dataSize, extentSize, keepDirty = KEEPDIRTY_DEFAULT, sectorSize } = opts;
    if (!Number.isSafeInteger(dataSize) || dataSize < 0) throw new RangeError(`Invalid data size: ${dataSize}`);
    if (
      !Number.isSafeInteger(extentSize) ||
      extentSize <= 0 ||
      (extentSize & (extentSize - 1)) !== 0 ||
      extentSize > 2 ** 30
    ) {
      throw new RangeError(`Invalid extent size: ${extentSize} is not a power of two`);
    }
    if (!Number.isSafeInteger(keepDirty) || keepDirty < 0) throw new RangeError(`Invalid keepdirty: ${keepDirty}`);
    if (!Number.isSafeInteger(sectorSize) || sectorSize <= 0)
      throw new RangeError(`Invalid sector size: ${sectorSize}`);
    this.dataSize = dataSize;
    this.extentSize = extentSize;
    this.keepDirty = keepDirty;
    this.nExtents = Math.ceil(dataSize / extentSize);
    this.mapSize = bitmapBytes(this.nExtents);
    this.diskMapSize = roundUp(this.mapSize, sectorSize);
    this.#ops = new Uint32Array(this.nExtents);
    this.#memmap = new Uint8Array(this.mapSize);
    this.#syncmap = new Uint8Array(this.mapSize);
    this.#flags = new Uint8Array(this.nExtents);
    this.#lruPrev = new Int32Array(this.nExtents).fill(-1);
    this.#lruNext = new Int32Array(this.nExtents).fill(-1);
  }

  // Counters -------------------------------------------------------------------------------

  /** Extents set in memmap (upstream ndirty). */
  get nDirty(): number {
    return this.#nDirty;
  }

  /** The `dirty:` status field: nDirty × extentSize (HAST-SPEC §4.1). */
  get dirtyBytes(): number {
    return this.#nDirty * this.extentSize;
  }

  /** Extents still set in the syncmap. */
  get syncPendingExtents(): number {
    return this.#nSync;
  }

  /** Bytes the sync still has to copy (extents in the syncmap, the last one clipped to dataSize). */
  get syncPendingBytes(): number {
    let bytes = this.#nSync * this.extentSize;
    const last = this.nExtents - 1;
    if (last >= 0 && testBit(this.#syncmap, last)) bytes -= this.extentSize - this.#extentLength(last);
    return bytes;
  }

  /** Regular writes between writeStart and writeComplete, over all extents. */
  get opsInFlight(): number {
    return this.#opsTotal;
  }

  /** Extent holding byte `offset` of the data area. */
  extentOf(offset: number): number {
    return Math.floor(offset / this.extentSize);
  }

  /** Outstanding regular writes touching extent `e`. */
  extentOps(e: number): number {
    return this.#ops[e] ?? 0;
  }

  /** Whether extent `e` is dirty (memmap). */
  isDirty(e: number): boolean {
    return testBit(this.#memmap, e);
  }

  /** Whether extent `e` is waiting for resynchronisation (syncmap). */
  needsSync(e: number): boolean {
    return testBit(this.#syncmap, e);
  }

  /** Whether extent `e` is in the keepdirty LRU. */
  inKeepDirty(e: number): boolean {
    return ((this.#flags[e] ?? 0) & IN_LRU) !== 0;
  }

  /** The keepdirty LRU, most recently written first (for tests and debugging). */
  keepDirtyExtents(): number[] {
    const out: number[] = [];
    for (let e = this.#lruHead; e !== -1; e = this.#lruNext[e] ?? -1) out.push(e);
    return out;
  }

  // Write path (HAST-SPEC §4.2) --------------------------------------------------------------

  /**
   * Account a write (or zero/trim) of `length` bytes at `offset`, before any data is issued.
   * Every extent touched gets one more op, becomes dirty and moves to the head of the keepdirty
   * LRU (inserted if absent, evicting the least recently used extent when full).
   * @returns true when the caller must write bitmap() to disk (and flush it if metaflush is on)
   *   BEFORE issuing the data: some touched extent was not in the disk image yet.
   */
  writeStart(offset: number, length: number): boolean {
    const [first, last] = this.#range(offset, length);
    let persist = false;
    for (let e = first; e <= last; e++) {
      if (!this.#inImage(e)) persist = true;
      this.#ops[e] = (this.#ops[e] ?? 0) + 1;
      this.#opsTotal++;
      if (setBit(this.#memmap, e)) this.#nDirty++;
      this.#lruTouch(e);
    }
    return persist;
  }

  /**
   * Account the end of a write started with the same `offset` and `length`. An extent whose last
   * op ended becomes clean unless it still needs sync.
   * @returns true when the image lost a bit (an extent became clean and is not in the LRU), so
   *   the caller may rewrite the bitmap; it is never needed for safety.
   * @throws ActivemapInvariantError when an extent has no op to complete (nothing is changed then).
   */
  writeComplete(offset: number, length: number): boolean {
    const [first, last] = this.#range(offset, length);
    for (let e = first; e <= last; e++) {
      if ((this.#ops[e] ?? 0) === 0) {
        throw new ActivemapInvariantError(`writeComplete(${offset}, ${length}): extent ${e} has no write in flight`);
      }
    }
    let changed = false;
    for (let e = first; e <= last; e++) {
      const left = (this.#ops[e] ?? 0) - 1;
      this.#ops[e] = left;
      this.#opsTotal--;
      if (left === 0 && !testBit(this.#syncmap, e)) {
        clearBit(this.#memmap, e);
        this.#nDirty--;
        if (!this.inKeepDirty(e)) changed = true;
      }
    }
    return changed;
  }

  // Sources of resync work (HAST-SPEC §4.3, §8) --------------------------------------------

  /**
   * Mark every extent of a range for resynchronisation: a write whose remote leg did not positively
   * succeed, or a write made while disconnected. The extents stay dirty until synced, even after
   * their writeComplete. Upstream: only unsent writes are marked (HAST-SPEC §11.12); we mark all.
   * @returns true when the caller should write bitmap() (an extent was not in the disk image).
   */
  markForSync(offset: number, length: number): boolean {
    const [first, last] = this.#range(offset, length);
    let persist = false;
    for (let e = first; e <= last; e++) if (this.#markExtent(e)) persist = true;
    return persist;
  }

  /** markForSync for `count` whole extents from `first`; same return value. */
  markExtentsForSync(first: number, count = 1): boolean {
    if (
      !Number.isSafeInteger(first) ||
      !Number.isSafeInteger(count) ||
      first < 0 ||
      count < 0 ||
      first + count > this.nExtents
    ) {
      throw new RangeError(`Extents ${first}+${count} are outside the map of ${this.nExtents} extents`);
    }
    let persist = false;
    for (let e = first; e < first + count; e++) if (this.#markExtent(e)) persist = true;
    return persist;
  }

  /** Mark every extent for sync (full synchronisation); same return value as markForSync. */
  markAllForSync(): boolean {
    return this.nExtents > 0 ? this.markExtentsForSync(0, this.nExtents) : false;
  }

  /**
   * Load the on-disk bitmap at worker start (before any write): every set extent becomes dirty
   * and needs sync, so whatever may have been in flight at a crash is resynced. Bits past
   * nExtents are ignored; a short buffer reads as clear past its end.
   * @throws ActivemapInvariantError when writes are in flight.
   */
  loadFromDisk(bitmap: Uint8Array): void {
    if (this.#opsTotal !== 0) throw new ActivemapInvariantError('loadFromDisk() with writes in flight');
    this.#memmap.fill(0);
    this.#syncmap.fill(0);
    this.#flags.fill(0);
    this.#lruPrev.fill(-1);
    this.#lruNext.fill(-1);
    this.#lruHead = this.#lruTail = -1;
    this.#lruCount = 0;
    const n = Math.min(this.mapSize, bitmap.length);
    for (let i = 0; i < n; i++) this.#syncmap[i] = bitmap[i] ?? 0;
    this.#maskTail(this.#syncmap);
    this.#memmap.set(this.#syncmap);
    this.#nSync = this.#nDirty = popcount(this.#syncmap, this.nExtents);
  }

  /**
   * OR the peer's bitmap (handshake reply, HAST-SPEC §4.3) into the syncmap and memmap. The
   * caller writes bitmap() to disk before the resync starts. Bits past nExtents are ignored.
   * @returns true when some extent was newly marked for sync.
   */
  mergeRemote(bitmap: Uint8Array): boolean {
    const n = Math.min(this.mapSize, bitmap.length);
    let changed = false;
    for (let i = 0; i < n; i++) {
      let bits = bitmap[i] ?? 0;
      while (bits !== 0) {
        const e = i * 8 + (31 - Math.clz32(bits & -bits));
        bits &= bits - 1;
        if (e >= this.nExtents) break;
        if (!testBit(this.#syncmap, e)) changed = true;
        // Every set bit counts as a mark, so an extent being walked is kept for another pass.
        this.#markExtent(e);
      }
    }
    return changed;
  }

  // Disk image -----------------------------------------------------------------------------

  /** The on-disk image (diskMapSize bytes, a fresh Buffer): memmap | keepdirty LRU. */
  bitmap(): Buffer {
    const image = Buffer.alloc(this.diskMapSize);
    image.set(this.#memmap);
    for (let e = this.#lruHead; e !== -1; e = this.#lruNext[e] ?? -1) setBit(image, e);
    return image;
  }

  // Sync cursor (HAST-SPEC §4.4) -----------------------------------------------------------

  /** First extent at or after `fromExtent` that needs sync; -1 when none. */
  nextSyncExtent(fromExtent = 0): number {
    return findFirstSet(this.#syncmap, this.nExtents, fromExtent);
  }

  /**
   * The byte range of an extent (the last one clipped to dataSize). The sync walker calls it when
   * it begins copying the extent: a mark for sync after this point keeps the extent for another
   * pass (its data may have changed after the chunk that covers it was copied).
   */
  syncExtentRange(extent: number): { offset: number; length: number } {
    this.#checkExtent(extent);
    const f = this.#flags[extent] ?? 0;
    this.#flags[extent] = (f | WALKING) & ~SYNC_AGAIN;
    return { offset: extent * this.extentSize, length: this.#extentLength(extent) };
  }

  /**
   * Every chunk of `extent` was copied: clear its syncmap bit, and its memmap bit unless a write
   * is in flight on it. If it was marked again while being copied, it stays for the next pass.
   * A call for an extent not in the syncmap does nothing.
   * @returns true when the image lost a bit (the caller may rewrite the bitmap).
   */
  syncExtentDone(extent: number): boolean {
    this.#checkExtent(extent);
    const f = this.#flags[extent] ?? 0;
    this.#flags[extent] = f & ~(WALKING | SYNC_AGAIN);
    if ((f & SYNC_AGAIN) !== 0) return false;
    return this.#unsync(extent);
  }

  /**
   * Empty the keepdirty LRU (issue 17): the caller knows both copies of every extent agree and are
   * on stable storage (a clean stop after a flush of both nodes, nothing in flight or to sync), so
   * the extents kept dirty against a crash need no resync. Extents with an op in flight or waiting
   * for sync stay in the image (memmap).
   * @returns true when the image lost a bit (the caller writes bitmap()).
   */
  forgetKeepDirty(): boolean {
    let changed = false;
    for (let e = this.#lruHead; e !== -1; ) {
      const next = this.#lruNext[e] ?? -1;
      this.#lruUnlink(e);
      this.#flags[e] = (this.#flags[e] ?? 0) & ~IN_LRU;
      this.#lruCount--;
      if (!testBit(this.#memmap, e)) changed = true;
      e = next;
    }
    return changed;
  }

  /**
   * Take extents both copies are known to agree on out of the map (issue 17, split-brain recovery
   * with a divergence record): out of the syncmap and the keepdirty LRU. An extent with a write in
   * flight or being walked by the sync stays.
   * @returns true when the image lost a bit (the caller writes bitmap()).
   */
  forgetAgreed(extents: Iterable<number>): boolean {
    let changed = false;
    for (const e of extents) {
      this.#checkExtent(e);
      if ((this.#ops[e] ?? 0) > 0 || ((this.#flags[e] ?? 0) & WALKING) !== 0) continue;
      if (this.inKeepDirty(e)) {
        this.#lruUnlink(e);
        this.#flags[e] = (this.#flags[e] ?? 0) & ~IN_LRU;
        this.#lruCount--;
        if (!testBit(this.#memmap, e)) changed = true;
      }
      if (this.#unsync(e)) changed = true;
    }
    return changed;
  }

  /** Clear the whole syncmap (nothing left to copy); same return value as syncExtentDone. */
  clearSync(): boolean {
    let changed = false;
    for (let e = this.nextSyncExtent(0); e !== -1; e = this.nextSyncExtent(e + 1)) {
      this.#flags[e] = (this.#flags[e] ?? 0) & ~(WALKING | SYNC_AGAIN);
      if (this.#unsync(e)) changed = true;
    }
    return changed;
  }

  // Internals ------------------------------------------------------------------------------

  #inImage(e: number): boolean {
    return testBit(this.#memmap, e) || this.inKeepDirty(e);
  }

  /** Set e in the syncmap (and memmap); true when e was not in the image before. */
  #markExtent(e: number): boolean {
    const wasInImage = this.#inImage(e);
    if (setBit(this.#syncmap, e)) this.#nSync++;
    const f = this.#flags[e] ?? 0;
    if ((f & WALKING) !== 0) this.#flags[e] = f | SYNC_AGAIN;
    if (setBit(this.#memmap, e)) this.#nDirty++;
    return !wasInImage;
  }

  /** Clear e from the syncmap, and from memmap when no write holds it; true when the image lost e. */
  #unsync(e: number): boolean {
    if (!clearBit(this.#syncmap, e)) return false;
    this.#nSync--;
    if ((this.#ops[e] ?? 0) > 0) return false;
    clearBit(this.#memmap, e);
    this.#nDirty--;
    return !this.inKeepDirty(e);
  }

  /** Move e to the head of the keepdirty LRU, inserting it (and evicting the tail) if absent. */
  #lruTouch(e: number): void {
    if (this.keepDirty === 0) return;
    const prev = this.#lruPrev;
    const next = this.#lruNext;
    if (this.inKeepDirty(e)) {
      if (this.#lruHead === e) return;
      this.#lruUnlink(e);
    } else {
      if (this.#lruCount >= this.keepDirty) {
        const victim = this.#lruTail;
        this.#lruUnlink(victim);
        this.#flags[victim] = (this.#flags[victim] ?? 0) & ~IN_LRU;
        this.#lruCount--;
      }
      this.#flags[e] = (this.#flags[e] ?? 0) | IN_LRU;
      this.#lruCount++;
    }
    prev[e] = -1;
    next[e] = this.#lruHead;
    if (this.#lruHead !== -1) prev[this.#lruHead] = e;
    this.#lruHead = e;
    if (this.#lruTail === -1) this.#lruTail = e;
  }

  #lruUnlink(e: number): void {
    const p = this.#lruPrev[e] ?? -1;
    const n = this.#lruNext[e] ?? -1;
    if (p !== -1) this.#lruNext[p] = n;
    else this.#lruHead = n;
    if (n !== -1) this.#lruPrev[n] = p;
    else this.#lruTail = p;
    this.#lruPrev[e] = this.#lruNext[e] = -1;
  }

  /** Clear the bits of the last map byte that lie past nExtents. */
  #maskTail(map: Uint8Array): void {
    const rest = this.nExtents & 7;
    if (rest !== 0 && this.mapSize > 0) map[this.mapSize - 1] = (map[this.mapSize - 1] ?? 0) & ((1 << rest) - 1);
  }

  #extentLength(e: number): number {
    return Math.min(this.extentSize, this.dataSize - e * this.extentSize);
  }

  #checkExtent(e: number): void {
    if (!Number.isSafeInteger(e) || e < 0 || e >= this.nExtents) {
      throw new RangeError(`Extent ${e} is outside the map of ${this.nExtents} extents`);
    }
  }

  /** First and last extent of a byte range; [0, -1] (no extent) for an empty range. */
  #range(offset: number, length: number): [number, number] {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.dataSize
    ) {
      throw new RangeError(`Range ${offset}+${length} is outside the data area of ${this.dataSize} bytes`);
    }
    if (length === 0) return [0, -1];
    return [Math.floor(offset / this.extentSize), Math.floor((offset + length - 1) / this.extentSize)];
  }
}
