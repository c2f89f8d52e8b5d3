// Resynchronisation (HAST-SPEC §4.4): walks the sync map extent by extent in chunks of at most
// MAXPHYS that never cross an extent, copies from the sync source to the target with several chunks
// in flight (upstream copies one at a time), range-locked against regular writes, and clears each
// extent only when every one of its chunks was copied. Resumable: the map is on disk.
//
// Checksum-assisted (ours, issue 17, DRBD's csums-alg; only when agreed in the handshake): under the
// same range lock, the peer hashes its copy of the chunk (a READ carrying `csum`) while we read and
// hash ours; the data crosses the network, either way, only when the hashes differ. The window
// keeps SYNC_WINDOW chunks at this, so hashing overlaps the disks and the network.
import { log } from '../log/log.js';
import { computeHash } from '../peer/checksum.js';
import { humanizeNumber } from '../metadata/dump.js';
import { MAXPHYS } from '../peer/constants.js';
import type { PrimaryResource } from './resource.js';
import type { SyncThrottle } from './sync-rate.js';

/** Chunks in flight during a sync (the pipeline depth). */
const SYNC_WINDOW = 8;

export interface SyncPeer {
  /** False once the connection is gone: the sync stops as interrupted. */
  readonly connected: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  /** Resolves true when the peer positively wrote the chunk. */
  write(offset: number, data: Buffer): Promise<boolean>;
  /** Checksum-assisted sync was agreed with the peer: readHash() may be used. */
  readonly csums: boolean;
  /** The SHA-256 of the peer's copy of the range, hashed on the peer. */
  readHash(offset: number, length: number): Promise<Buffer>;
}

export interface SyncResult {
  readonly outcome: 'in-sync' | 'complete' | 'interrupted';
  /** Bytes synchronized: transferred + skipped. */
  readonly bytes: number;
  /** Bytes whose data crossed the network. */
  readonly transferred: number;
  /** Bytes found identical on both nodes by checksum and not copied (0 without checksum sync). */
  readonly skipped: number;
  readonly seconds: number;
}

