// Runs `exec` hooks the way upstream hooks.c does: no shell, no PATH search, never waited for by
// the caller; reports long-running, failed and killed hooks. HAST-SPEC §9.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { resolve } from 'node:path';
import { log } from '../log/log.js';
import type { HookEvent } from './events.js';

/** How often running hooks are checked (upstream: the parent's 5 s select tick). */
const HOOK_CHECK_INTERVAL_MS = 5_000;
/** Report a hook still running after this long, and again at most this often (REPORT_INTERVAL). */
const HOOK_REPORT_INTERVAL_S = 60;

interface RunningHook {
  readonly pid: number;
  /** Exec path and arguments joined by spaces, as upstream's hp_comm. */
  readonly comm: string;
  /** Seconds (clock of the runner), like upstream's time_t birth and last-report times. */
  readonly birth: number;
  lastReport: number;
}

export interface HookRunnerOptions {
  /** Foreground (-F): the hook inherits our stdout/stderr; otherwise all its stdio is /dev/null. */
  readonly foreground: boolean;
  /** Clock in milliseconds; tests inject one to exercise the long-running report. */
  readonly now?: () => number;
  /** Told when a hook exits (argv as run: exec path first), for `hastctl events`. */
  readonly onExit?: (argv: readonly string[], code: number | null, signal: NodeJS.Signals | null) => void;
}

/**
 * Starts hook processes and watches them until they exit. One per hastd parent.
 *
 * Upstream: hook_execv forks and execv()s without a shell; the event is acknowledged as soon as
 * the fork is done. We likewise return right after spawn(): hooks never block the caller and may
 * overlap.
 */
export class HookRunner {
  readonly #foreground: boolean;
  readonly #now: () => number;
  readonly #exited: HookRunnerOptions['onExit'];
  readonly #hooks = new Map<number, RunningHook>();
  readonly #idle: Array<() => void> = [];
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(opts: HookRunnerOptions) {
    this.#foreground = opts.foreground;
    this.#now = opts.now ?? Date.now;
    this.#exited = opts.onExit;
  }

  /** Number of hooks started and not yet exited. */
  get running(): number {
    return this.#hooks.size;
  }

  /**
   * Run `exec` with argv[1..] = `[event, ...args]` (or the given argv array). An empty `exec` means
   * no hooks are configured: nothing happens. A relative path is taken relative to `/`, as for the
   * daemonised upstream. Returns the hook's pid, or null when nothing was started. Never throws:
   * spawn failures are logged.
   */
  run(exec: string, argv: readonly string[]): number | null;
  run(exec: string, event: HookEvent, ...args: string[]): number | null;
  run(exec: string, eventOrArgv: HookEvent | readonly string[], ...rest: string[]): number | null {
    if (exec === '') return null;
    const args = typeof eventOrArgv === 'string' ? [eventOrArgv, ...rest] : [...eventOrArgv];
    const path = resolve('/', exec);
    const comm = [path, ...args].join(' ');
    log.debug(1, `Executing hook: ${comm}`);
    const stdio: StdioOptions = this.#foreground ? ['ignore', 'inherit', 'inherit'] : 'ignore';
    let child: ChildProcess;
    try {
      // shell:false and an absolute path: execve(path, argv) with no interpretation of the args.
      child = spawn(path, args, { shell: false, stdio, argv0: path });
    } catch (err) {
      log.error(`Unable to execute ${path}`, err);
      return null;
    }
    const pid = child.pid;
    if (pid === undefined) {
      // ENOENT/EACCES arrive as an 'error' event right after a failed spawn.
      child.once('error', (err) => log.error(`Unable to execute ${path}`, err));
      return null;
    }
    child.on('error', (err) => log.error(`Hook error (pid=${pid}, cmd=[${comm}])`, err));
    const nowS = this.#seconds();
    this.#hooks.set(pid, { pid, comm, birth: nowS, lastReport: nowS });
    child.once('exit', (code, signal) => {
      this.#onExit(pid, code, signal);
      this.#exited?.([path, ...args], code, signal);
    });
    this.#ensureTimer();
    return pid;
  }

  /**
   * Report hooks running for a long time (upstream hook_check): every 60 s per hook at most,
   * "Hook is running for N seconds (pid=.., cmd=[...])." Called by the 5 s timer; public for tests.
   */
  check(): void {
    const now = this.#seconds();
    for (const hp of this.#hooks.values()) {
      if (!isAlive(hp.pid)) {
        log.warning(`Hook disappeared (pid=${hp.pid}, cmd=[${hp.comm}]).`);
        this.#forget(hp.pid);
        continue;
      }
      if (now - hp.lastReport < HOOK_REPORT_INTERVAL_S) continue;
      log.warning(`Hook is running for ${now - hp.birth} seconds (pid=${hp.pid}, cmd=[${hp.comm}]).`);
      hp.lastReport = now;
    }
  }

  /** Resolves once no hook is running (shutdown, tests). Hooks are never killed. */
  idle(): Promise<void> {
    if (this.#hooks.size === 0) return Promise.resolve();
    return new Promise((done) => this.#idle.push(done));
  }

  /** Stop the periodic check. Running hooks keep running and are still reported when they exit. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  #seconds(): number {
    return Math.floor(this.#now() / 1000);
  }

  #ensureTimer(): void {
    if (this.#timer !== null || this.#closed) return;
    this.#timer = setInterval(() => this.check(), HOOK_CHECK_INTERVAL_MS);
    // The check alone must not keep a daemon (or a test) alive; running hooks do that themselves.
    this.#timer.unref();
  }

  #onExit(pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    const hp = this.#hooks.get(pid);
    if (hp === undefined) return;
    this.#forget(pid);
    if (code === 0) {
      log.debug(1, `Hook exited gracefully (pid=${pid}, cmd=[${hp.comm}]).`);
    } else if (signal !== null) {
      const signo = osConstants.signals[signal] ?? -1;
      log.error(`Hook was killed (pid=${pid}, signal=${signo}, cmd=[${hp.comm}]).`);
    } else {
      log.error(`Hook exited ungracefully (pid=${pid}, exitcode=${code ?? -1}, cmd=[${hp.comm}]).`);
    }
  }

  #forget(pid: number): void {
    this.#hooks.delete(pid);
    if (this.#hooks.size > 0) return;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const done of this.#idle.splice(0)) done();
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
