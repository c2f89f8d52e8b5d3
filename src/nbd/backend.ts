// What the NBD server serves: a byte range with read/write/flush/trim/zero. The server knows
// nothing of replication; the primary worker (or a test's file) implements this (DESIGN.md
// "The primary's data path").
import type { NbdExtent } from './reply.js';

/**
 * The storage behind an export. Rejections carry a string `code` ('EIO', 'ENOSPC', 'ENOTSUP',
 * 'ESHUTDOWN', …) that the server maps to an NBD error value; anything else is sent as EIO.
 */
export interface NbdBackend {
  /** Export size in bytes. */
  readonly size: number;
  readonly readOnly: boolean;
  /** True only if all connections see each other's completed writes and FLUSH flushes all. */
  readonly canMultiConn: boolean;
  /** True if writeZeroes() with `fastZero` fails fast (ENOTSUP) rather than writing slowly. */
  readonly canFastZero: boolean;
  /** Resolve with exactly `length` bytes read at `offset`. */
  read(offset: number, length: number): Promise<Buffer>;
  /** `data` may be a subarray of a socket buffer; the backend may keep it until it resolves. */
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  writeZeroes(
    offset: number,
    length: number,
    opts: { fua: boolean; noHole: boolean; fastZero: boolean },
  ): Promise<void>;
  /** base:allocation extents from `offset`, covering at most `length` bytes; "all data" if absent. */
  blockStatus?(offset: number, length: number): Promise<readonly NbdExtent[]>;
}
