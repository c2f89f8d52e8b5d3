// A latency histogram with fixed buckets (seconds), cheap enough for every request: one clock read
// at each end and a walk over 16 bounds. Workers keep them; the parent exposes them (metrics).

/** Upper bounds in seconds, 50 µs to 10 s (Prometheus' `le`; +Inf is implied). */
const BOUNDS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
] as const;

/** What a worker reports: cumulative counts are made by the reader. */
export interface HistogramSnapshot {
  /** Upper bounds in seconds. */
  readonly bounds: readonly number[];
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; one more for above the last bound. */
  readonly counts: readonly number[];
  readonly sum: number;
  readonly count: number;
}

export class Histogram {
  readonly #counts = new Array<number>(BOUNDS.length + 1).fill(0);
  #sum = 0;
  #count = 0;

  /** A start time for {@link since}. */
  static now(): bigint {
    return process.hrtime.bigint();
  }

  /** Observe the time elapsed since `start` (from {@link Histogram.now}). */
  since(start: bigint): void {
    this.observe(Number(process.hrtime.bigint() - start) / 1e9);
  }

  observe(seconds: number): void {
    let i = 0;
    while (i < BOUNDS.length && seconds > (BOUNDS[i] ?? 0)) i++;
    this.#counts[i] = (this.#counts[i] ?? 0) + 1;
    this.#sum += seconds;
    this.#count++;
  }

  snapshot(): HistogramSnapshot {
    return { bounds: BOUNDS, counts: [...this.#counts], sum: this.#sum, count: this.#count };
  }
}
