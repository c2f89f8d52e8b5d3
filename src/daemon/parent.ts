// The hastd parent: configuration, control socket, roles, worker supervision, hooks, reload.
// HAST-SPEC §5.2–5.4 (roles and workers), §10 (lifecycle, signals, reload), §2.8 (control).
import { fork, type ChildProcess } from 'node:child_process';
import type { Server as HttpServer } from 'node:http';
import { unlinkSync } from 'node:fs';
import { connect, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePeerAddress } from '../config/address.js';
import { diffConfig, reloadAction } from '../config/diff.js';
import type { HastConfig, ResourceConfig } from '../config/types.js';
import {
  type ChangedExtentsBy,
  CONTROL_ERROR,
  ROLES,
  SYNC_ACTIONS,
  type ControlReply,
  type ControlRequest,
  type ResourceStatus,
  type Role,
  type SyncAction,
  type WorkerStatus,
} from '../control/messages.js';
import { readLine } from '../control/wire.js';
import { popcount } from '../activemap/bitmap.js';
import type { Component } from '../component/component.js';
import { openComponent } from '../component/open.js';
import { withoutAgreed } from '../metadata/divergence.js';
import { readBitmap, readMetadata } from '../metadata/metadata.js';
import { log } from '../log/log.js';
import { listenControlSocket } from './control-socket.js';
import { EventStream, type EventKind } from './events.js';
import type { PeerListeners } from './listen.js';
import { formatMetrics, listenMetrics } from './metrics.js';
import { type PeerParent, ResourceState, type StartOutcome } from './resource-state.js';
import type { HookEvent, ParentToWorker, WorkerCommand, WorkerCommandReply, WorkerToParent } from './worker-ipc.js';
import { WORKER_EXIT } from './worker-ipc.js';

/** How long a worker may take to answer a status query before it is reported as an error. */
const STATUS_TIMEOUT_MS = 5000;
/** Delay before a crashed primary worker is restarted (upstream: 1 s). */
const RESTART_DELAY_MS = 1000;
/** How long a stopped worker gets to exit after SIGTERM/SIGINT before SIGKILL. */
const STOP_TIMEOUT_MS = 30_000;
/** How long a primary worker gets to remove its device when asked to (nbdfuse, losetup, fusermount). */
const RELEASE_TIMEOUT_MS = 60_000;
/** While a shutdown waits for a busy device to be unmounted: how often it asks again. */
const BUSY_POLL_MS = 1000;

/** A role change that was refused or failed: `code` goes into the reply, `message` to the terminal. */
class RoleError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.name = 'RoleError';
    this.code = code;
  }
}

/**
 * How long `hastctl role primary` waits for the worker's 'ready': its start-up may wait for the
 * peer (a connect of up to `timeout` s, then up to `timeout` s while the peer still says it is
 * primary) besides attaching the device (nbdfuse gets 15 s), so 2 × timeout + 30 s.
 */
function startTimeoutMs(cfg: ResourceConfig): number {
  return (2 * cfg.timeout + 30) * 1000;
}

export interface ParentOptions {
  readonly debugLevel: number;
  readonly foreground: boolean;
  readonly stateDir: string;
  /** Reload source: returns a freshly parsed configuration or throws. */
  readonly reloadConfig: () => HastConfig;
  /** Runs an exec hook (never blocks, never throws). */
  readonly runHook: (exec: string, args: readonly string[]) => void;
  /** Accept peer connections (installed by the replication layer). */
  readonly startPeerListeners?: (parent: PeerParent) => Promise<PeerListeners>;
  /** A reload changed `pidfile` (HAST-SPEC §10.3); failures only warn. */
  readonly pidfileChanged?: (path: string) => void;
  /** The worker entry point to fork (default dist/src/cli/worker.js); tests fork stubs. */
  readonly workerScript?: string;
  /** SIGTERM/SIGINT → SIGKILL bound of a worker stop (default 30 s). */
  readonly stopTimeoutMs?: number;
  /** Bound on a primary worker's start-up (default {@link startTimeoutMs} of the resource). */
  /** Tests: replaces the TCP probe of the peer before a refused promotion (see probePeer). */
  readonly probePeer?: (remoteAddr: string, sourceAddr: string | null) => Promise<boolean>;
  readonly startTimeoutMs?: number;
  /** Bound on a primary worker's device removal (default 60 s). */
  readonly releaseTimeoutMs?: number;
  /** Poll interval of a shutdown waiting for a busy device (default 1 s). */
  readonly busyPollMs?: number;
}

/**
 * The environment of a worker process. Besides the thread-pool size: glibc's malloc gives blocks
 * of 128 KiB and more their own mmap and unmaps them on free, so every 1 MiB I/O buffer cost 256
 * page faults and the zeroing of 1 MiB by the kernel (about 7% of the CPU of a 1 MiB read job, the
 * reads 20% slower). Serving such buffers from the heap, and keeping up to 64 MiB of freed heap,
 * lets them be reused. A value the administrator set wins; other C libraries ignore these.
 */