function formatSeconds(s: number): string {
  const total = Math.floor(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  return h > 0
    ? `${h}h${String(m).padStart(2, '0')}m${String(sec).padStart(2, '0')}s`
    : m > 0
      ? `${m}m${String(sec).padStart(2, '0')}s`
      : `${sec}s`;
}

/**
 * Run one resync pass. `from` = 'primary' copies local → peer; 'secondary' copies peer → local.
 * `onEvent` receives 'syncstart' | 'syncdone' | 'syncintr'. `throttle` (./sync-rate.ts) paces and
 * pauses the chunks; without it the sync copies as fast as the window allows.
 */
export async function runSync(
  res: PrimaryResource,
  peer: SyncPeer,
  from: 'primary' | 'secondary',
  onEvent: (event: 'syncstart' | 'syncdone' | 'syncintr') => void,
  throttle?: SyncThrottle,
): Promise<SyncResult> {
  const amap = res.amap;
  const total = amap.syncPendingBytes;
  if (amap.nextSyncExtent(0) < 0) {
    log.info('Nodes are in sync.');
    return { outcome: 'in-sync', bytes: 0, transferred: 0, skipped: 0, seconds: 0 };
  }
  // Fixed for the pass: a lost connection interrupts it, and the next one negotiates again.
  const csums = peer.csums;
  const started = Date.now();
  log.info(`Synchronization started. ${humanizeNumber(total)}B to go${csums ? ', comparing checksums' : ''}.`);
  onEvent('syncstart');
  let done = 0;
  let skipped = 0;
  const progress = (): void => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001);
    const rate = done / secs;
    const left = Math.max(total - done, 0);
    res.sync = {
      direction: from,
      totalBytes: total,
      doneBytes: done,
      leftBytes: left,
      rate,
      eta: rate > 0 ? left / rate : -1,
    };
  };
  progress();

  let failed = false;
  let extent = amap.nextSyncExtent(0);
  // Chunks are produced lazily from the map so that extents marked during the sync are picked up.
  let chunkQueue: { extent: number; offset: number; length: number; state: { left: number; ok: boolean } }[] = [];
  const nextChunk = (): (typeof chunkQueue)[number] | null => {
    while (chunkQueue.length === 0) {
      if (extent < 0) return null;
      const range = amap.syncExtentRange(extent);
      const n = Math.max(1, Math.ceil(range.length / MAXPHYS));
      const state = { left: n, ok: true };
      chunkQueue = [];
      for (let i = 0; i < n; i++) {
        const off = range.offset + i * MAXPHYS;
        chunkQueue.push({ extent, offset: off, length: Math.min(MAXPHYS, range.offset + range.length - off), state });
      }
      extent = amap.nextSyncExtent(extent + 1);
    }
    return chunkQueue.shift() ?? null;
  };

  const copyChunk = async (c: {
    extent: number;
    offset: number;
    length: number;
    state: { left: number; ok: boolean };
  }): Promise<void> => {
    const handle = await res.lock.lock('sync', c.offset, c.length);
    let ok = false;
    try {
      if (!peer.connected) return;
      if (from === 'primary' && res.isLocalStale(c.offset, c.length)) {
        // The local copy missed a write the peer has: repair it from the peer instead of pushing it.
        ok = await repairFromPeer(res, peer, c.offset, c.length);
      } else if (from === 'primary') {
        // Checksum sync: the peer hashes its copy while we read ours.
        const theirs = csums ? settled(peer.readHash(c.offset, c.length)) : null;
        const buf = Buffer.allocUnsafe(c.length);
        try {
          await res.data.read(buf, c.offset);
        } catch (err) {
          log.error('Unable to read synchronization data', err);
          res.stats.readErrors++;
          return;
        }
        if (theirs !== null) {
          const same = await matchesPeer(buf, theirs, peer);
          if (same === null) return;
          if (same) {
            skipped += c.length;
            ok = true;
            return;
          }
        }
        ok = await peer.write(c.offset, buf);
        if (!ok && peer.connected) log.error('Unable to write synchronization data');
      } else {
        if (csums) {
          const theirs = settled(peer.readHash(c.offset, c.length));
          const local = Buffer.allocUnsafe(c.length);
          let readable = true;
          try {
            await res.data.read(local, c.offset);
          } catch (err) {
            // Not fatal here: the chunk is copied from the peer over it.
            log.warning('Unable to read the local copy to compare it', err);
            res.stats.readErrors++;
            readable = false;
          }
          const same = await matchesPeer(local, theirs, peer);
          if (same === null) return;
          if (same && readable) {
            skipped += c.length;
            ok = true;
            return;
          }
        }
        let buf: Buffer;
        try {
          buf = await peer.read(c.offset, c.length);
        } catch (err) {
          if (peer.connected) log.error('Unable to read synchronization data', err);
          return;
        }
        try {
          await res.data.write([buf], c.offset);
          ok = true;
        } catch (err) {
          log.error('Unable to write synchronization data', err);
          res.stats.writeErrors++;
        }
      }
    } finally {
      res.lock.release(handle);
      if (ok) done += c.length;
      else c.state.ok = false;
      c.state.left--;
      if (c.state.left === 0) {
        // Upstream clears an extent even when a chunk failed; we keep it for the next pass.
        if (c.state.ok) {
          if (amap.syncExtentDone(c.extent)) void res.bitmapWriter.persist();
        } else {
          failed = true;
        }
      }
      progress();
    }
  };

  const lanes: Promise<void>[] = [];
  for (let i = 0; i < SYNC_WINDOW; i++) {
    lanes.push(
      (async () => {
        for (;;) {
          if (!peer.connected) return;
          const c = nextChunk();
          if (c === null) return;
          // Not admitted only when the connection is gone: the sync ends as interrupted.
          if (throttle !== undefined && !(await throttle.admit(c.length, () => !peer.connected))) return;
          await copyChunk(c);
        }
      })(),
    );
  }
  await Promise.all(lanes);
  const seconds = (Date.now() - started) / 1000;
  const moved = { bytes: done, transferred: done - skipped, skipped };
  const skippedNote = csums
    ? ` ${humanizeNumber(moved.transferred)}B transferred, ${humanizeNumber(skipped)}B identical (not copied).`
    : '';
  if (!peer.connected || failed) {
    res.sync = null;
    log.info(
      `Synchronization interrupted after ${formatSeconds(seconds)}. ${humanizeNumber(done)}B synchronized so far.${skippedNote}`,
    );
    onEvent('syncintr');
    return { outcome: 'interrupted', ...moved, seconds };
  }
  // res.sync stays set (nothing left) until the caller has recorded the result and equalised the
  // counters: a status showing no sync and dirty 0 must already show the completed sync.
  await res.bitmapWriter.persist();
  const rate = seconds > 0 ? Math.round(done / seconds) : done;
  log.info(
    `Synchronization complete. ${humanizeNumber(done)}B synchronized in ${formatSeconds(seconds)} (${humanizeNumber(rate)}B/sec).${skippedNote}`,
  );
  onEvent('syncdone');
  return { outcome: 'complete', ...moved, seconds };
}

/** A promise that never rejects: its error is the value (awaited later, or never). */
function settled<T>(p: Promise<T>): Promise<T | Error> {
  return p.catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
}

/**
 * Does `local` hash as the peer's copy did? Null when the peer's hash could not be had (logged
 * unless the connection is gone): the chunk is not synchronized in this pass.
 */
async function matchesPeer(local: Buffer, theirs: Promise<Buffer | Error>, peer: SyncPeer): Promise<boolean | null> {
  const hash = await theirs;
  if (hash instanceof Error) {
    if (peer.connected) log.error('Unable to read the synchronization checksum', hash);
    return null;
  }
  return computeHash('sha256', local).equals(hash);
}

/** Rewrite a stale local range from the peer's copy; true when the local write succeeded. */
async function repairFromPeer(res: PrimaryResource, peer: SyncPeer, offset: number, length: number): Promise<boolean> {
  let buf: Buffer;
  try {
    buf = await peer.read(offset, length);
  } catch (err) {
    if (peer.connected) log.error('Unable to read synchronization data', err);
    return false;
  }
  try {
    await res.data.write([buf], offset);
  } catch (err) {
    log.error('Unable to repair the local copy', err);
    res.stats.writeErrors++;
    return false;
  }
  res.clearLocalStale(offset, length);
  return true;
}
