// The data area of a component (HAST-SPEC §3.3): user data lives at [localoff, localoff + datasize),
// after the metadata block and the bitmap. Every data request goes through here, addressed by
// data-area offset, so that no slip in an offset can write over the metadata or the bitmap.
import { ErrnoError } from '../util/errno.js';
import type { Component } from './component.js';

/**
 * A data request that does not lie inside the data area. The callers validate requests before
 * they get here (NBD bounds, peer request checks), so this is a bug caught before it touches the
 * disk; EINVAL is what a client or the peer is told.
 */
export class DataAreaRangeError extends ErrnoError {
  readonly offset: number;
  readonly length: number;
  readonly dataSize: number;
  constructor(path: string, offset: number, length: number, dataSize: number) {
    super(
      'EINVAL',
      `Request at offset ${offset}, length ${length} is outside the data area of ${path} (${dataSize} bytes)`,
    );
    this.offset = offset;
    this.length = length;
    this.dataSize = dataSize;
  }
}

/** A component seen from its data area: offset 0 is the component's byte `localOff`. */
export class DataArea {
  // Private: a caller holding the component itself is exactly what this layer exists to avoid.
  readonly #component: Component;
  /** Byte offset of the data area on the component (metadata `offset`). */
  readonly localOff: number;
  /** Size of the data area (metadata `datasize`). */
  readonly size: number;

  constructor(component: Component, localOff: number, size: number) {
    if (!Number.isSafeInteger(localOff) || localOff < 0 || !Number.isSafeInteger(size) || size < 0) {
      throw new RangeError(`Invalid data area at offset ${localOff}, size ${size} on ${component.path}`);
    }
    this.#component = component;
    this.localOff = localOff;
    this.size = size;
  }

  /** True when [offset, offset + length) lies in [0, size); an empty range may sit at the end. */
  #inside(offset: number, length: number): boolean {
    return (
      Number.isSafeInteger(offset) &&
      Number.isSafeInteger(length) &&
      offset >= 0 &&
      length >= 0 &&
      offset + length <= this.size
    );
  }

  // A rejected promise rather than a throw, as the component's own failures arrive: callers that
  // start a request and await it later see the refusal in the same place.
  #refuse(offset: number, length: number): Promise<never> {
    return Promise.reject(new DataAreaRangeError(this.#component.path, offset, length, this.size));
  }

  /** Read exactly buf.length bytes at a data-area offset. */
  read(buf: Buffer, offset: number): Promise<void> {
    if (!this.#inside(offset, buf.length)) return this.#refuse(offset, buf.length);
    return this.#component.read(buf, this.localOff + offset);
  }

  /** Write all bytes of the buffers, contiguously, at a data-area offset. */
  write(bufs: readonly Buffer[], offset: number): Promise<void> {
    let length = 0;
    for (const b of bufs) length += b.length;
    if (!this.#inside(offset, length)) return this.#refuse(offset, length);
    return this.#component.write(bufs, this.localOff + offset);
  }

  /** Discard a range (hole, BLKDISCARD or zero-fill: see Component.discard). */
  discard(offset: number, length: number): Promise<void> {
    if (!this.#inside(offset, length)) return this.#refuse(offset, length);
    return this.#component.discard(this.localOff + offset, length);
  }

  /** Make a range read back as zeroes. */
  writeZeroes(offset: number, length: number): Promise<void> {
    if (!this.#inside(offset, length)) return this.#refuse(offset, length);
    return this.#component.writeZeroes(this.localOff + offset, length);
  }

  /** Make completed writes durable (the whole component: fdatasync knows no ranges). */
  flush(): Promise<void> {
    return this.#component.flush();
  }
}
