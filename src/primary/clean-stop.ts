// No needless resync after a clean role switch (issue 17). The keepdirty LRU keeps the most recently
// written extents dirty on disk so that a crash resyncs whatever might have been in flight
// (HAST-SPEC §4.1–4.3); upstream also leaves them there on a clean demotion, so every switchover
// resynchronised up to keepdirty extents (64 × 2 MiB) although both copies agreed. When the primary
// stops while connected and in sync, we flush both nodes and, if both copies are then known equal
// and durable, write the map without the LRU: the next primary finds nothing to copy. The on-disk
// format is unchanged (a map with fewer bits set), so a FreeBSD node reading it is unaffected.
import { log } from '../log/log.js';
import type { Replication } from './replicate.js';
import type { PrimaryResource } from './resource.js';

/** Nothing in flight, nothing to sync, the peer connected and consistent, the local copy trusted. */
function inSync(res: PrimaryResource, repl: Replication): boolean {
  return (
    res.remote !== null &&
    res.sync === null &&
    res.inFlight === 0 &&
    res.amap.opsInFlight === 0 &&
    res.amap.syncPendingExtents === 0 &&
    res.asyncBudget.snapshot().writes === 0 &&
    !res.isLocalStale(0, res.size) &&
    repl.peerDisk()?.consistent === true
  );
}

/**
 * Called by the primary worker's shutdown once no new request can arrive, before the link to the
 * peer is closed. True when the keepdirty extents were dropped from the on-disk map.
 */
export async function forgetKeepDirtyOnCleanStop(res: PrimaryResource, repl: Replication | null): Promise<boolean> {
  if (repl === null || !inSync(res, repl) || res.amap.keepDirtyExtents().length === 0) return false;
  const flushErrors = res.stats.flushErrors;
  try {
    // Both nodes: every acknowledged write is on stable storage on each side after this.
    await res.flush();
  } catch (err) {
    log.warning('Unable to flush before the demotion; the recent extents stay marked for resync', err);
    return false;
  }
  // A failed remote flush marks extents for sync and drops the link; a failed local one distrusts
  // the local copy: either way the copies are not known equal.
  if (!inSync(res, repl) || res.stats.flushErrors !== flushErrors) return false;
  if (res.amap.forgetKeepDirty()) await res.bitmapWriter.persist();
  log.debug(1, 'Clean stop while in sync: the keepdirty extents need no resynchronization.');
  return true;
}
