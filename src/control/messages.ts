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
  /** (ours) The primary's link to its peer: why degraded, the peer's role, last (dis)connect. */
  readonly peer?: PeerLinkStatus;
  /** (ours) async mode: writes acknowledged locally and not yet confirmed by the peer. */
  readonly asyncBacklog?: AsyncBacklog;
}

/** Why the link to the peer is down (null while connected or before the first attempt). */
export type PeerDownReason = 'split-brain' | 'refused' | 'unreachable' | 'mismatch' | 'protocol' | 'timeout' | 'disconnected';

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
