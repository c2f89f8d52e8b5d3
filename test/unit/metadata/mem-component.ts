// A Component over a Buffer, for metadata tests that need no file system.
import type { Component } from '../../../src/component/component.js';
import { ErrnoError } from '../../../src/util/errno.js';

export class MemComponent implements Component {
  readonly path: string;
  readonly size: number;
  readonly sectorSize: number;
  readonly isBlockDevice = false;
  readonly data: Buffer;
  writes = 0;
  constructor(size: number, opts: { sectorSize?: number; path?: string; fill?: number } = {}) {
    this.size = size;
    this.sectorSize = opts.sectorSize ?? 512;
    this.path = opts.path ?? '/mem/disk';
    this.data = Buffer.alloc(size, opts.fill ?? 0);
  }
  async read(buf: Buffer, position: number): Promise<void> {
    if (position + buf.length > this.size) throw new ErrnoError('EIO', 'short read');
    this.data.copy(buf, 0, position, position + buf.length);
  }
  async write(bufs: readonly Buffer[], position: number): Promise<void> {
    let at = position;
    for (const b of bufs) {
      if (at + b.length > this.size) throw new ErrnoError('ENOSPC', 'write past end');
      b.copy(this.data, at);
      at += b.length;
    }
    this.writes++;
  }
  async flush(): Promise<void> {}
  async discard(position: number, length: number): Promise<void> {
    this.data.fill(0, position, position + length);
  }
  async writeZeroes(position: number, length: number): Promise<void> {
    this.data.fill(0, position, position + length);
  }
  async close(): Promise<void> {}
}
