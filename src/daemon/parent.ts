// The hastd parent: configuration, control socket, roles, worker supervision, hooks, reload.
// HAST-SPEC §5.2–5.4 (roles and workers), §10 (lifecycle, signals, reload), §2.8 (control).
import { fork, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { diffConfig, reloadAction } from '../config/diff.js';
import type { HastConfig, ResourceConfig } from '../config/types.js';
import {
  CONTROL_ERROR,
  ROLES,
  type ControlReply,
  type ControlRequest,
  type ResourceStatus,
  type Role,
  type WorkerStatus,
} from '../control/messages.js';
import { readLine } from '../control/wire.js';
import { log } from '../log/log.js';
import type { PeerListeners } from './listen.js';
import { type PeerParent, ResourceState } from './resource-state.js';
import type { HookEvent, ParentToWorker, WorkerToParent } from './worker-ipc.js';
import { WORKER_EXIT } from './worker-ipc.js';

/** How long a worker may take to answer a status query before it is reported as an error. */
const STATUS_TIMEOUT_MS = 5000;
/** Delay before a crashed primary worker is restarted (upstream: 1 s). */
const RESTART_DELAY_MS = 1000;

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

export class HastdParent implements PeerParent {
  cfg: HastConfig;
  readonly opts: ParentOptions;
  readonly resources = new Map<string, ResourceState>();
  #control: Server | null = null;
  #peers: PeerListeners | null = null;
  #statusId = 0;
  #shuttingDown = false;
  /** Serialises role changes and reloads (upstream's parent is single-threaded). */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(cfg: HastConfig, opts: ParentOptions) {
    this.cfg = cfg;
    this.opts = opts;
    for (const r of cfg.resources) this.resources.set(r.name, new ResourceState(r));
  }

  async start(): Promise<void> {
    this.#control = await listenControl(this.cfg.controlPath, (sock) => this.#onControl(sock));
    if (this.opts.startPeerListeners !== undefined) {
      this.#peers = await this.opts.startPeerListeners(this);
    }
    log.info('Started successfully, running protocol version 2.');
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
      reply = await this.handleRequest(req);
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
    if (req.cmd !== 'role' && req.cmd !== 'status') {
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
      const out: ResourceStatus[] = [];
      for (const name of expanded) {
        const res = this.resources.get(name);
        if (res === undefined) {
          out.push({ name, error: CONTROL_ERROR.NO_SUCH_RESOURCE });
          continue;
        }
        const previous = await this.serialize(() => this.setRole(res, role as Role));
        out.push({ name, previousRole: previous, role: res.role });
      }
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

  async statusOf(res: ResourceState): Promise<ResourceStatus> {
    const c = res.cfg;
    const worker = res.worker !== null ? await this.#askStatus(res) : null;
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
      worker,
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

  /** Change a resource's role (HAST-SPEC §5.3). Returns the previous role. */
  async setRole(res: ResourceState, role: Role): Promise<Role> {
    const old = res.role;
    if (old === role) {
      log.debug(1, `[${res.cfg.name}] Role unchanged (${role}).`);
      return old;
    }
    log.info(`[${res.cfg.name}] (${old}) Role changed to ${role}.`);
    res.role = role;
    await this.stopWorker(res);
    if (role === 'primary') this.startWorker(res, 'primary');
    this.hook(res.cfg, 'role', [old, role]);
    return old;
  }

  /** Fire an exec hook for a resource event. */
  hook(cfg: ResourceConfig, event: HookEvent, extra: readonly string[] = []): void {
    if (cfg.exec === '') return;
    this.opts.runHook(cfg.exec, [event, cfg.name, ...extra]);
  }

  /** Fork a worker for the resource; sockets (secondary) are handed over by the caller. */
  startWorker(res: ResourceState, role: 'primary' | 'secondary'): ChildProcess {
    const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'worker.js');
    const child = fork(script, [res.cfg.name, role], {
      stdio: this.opts.foreground ? ['ignore', 'inherit', 'inherit', 'ipc'] : ['ignore', 'ignore', 'ignore', 'ipc'],
      env: workerEnv(process.env),
      serialization: 'json',
    });
    res.worker = child;
    res.workerRole = role;
    res.workerReady = role === 'secondary';
    res.stopping = false;
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
        break;
    }
  }

  #onWorkerExit(res: ResourceState, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (res.worker !== child) return;
    const role = res.workerRole;
    res.worker = null;
    res.workerRole = null;
    for (const cb of res.pendingStatus.values()) cb(null);
    res.pendingStatus.clear();
    const name = res.cfg.name;
    if (res.stopping || this.#shuttingDown) return;
    if (role === 'secondary') {
      log.debug(1, `[${name}] Secondary worker exited (code=${code ?? '-'}, signal=${signal ?? '-'}).`);
      return;
    }
    if (signal !== null || code === WORKER_EXIT.TEMPFAIL) {
      log.warning(
        `[${name}] (primary) Worker process ${signal !== null ? `killed (signal=${signal})` : `exited ungracefully (pid=${child.pid}, exitcode=${code})`}.`,
      );
      res.restartTimer = setTimeout(() => {
        res.restartTimer = null;
        if (res.role === 'primary' && res.worker === null && !this.#shuttingDown) {
          log.info(`[${name}] (primary) Restarting worker process.`);
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
    this.hook(res.cfg, 'role', ['primary', 'init']);
  }

  /** Stop a resource's worker (SIGTERM) and wait until it has exited. */
  async stopWorker(res: ResourceState): Promise<void> {
    if (res.restartTimer !== null) {
      clearTimeout(res.restartTimer);
      res.restartTimer = null;
    }
    const w = res.worker;
    if (w === null) return;
    res.stopping = true;
    await new Promise<void>((resolve) => {
      if (w.exitCode !== null || w.signalCode !== null) {
        resolve();
        return;
      }
      w.once('exit', () => resolve());
      w.kill(res.workerRole === 'secondary' ? 'SIGINT' : 'SIGTERM');
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
          fresh = await listenControl(next.controlPath, (sock) => this.#onControl(sock));
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
      for (const [name, res] of [...this.resources]) {
        if (d.resources.get(name)?.kind !== 'removed') continue;
        await this.setRole(res, 'init');
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
        res.cfg = rc;
        // A resource in init runs nothing: restarting it only means taking the new config.
        if (action === 'restart' && res.role !== 'init') {
          const role = res.role;
          await this.setRole(res, 'init');
          await this.setRole(res, role);
        } else if (action === 'reload' && res.worker !== null) {
          log.info(`[${rc.name}] Resource ${rc.name} configuration was modified, reloading it.`);
          this.#send(res.worker, { type: 'reload', resource: rc });
        }
      }
      this.cfg = next;
    });
  }

  /** SIGTERM/SIGINT: stop every worker and the control socket, then resolve. */
  async shutdown(): Promise<void> {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    log.info('Termination signal received, exiting.');
    this.#peers?.close();
    closeControl(this.#control, this.cfg.controlPath);
    const waits: Promise<void>[] = [];
    for (const res of this.resources.values()) waits.push(this.stopWorker(res));
    await Promise.all(waits);
  }
}

async function listenControl(path: string, onConn: (s: Socket) => void): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true });
  try {
    unlinkSync(path);
  } catch {
    // No stale socket.
  }
  const server = createServer((sock) => onConn(sock));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  return server;
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
