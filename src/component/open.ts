// The local component over a regular file or a block device: size, sector size, read, write,
// flush, discard, write-zeroes, exclusive lock. HAST-SPEC §2.2 (sizes), §3.2 (lock), §8, §12.
import type { FileHandle } from 'node:fs/promises';
import { constants, readSync, writeSync } from 'node:fs';
import { open, readFile, statfs } from 'node:fs/promises';
import { log } from '../log/log.js';
import { ErrnoError, errnoCodeOf } from '../util/errno.js';
import type { Component } from './component.js';
import { IoBatcher } from './batch.js';
import { LOCK, type HastIo, loadNative } from './native.js';

/** Largest zero buffer written at once by the zero-fill fallback. */
const ZERO_CHUNK = 1024 * 1024;
/**
 * Largest request tried on the event-loop thread (RWF_NOWAIT). Copying more than this in the loop
 * costs more than the thread-pool hand-off saves, and it serialises big requests that the pool
 * would copy on both cores at once (1 MiB reads: 0.4x as fast inline).
 */
const NOWAIT_MAX = 64 * 1024;
/** Largest request done through the batched thread-pool path (./batch.ts); bigger ones go alone. */
const BATCH_MAX = 64 * 1024;
/**
 * statfs(2) f_type of the file systems whose pages are memory (tmpfs, ramfs): a read or write of a
 * file there never waits for a disk, so small ones are done on the event-loop thread like an
 * RWF_NOWAIT hit (these file systems refuse RWF_NOWAIT, and io_uring hands their buffered writes
 * to a kernel worker thread: a hand-off either way, README "Benchmarks").
 */
const MEMORY_FS = new Set([0x01021994, 0x858458f6]);
/** Buffered NOWAIT writes that failed with EAGAIN, none having succeeded, before we stop trying. */
const NOWAIT_GIVE_UP = 1024;

/** Linux IOV_MAX: writev takes at most this many buffers per call. */
const IOV_MAX = 1024;
/** Errors meaning "not supported on this component": write zeroes now and from then on. */
const UNSUPPORTED = new Set(['EOPNOTSUPP', 'ENOTSUP', 'ENOTTY', 'ENOSYS']);
/** A request the device refuses (e.g. BLKDISCARD not aligned to its granularity): zero-fill this one only. */
const REFUSED = 'EINVAL';

export interface OpenOptions {
  /** Take a non-blocking exclusive flock (workers do; hastctl create/dump do not). */
  readonly lock: boolean;
  readonly readOnly?: boolean;
  /** Override the native addon (tests; null = portable fallbacks). Default: loadNative(). */
  readonly native?: HastIo | null;
  /**
   * Do small reads and writes of a file on a memory file system (tmpfs, ramfs) on the calling
   * thread instead of the thread pool. Default: yes, unless HASTD_NO_INLINE_IO=1. Elsewhere it
   * has no effect.
   */
  readonly inlineIo?: boolean;
}

/** major/minor of a Linux dev_t (glibc's gnu_dev_major/minor), exact for numbers below 2^53. */
function devMajorMinor(rdev: number): [number, number] {
  const lo = rdev % 0x1_0000_0000;
  const hi = Math.floor(rdev / 0x1_0000_0000);
  const major = ((lo >>> 8) & 0xfff) | (hi & 0xfffff000);
  const minor = (lo & 0xff) | ((lo >>> 12) & 0xffffff00);
  return [major >>> 0, minor >>> 0];
}

async function sysfsNumber(path: string): Promise<number | null> {
  try {
    const n = Number((await readFile(path, 'utf8')).trim());
    return Number.isSafeInteger(n) ? n : null;
  } catch {
    return null;
  }
}

/** Size and logical sector size of a block device, from ioctls (addon) or /sys/dev/block. */
async function blockDeviceGeometry(
  fd: number,
  rdev: number,
  native: HastIo | null,
): Promise<{ size: number; sectorSize: number }> {
  if (native !== null) {
    return { size: native.blkGetSize64(fd), sectorSize: native.blkSszGet(fd) };
  }
  const [major, minor] = devMajorMinor(rdev);
  const base = `/sys/dev/block/${major}:${minor}`;
  const sectors = await sysfsNumber(`${base}/size`);
  // A partition has no queue/ of its own; its parent disk's directory is the symlink's parent.
  const ssz =
    (await sysfsNumber(`${base}/queue/logical_block_size`)) ??
    (await sysfsNumber(`${base}/../queue/logical_block_size`));
  if (sectors === null || ssz === null) {
    throw new ErrnoError('ENXIO', `Unable to obtain the size of block device ${major}:${minor} from ${base}`);
  }
  return { size: sectors * 512, sectorSize: ssz };
}

