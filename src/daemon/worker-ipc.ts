// Messages between the hastd parent and a resource worker (child_process.fork IPC channel).
import type { ResourceConfig } from '../config/types.js';
import type { SyncAction, VerifyReport, WorkerStatus } from '../control/messages.js';

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
  /**
   * `hastctl role --force`: the administrator overrides a refusal. The parent uses it for its own
   * refusals (peer connected as primary, busy device); workers may use it for theirs (a peer that
   * answers as primary, an inconsistent copy).
   */
  readonly force: boolean;
  /** Ours, secondary: `role secondary --discard-my-data` (see ResourceState.discardMyData). */
  readonly discardMyData?: boolean;
}

export type ParentToWorker =
  | WorkerInit
  | { readonly type: 'status'; readonly id: number }
  | { readonly type: 'reload'; readonly resource: ResourceConfig }
  /** Ours, primary: an administrator's command (answered by 'command-reply'). */
  | { readonly type: 'command'; readonly id: number; readonly command: WorkerCommand }
  /**
   * Primary: remove /dev/hast/<provname> before a demotion. Refused (ok false, the reason) while the
   * device is mounted or held open, unless `force`; the worker keeps serving after a refusal.
   */
  | { readonly type: 'release'; readonly id: number; readonly force: boolean }
  /** Secondary: the accepted peer sockets follow as handles: first 'in' (primary's out), then 'out'. */
  | { readonly type: 'peer-socket'; readonly which: 'in' | 'out'; readonly first?: PeerFirstMessage };

/** Ours: `hastctl sync pause|resume` and `hastctl verify`, run by the primary worker. */
export type WorkerCommand =
  | { readonly kind: 'sync'; readonly action: SyncAction }
  | { readonly kind: 'verify'; readonly start: number; readonly stop: number | null; readonly mark: boolean };

/** ok false: refused, with the reason to show the administrator. */
export interface WorkerCommandReply {
  readonly ok: boolean;
  readonly reason?: string;
  readonly verify?: VerifyReport;
}

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
  /** Ours: the primary offered checksum-assisted sync with this algorithm (`csums`). */
  readonly csums?: number;
  /** Ours: TLS was agreed (peer/tls.ts); the worker starts it on both sockets as the TLS client. */
  readonly tls?: boolean;
}

export type WorkerToParent =
  /** Primary: the component is open, the metadata read, the export and the device are set up. */
  | { readonly type: 'ready' }
  /** The worker cannot start (or go on); it exits with `code` right after this message. */
  | { readonly type: 'failed'; readonly reason: string; readonly code: number }
  /** `busy`: refused because the device is mounted or held open (nothing was removed). */
  | {
      readonly type: 'release-reply';
      readonly id: number;
      readonly ok: boolean;
      readonly busy?: boolean;
      readonly reason?: string;
    }
  | { readonly type: 'status-reply'; readonly id: number; readonly status: WorkerStatus }
  | { readonly type: 'command-reply'; readonly id: number; readonly reply: WorkerCommandReply }
  /** Ours, secondary: a split-brain was resolved by discarding this node's changes (the flag is spent). */
  | { readonly type: 'discarded' }
  | { readonly type: 'event'; readonly event: HookEvent; readonly args: readonly string[] };

/**
 * Exit codes with a meaning to the parent (HAST-SPEC §5.4). PEER_PRIMARY (EX_UNAVAILABLE): a
 * `role primary` refused because the peer stayed primary for `timeout` seconds. INCONSISTENT
 * (EX_NOPERM, ours): a primary worker refused to start on a copy marked inconsistent (an unfinished
 * sync target) without `force`. Neither is restarted; the resource goes back to init.
 */
export const WORKER_EXIT = {
  OK: 0,
  TEMPFAIL: 75,
  NOINPUT: 66,
  CONFIG: 78,
  OSERR: 71,
  PEER_PRIMARY: 69,
  INCONSISTENT: 77,
} as const;
