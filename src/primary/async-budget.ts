// The async mode's memory bound (HAST-SPEC §6.6): writes acknowledged to the application on the
// local write alone still hold their payload until the peer confirms them. Without a bound, a
// stalled peer lets the client fill the worker's memory; with it, a write waits (and so does the
// NBD client) until earlier writes are confirmed, instead of being acknowledged.
import type { AsyncBacklog } from '../control/messages.js';

/** Writes acknowledged but not yet confirmed by the peer: the slot pool of the worker. */
export const ASYNC_MAX_WRITES = 256;
/** Their payload bytes: 32 MiB, 32 requests of MAXPHYS or 512 of 64 KiB. */
export const ASYNC_MAX_BYTES = 32 << 20;

/**
 * A count-and-bytes budget handed out in arrival order. A request larger than the whole byte
 * budget is admitted when nothing else holds any (it cannot wait for room that never comes).
 */
export class AsyncBudget {
  readonly maxWrites: number;
  readonly maxBytes: number;
  #writes = 0;
  #bytes = 0;
  #peakWrites = 0;
  #peakBytes = 0;
  readonly #waiters: { bytes: number; go: () => void }[] = [];

  constructor(maxWrites = ASYNC_MAX_WRITES, maxBytes = ASYNC_MAX_BYTES) {
    this.maxWrites = maxWrites;
    this.maxBytes = maxBytes;
  }

  get writes(): number {
    return this.#writes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  #fits(bytes: number): boolean {
    return this.#writes === 0 || (this.#writes < this.maxWrites && this.#bytes + bytes <= this.maxBytes);
  }

  #take(bytes: number): void {
    this.#writes++;
    this.#bytes += bytes;
    if (this.#writes > this.#peakWrites) this.#peakWrites = this.#writes;
    if (this.#bytes > this.#peakBytes) this.#peakBytes = this.#bytes;
  }

  /** Resolves once `bytes` fit; pair every acquire with one release of the same size. */
  acquire(bytes: number): Promise<void> {
    if (this.#waiters.length === 0 && this.#fits(bytes)) {
      this.#take(bytes);
      return Promise.resolve();
    }
    return new Promise((go) => this.#waiters.push({ bytes, go }));
  }

  release(bytes: number): void {
    this.#writes--;
    this.#bytes -= bytes;
    for (let w = this.#waiters[0]; w !== undefined && this.#fits(w.bytes); w = this.#waiters[0]) {
      this.#waiters.shift();
      this.#take(w.bytes);
      w.go();
    }
  }

  snapshot(): AsyncBacklog {
    return {
      writes: this.#writes,
      bytes: this.#bytes,
      maxWrites: this.maxWrites,
      maxBytes: this.maxBytes,
      peakWrites: this.#peakWrites,
      peakBytes: this.#peakBytes,
      waiting: this.#waiters.length,
    };
  }
}