class LocalComponent implements Component {
  readonly path: string;
  readonly size: number;
  readonly sectorSize: number;
  readonly isBlockDevice: boolean;
  readonly #fh: FileHandle;
  /** A second descriptor opened O_DSYNC on first use, for writeDurable(). */
  #dsync: Promise<FileHandle> | null = null;
  readonly #native: HastIo | null;
  /** Set once the native discard/zero-out path answered "not supported": skip it from then on. */
  #noNativeDiscard = false;
  #noNativeZeroes = false;
  /** The RWF_NOWAIT fast path (page-cache hits on the event-loop thread), per direction, while supported. */
  #nowaitRead: boolean;
  #nowaitWrite: boolean;
  #nowaitHits = 0;
  #nowaitMisses = 0;
  /** Small requests that need the thread pool, several to one task (null: addon without ioBatch). */
  readonly #batch: IoBatcher | null;
  /** A file on a memory file system: small requests are done on this thread (see MEMORY_FS). */
  readonly inlineIo: boolean;
  #closed = false;

  constructor(
    path: string,
    fh: FileHandle,
    size: number,
    sectorSize: number,
    isBlockDevice: boolean,
    native: HastIo | null,
    inlineIo: boolean,
  ) {
    this.path = path;
    this.inlineIo = inlineIo;
    this.#fh = fh;
    this.size = size;
    this.sectorSize = sectorSize;
    this.isBlockDevice = isBlockDevice;
    this.#native = native;
    this.#nowaitRead = native?.preadNoWait !== undefined;
    this.#nowaitWrite = native?.pwriteNoWait !== undefined;
    this.#batch = native?.ioBatch !== undefined ? new IoBatcher(native.ioBatch.bind(native)) : null;
  }

  /**
   * A request of at most BATCH_MAX bytes in the next batched pool task: the bytes it did (all, or
   * fewer after a short transfer or an error: the caller does the rest the ordinary way, which
   * retries a failed request and reports its error as before). Only for requests not known to
   * need the disk: the requests of a task run one after another, so disk reads batched together
   * would wait for each other instead of running on several pool threads at once.
   */
  async #batched(fd: number, buf: Buffer, position: number, write: boolean): Promise<number> {
    if (this.#batch === null || buf.length === 0 || buf.length > BATCH_MAX) return 0;
    const n = await this.#batch.run(fd, buf, position, write);
    return Math.max(n, 0);
  }

