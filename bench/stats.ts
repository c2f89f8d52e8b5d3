// Small numeric helpers shared by the phases and the report.

/** Median of a non-empty list (mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no samples');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Seconds since `start` (a process.hrtime.bigint() reading). */
export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const STARTED = process.hrtime.bigint();

/** Progress lines (with seconds since start) go to stderr, so that stdout carries only the table. */
export function progress(msg: string): void {
  process.stderr.write(`bench: [${secondsSince(STARTED).toFixed(1).padStart(6)}s] ${msg}\n`);
}
