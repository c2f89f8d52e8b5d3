// Waiting in tests, the harness and the benchmark: a pause, a bounded poll, and "the primary is in
// sync" (complete, nothing dirty, no sync running) written once for every way of asking a worker.

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll fn until it returns a truthy value (returned); throw after timeoutMs with the last value seen. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T> | T,
  timeoutMs = 30_000,
  everyMs = 200,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = await fn();
    if (last) return last as NonNullable<T>;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await sleep(everyMs);
  }
}

/** The part of a worker's status that says whether it is in sync. */
export interface SyncView {
  readonly status: string;
  readonly dirty: number;
  readonly sync?: unknown;
}

/** Complete, nothing dirty and no sync running (`sync` null, or absent from a JSON status). */
export function inSync(w: SyncView | null | undefined): boolean {
  return (
    w !== null &&
    w !== undefined &&
    w.status === 'complete' &&
    w.dirty === 0 &&
    (w.sync === null || w.sync === undefined)
  );
}

export interface WaitInSyncOptions {
  readonly timeoutMs?: number;
  readonly everyMs?: number;
  /**
   * How many polls in a row must see it in sync (default 1). A worker that has just connected may
   * report clean before it has merged the peer's bitmap.
   */
  readonly calmPolls?: number;
}

/** Poll `worker` (null: no worker yet) until it is in sync; the worker view of the last poll. */
export async function waitInSync<W extends SyncView>(
  what: string,
  worker: () => Promise<W | null | undefined>,
  opts: WaitInSyncOptions = {},
): Promise<W> {
  const calmPolls = opts.calmPolls ?? 1;
  let calm = 0;
  return waitFor(
    `${what}: status complete, dirty 0, no sync`,
    async () => {
      const w = await worker();
      calm = inSync(w) ? calm + 1 : 0;
      return calm >= calmPolls ? w : null;
    },
    opts.timeoutMs ?? 60_000,
    opts.everyMs ?? 200,
  ) as Promise<W>;
}
