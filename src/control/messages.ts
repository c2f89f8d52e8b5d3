// Control protocol between hastctl and the hastd parent (HAST-SPEC §2.8): one JSON request and one
// JSON reply per connection on the unix control socket, each a single line. Field names follow the
// upstream nv fields; per-resource errors are reported per resource (fix of HAST-SPEC §11.15).

export const ROLES = ['init', 'primary', 'secondary'] as const;
export type Role = (typeof ROLES)[number];

export type ControlRequest =
  | { readonly cmd: 'role'; readonly role: Role; readonly resources: readonly string[] }
  | { readonly cmd: 'status'; readonly resources: readonly string[] };

/** Upstream error numbers in replies. */
export const CONTROL_ERROR = {
  NO_SUCH_RESOURCE: 1,
  INVALID_REQUEST: 2,
  UNKNOWN_COMMAND: 4,
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

/** What a worker answers to a status query. */
export interface WorkerStatus {
  readonly status: 'complete' | 'degraded';
  readonly dirty: number;
  readonly extentSize: number;
  readonly keepDirty: number;
  readonly stats: WorkerStats;
  readonly sync: SyncProgress | null;
  /** Bytes copied and seconds taken by the last completed resync of this worker (ours). */
  readonly lastSync: { readonly bytes: number; readonly seconds: number } | null;
  /** Path of the NBD export and of /dev/hast/<provname> when attached (primary). */
  readonly exportAddr: string | null;
  readonly device: string | null;
  /** Ours: the local copy's consistency state. */
  readonly disk?: DiskState;
  /** Ours: the peer's copy, as a connected primary knows it (null when unknown). */
  readonly peerDisk?: DiskState | null;
}

export interface ResourceStatus {
  readonly name: string;
  readonly error?: number;
  readonly role?: Role;
  /** The previous role, in replies to a role request. */
  readonly previousRole?: Role;
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
    reads: 0, writes: 0, deletes: 0, flushes: 0, activemapUpdates: 0,
    readErrors: 0, writeErrors: 0, deleteErrors: 0, flushErrors: 0,
    localQueue: 0, sendQueue: 0, recvQueue: 0, doneQueue: 0, idleQueue: 0,
  };
}
