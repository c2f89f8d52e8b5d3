// Control protocol between hastctl and the hastd parent (HAST-SPEC §2.8): one JSON request and one
// JSON reply per connection on the unix control socket, each a single line. Field names follow the
// upstream nv fields; per-resource errors are reported per resource (fix of HAST-SPEC §11.15).
import type { HistogramSnapshot } from '../util/histogram.js';

export const ROLES = ['init', 'primary', 'secondary'] as const;
export type Role = (typeof ROLES)[number];

/** Ours: `hastctl sync pause|resume` (issue 17). */
export const SYNC_ACTIONS = ['pause', 'resume'] as const;
export type SyncAction = (typeof SYNC_ACTIONS)[number];

/** What `changed extents` was counted from (issue 17): a divergence record with the map, or the map alone. */
export type ChangedExtentsBy = 'record' | 'activemap';

export type ControlRequest =
  /** `force`: hastctl role --force, overrides the refusals (ours, not upstream's). */
  | {
      readonly cmd: 'role';
      readonly role: Role;
      readonly resources: readonly string[];
      readonly force?: boolean;
      /** Ours, with role secondary: at the next split-brain, discard this node's changes (issue 17). */
      readonly discardMyData?: boolean;
    }
  | { readonly cmd: 'status'; readonly resources: readonly string[] }
  | { readonly cmd: 'sync'; readonly action: SyncAction; readonly resources: readonly string[] }
  /** Ours: `hastctl verify NAME [--start] [--stop] [--mark]`; stop null = the end of the data area. */
  | {
      readonly cmd: 'verify';
      readonly resources: readonly string[];
      readonly start?: number;
      readonly stop?: number | null;
      readonly mark?: boolean;
    }
  /** Ours: keep the connection and stream events, one JSON line each (src/daemon/events.ts). */
  | { readonly cmd: 'events'; readonly resources: readonly string[] };

/**
 * Error numbers in replies: upstream's (1, 2, 4), and ours for a refused or failed role change,
 * which are sysexits(3) values because hastctl exits with the first per-resource error.
 */
export const CONTROL_ERROR = {
  NO_SUCH_RESOURCE: 1,
  INVALID_REQUEST: 2,
  UNKNOWN_COMMAND: 4,
  /** The primary worker could not open the component or read its metadata (EX_NOINPUT). */
  WORKER_NOINPUT: 66,
  /** The worker failed, exited or did not report within its bound (EX_SOFTWARE). */
  WORKER_FAILED: 70,
  /** The export or /dev/hast could not be set up (EX_OSERR). */
  WORKER_OSERR: 71,
  /** The other node answered as primary for `timeout` seconds: not promoted (EX_UNAVAILABLE). */
  PEER_PRIMARY: 69,
  /** Refused in the current state: a primary is connected to us, the device is busy (EX_TEMPFAIL). */
  REFUSED: 75,
  /** The local copy is marked inconsistent (an unfinished sync target): not promoted (EX_NOPERM). */
  INCONSISTENT: 77,
} as const;

/** Statistics and queue sizes reported by a worker (HAST-SPEC §2.5). */
export interface WorkerStats {
  readonly reads: number;
  readonly writes: number;
  readonly deletes: number;
  readonly flushes: number;
  readonly activemapUpdates: number;
  readonly readErrors: number;
  readonly writeErrors: number;
  readonly deleteErrors: number;
  readonly flushErrors: number;
  readonly localQueue: number;
  readonly sendQueue: number;
  readonly recvQueue: number;
  readonly doneQueue: number;
  readonly idleQueue: number;
}

/** Resync progress (our extension: upstream shows only `dirty`). */
export interface SyncProgress {
  readonly direction: 'primary' | 'secondary';
  readonly totalBytes: number;
  readonly doneBytes: number;
  readonly leftBytes: number;
  /** Bytes per second since the sync started. */
  readonly rate: number;
  /** Seconds to completion at the current rate, or -1 when unknown. */
  readonly eta: number;
}

