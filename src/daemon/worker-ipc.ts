// Messages between the hastd parent and a resource worker (child_process.fork IPC channel).
import type { ResourceConfig } from '../config/types.js';
import type { WorkerStatus } from '../control/messages.js';

/** The seven upstream hook events (HAST-SPEC §9). */
export type HookEvent = 'role' | 'connect' | 'disconnect' | 'syncstart' | 'syncdone' | 'syncintr' | 'split-brain';

export interface WorkerInit {
  readonly type: 'init';
  readonly role: 'primary' | 'secondary';
  readonly resource: ResourceConfig;
  readonly debugLevel: number;
  readonly foreground: boolean;
  /** Directory for worker state (FUSE mount points). */
  readonly stateDir: string;
  /** `hastctl role --force`: promote even an inconsistent copy (WORKER_EXIT.INCONSISTENT otherwise). */
  readonly force?: boolean;
}

export type ParentToWorker =
  | WorkerInit
  | { readonly type: 'status'; readonly id: number }
  | { readonly type: 'reload'; readonly resource: ResourceConfig }
  /** Secondary: the accepted peer sockets follow as handles: first 'in' (primary's out), then 'out'. */
  | { readonly type: 'peer-socket'; readonly which: 'in' | 'out'; readonly first?: PeerFirstMessage };

/** What the parent learnt from the primary's second handshake message, forwarded to the secondary worker. */
export interface PeerFirstMessage {
  readonly version: number;
  readonly virgin: boolean;
  readonly resuid: string;
  readonly localCnt: string;
  readonly remoteCnt: string;
  readonly peerAddr: string;
  /** Ours: the primary advertised the consistency extension (`consistency`). */
  readonly consistency?: boolean;
}

export type WorkerToParent =
  | { readonly type: 'ready' }
  | { readonly type: 'status-reply'; readonly id: number; readonly status: WorkerStatus }
  | { readonly type: 'event'; readonly event: HookEvent; readonly args: readonly string[] };

/** Exit codes with a meaning to the parent (HAST-SPEC §5.4). */
export const WORKER_EXIT = {
  OK: 0,
  TEMPFAIL: 75,
  NOINPUT: 66,
  CONFIG: 78,
  OSERR: 71,
  /**
   * Ours: a primary worker refused to start on a copy marked inconsistent (an unfinished sync
   * target) without `force` (EX_NOPERM). Not restarted; the resource goes back to init.
   */
  INCONSISTENT: 77,
} as const;
