// An NbdBackend over a regular file, for tests and the file server script: pread/pwrite on one fd,
// FUA → fdatasync, trim and write-zeroes → zero-fill.
import { open, type FileHandle } from 'node:fs/promises';
import type { NbdBackend } from '../../src/nbd/server.js';

const ZERO_CHUNK = 1024 * 1024;

export class FileBackend implements NbdBackend {
  readonly size: number;
  readonly readOnly: boolean;
  // One process, one fd: every connection sees every completed write and fdatasync covers all.
  readonly canMultiConn = true;
  readonly canFastZero = false;
  readonly #fh: FileHandle;
  #zeroes: Buffer | null = null;

  private constructor(fh: FileHandle, size: number, readOnly: boolean) {
    this.#fh = fh;
    this.size = size;
    this.readOnly = readOnly;
  }

  /** Open `path` (which must exist) read-write, or read-only. */
  static async open(path: string, opts: { readOnly?: boolean } = {}): Promise<FileBackend> {
    const readOnly = opts.readOnly ?? false;
    const fh = await open(path, readOnly ? 'r' : 'r+');
    const st = await fh.stat();
    return new FileBackend(fh, st.size, readOnly);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.#fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) throw Object.assign(new Error('short read'), { code: 'EIO' });
      got += bytesRead;
    }
    return buf;
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.#fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
    if (fua) await this.#fh.datasync();
  }

  async flush(): Promise<void> {
    await this.#fh.datasync();
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    await this.#zeroFill(offset, length, fua);
  }

  async writeZeroes(
    offset: number,
    length: number,
    opts: { fua: boolean; noHole: boolean; fastZero: boolean },
  ): Promise<void> {
    if (opts.fastZero) throw Object.assign(new Error('fast zero is not supported'), { code: 'ENOTSUP' });
    await this.#zeroFill(offset, length, opts.fua);
  }

  async #zeroFill(offset: number, length: number, fua: boolean): Promise<void> {
    this.#zeroes ??= Buffer.alloc(ZERO_CHUNK);
    let done = 0;
    while (done < length) {
      const n = Math.min(ZERO_CHUNK, length - done);
      await this.write(offset + done, this.#zeroes.subarray(0, n), false);
      done += n;
    }
    if (fua) await this.#fh.datasync();
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }
}