/** Ours: the resync's rate control on a primary (issue 17). */
export interface SyncControlStatus {
  /** `hastctl sync pause`: no chunk is copied until `hastctl sync resume`. */
  readonly paused: boolean;
  /** `syncrate` and `syncminrate` in bytes per second, 0 when not set (unlimited / no slow-down). */
  readonly rate: number;
  readonly minRate: number;
  /** The limit in force now (syncminrate while the application is busy), 0 = unlimited. */
  readonly currentRate: number;
}

/** Ours: `hastctl verify` (issue 17), a range of the data area. */
export interface VerifyRange {
  readonly offset: number;
  readonly length: number;
}

export interface VerifyReport {
  readonly outcome: 'identical' | 'differ' | 'interrupted';
  readonly start: number;
  readonly stop: number;
  readonly comparedBytes: number;
  /** Bytes of extents waiting for resynchronisation, not compared. */
  readonly skippedBytes: number;
  /** Differing ranges, VERIFY_BLOCK-aligned, ascending, adjacent ones merged. */
  readonly differing: readonly VerifyRange[];
  readonly differingBytes: number;
  /** Extents marked for resynchronisation (`mark`). */
  readonly markedExtents: number;
  readonly seconds: number;
  /** Why it stopped early (interrupted). */
  readonly reason?: string;
}

/** What status shows while a verify runs. */
export interface VerifyProgress {
  readonly start: number;
  readonly stop: number;
  readonly doneBytes: number;
  readonly differingBytes: number;
  /** Bytes per second since it started. */
  readonly rate: number;
}

/**
 * Ours: the consistency state of a copy (issue 13). A sync target is inconsistent, persistently,
 * from its first received byte until the sync completed; `synchronized` is the percentage copied by
 * the running pass when known.
 */
export interface DiskState {
  readonly consistent: boolean;
  readonly synchronized: number | null;
}

/**
 * Percentage of a sync pass copied, from its size and what is left; below 100 until the target is
 * told the sync is done. Null when unknown.
 */
export function syncedPercent(totalBytes: number | null, leftBytes: number | null): number | null {
  if (totalBytes === null || leftBytes === null || totalBytes <= 0 || leftBytes < 0) return null;
  return Math.max(0, Math.min(99, Math.floor(((totalBytes - leftBytes) * 100) / totalBytes)));
}

/**
 * Ours: the last completed resync of a worker. `bytes` synchronized = `transferred` (the data crossed
 * the network) + `skipped` (checksum sync found both copies identical; 0 without it).
 */
export interface LastSync {
  readonly bytes: number;
  readonly transferred: number;
  readonly skipped: number;
  readonly seconds: number;
}

/** What a worker answers to a status query. */
export interface WorkerStatus {
  readonly status: 'complete' | 'degraded';
  readonly dirty: number;
  readonly extentSize: number;
  readonly keepDirty: number;
  readonly stats: WorkerStats;
  readonly sync: SyncProgress | null;
  /** Bytes synchronized and seconds taken by the last completed resync of this worker (ours). */
  readonly lastSync: LastSync | null;
  /** Path of the NBD export and of /dev/hast/<provname> when attached (primary). */
  readonly exportAddr: string | null;
  readonly device: string | null;
  /** Ours: the local copy's consistency state. */
  readonly disk?: DiskState;
  /** Ours: the peer's copy, as a connected primary knows it (null when unknown). */
  readonly peerDisk?: DiskState | null;
  /** (ours) The primary's link to its peer: why degraded, the peer's role, last (dis)connect. */
  readonly peer?: PeerLinkStatus;
  /** (ours) async mode: writes acknowledged locally and not yet confirmed by the peer. */
  readonly asyncBacklog?: AsyncBacklog;
  /** (ours) Primary with a remote: the resync's rate control and pause. */
  readonly syncControl?: SyncControlStatus;
  /**
   * (ours) Primary: extents waiting for resynchronisation (changed since the copies last agreed),
   * less those of the divergence record when it has one (issue 17).
   */
  readonly changedExtents?: number;
  /** (ours) What `changedExtents` was counted from: the divergence record and the map, or the map alone. */
  readonly changedExtentsBy?: ChangedExtentsBy;
  /** (ours) Primary with a remote: the running verify, and the last one's report. */
  readonly verify?: { readonly running: VerifyProgress | null; readonly last: VerifyReport | null };
  /** (ours, primary) request latencies of the local and remote legs, for the metrics. */
  readonly latency?: { readonly local: HistogramSnapshot; readonly remote: HistogramSnapshot };
}

