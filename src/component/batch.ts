// Small reads and writes of a local component, gathered during one event-loop turn and done by one
// thread-pool task (native ioBatch, native/hastio.cc): one hand-off between threads for all the
// requests the NBD server or the peer connection parsed in that turn, instead of one each. The
// hand-offs, not the copies, were what a small write cost (futex and context switches, README
// "Benchmarks"). Requests of a turn are done in the order they were asked for.
import type { HastIo } from './native.js';

/** Numbers per request in the array given to ioBatch: fd, position, kind (0 read, 1 write), result. */
const STRIDE = 4;
/** Requests per pool task; a busier turn is split over several tasks (the pool runs them in parallel). */
const TASK_MAX_REQUESTS = 32;
/** Bytes per pool task: the copies of a task are serial, big ones are better spread over the cores. */
const TASK_MAX_BYTES = 256 * 1024;
/** Results that send a request down the ordinary path (which reports the real error). */
const EBADF = 9;
const EIO = 5;

type IoBatchFn = NonNullable<HastIo['ioBatch']>;

interface Pending {
  readonly fd: number;
  readonly buf: Buffer;
  readonly position: number;
  readonly write: boolean;
  readonly done: (result: number) => void;
}

export class IoBatcher {
  readonly #submit: IoBatchFn;
  #queue: Pending[] = [];
  /** Requests handed to the pool and not completed yet. */
  #inPool = 0;
  #idle: (() => void)[] = [];

  constructor(submit: IoBatchFn) {
    this.#submit = submit;
  }

  /**
   * One pread (write false) or pwrite of `buf` at `position` on `fd`, in the next pool task.
   * Resolves with the bytes transferred (possibly fewer than asked) or -errno; never rejects:
   * the caller retries a short or failed request the ordinary way, which reports the error.
   */
  run(fd: number, buf: Buffer, position: number, write: boolean): Promise<number> {
    // A closed FileHandle's fd is -1: the ordinary path reports that request's error.
    if (fd < 0) return Promise.resolve(-EBADF);
    return new Promise((done) => {
      if (this.#queue.length === 0) setImmediate(this.#flush);
      this.#queue.push({ fd, buf, position, write, done });
    });
  }

  /** Resolves when no request is queued or in the pool (the descriptors may then be closed). */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#inPool > 0) await new Promise<void>((r) => this.#idle.push(r));
  }

  readonly #flush = (): void => {
    const queue = this.#queue;
    this.#queue = [];
    for (let i = 0; i < queue.length; ) {
      let end = i;
      let bytes = 0;
      while (end < queue.length && end - i < TASK_MAX_REQUESTS) {
        bytes += queue[end]?.buf.length ?? 0;
        end++;
        if (bytes >= TASK_MAX_BYTES) break;
      }
      this.#task(queue.slice(i, end));
      i = end;
    }
  };

  #task(reqs: Pending[]): void {
    const ops = new Float64Array(reqs.length * STRIDE);
    const bufs: Buffer[] = [];
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i] as Pending;
      ops[i * STRIDE] = r.fd;
      ops[i * STRIDE + 1] = r.position;
      ops[i * STRIDE + 2] = r.write ? 1 : 0;
      bufs.push(r.buf);
    }
    this.#inPool += reqs.length;
    const finish = (): void => {
      this.#inPool -= reqs.length;
      for (let i = 0; i < reqs.length; i++) reqs[i]?.done(ops[i * STRIDE + 3] ?? -EIO);
      if (this.#inPool === 0 && this.#queue.length === 0) for (const w of this.#idle.splice(0)) w();
    };
    try {
      this.#submit(ops, bufs, finish);
    } catch {
      // Refused before any I/O (a request the addon cannot take): each is redone the ordinary way.
      for (let i = 0; i < reqs.length; i++) ops[i * STRIDE + 3] = -EIO;
      finish();
    }
  }
}
