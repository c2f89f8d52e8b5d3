// Range lock of the primary's data path (HAST-SPEC §4.2 step 1, §4.4): application writes
// ("regular") and resync chunks ("sync") on overlapping byte ranges run one at a time, in arrival
// order; requests on disjoint ranges run concurrently. Pure bookkeeping, no I/O.

/** Who takes the lock: an application write, or a resync chunk. */
export type LockKind = 'regular' | 'sync';

/** A request for a range, granted or waiting; pass it to release(). Treat it as opaque. */
export interface LockHandle {
  readonly kind: LockKind;
  readonly offset: number;
  readonly length: number;
}

interface Entry extends LockHandle {
  readonly end: number;
  granted: boolean;
  onGranted: (() => void) | null;
}

/*
 * One queue in arrival order holds holders and waiters alike:
 *
 *   #queue:  [R 0+4K ✓] [S 0+1M ·] [R 8K+4K ✓] [R 0+4K ·] [R 2M+4K ✓]
 *              holder     waits for   holder     waits for   holder
 *                         the first              the S chunk (FIFO)
 *
 * Rule: an entry is granted when no EARLIER entry (granted or not) overlaps it. So conflicting
 * requests are served strictly in arrival order (a sync chunk cannot be starved by a stream of
 * writes, and a later overlapping write never overtakes an earlier one), while an entry that
 * overlaps nothing earlier is granted at once. Any overlap conflicts, whatever the kinds: two
 * overlapping regular writes must keep their order, and regular and sync exclude each other.
 * Empty ranges overlap nothing. Cost per acquire/release is O(queue²) at worst, which is small
 * for the 256 request slots of the data path.
 */

/** FIFO range lock over byte ranges; see the picture above. */
export class RangeLock {
  readonly #queue: Entry[] = [];

  /** Granted entries. */
  get held(): number {
    let n = 0;
    for (const e of this.#queue) if (e.granted) n++;
    return n;
  }

  /** Entries still waiting. */
  get waiting(): number {
    return this.#queue.length - this.held;
  }

  /**
   * Ask for `[offset, offset + length)`. `onGranted` runs synchronously, before acquire()
   * returns, when nothing earlier overlaps; otherwise later, from the release() that frees it.
   * @returns the handle to release (also valid to cancel a request still waiting).
   * @throws RangeError for a negative or non-integer offset or length.
   */
  acquire(kind: LockKind, offset: number, length: number, onGranted: () => void): LockHandle {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`Invalid lock range ${offset}+${length}`);
    }
    const entry: Entry = { kind, offset, length, end: offset + length, granted: false, onGranted };
    const free = !this.#overlapsEarlier(entry, this.#queue.length);
    this.#queue.push(entry);
    if (free) {
      entry.granted = true;
      entry.onGranted = null;
      onGranted();
    }
    return entry;
  }

  /**
   * The range at once when nothing earlier overlaps it (granted, as acquire() would), else null
   * and nothing is queued: the caller then waits with lock(). Spares the data path a promise and
   * its microtask hops for the usual, uncontended write.
   */
  tryAcquire(kind: LockKind, offset: number, length: number): LockHandle | null {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`Invalid lock range ${offset}+${length}`);
    }
    const entry: Entry = { kind, offset, length, end: offset + length, granted: true, onGranted: null };
    if (this.#overlapsEarlier(entry, this.#queue.length)) return null;
    this.#queue.push(entry);
    return entry;
  }

  /** acquire() as a promise that resolves once the range is granted. */
  lock(kind: LockKind, offset: number, length: number): Promise<LockHandle> {
    return new Promise<LockHandle>((resolve) => {
      const handle: LockHandle = this.acquire(kind, offset, length, () => {
        // acquire() may call back before `handle` is assigned: resolve on the next microtask.
        queueMicrotask(() => resolve(handle));
      });
    });
  }

  /** Whether `handle` holds its range. */
  isGranted(handle: LockHandle): boolean {
    return (handle as Entry).granted && this.#queue.includes(handle as Entry);
  }

  /**
   * Release a granted range, or cancel a request still waiting (its callback will never run).
   * Waiters that no longer overlap anything earlier are granted, in arrival order, after the
   * queue is updated (so their callbacks may acquire or release freely).
   * @throws Error when the handle is not in this lock (released twice, or foreign).
   */
  release(handle: LockHandle): void {
    const i = this.#queue.indexOf(handle as Entry);
    if (i < 0)
      throw new Error(`Range lock released twice or not taken: ${handle.kind} ${handle.offset}+${handle.length}`);
    this.#queue.splice(i, 1);
    const ready: Entry[] = [];
    for (let j = i; j < this.#queue.length; j++) {
      const e = this.#queue[j];
      if (e === undefined || e.granted) continue;
      if (!this.#overlapsEarlier(e, j)) {
        e.granted = true;
        ready.push(e);
      }
    }
    for (const e of ready) {
      const cb = e.onGranted;
      e.onGranted = null;
      cb?.();
    }
  }

  /** Whether any of the first `before` entries overlaps `e`. */
  #overlapsEarlier(e: Entry, before: number): boolean {
    if (e.length === 0) return false;
    for (let k = 0; k < before; k++) {
      const o = this.#queue[k];
      if (o !== undefined && o.length > 0 && o.offset < e.end && e.offset < o.end) return true;
    }
    return false;
  }
}