/** Why the link to the peer is down (null while connected or before the first attempt). */
export type PeerDownReason =
  | 'split-brain'
  | 'refused'
  | 'unreachable'
  | 'mismatch'
  | 'protocol'
  | 'timeout'
  | 'disconnected';

export interface PeerLinkStatus {
  readonly reason: PeerDownReason | null;
  /** The error of the last failed attempt or the disconnect (the peer's errmsg when it refused). */
  readonly message: string | null;
  /** What the peer last said it is: primary when it answered that it still is one. */
  readonly role: 'primary' | 'secondary' | null;
  /** ISO 8601 times of the last established connection and of its end, and why it ended. */
  readonly lastConnect: string | null;
  readonly lastDisconnect: string | null;
  readonly disconnectCause: string | null;
  /** Bytes sent but not yet written to the socket (the `send` queue counts the requests). */
  readonly sendQueueBytes: number;
}

export interface AsyncBacklog {
  readonly writes: number;
  readonly bytes: number;
  readonly maxWrites: number;
  readonly maxBytes: number;
  /** The most at once since the worker started. */
  readonly peakWrites: number;
  readonly peakBytes: number;
  /** Writes waiting for room: not acknowledged yet (back-pressure to the client). */
  readonly waiting: number;
}

export interface ResourceStatus {
  readonly name: string;
  readonly error?: number;
  /** With `error`, from our role refusals and failures: what happened and what to do. */
  readonly message?: string;
  readonly role?: Role;
  /**
   * Why the resource is not (or no longer) where it was put: the last failure of its worker
   * (start-up failure, unexpected exit), or null. Cleared by the next successful role change.
   */
  readonly lasterror?: string | null;
  /** The previous role, in replies to a role request. */
  readonly previousRole?: Role;
  /** Ours: the report, in replies to a verify request. */
  readonly verify?: VerifyReport;
  /**
   * Ours (issue 17): extents this node changed since the copies last agreed, what a split-brain
   * recovery resyncs from its side. The primary's worker counts the extents waiting for sync;
   * otherwise it is read from the on-disk activemap (what this node would send a primary); either
   * less the extents of a valid divergence record.
   */
  readonly changedExtents?: number;
  /** Ours: 'record' when a divergence record counted in changedExtents, else 'activemap'. */
  readonly changedExtentsBy?: ChangedExtentsBy;
  readonly provname?: string;
  readonly localpath?: string;
  readonly remoteaddr?: string;
  readonly sourceaddr?: string | null;
  readonly replication?: string;
  readonly checksum?: string;
  readonly compression?: string;
  readonly workerpid?: number;
  readonly worker?: WorkerStatus | null;
}

export interface ControlReply {
  readonly error?: number;
  readonly message?: string;
  readonly resources: readonly ResourceStatus[];
}

export function emptyStats(): WorkerStats {
  return {
    reads: 0,
    writes: 0,
    deletes: 0,
    flushes: 0,
    activemapUpdates: 0,
    readErrors: 0,
    writeErrors: 0,
    deleteErrors: 0,
    flushErrors: 0,
    localQueue: 0,
    sendQueue: 0,
    recvQueue: 0,
    doneQueue: 0,
    idleQueue: 0,
  };
}
