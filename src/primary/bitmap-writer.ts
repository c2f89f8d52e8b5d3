// Coalescing writer of the on-disk activemap (HAST-SPEC §4.2 step 3): a caller that changed the
// activemap awaits a bitmap write that captured the map AFTER its change. Concurrent callers share
// writes: while one write is on its way, at most one more is queued, and it captures the image only
// when it starts, so it includes every change made before it started.
import { log } from '../log/log.js';

export interface BitmapSink {
  /** The current disk image of the map (copied by the writer). */
  image(): Buffer;
  /** Write the image at the bitmap offset of the component. */
  write(image: Buffer): Promise<void>;
  /** Flush the component's write cache (metaflush); null when metaflush is off. */
  flush: (() => Promise<void>) | null;
  /** Count a failed bitmap write or flush (reported in the local error statistics). */
  onError(kind: 'write' | 'flush', err: unknown): void;
}

export class BitmapWriter {
  readonly #sink: BitmapSink;
  #inFlight: Promise<void> | null = null;
  #queued: Promise<void> | null = null;
  #metaflush: boolean;

  constructor(sink: BitmapSink) {
    this.#sink = sink;
    this.#metaflush = sink.flush !== null;
  }

  /** Resolves once an image taken after this call is on disk (never rejects: errors are counted). */
  persist(): Promise<void> {
    if (this.#queued !== null) return this.#queued;
    if (this.#inFlight !== null) {
      const queued = this.#inFlight.then(() => {
        this.#queued = null;
        return this.#start();
      });
      this.#queued = queued;
      return queued;
    }
    return this.#start();
  }

  /**
   * Resolves once every map change made before this call is on disk. A writer whose extent was
   * already in the image (writeStart returned false) calls this: the write that put the extent
   * there may still be on its way (the queued write, if any, captures a later image than the one
   * in flight, so it is the one to wait for).
   */
  settled(): Promise<void> {
    return this.#queued ?? this.#inFlight ?? Promise.resolve();
  }

  /** A bitmap write is on its way or queued (settled() would wait for it). */
  get busy(): boolean {
    return this.#inFlight !== null || this.#queued !== null;
  }

  /** Wait for every write issued so far. */
  async drain(): Promise<void> {
    while (this.#inFlight !== null || this.#queued !== null) {
      await (this.#queued ?? this.#inFlight);
    }
  }

  #start(): Promise<void> {
    const image = Buffer.from(this.#sink.image());
    const p = this.#writeAndFlush(image).finally(() => {
      if (this.#inFlight === p) this.#inFlight = null;
    });
    this.#inFlight = p;
    return p;
  }

  async #writeAndFlush(image: Buffer): Promise<void> {
    try {
      await this.#sink.write(image);
    } catch (err) {
      log.error('Unable to flush activemap to disk', err);
      this.#sink.onError('write', err);
      return;
    }
    if (!this.#metaflush || this.#sink.flush === null) return;
    try {
      await this.#sink.flush();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
        log.warning('The provider does not support BIO_FLUSH, metaflush disabled');
        this.#metaflush = false;
        return;
      }
      log.error('Unable to flush disk cache on activemap update', err);
      this.#sink.onError('flush', err);
    }
  }
}
