// The received-bytes queue under every stream parser (NBD server, handshake and client, peer
// framing): socket chunks in, runs of n bytes out, copying only what spans a chunk boundary.
//
// Why not Buffer.concat per chunk: a 1 MiB write arrives in ~16 chunks and concatenating on each
// would copy it ~8 times over. Here a run inside one chunk is a subarray (no copy) and a run that
// spans chunks is copied once (undici websocket receiver.js `consume`, pg-protocol `mergeBuffer`).

/**
 * FIFO of received chunks. The parser checks `length` before asking for bytes: reading, peeking
 * or skipping more than `length` bytes is a bug in the parser and throws a RangeError.
 */
export class ByteQueue {
  /** Unconsumed chunks, oldest first; `#chunks[0]` starts at `#head`. */
  #chunks: Buffer[] = [];
  #head = 0;
  #length = 0;
  /** A run being assembled by readRun() because it spans chunks, and how much of it is filled. */
  #run: Buffer | undefined;
  #runFill = 0;

  /** Append a received chunk (kept by reference: the caller must not reuse it). */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** Bytes pushed and not yet consumed. */
  get length(): number {
    return this.#length;
  }

  /** Everything held: `length` plus the part of an unfinished readRun() already copied out. */
  get buffered(): number {
    return this.#length + this.#runFill;
  }

  /** Bytes at the front readable as a subarray of one chunk. */
  get contiguous(): number {
    const first = this.#chunks[0];
    return first === undefined ? 0 : first.length - this.#head;
  }

  /** The first n bytes without consuming them: a subarray when inside one chunk, else a copy. */
  peek(n: number): Buffer {
    this.#check(n);
    const first = this.#chunks[0];
    if (first !== undefined && first.length - this.#head >= n) return first.subarray(this.#head, this.#head + n);
    const out = Buffer.allocUnsafe(n);
    let done = 0;
    let at = this.#head;
    for (const c of this.#chunks) {
      if (done === n) break;
      const k = Math.min(c.length - at, n - done);
      c.copy(out, done, at, at + k);
      done += k;
      at = 0;
    }
    return out;
  }

  /** Consume n bytes: a subarray when inside one chunk, else one copy into a fresh Buffer. */
  read(n: number): Buffer {
    this.#check(n);
    if (n === 0) return Buffer.alloc(0);
    const first = this.#chunks[0] as Buffer;
    if (first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n);
      this.#advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.readInto(out, 0, n);
    return out;
  }

  /** Consume n bytes by copying them into `dst` at `at` (for a caller-owned scratch buffer). */
  readInto(dst: Buffer, at: number, n: number): void {
    this.#check(n);
    let done = 0;
    while (done < n) {
      const c = this.#chunks[0] as Buffer;
      const k = Math.min(c.length - this.#head, n - done);
      c.copy(dst, at + done, this.#head, this.#head + k);
      done += k;
      this.#advance(k);
    }
  }

  /** Consume everything buffered as one Buffer (e.g. bytes that arrived after a handshake). */
  readAll(): Buffer {
    return this.read(this.#length);
  }

  /** Discard n bytes. */
  skip(n: number): void {
    this.#check(n);
    this.#advance(n);
  }

  /**
   * Consume a run of n bytes that may arrive over several pushes: the run once complete, else
   * null (call again after the next push; the n of the first call holds until the run is
   * returned). A run found whole in one chunk is a subarray. One that spans chunks is copied into
   * a single Buffer as its bytes arrive (one copy, and each chunk is released once consumed).
   * Nothing is allocated while no byte of the run has arrived: the next chunk may hold all of it.
   */
  readRun(n: number): Buffer | null {
    let run = this.#run;
    if (run === undefined) {
      if (this.#length >= n) return this.read(n);
      if (this.#length === 0) return null;
      run = Buffer.allocUnsafe(n);
      this.#run = run;
      this.#runFill = 0;
    }
    const k = Math.min(this.#length, run.length - this.#runFill);
    this.readInto(run, this.#runFill, k);
    this.#runFill += k;
    if (this.#runFill < run.length) return null;
    this.#run = undefined;
    this.#runFill = 0;
    return run;
  }

  /** u8 at `at` bytes from the front, not consumed. */
  peekUInt8(at: number): number {
    this.#check(at + 1);
    return this.#byteAt(at);
  }

  /** Big-endian u16 at `at` bytes from the front, not consumed. */
  peekUInt16BE(at: number): number {
    this.#check(at + 2);
    const first = this.#chunks[0] as Buffer;
    if (this.#head + at + 2 <= first.length) return first.readUInt16BE(this.#head + at);
    return (this.#byteAt(at) << 8) | this.#byteAt(at + 1);
  }

  /** Big-endian u32 at `at` bytes from the front, not consumed. */
  peekUInt32BE(at: number): number {
    this.#check(at + 4);
    const first = this.#chunks[0] as Buffer;
    if (this.#head + at + 4 <= first.length) return first.readUInt32BE(this.#head + at);
    return (
      ((this.#byteAt(at) << 24) | (this.#byteAt(at + 1) << 16) | (this.#byteAt(at + 2) << 8) | this.#byteAt(at + 3)) >>>
      0
    );
  }

  /** Drop everything, including an unfinished run (the stream is being abandoned). */
  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#length = 0;
    this.#run = undefined;
    this.#runFill = 0;
  }

  #check(n: number): void {
    if (n < 0 || n > this.#length) throw new RangeError(`ByteQueue: ${n} bytes wanted, ${this.#length} buffered`);
  }

  /** The byte `at` from the front (at < length): walks the chunks, for the rare spanning peek. */
  #byteAt(at: number): number {
    let i = this.#head + at;
    for (const c of this.#chunks) {
      if (i < c.length) return c[i] as number;
      i -= c.length;
    }
    throw new RangeError(`ByteQueue: byte ${at} wanted, ${this.#length} buffered`);
  }

  #advance(n: number): void {
    this.#length -= n;
    this.#head += n;
    while (this.#chunks.length > 0 && this.#head >= (this.#chunks[0] as Buffer).length) {
      this.#head -= (this.#chunks.shift() as Buffer).length;
    }
  }
}
