// The local component: where blocks live (a regular file or a block device). Knows nothing of
// metadata, activemap or replication; offsets here are byte offsets on the component itself.

export interface Component {
  readonly path: string;
  /** Size of the whole component in bytes (never 0 for a usable component). */
  readonly size: number;
  /** Logical sector size: 512 for regular files, BLKSSZGET (or /sys) for block devices. */
  readonly sectorSize: number;
  readonly isBlockDevice: boolean;
  /** Small reads and writes are done on the calling thread (a file on tmpfs or ramfs). Optional. */
  readonly inlineIo?: boolean;
  /** Read exactly buf.length bytes at position; a short read rejects with code 'EIO'. */
  read(buf: Buffer, position: number): Promise<void>;
  /** Write all bytes of the buffers, contiguously, starting at position. */
  write(bufs: readonly Buffer[], position: number): Promise<void>;
  /** Make completed writes durable (fdatasync). */
  flush(): Promise<void>;
  /**
   * Write and make durable this range only (O_DSYNC): cheaper than write + flush() when much
   * other data is dirty in the page cache, which fdatasync would write out too. Optional: callers
   * fall back to write() + flush().
   */
  writeDurable?(bufs: readonly Buffer[], position: number): Promise<void>;
  /** Discard a range: punch a hole in files, BLKDISCARD on devices, zero-fill as a last resort. */
  discard(position: number, length: number): Promise<void>;
  /** Make a range read back as zeroes (punch hole / write zeroes). */
  writeZeroes(position: number, length: number): Promise<void>;
  close(): Promise<void>;
}
