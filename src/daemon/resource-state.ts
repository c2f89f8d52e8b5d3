// The parent's per-resource state, and the part of the parent that its peer listeners act on.
// Its own module so that the parent (parent.ts) and the listeners (listen.ts) both depend on it
// instead of on each other.
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { HastConfig, ResourceConfig } from '../config/types.js';
import type { Role, WorkerStatus } from '../control/messages.js';
import type { ParentToWorker, WorkerCommandReply } from './worker-ipc.js';

/** How a primary worker's start-up ended. */
export type StartOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: string; readonly code: number };

/** Per-resource state kept by the parent. */
export class ResourceState {
  cfg: ResourceConfig;
  role: Role = 'init';
  worker: ChildProcess | null = null;
  workerRole: 'primary' | 'secondary' | null = null;
  /**
   * False from the fork of a primary worker until its 'ready': it installs its message handler
   * only after opening the component, so a status query sent earlier is dropped and would wait
   * for STATUS_TIMEOUT_MS (found by the fault campaign: `hastctl status` stalled during restarts).
   */
  workerReady = false;
  /** Set while the parent itself is stopping the worker (no restart, no fallback). */
  stopping = false;
  restartTimer: NodeJS.Timeout | null = null;
  readonly pendingStatus = new Map<number, (s: WorkerStatus | null) => void>();
  /** Replies awaited from the primary worker to 'release' (device removal before a demotion). */
  readonly pendingRelease = new Map<number, (r: { ok: boolean; reason?: string }) => void>();
  /** Replies awaited from the primary worker to 'command' (`hastctl sync`, `hastctl verify`). */
  readonly pendingCommand = new Map<number, (r: WorkerCommandReply) => void>();
  /** Why the last start of a worker failed, or why it went away; shown as `lasterror`. */
  lastError: string | null = null;
  /** The reason a worker gave in its 'failed' message before exiting. */
  failedReason: { reason: string; code: number } | null = null;
  /**
   * Set by startWorker for a primary until its 'ready', 'failed' or exit: what setRole waits for
   * so that `hastctl role primary` reports the truth.
   */
  startOutcome: Promise<StartOutcome> | null = null;
  settleStart: ((o: StartOutcome) => void) | null = null;
  /** setRole is waiting for the start-up: an exit then is its failure, not a crash to restart. */
  startAwaited = false;
  /** The `--force` of the role change that started the current worker (WorkerInit.force). */
  force = false;
  /**
   * Ours: `hastctl role secondary --discard-my-data` (WorkerInit.discardMyData): the next secondary
   * worker that meets a split-brain resyncs from the primary instead of refusing. Cleared once used
   * ('discarded') and by a change to another role.
   */
  discardMyData = false;
  constructor(cfg: ResourceConfig) {
    this.cfg = cfg;
  }
}

/**
 * What the peer listeners need from the parent: the resources and their workers, and the queue
 * that serialises role changes. HastdParent implements it; tests pass a fake.
 */
export interface PeerParent {
  readonly cfg: HastConfig;
  readonly resources: ReadonlyMap<string, ResourceState>;
  /** Stop a resource's worker and wait until it has exited. */
  stopWorker(res: ResourceState): Promise<void>;
  /** Fork a worker for the resource; a secondary's sockets follow through sendToWorker(). */
  startWorker(res: ResourceState, role: 'primary' | 'secondary'): ChildProcess;
  sendToWorker(child: ChildProcess, msg: ParentToWorker, handle?: Socket): void;
  /** Run fn after every earlier role change or reload has finished. */
  serialize<T>(fn: () => Promise<T>): Promise<T>;
}