  /**
   * A small pread/pwrite on this thread (memory file systems only): the bytes it did; 0 after an
   * error, which the ordinary path then meets again and reports.
   */
  #inline(fd: number, buf: Buffer, position: number, write: boolean): number {
    try {
      return write ? writeSync(fd, buf, 0, buf.length, position) : readSync(fd, buf, 0, buf.length, position);
    } catch {
      return 0;
    }
  }

  async read(buf: Buffer, position: number): Promise<void> {
    let done = 0;
    let nowaitRefused = false;
    if (this.inlineIo && buf.length <= NOWAIT_MAX) {
      done = this.#inline(this.#fh.fd, buf, position, false);
      if (done === buf.length) return;
      // End of file or an error: the loop below reports it.
      nowaitRefused = true;
    } else if (this.#nowaitRead && buf.length <= NOWAIT_MAX) {
      // Served from the page cache without a thread-pool round trip, or not at all (-1: it would
      // need the disk; 0: end of file) and the loop below does it, reporting any error.
      const n = this.#native?.preadNoWait?.(this.#fh.fd, buf, position) ?? -2;
      if (n === -2) this.#nowaitRead = false;
      else if (n > 0) done = n;
      if (done === buf.length) return;
      // Not (all) in the page cache: the rest needs the disk, so it goes alone (see #batched).
      if (n !== -2) nowaitRefused = true;
    }
    if (!nowaitRefused) done += await this.#batched(this.#fh.fd, buf, position, false);
    while (done < buf.length) {
      const { bytesRead } = await this.#fh.read(buf, done, buf.length - done, position + done);
      if (bytesRead === 0) {
        throw new ErrnoError('EIO', `Short read from ${this.path} at offset ${position + done}: end of file`);
      }
      done += bytesRead;
    }
  }

  async write(bufs: readonly Buffer[], position: number): Promise<void> {
    const first = bufs[0];
    if (bufs.length !== 1 || first === undefined || first.length === 0 || first.length > NOWAIT_MAX) {
      await writeAllTo(this.#fh, this.path, bufs, position);
      return;
    }
    if (this.#nowaitWrite && !this.inlineIo) {
      // Into the page cache on this thread if that needs no waiting (file systems that support
      // buffered RWF_NOWAIT writes: xfs; ext4 says EOPNOTSUPP and we stop trying; btrfs, which
      // must allocate for every copy-on-write, says EAGAIN every time, so after a long run of
      // EAGAIN without one success we stop trying too).
      const n = this.#native?.pwriteNoWait?.(this.#fh.fd, first, position) ?? -2;
      if (n === -2) this.#nowaitWrite = false;
      else if (n > 0) this.#nowaitHits++;
      else if (this.#nowaitHits === 0 && ++this.#nowaitMisses >= NOWAIT_GIVE_UP) this.#nowaitWrite = false;
      if (n === first.length) return;
      if (n !== -2) {
        // The kernel would have to wait (or took part of it): the rest goes alone (see #batched).
        const from = Math.max(n, 0);
        await writeAllTo(this.#fh, this.path, [first.subarray(from)], position + from);
        return;
      }
    }
    await this.#writeSmall(this.#fh, first, position);
  }

  /**
   * A small write on this thread (memory file systems) or in the batched pool task, finished the
   * ordinary way if it was short or failed.
   */
  async #writeSmall(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
    const n =
      this.inlineIo && buf.length <= NOWAIT_MAX
        ? this.#inline(fh.fd, buf, position, true)
        : await this.#batched(fh.fd, buf, position, true);
    if (n === buf.length) return;
    await writeAllTo(fh, this.path, [buf.subarray(n)], position + n);
  }

  async writeDurable(bufs: readonly Buffer[], position: number): Promise<void> {
    // O_DSYNC: each write returns once its own range (and the device cache) is on stable storage;
    // unlike fdatasync it does not write out the rest of the file's dirty pages.
    this.#dsync ??= open(this.path, constants.O_RDWR | constants.O_DSYNC);
    const fh = await this.#dsync;
    const first = bufs[0];
    if (bufs.length === 1 && first !== undefined && first.length > 0) await this.#writeSmall(fh, first, position);
    else await writeAllTo(fh, this.path, bufs, position);
  }

  async flush(): Promise<void> {
    await this.#fh.datasync();
  }

  async discard(position: number, length: number): Promise<void> {
    if (length === 0) return;
    const native = this.#native;
    if (native !== null && !this.#noNativeDiscard) {
      try {
        if (this.isBlockDevice) await native.blkDiscard(this.#fh.fd, position, length);
        else await native.punchHole(this.#fh.fd, position, length);
        return;
      } catch (err) {
        const code = errnoCodeOf(err);
        if (code !== REFUSED && !UNSUPPORTED.has(code)) throw err;
        if (code !== REFUSED) this.#noNativeDiscard = true;
        log.debug(1, `Discard not supported on ${this.path} (${(err as Error).message}); writing zeroes instead.`);
      }
    }
    await this.#zeroFill(position, length);
  }

  async writeZeroes(position: number, length: number): Promise<void> {
    if (length === 0) return;
    const native = this.#native;
    if (native !== null && !this.#noNativeZeroes) {
      try {
        // A punched hole reads back as zeroes; on a device only BLKZEROOUT guarantees that.
        if (this.isBlockDevice) await native.blkZeroOut(this.#fh.fd, position, length);
        else await native.punchHole(this.#fh.fd, position, length);
        return;
      } catch (err) {
        const code = errnoCodeOf(err);
        if (code !== REFUSED && !UNSUPPORTED.has(code)) throw err;
        if (code !== REFUSED) this.#noNativeZeroes = true;
        log.debug(1, `Write-zeroes not supported on ${this.path} (${(err as Error).message}); writing zeroes instead.`);
      }
    }
    await this.#zeroFill(position, length);
  }

  async #zeroFill(position: number, length: number): Promise<void> {
    const zeroes = Buffer.alloc(Math.min(length, ZERO_CHUNK));
    for (let done = 0; done < length; ) {
      const n = Math.min(zeroes.length, length - done);
      await this.write([n === zeroes.length ? zeroes : zeroes.subarray(0, n)], position + done);
      done += n;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // No pool task may still use a descriptor when it is closed (and its number reused).
    await this.#batch?.drain();
    const dsync = this.#dsync;
    this.#dsync = null;
    if (dsync !== null) await (await dsync.catch(() => null))?.close();
    await this.#fh.close();
  }
}

/** Write every byte of `bufs` contiguously at `position`, resuming after short writes. */
async function writeAllTo(fh: FileHandle, path: string, bufs: readonly Buffer[], position: number): Promise<void> {
  let pending = bufs.filter((b) => b.length > 0);
  let at = position;
  while (pending.length > 0) {
    const batch = pending.length > IOV_MAX ? pending.slice(0, IOV_MAX) : pending;
    const written =
      batch.length === 1 && batch[0] !== undefined
        ? (await fh.write(batch[0], 0, batch[0].length, at)).bytesWritten
        : (await fh.writev(batch, at)).bytesWritten;
    if (written === 0) throw new ErrnoError('EIO', `Write to ${path} at offset ${at} made no progress`);
    at += written;
    // Drop what was written; a partially written buffer continues from its remainder.
    let left = written;
    const rest: Buffer[] = [];
    for (const b of pending) {
      if (left >= b.length) {
        left -= b.length;
      } else {
        rest.push(left > 0 ? b.subarray(left) : b);
        left = 0;
      }
    }
    pending = rest;
  }
}

function lockComponent(path: string, fd: number, native: HastIo | null): void {
  if (native === null) {
    log.warning(`Unable to lock ${path} (native addon not built), but continuing.`);
    return;
  }
  try {
    native.flock(fd, LOCK.EX | LOCK.NB);
    log.debug(1, `Locked ${path}.`);
  } catch (err) {
    const code = errnoCodeOf(err);
    if (code === 'EWOULDBLOCK' || code === 'EAGAIN') {
      throw new ErrnoError('EBUSY', `Unable to lock ${path} (already in use?)`, { cause: err });
    }
    if (code === 'EOPNOTSUPP' || code === 'ENOTSUP') {
      log.warning(`Unable to lock ${path} (operation not supported), but continuing.`);
      return;
    }
    throw new ErrnoError(code, `Unable to lock ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Open a local component: a regular file (size = file size, 512-byte sectors) or a block device
 * (BLKGETSIZE64/BLKSSZGET through the addon, else /sys/dev/block/MAJ:MIN). With `lock`, take a
 * non-blocking exclusive flock: in use elsewhere → ErrnoError 'EBUSY' "Unable to lock P (already
 * in use?)"; not supported → warning only. Size 0 or another file type → ErrnoError.
 */
export async function openComponent(path: string, opts: OpenOptions): Promise<Component> {
  const fh = await open(path, opts.readOnly === true ? 'r' : 'r+');
  try {
    const st = await fh.stat();
    const native = opts.native === undefined ? loadNative() : opts.native;
    let size: number;
    let sectorSize: number;
    if (st.isBlockDevice()) {
      ({ size, sectorSize } = await blockDeviceGeometry(fh.fd, st.rdev, native));
    } else if (st.isFile()) {
      size = st.size;
      sectorSize = 512;
    } else {
      throw new ErrnoError('EINVAL', `${path} is neither a block device nor a regular file`);
    }
    if (size === 0) throw new ErrnoError('EINVAL', `Provider ${path} has size 0`);
    if (opts.lock) lockComponent(path, fh.fd, native);
    const inlineIo =
      st.isFile() &&
      (opts.inlineIo ?? process.env.HASTD_NO_INLINE_IO !== '1') &&
      MEMORY_FS.has((await statfs(path)).type);
    return new LocalComponent(path, fh, size, sectorSize, st.isBlockDevice(), native, inlineIo);
  } catch (err) {
    await fh.close();
    throw err;
  }
}
