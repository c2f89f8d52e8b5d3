// Loader for the optional native addon (native/hastio.cc): flock, hole punching, block-device
// discard/zero-out and size ioctls, which Node does not expose. HAST-SPEC §3.2 (lock), §12.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, parse } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What hastio.node exports. Errors carry `code` = errno name (EWOULDBLOCK, EOPNOTSUPP, ...). */
export interface HastIo {
  flock(fd: number, op: number): void;
  punchHole(fd: number, offset: number, length: number): Promise<void>;
  blkDiscard(fd: number, offset: number, length: number): Promise<void>;
  blkZeroOut(fd: number, offset: number, length: number): Promise<void>;
  blkGetSize64(fd: number): number;
  blkSszGet(fd: number): number;
  /**
   * preadv2/pwritev2 with RWF_NOWAIT on the calling thread: bytes transferred, -1 when it would
   * block (or failed: retry the normal way), -2 when unsupported here. Absent in older builds.
   */
  preadNoWait?(fd: number, buf: Buffer, position: number): number;
  pwriteNoWait?(fd: number, buf: Buffer, position: number): number;
  /**
   * One thread-pool task doing requests in order: `ops` holds fd, position, kind (0 read, 1 write),
   * result per request, `buffers[i]` request i's data; each result slot receives the bytes
   * transferred or -errno, then `done` is called. Absent in older builds. See ./batch.ts.
   */
  ioBatch?(ops: Float64Array, buffers: Buffer[], done: () => void): void;
}

/** flock(2) operations. */
export const LOCK = { SH: 1, EX: 2, NB: 4, UN: 8 } as const;

const ADDON = join('native', 'build', 'Release', 'hastio.node');

let cached: HastIo | null | undefined;

/** Where the addon would be: $HASTD_NATIVE_ADDON, else `native/…` in the nearest ancestor of this module. */
function findAddon(): string | null {
  const env = process.env.HASTD_NATIVE_ADDON;
  if (env !== undefined && env !== '') return existsSync(env) ? env : null;
  let dir = dirname(fileURLToPath(import.meta.url));
  const root = parse(dir).root;
  for (;;) {
    const candidate = join(dir, ADDON);
    if (existsSync(candidate)) return candidate;
    if (dir === root) return null;
    dir = dirname(dir);
  }
}

/**
 * The native addon, or null when it was not built (or fails to load). Loaded once.
 * Without it: no flock (warning), discard/zeroes by writing zeroes, sizes from /sys.
 */
export function loadNative(): HastIo | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (process.platform !== 'linux' || process.env.HASTD_NO_NATIVE === '1') return cached;
  const path = findAddon();
  if (path === null) return cached;
  try {
    cached = createRequire(import.meta.url)(path) as HastIo;
  } catch {
    // A stale build for another Node ABI: behave as if it were absent.
    cached = null;
  }
  return cached;
}
