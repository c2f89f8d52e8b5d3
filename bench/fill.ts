// Backing files for the benchmark: the same bytes for the anchor and for hastd components, written
// before the servers start so that reads and overwrites meet allocated, non-zero blocks.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, truncateSync, writeFileSync, writeSync } from 'node:fs';

const CHUNK = 4 << 20;

/** A sparse file of `size` bytes (created or cut back to empty first). */
export function sparseFile(path: string, size: number): void {
  writeFileSync(path, '');
  truncateSync(path, size);
}

/**
 * Write `length` bytes of non-zero data at `offset` of `path` (which must exist). Every 4 KiB block
 * differs (its offset is stamped in), so neither zero detection nor deduplication can shortcut it.
 */
export function fillPattern(path: string, offset: number, length: number): void {
  const chunk = randomBytes(CHUNK);
  const fd = openSync(path, 'r+');
  try {
    for (let done = 0; done < length; done += CHUNK) {
      const n = Math.min(CHUNK, length - done);
      for (let b = 0; b < n; b += 4096) chunk.writeDoubleLE(offset + done + b, b);
      writeSync(fd, chunk, 0, n, offset + done);
    }
  } finally {
    closeSync(fd);
  }
}