export function workerEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    ...env,
    UV_THREADPOOL_SIZE: env.UV_THREADPOOL_SIZE ?? '16',
    MALLOC_MMAP_THRESHOLD_: env.MALLOC_MMAP_THRESHOLD_ ?? String(4 << 20),
    MALLOC_TRIM_THRESHOLD_: env.MALLOC_TRIM_THRESHOLD_ ?? String(64 << 20),
  };
}

interface ChangedExtents {
  readonly count: number;
  readonly by: ChangedExtentsBy;
}

/**
 * Ours: the extents set in the component's on-disk activemap, less those of a valid divergence
 * record (issue 17), as this node would send them in a split-brain recovery (read-only, no lock, as
 * `hastctl dump`); undefined when it cannot be read (no component, no metadata yet).
 */
async function onDiskChangedExtents(c: ResourceConfig): Promise<ChangedExtents | undefined> {
  let comp: Component | undefined;
  try {
    comp = await openComponent(c.localPath, { lock: false, readOnly: true });
    const md = await readMetadata(comp, c.name);
    let map = await readBitmap(comp, md);
    if (md.agreed !== undefined) map = withoutAgreed(map, md.agreed.extents);
    const count = popcount(map, Math.ceil(md.dataSize / md.extentSize));
    return { count, by: md.agreed !== undefined ? 'record' : 'activemap' };
  } catch {
    return undefined;
  } finally {
    await comp?.close().catch(() => undefined);
  }
}

