// The benchmark's teardown scope: whatever a phase starts (processes, temp dirs) registers its
// cleanup here the moment it exists; cleanups run last-in first-out on success, failure or signal.
import type { Teardown } from '../test/harness/cluster.js';

export class Scope implements Teardown {
  #fns: (() => unknown)[] = [];

  /** Register a cleanup (the harness calls this for every hastd it starts). */
  after(fn: () => unknown): void {
    this.#fns.push(fn);
  }

  /** A scope closed on its own (end of a phase) or, at the latest, with this one. */
  child(): Scope {
    const c = new Scope();
    this.after(() => c.close());
    return c;
  }

  /** Run every cleanup once, newest first; a failing cleanup is reported and the rest still run. */
  async close(): Promise<void> {
    for (let fn = this.#fns.pop(); fn !== undefined; fn = this.#fns.pop()) {
      try {
        await fn();
      } catch (err) {
        console.error(`bench: cleanup failed: ${(err as Error).message}`);
      }
    }
  }
}
