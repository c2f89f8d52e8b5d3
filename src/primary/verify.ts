// Online verify (our extension, issue 17; DRBD's `verify`): compare the primary's and the
// secondary's copy of a range chunk by chunk while the primary serves I/O. Each chunk is taken
// under a "sync" range lock, which waits for every overlapping application write to finish on
// both nodes (the regular lock is held until the peer's final reply, resource.ts) and holds new
// ones back, so a range being written is never reported as different. Both copies of the chunk
// are hashed (SHA-256); a chunk whose hashes differ is compared block by block to report the exact
// differing blocks. Extents already waiting for resynchronisation are skipped (they are known to
// differ until synced). With `mark`, differing extents are marked for resync.
//
// The peer's chunk is fetched with a plain READ, so verify works with any peer, FreeBSD's too;
// hashing on the secondary (moving only the hashes) would need a negotiated request.
import { log } from '../log/log.js';
import { humanizeNumber } from '../metadata/dump.js';
import { MAXPHYS } from '../peer/constants.js';
import type { VerifyProgress, VerifyRange, VerifyReport } from '../control/messages.js';
import type { PrimaryResource } from './resource.js';
import { computeHash } from '../peer/checksum.js';

/** Chunks compared at once. */
const VERIFY_WINDOW = 4;
/** Granularity of the reported differences. */
const VERIFY_BLOCK = 4096;

export interface VerifyPeer {
  readonly connected: boolean;
  read(offset: number, length: number): Promise<Buffer>;
}

/** [start, stop) clipped to the data area and widened to VERIFY_BLOCK boundaries. */
export function verifyBounds(dataSize: number, start: number, stop: number | null): { start: number; stop: number } {
  const s = Math.min(Math.floor(start / VERIFY_BLOCK) * VERIFY_BLOCK, dataSize);
  const e = Math.min(stop === null ? dataSize : Math.ceil(stop / VERIFY_BLOCK) * VERIFY_BLOCK, dataSize);
  return { start: s, stop: Math.max(s, e) };
}

/** The VERIFY_BLOCK-aligned ranges where a and b (same length, at `offset`) differ. */
function diffBlocks(offset: number, a: Buffer, b: Buffer): VerifyRange[] {
  const out: VerifyRange[] = [];
  for (let i = 0; i < a.length; i += VERIFY_BLOCK) {
    const end = Math.min(i + VERIFY_BLOCK, a.length);
    if (a.subarray(i, end).equals(b.subarray(i, end))) continue;
    const last = out[out.length - 1];
    if (last !== undefined && last.offset + last.length === offset + i) {
      out[out.length - 1] = { offset: last.offset, length: last.length + (end - i) };
    } else out.push({ offset: offset + i, length: end - i });
  }
  return out;
}

function mergeRanges(ranges: VerifyRange[]): VerifyRange[] {
  ranges.sort((x, y) => x.offset - y.offset);
  const out: VerifyRange[] = [];
  for (const r of ranges) {
    const last = out[out.length - 1];
    if (last !== undefined && last.offset + last.length >= r.offset) {
      out[out.length - 1] = {
        offset: last.offset,
        length: Math.max(last.offset + last.length, r.offset + r.length) - last.offset,
      };
    } else out.push(r);
  }
  return out;
}

/**
 * Compare [start, stop) of both copies. `onProgress` is called after every chunk. Never throws for
 * an I/O error: a failed local read or a lost connection ends it as interrupted with the reason.
 */
export async function runVerify(
  res: PrimaryResource,
  peer: VerifyPeer,
  range: { start: number; stop: number; mark: boolean },
  onProgress: (p: VerifyProgress) => void,
): Promise<VerifyReport> {
  const { start, stop, mark } = range;
  const amap = res.amap;
  const es = amap.extentSize;
  const started = Date.now();
  log.info(`Verify started: ${humanizeNumber(stop - start)}B from offset ${start}.`);
  let next = start;
  let compared = 0;
  let skipped = 0;
  let reason: string | null = null;
  const differing: VerifyRange[] = [];
  let differingBytes = 0;
  const progress = (): void => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001);
    onProgress({ start, stop, doneBytes: compared + skipped, differingBytes, rate: (compared + skipped) / secs });
  };
  progress();

  /** The next chunk: at most MAXPHYS, never crossing an extent (so an extent is skipped whole). */
  const take = (): VerifyRange | null => {
    if (next >= stop || reason !== null) return null;
    const extentEnd = (Math.floor(next / es) + 1) * es;
    const length = Math.min(MAXPHYS, extentEnd - next, stop - next);
    const c = { offset: next, length };
    next += length;
    return c;
  };

  const compare = async (c: VerifyRange): Promise<void> => {
    const handle = await res.lock.lock('sync', c.offset, c.length);
    try {
      if (!peer.connected) {
        reason ??= 'the connection to the secondary was lost';
        return;
      }
      if (amap.needsSync(amap.extentOf(c.offset))) {
        skipped += c.length;
        return;
      }
      const local = Buffer.allocUnsafe(c.length);
      let remote: Buffer;
      try {
        const [, r] = await Promise.all([res.data.read(local, c.offset), peer.read(c.offset, c.length)]);
        remote = r;
      } catch (err) {
        reason ??= peer.connected
          ? `unable to read offset ${c.offset}: ${(err as Error).message}`
          : 'the connection to the secondary was lost';
        return;
      }
      compared += c.length;
      if (remote.length === local.length && computeHash('sha256', local).equals(computeHash('sha256', remote))) return;
      const found = remote.length === local.length ? diffBlocks(c.offset, local, remote) : [c];
      for (const d of found) {
        differing.push(d);
        differingBytes += d.length;
        log.warning(`Verify: offset ${d.offset}, length ${d.length} differs between the nodes.`);
      }
    } finally {
      res.lock.release(handle);
      progress();
    }
  };

  await Promise.all(
    Array.from({ length: VERIFY_WINDOW }, async () => {
      for (let c = take(); c !== null; c = take()) await compare(c);
    }),
  );

  const merged = mergeRanges(differing);
  let marked = 0;
  if (mark && merged.length > 0) {
    const extents = new Set<number>();
    for (const d of merged) {
      for (let e = amap.extentOf(d.offset); e <= amap.extentOf(d.offset + d.length - 1); e++) extents.add(e);
    }
    let persist = false;
    for (const e of extents) persist = amap.markExtentsForSync(e) || persist;
    if (persist) await res.bitmapWriter.persist();
    // Found different: whatever a divergence record said of them, they are not agreed.
    await res.disagree(extents);
    marked = extents.size;
  }
  const seconds = (Date.now() - started) / 1000;
  const outcome = reason !== null ? 'interrupted' : merged.length > 0 ? 'differ' : 'identical';
  log.info(
    outcome === 'interrupted'
      ? `Verify interrupted: ${reason}.`
      : `Verify done: ${humanizeNumber(compared)}B compared in ${seconds.toFixed(1)}s, ${merged.length} differing range(s)` +
          `${marked > 0 ? `, ${marked} extent(s) marked for resynchronization` : ''}.`,
  );
  return {
    outcome,
    start,
    stop,
    comparedBytes: compared,
    skippedBytes: skipped,
    differing: merged,
    differingBytes,
    markedExtents: marked,
    seconds,
    ...(reason !== null ? { reason } : {}),
  };
}
