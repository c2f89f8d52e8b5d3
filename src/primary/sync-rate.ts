// Resync rate control (our extension, issue 17): `syncrate` caps the bytes per second a resync
// copies, `syncminrate` is what it slows down to while the application does I/O (and never goes
// below), and `hastctl sync pause|resume` holds it. Upstream copies as fast as it can.
//
// Pacing: every chunk reserves the next slot of `bytes / rate` seconds on a timeline and starts
// only when its slot has ended, so that whatever the window of chunks in flight, the bytes copied
// by time t never exceed rate × t. Idle time earns no credit (no burst after a pause or a stall).

/** How recent an application request must be for the application to count as busy. */
const BUSY_WINDOW_MS = 200;
/** How often a paused sync looks whether it was resumed or its connection is gone. */
const PAUSE_POLL_MS = 50;

export interface SyncRates {
  /** Bytes per second; 0 or absent = unlimited. */
  readonly syncRate?: number;
  /** Bytes per second while the application is busy; 0 or absent = not set (no slow-down). */
  readonly syncMinRate?: number;
}

export class SyncThrottle {
  #rates: SyncRates;
  #paused = false;
  /** End of the last reserved slot (ms, performance.now()). */
  #next = 0;
  readonly #appOps: () => number;
  #lastOps = -1;
  #lastBusy = Number.NEGATIVE_INFINITY;

  /** `appOps`: a counter of application requests (reads, writes, deletes, flushes). */
  constructor(rates: SyncRates, appOps: () => number) {
    this.#rates = rates;
    this.#appOps = appOps;
  }

  setRates(rates: SyncRates): void {
    this.#rates = rates;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** True when the state changed. */
  pause(): boolean {
    const was = this.#paused;
    this.#paused = true;
    return !was;
  }

  resume(): boolean {
    const was = this.#paused;
    this.#paused = false;
    return was;
  }

  /** The application made a request within the last BUSY_WINDOW_MS. */
  #appBusy(now: number): boolean {
    const ops = this.#appOps();
    if (ops !== this.#lastOps) {
      if (this.#lastOps >= 0) this.#lastBusy = now;
      this.#lastOps = ops;
    }
    return now - this.#lastBusy < BUSY_WINDOW_MS;
  }

  /** The rate in force now (bytes/s), 0 = unlimited. */
  currentRate(now = performance.now()): number {
    const syncRate = this.#rates.syncRate ?? 0;
    const syncMinRate = this.#rates.syncMinRate ?? 0;
    if (syncMinRate > 0 && this.#appBusy(now)) return syncRate > 0 ? Math.min(syncRate, syncMinRate) : syncMinRate;
    return syncRate;
  }

  /**
   * Wait until a chunk of `bytes` may be copied: while paused, then for its slot. Resolves false,
   * without reserving, as soon as `cancelled()` is true (the connection is gone).
   */
  async admit(bytes: number, cancelled: () => boolean): Promise<boolean> {
    for (;;) {
      while (this.#paused) {
        if (cancelled()) return false;
        await sleep(PAUSE_POLL_MS);
      }
      if (cancelled()) return false;
      const now = performance.now();
      const rate = this.currentRate(now);
      if (rate <= 0) {
        this.#next = now;
        return true;
      }
      const end = Math.max(now, this.#next) + (bytes * 1000) / rate;
      this.#next = end;
      await sleepUntil(end);
      if (cancelled()) return false;
      // Paused while waiting for the slot: the chunk waits for the resume like the others.
      if (!this.#paused) return true;
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/**
 * Until performance.now() reaches `end`, never before: a timer truncates its delay to whole
 * milliseconds and is measured from the event loop's cached time, so it can fire a little early,
 * and a slot that ends early lets the copy run above the rate.
 */
async function sleepUntil(end: number): Promise<void> {
  for (let left = end - performance.now(); left > 0; left = end - performance.now()) await sleep(Math.ceil(left));
}