export class HastdParent implements PeerParent {
  cfg: HastConfig;
  readonly opts: ParentOptions;
  readonly resources = new Map<string, ResourceState>();
  #control: Server | null = null;
  /** The `metrics` HTTP listener, when configured. */
  #metrics: HttpServer | null = null;
  /** Primary worker restarts per resource since start (hastd_worker_restarts_total). */
  readonly #restarts = new Map<string, number>();
  #peers: PeerListeners | null = null;
  #statusId = 0;
  #releaseId = 0;
  #shuttingDown = false;
  #shutdownP: Promise<void> | null = null;
  /** A second termination signal: busy devices are removed anyway. */
  #forceStop = false;
  #forced: () => void = () => undefined;
  readonly #forcedP = new Promise<void>((resolve) => {
    this.#forced = resolve;
  });
  /** Serialises role changes and reloads (upstream's parent is single-threaded). */
  #queue: Promise<unknown> = Promise.resolve();
  /** `hastctl events` subscribers. */
  readonly events = new EventStream(() => Promise.all([...this.resources.values()].map((res) => this.statusOf(res))));

  constructor(cfg: HastConfig, opts: ParentOptions) {
    this.cfg = cfg;
    this.opts = opts;
    for (const r of cfg.resources) this.resources.set(r.name, new ResourceState(r));
  }

  async start(): Promise<void> {
    this.#control = await listenControlSocket(
      this.cfg.controlPath,
      this.cfg.controlGroup,
      (sock) => void this.#onControl(sock),
    );
    if (this.opts.startPeerListeners !== undefined) {
      this.#peers = await this.opts.startPeerListeners(this);
    }
    if (this.cfg.metrics !== null) this.#metrics = await this.#listenMetrics(this.cfg.metrics);
    log.info('Started successfully, running protocol version 2.');
  }

  #listenMetrics(addr: string): ReturnType<typeof listenMetrics> {
    return listenMetrics(addr, async () =>
      formatMetrics(await Promise.all([...this.resources.values()].map((res) => this.statusOf(res))), this.#restarts),
    );
  }

  /** Run fn after every earlier role change or reload has finished. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #onControl(sock: Socket): Promise<void> {
    sock.on('error', () => undefined);
    let reply: ControlReply;
    try {
      const line = await readLine(sock);
      let req: unknown;
      try {
        req = JSON.parse(line);
      } catch {
        req = null;
      }
      if (isEventsRequest(req)) {
        const unknown = req.resources.filter((n) => n !== 'all' && !this.resources.has(n));
        if (unknown.length === 0) {
          await this.events.subscribe(sock, req.resources);
          return;
        }
        reply = { resources: unknown.map((name) => ({ name, error: CONTROL_ERROR.NO_SUCH_RESOURCE })) };
      } else reply = await this.handleRequest(req);
    } catch (err) {
      log.warning('Unable to receive control header', err);
      sock.destroy();
      return;
    }
    sock.end(`${JSON.stringify(reply)}\n`);
  }

  /** Answer one control request (HAST-SPEC §2.8). */
  async handleRequest(raw: unknown): Promise<ControlReply> {
    if (raw === null || typeof raw !== 'object') {
      return { error: CONTROL_ERROR.INVALID_REQUEST, message: 'Invalid request.', resources: [] };
    }
    const req = raw as Partial<ControlRequest> & { resources?: unknown; role?: unknown };
    if (req.cmd !== 'role' && req.cmd !== 'status' && req.cmd !== 'sync' && req.cmd !== 'verify') {
      return { error: CONTROL_ERROR.UNKNOWN_COMMAND, message: 'Unknown command.', resources: [] };
    }
    const names = req.resources;
    if (!Array.isArray(names) || names.length === 0 || !names.every((n) => typeof n === 'string')) {
      return { error: CONTROL_ERROR.INVALID_REQUEST, message: 'Missing resource name.', resources: [] };
    }
    const expanded: string[] = names[0] === 'all' ? [...this.resources.keys()] : (names as string[]);
    if (req.cmd === 'role') {
      const role = req.role;
      if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) {
        return { error: CONTROL_ERROR.INVALID_REQUEST, message: 'Invalid role.', resources: [] };
      }
      const force = (req as { force?: unknown }).force === true;
      const discard = (req as { discardMyData?: unknown }).discardMyData === true;
      if (discard && role !== 'secondary') {
        return {
          error: CONTROL_ERROR.INVALID_REQUEST,
          message: '--discard-my-data goes with role secondary.',
          resources: [],
        };
      }
      const out: ResourceStatus[] = [];
      for (const name of expanded) {
        const res = this.resources.get(name);
        if (res === undefined) {
          out.push({ name, error: CONTROL_ERROR.NO_SUCH_RESOURCE });
          continue;
        }
        if (this.#shuttingDown) {
          out.push({
            name,
            error: CONTROL_ERROR.REFUSED,
            message: 'hastd is shutting down; role changes are refused.',
            role: res.role,
          });
          continue;
        }
        const previous = res.role;
        try {
          await this.serialize(async () => {
            await this.setRole(res, role as Role, force);
            if (discard) {
              res.discardMyData = true;
              log.warning(
                `[${name}] This node's changes since the split-brain will be discarded at the next connection of the primary.`,
              );
            }
          });
          out.push({ name, previousRole: previous, role: res.role });
        } catch (err) {
          if (!(err instanceof RoleError)) throw err;
          out.push({ name, previousRole: previous, role: res.role, error: err.code, message: err.message });
        }
      }
      return { resources: out };
    }
    if (req.cmd === 'sync') {
      const action = (req as { action?: unknown }).action;
      if (typeof action !== 'string' || !(SYNC_ACTIONS as readonly string[]).includes(action)) {
        return { error: CONTROL_ERROR.INVALID_REQUEST, message: 'Invalid sync action.', resources: [] };
      }
      const out = await Promise.all(
        expanded.map((name) => this.#command(name, { kind: 'sync', action: action as SyncAction }, STATUS_TIMEOUT_MS)),
      );
      return { resources: out };
    }
    if (req.cmd === 'verify') {
      const v = req as { start?: unknown; stop?: unknown; mark?: unknown };
      const start = v.start ?? 0;
      const stop = v.stop ?? null;
      const isOffset = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
      if (!isOffset(start) || (stop !== null && !isOffset(stop)) || (stop !== null && stop < start)) {
        return { error: CONTROL_ERROR.INVALID_REQUEST, message: 'Invalid verify range.', resources: [] };
      }
      const out = await Promise.all(
        expanded.map((name) => this.#command(name, { kind: 'verify', start, stop, mark: v.mark === true }, null)),
      );
      return { resources: out };
    }
    const out = await Promise.all(
      expanded.map(async (name): Promise<ResourceStatus> => {
        const res = this.resources.get(name);
        if (res === undefined) return { name, error: CONTROL_ERROR.NO_SUCH_RESOURCE };
        return this.statusOf(res);
      }),
    );
    return { resources: out };
  }

  /**
   * Ours: `hastctl sync pause|resume` and `hastctl verify` for one resource, run by its primary
   * worker. `timeoutMs` null: no bound (a verify takes as long as the data area needs; it ends when
   * the worker answers or exits).
   */
  async #command(name: string, command: WorkerCommand, timeoutMs: number | null): Promise<ResourceStatus> {
    const res = this.resources.get(name);
    if (res === undefined) return { name, error: CONTROL_ERROR.NO_SUCH_RESOURCE };
    const w = res.worker;
    const what = command.kind === 'sync' ? `sync ${command.action}` : 'verify';
    if (res.role !== 'primary' || w === null || !w.connected || !res.workerReady) {
      return {
        name,
        role: res.role,
        error: CONTROL_ERROR.REFUSED,
        message: `Resource ${name} is ${res.role} here: the ${command.kind === 'sync' ? 'synchronization' : 'verify'} is run by the primary; run 'hastctl ${what} ${name}' on the primary node.`,
      };
    }
    const id = ++this.#statusId;
    const r = await new Promise<WorkerCommandReply>((resolve) => {
      const timer =
        timeoutMs === null
          ? null
          : setTimeout(() => {
              res.pendingCommand.delete(id);
              resolve({ ok: false, reason: 'The worker did not answer.' });
            }, timeoutMs);
      res.pendingCommand.set(id, (reply) => {
        if (timer !== null) clearTimeout(timer);
        resolve(reply);
      });
      this.#send(w, { type: 'command', id, command });
    });
    if (r.ok) return { name, role: res.role, ...(r.verify !== undefined ? { verify: r.verify } : {}) };
    return { name, role: res.role, error: CONTROL_ERROR.REFUSED, message: r.reason ?? 'Refused by the worker.' };
  }

  async statusOf(res: ResourceState): Promise<ResourceStatus> {
    const c = res.cfg;
    const worker = res.worker !== null ? await this.#askStatus(res) : null;
    const changed =
      worker?.changedExtents !== undefined
        ? { count: worker.changedExtents, by: worker.changedExtentsBy ?? 'activemap' }
        : res.workerRole === 'primary'
          ? undefined
          : await onDiskChangedExtents(c);
    return {
      name: c.name,
      role: res.role,
      provname: c.provName,
      localpath: c.localPath,
      remoteaddr: c.remoteAddr,
      sourceaddr: c.sourceAddr,
      replication: c.replication,
      checksum: c.checksum,
      compression: c.compression,
      workerpid: res.worker?.pid ?? 0,
      lasterror: res.lastError,
      worker,
      ...(changed !== undefined ? { changedExtents: changed.count, changedExtentsBy: changed.by } : {}),
    };
  }

  #askStatus(res: ResourceState): Promise<WorkerStatus | null> {
    const w = res.worker;
    if (w === null || !w.connected || !res.workerReady) return Promise.resolve(null);
    const id = ++this.#statusId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        res.pendingStatus.delete(id);
        resolve(null);
      }, STATUS_TIMEOUT_MS);
      res.pendingStatus.set(id, (s) => {
        clearTimeout(timer);
        resolve(s);
      });
      this.#send(w, { type: 'status', id });
    });
  }

  #send(w: ChildProcess, msg: ParentToWorker, handle?: Socket): void {
    try {
      if (handle !== undefined) w.send(msg, handle);
      else w.send(msg);
    } catch (err) {
      log.warning('Unable to send a message to the worker', err);
    }
  }

  /**
   * Change a resource's role (HAST-SPEC §5.3). Returns the previous role. Throws a RoleError
   * (role unchanged unless said otherwise) when:
   * - secondary → primary while a primary is connected to us (our secondary worker runs), unless
   *   `force`;
   * - primary → anything while /dev/hast/<provname> is mounted or held open, unless `force`, or
   *   when its removal failed (the worker keeps serving);
   * - → primary and the worker fails or exits before its 'ready', or does not report within its
   *   bound: the role falls back to init and `lasterror` says why.
   */
  async setRole(res: ResourceState, role: Role, force = false): Promise<Role> {
    const old = res.role;
    const name = res.cfg.name;
    if (old === role) {
      log.debug(1, `[${name}] Role unchanged (${role}).`);
      return old;
    }
    if (
      role === 'primary' &&
      old === 'secondary' &&
      res.worker !== null &&
      res.workerRole === 'secondary' &&
      !force &&
      (await this.#peerAnswers(res))
    ) {
      const msg =
        `Refusing to change the role from secondary to primary: a primary is connected to this node and replicating to it ` +
        `(secondary worker pid ${res.worker.pid ?? 0}); two primaries would diverge. Demote the peer first ` +
        `(hastctl role secondary ${name} there), or use --force if you are sure it no longer writes.`;
      log.notice(`[${name}] (${old}) ${msg}`);
      throw new RoleError(CONTROL_ERROR.REFUSED, msg);
    }
    if (old === 'primary' && res.worker !== null && res.workerRole === 'primary' && res.workerReady) {
      const r = await this.#release(res, force);
      if (!r.ok && !(r.timedOut && force)) {
        const msg = r.timedOut
          ? `Not changing the role from primary to ${role}: the primary worker did not answer within ` +
            `${Math.round(this.#releaseMs() / 1000)} s when asked to remove its device; --force stops it anyway (SIGTERM, then SIGKILL).`
          : r.busy
            ? `Refusing to change the role from primary to ${role}: ${r.reason ?? 'device busy'}. The role stays primary and the device keeps ` +
              `being served. --force removes the device anyway (as upstream destroys its gate device): the file system on it loses its disk.`
            : `Not changing the role from primary to ${role}: ${r.reason ?? 'unable to remove the device'}. The role stays primary and the ` +
              `device keeps being served; --force removes what it can.`;
        log.notice(`[${name}] (${old}) ${msg}`);
        throw new RoleError(r.timedOut ? CONTROL_ERROR.WORKER_FAILED : CONTROL_ERROR.REFUSED, msg);
      }
    }
    log.info(`[${name}] (${old}) Role changed to ${role}.`);
    res.role = role;
    res.force = force;
    if (role !== 'secondary') res.discardMyData = false;
    await this.stopWorker(res);
    if (role !== 'primary') {
      res.lastError = null;
      this.hook(res.cfg, 'role', [old, role]);
      return old;
    }
    this.startWorker(res, 'primary');
    const outcome = await this.#awaitStart(res);
    if (outcome.ok) {
      res.lastError = null;
      this.hook(res.cfg, 'role', [old, role]);
      return old;
    }
    log.warning(`[${name}] (primary) Changing resource role back to init.`);
    res.role = 'init';
    res.lastError = outcome.reason;
    if (old !== 'init') this.hook(res.cfg, 'role', [old, 'init']);
    const code =
      outcome.code === WORKER_EXIT.NOINPUT
        ? CONTROL_ERROR.WORKER_NOINPUT
        : outcome.code === WORKER_EXIT.OSERR
          ? CONTROL_ERROR.WORKER_OSERR
          : outcome.code === WORKER_EXIT.PEER_PRIMARY
            ? CONTROL_ERROR.PEER_PRIMARY
            : outcome.code === WORKER_EXIT.INCONSISTENT
              ? CONTROL_ERROR.INCONSISTENT
              : CONTROL_ERROR.WORKER_FAILED;
    throw new RoleError(
      code,
      `Unable to become primary: ${outcome.reason.replace(/\.?$/, '.')} The role fell back to init.`,
    );
  }

  /** Wait for the start-up of the worker just forked by startWorker (fakes in tests set none). */
  async #awaitStart(res: ResourceState): Promise<StartOutcome> {
    const pending = res.startOutcome;
    if (pending === null) return { ok: true };
    const bound = this.opts.startTimeoutMs ?? startTimeoutMs(res.cfg);
    res.startAwaited = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const outcome = await Promise.race([
        pending,
        new Promise<null>((resolve) => {
          timer = setTimeout(() => resolve(null), bound);
        }),
      ]);
      if (outcome !== null) return outcome;
      const reason = `The primary worker did not report ready within ${bound / 1000} s; stopped it.`;
      log.error(`[${res.cfg.name}] (primary) ${reason}`);
      await this.stopWorker(res);
      return { ok: false, reason, code: CONTROL_ERROR.WORKER_FAILED };
    } finally {
      clearTimeout(timer);
      res.startAwaited = false;
    }
  }

  #releaseMs(): number {
    return this.opts.releaseTimeoutMs ?? RELEASE_TIMEOUT_MS;
  }

  /**
   * Whether the node our secondary worker is connected to still answers on the HAST link. A primary
   * whose host lost power leaves our worker connected until its receive timeout (no FIN, no RST);
   * promoting then is the failover, not a second primary. A TCP connect to the peer's listen
   * address within PEER_PROBE_MS tells the two apart (as contrib/ucarp's peer_alive does).
   */
  async #peerAnswers(res: ResourceState): Promise<boolean> {
    const name = res.cfg.name;
    const answers = await (this.opts.probePeer ?? probePeer)(res.cfg.remoteAddr, res.cfg.sourceAddr);
    if (!answers) {
      log.notice(
        `[${name}] (secondary) The connected primary does not answer on ${res.cfg.remoteAddr}: its node is down; ` +
          'dropping the stale connection.',
      );
    }
    return answers;
  }

  /** Ask the primary worker to remove its device (refused while busy unless `force`). */
  #release(
    res: ResourceState,
    force: boolean,
  ): Promise<{ ok: boolean; busy?: boolean; reason?: string; timedOut?: boolean }> {
    const w = res.worker;
    if (w === null || !w.connected) return Promise.resolve({ ok: true });
    const id = ++this.#releaseId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        res.pendingRelease.delete(id);
        resolve({ ok: false, timedOut: true });
      }, this.#releaseMs());
      res.pendingRelease.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.#send(w, { type: 'release', id, force });
    });
  }

  /** Fire an exec hook for a resource event, and report it to `hastctl events`. */
  hook(cfg: ResourceConfig, event: HookEvent, extra: readonly string[] = []): void {
    this.#reportEvent(cfg.name, event, extra);
    if (cfg.exec === '') return;
    this.opts.runHook(cfg.exec, [event, cfg.name, ...extra]);
  }

  /** A hook exited (HookRunner): `hastctl events` shows its event and exit status. */
  hookExited(argv: readonly string[], code: number | null, signal: string | null): void {
    const [, event, resource] = argv;
    if (resource === undefined) return;
    this.events.emit(resource, 'hook', { hook: event ?? '', exitcode: code, signal });
  }

  #reportEvent(name: string, event: HookEvent, extra: readonly string[]): void {
    if (!this.events.listening) return;
    if (event === 'role') {
      this.events.emit(name, 'role', { old: extra[0] ?? '', new: extra[1] ?? '' });
      return;
    }
    if (event !== 'disconnect') {
      this.events.emit(name, HOOK_TO_EVENT[event]);
      return;
    }
    // Why: the worker's view of its link to the peer.
    const res = this.resources.get(name);
    const asked = res === undefined ? Promise.resolve(null) : this.#askStatus(res);
    void asked.then((w) =>
      this.events.emit(name, 'disconnect', {
        reason: w?.peer?.reason ?? null,
        cause: w?.peer?.disconnectCause ?? w?.peer?.message ?? null,
      }),
    );
  }

  /** Fork a worker for the resource; sockets (secondary) are handed over by the caller. */
  startWorker(res: ResourceState, role: 'primary' | 'secondary'): ChildProcess {
    const script = this.opts.workerScript ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'worker.js');
    const child = fork(script, [res.cfg.name, role], {
      stdio: this.opts.foreground ? ['ignore', 'inherit', 'inherit', 'ipc'] : ['ignore', 'ignore', 'ignore', 'ipc'],
      env: workerEnv(process.env),
      serialization: 'json',
    });
    res.worker = child;
    res.workerRole = role;
    res.workerReady = role === 'secondary';
    res.stopping = false;
    res.failedReason = null;
    res.settleStart = null;
    res.startOutcome =
      role === 'primary'
        ? new Promise<StartOutcome>((resolve) => {
            res.settleStart = (o) => {
              res.settleStart = null;
              res.startOutcome = null;
              resolve(o);
            };
          })
        : null;
    child.on('message', (m: WorkerToParent) => this.#onWorkerMessage(res, child, m));
    child.on('error', (err) => log.error(`[${res.cfg.name}] Worker process error`, err));
    child.on('exit', (code, signal) => this.#onWorkerExit(res, child, code, signal));
    this.#send(child, {
      type: 'init',
      role,
      resource: res.cfg,
      debugLevel: this.opts.debugLevel,
      foreground: this.opts.foreground,
      stateDir: this.opts.stateDir,
      force: res.force,
      ...(role === 'secondary' && res.discardMyData ? { discardMyData: true } : {}),
    });
    return child;
  }

  #onWorkerMessage(res: ResourceState, child: ChildProcess, m: WorkerToParent): void {
    if (res.worker !== child) return;
    switch (m.type) {
      case 'status-reply': {
        const cb = res.pendingStatus.get(m.id);
        res.pendingStatus.delete(m.id);
        cb?.(m.status);
        break;
      }
      case 'event':
        this.hook(res.cfg, m.event, m.args);
        break;
      case 'ready':
        res.workerReady = true;
        res.settleStart?.({ ok: true });
        break;
      case 'failed':
        res.failedReason = { reason: m.reason, code: m.code };
        break;
      case 'discarded':
        res.discardMyData = false;
        break;
      case 'command-reply': {
        const cb = res.pendingCommand.get(m.id);
        res.pendingCommand.delete(m.id);
        cb?.(m.reply);
        break;
      }
      case 'release-reply': {
        const cb = res.pendingRelease.get(m.id);
        res.pendingRelease.delete(m.id);
        cb?.({
          ok: m.ok,
          ...(m.busy !== undefined ? { busy: m.busy } : {}),
          ...(m.reason !== undefined ? { reason: m.reason } : {}),
        });
        break;
      }
    }
  }

  #onWorkerExit(res: ResourceState, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (res.worker !== child) return;
    const role = res.workerRole;
    res.worker = null;
    res.workerRole = null;
    for (const cb of res.pendingStatus.values()) cb(null);
    res.pendingStatus.clear();
    for (const cb of res.pendingRelease.values()) cb({ ok: true });
    res.pendingRelease.clear();
    for (const cb of res.pendingCommand.values()) cb({ ok: false, reason: 'The worker exited.' });
    res.pendingCommand.clear();
    const name = res.cfg.name;
    const why =
      res.failedReason?.reason ??
      (signal !== null
        ? `Worker process killed (signal=${signal}).`
        : `Worker process exited (pid=${child.pid}, exitcode=${code}).`);
    const starting = res.startAwaited;
    res.settleStart?.({ ok: false, reason: why, code: res.failedReason?.code ?? code ?? CONTROL_ERROR.WORKER_FAILED });
    // setRole waits for this start and falls back to init itself: no restart, no second fallback.
    if (starting || res.stopping || this.#shuttingDown) return;
    if (role === 'secondary') {
      log.debug(1, `[${name}] Secondary worker exited (code=${code ?? '-'}, signal=${signal ?? '-'}).`);
      return;
    }
    if (signal !== null || code === WORKER_EXIT.TEMPFAIL) {
      log.warning(
        `[${name}] (primary) Worker process ${signal !== null ? `killed (signal=${signal})` : `exited ungracefully (pid=${child.pid}, exitcode=${code})`}.`,
      );
      res.lastError = why;
      res.restartTimer = setTimeout(() => {
        res.restartTimer = null;
        if (res.role === 'primary' && res.worker === null && !this.#shuttingDown) {
          log.info(`[${name}] (primary) Restarting worker process.`);
          this.#restarts.set(name, (this.#restarts.get(name) ?? 0) + 1);
          this.startWorker(res, 'primary');
        }
      }, RESTART_DELAY_MS);
      return;
    }
    if (code !== 0) {
      log.error(`[${name}] (primary) Worker process exited ungracefully (pid=${child.pid}, exitcode=${code}).`);
    }
    // Upstream falls back to init without a role hook (HAST-SPEC §11.17); we run the hook.
    log.warning(`[${name}] (primary) Changing resource role back to init.`);
    res.role = 'init';
    res.lastError = why;
    this.hook(res.cfg, 'role', ['primary', 'init']);
  }

  /**
   * Stop a resource's worker and wait until it has exited: SIGTERM (SIGINT for a secondary), then
   * SIGKILL when it is still there after the stop bound (a worker stuck on a lost request must not
   * wedge role changes, reloads and peer accepts, which wait behind this).
   */
  async stopWorker(res: ResourceState): Promise<void> {
    if (res.restartTimer !== null) {
      clearTimeout(res.restartTimer);
      res.restartTimer = null;
    }
    const w = res.worker;
    if (w === null) return;
    res.stopping = true;
    const bound = this.opts.stopTimeoutMs ?? STOP_TIMEOUT_MS;
    const signal = res.workerRole === 'secondary' ? 'SIGINT' : 'SIGTERM';
    await new Promise<void>((resolve) => {
      if (w.exitCode !== null || w.signalCode !== null) {
        resolve();
        return;
      }
      const timer = setTimeout(() => {
        log.warning(
          `[${res.cfg.name}] (${res.workerRole ?? res.role}) Worker process (pid=${w.pid ?? 0}) did not exit within ${bound / 1000} s of ${signal}; killing it (SIGKILL).`,
        );
        try {
          w.kill('SIGKILL');
        } catch {
          // gone meanwhile
        }
      }, bound);
      w.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      w.kill(signal);
    });
    res.stopping = false;
  }

  /** Hand accepted peer sockets to a (new) secondary worker. */
  sendToWorker(child: ChildProcess, msg: ParentToWorker, handle?: Socket): void {
    this.#send(child, msg, handle);
  }

  /** SIGHUP: reload per HAST-SPEC §10.3. */
  async reload(): Promise<void> {
    let next: HastConfig;
    try {
      next = this.opts.reloadConfig();
    } catch (err) {
      log.error('Configuration not reloaded', err);
      return;
    }
    await this.serialize(async () => {
      const d = diffConfig(this.cfg, next);
      const listenChanged = this.#peers !== null && d.listenChanged;
      if (listenChanged) {
        try {
          await this.#peers?.update(next.listen);
        } catch (err) {
          log.error('Configuration not reloaded', err);
          return;
        }
      }
      if (d.controlChanged) {
        let fresh: Server;
        try {
          fresh = await listenControlSocket(next.controlPath, next.controlGroup, (sock) => void this.#onControl(sock));
        } catch (err) {
          log.error('Configuration not reloaded', err);
          if (listenChanged) await this.#peers?.update(this.cfg.listen).catch(() => undefined);
          return;
        }
        closeControl(this.#control, this.cfg.controlPath);
        this.#control = fresh;
        log.info(`Control socket changed from ${this.cfg.controlAddr} to ${next.controlAddr}.`);
      }
      if (d.pidFileChanged) this.opts.pidfileChanged?.(next.pidFile);
      if (next.metrics !== this.cfg.metrics) {
        this.#metrics?.close();
        this.#metrics = null;
        if (next.metrics !== null) {
          try {
            this.#metrics = await this.#listenMetrics(next.metrics);
          } catch (err) {
            log.error(`Unable to serve metrics on ${next.metrics}`, err);
          }
        }
      }
      for (const [name, res] of [...this.resources]) {
        if (d.resources.get(name)?.kind !== 'removed') continue;
        try {
          await this.setRole(res, 'init');
        } catch (err) {
          if (!(err instanceof RoleError)) throw err;
          log.warning(`[${name}] Resource not removed: ${err.message}`);
          continue;
        }
        this.resources.delete(name);
        log.info(`Resource ${name} removed.`);
      }
      for (const rc of next.resources) {
        const change = d.resources.get(rc.name);
        const res = this.resources.get(rc.name);
        if (change === undefined) continue;
        if (res === undefined) {
          this.resources.set(rc.name, new ResourceState(rc));
          log.info(`Resource ${rc.name} added.`);
          continue;
        }
        const action = reloadAction(change, res.role);
        if (action === 'none') continue;
        const oldCfg = res.cfg;
        res.cfg = rc;
        // A resource in init runs nothing: restarting it only means taking the new config.
        if (action === 'restart' && res.role !== 'init') {
          const role = res.role;
          try {
            await this.setRole(res, 'init');
          } catch (err) {
            if (!(err instanceof RoleError)) throw err;
            res.cfg = oldCfg;
            log.warning(`[${rc.name}] Resource not restarted with its new configuration: ${err.message}`);
            continue;
          }
          try {
            await this.setRole(res, role);
          } catch (err) {
            if (!(err instanceof RoleError)) throw err;
            log.error(`[${rc.name}] Unable to restart the resource as ${role}: ${err.message}`);
          }
        } else if (action === 'reload' && res.worker !== null) {
          log.info(`[${rc.name}] Resource ${rc.name} configuration was modified, reloading it.`);
          this.#send(res.worker, { type: 'reload', resource: rc });
        }
      }
      this.cfg = next;
      log.info('Configuration reloaded.');
    });
  }

  /**
   * SIGTERM/SIGINT: stop every worker and the control socket, then resolve. Safe order: no new
   * peer connections; each primary removes its device first, which is refused while a file
   * system is mounted on it or a process holds it open: we then keep serving it (the control
   * socket stays up, role changes are refused), say so at warning and look again every second.
   * A second signal forces the removal (as upstream's forced gate destroy). Then the workers are
   * stopped (SIGKILL after the stop bound). Calling it again returns the same promise.
   */
  shutdown(): Promise<void> {
    if (this.#shutdownP !== null) {
      if (!this.#forceStop) {
        this.#forceStop = true;
        log.warning('Second termination signal received: removing devices even if they are in use.');
        this.#forced();
      }
      return this.#shutdownP;
    }
    this.#shutdownP = this.#shutdown();
    return this.#shutdownP;
  }

  async #shutdown(): Promise<void> {
    this.#shuttingDown = true;
    log.info('Termination signal received, exiting.');
    this.#peers?.close();
    this.#metrics?.close();
    await Promise.all([...this.resources.values()].map((res) => this.#releaseForShutdown(res)));
    closeControl(this.#control, this.cfg.controlPath);
    const waits: Promise<void>[] = [];
    for (const res of this.resources.values()) waits.push(this.stopWorker(res));
    await Promise.all(waits);
    this.events.close();
  }

  async #releaseForShutdown(res: ResourceState): Promise<void> {
    let warned = false;
    while (res.worker !== null && res.workerRole === 'primary' && res.workerReady) {
      const r = await this.#release(res, this.#forceStop);
      if (r.ok || r.timedOut === true) return;
      if (r.busy !== true) {
        log.error(
          `[${res.cfg.name}] (primary) ${r.reason ?? 'Unable to remove the device'}; stopping the worker anyway.`,
        );
        return;
      }
      if (!warned) {
        log.warning(
          `[${res.cfg.name}] (primary) Shutdown waits: ${r.reason ?? 'device busy'}. hastd keeps serving it until it is unmounted; ` +
            'a second SIGTERM removes it anyway.',
        );
        warned = true;
      }
      await Promise.race([
        this.#forcedP,
        new Promise((resolve) => setTimeout(resolve, this.opts.busyPollMs ?? BUSY_POLL_MS)),
      ]);
    }
  }
}

const HOOK_TO_EVENT: Readonly<Record<Exclude<HookEvent, 'role' | 'disconnect'>, EventKind>> = {
  connect: 'connect',
  syncstart: 'sync-start',
  syncdone: 'sync-done',
  syncintr: 'sync-interrupted',
  'split-brain': 'split-brain',
};

function isEventsRequest(req: unknown): req is { cmd: 'events'; resources: string[] } {
  const r = req as { cmd?: unknown; resources?: unknown } | null;
  return (
    r !== null &&
    typeof r === 'object' &&
    r.cmd === 'events' &&
    Array.isArray(r.resources) &&
    r.resources.length > 0 &&
    r.resources.every((n) => typeof n === 'string')
  );
}

/** How long the failover probe of #peerAnswers waits for the peer's listener. */
const PEER_PROBE_MS = 1500;

/** True when a TCP connection to the peer's HAST listen address opens within PEER_PROBE_MS. */
export function probePeer(remoteAddr: string, sourceAddr: string | null): Promise<boolean> {
  let remote: ReturnType<typeof parsePeerAddress>;
  let source: ReturnType<typeof parsePeerAddress> | null;
  try {
    remote = parsePeerAddress(remoteAddr);
    source = sourceAddr !== null ? parsePeerAddress(sourceAddr, 0) : null;
  } catch {
    // `remote none` or unparsable: nothing to ask, count it as answering (refuse, as before).
    return Promise.resolve(true);
  }
  return new Promise((resolve) => {
    const sock = connect({
      host: remote.host,
      port: remote.port,
      ...(remote.family !== 0 ? { family: remote.family } : {}),
      ...(source !== null ? { localAddress: source.host } : {}),
    });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), PEER_PROBE_MS);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

function closeControl(server: Server | null, path: string): void {
  if (server === null) return;
  server.close();
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}
