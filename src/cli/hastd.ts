#!/usr/bin/env node
// hastd: the HAST daemon (HAST-SPEC §10.1). Parses options and the configuration, daemonises unless
// -F, holds the pidfile, and runs the parent (src/daemon/parent.ts) until SIGTERM/SIGINT.
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../config/index.js';
import { ConfigError } from '../config/errors.js';
import type { HastConfig } from '../config/types.js';
import { HastdParent } from '../daemon/parent.js';
import { startPeerListeners } from '../daemon/listen.js';
import { acquirePidfile, PidfileError } from '../daemon/pidfile.js';
import { HookRunner } from '../hooks/exec.js';
import { log, logInit } from '../log/log.js';
import { EX } from '../util/sysexits.js';
import { packageVersion } from '../util/version.js';
import { checkConfig } from './check.js';
import { HASTD_USAGE } from './usage.js';

const DEFAULT_CONFIG = '/etc/hast.conf';
const DAEMON_ENV = 'HASTD_DAEMON_CHILD';

interface Options {
  readonly config: string;
  readonly debug: number;
  readonly foreground: boolean;
  readonly pidfile: string | undefined;
  readonly node: string | undefined;
  readonly version: boolean;
  /** -n: check the configuration and the local components, then exit (hastctl check). */
  readonly check: boolean;
}

function parseOptions(argv: readonly string[]): Options | null {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string', short: 'c' },
        debug: { type: 'boolean', short: 'd', multiple: true },
        foreground: { type: 'boolean', short: 'F' },
        help: { type: 'boolean', short: 'h' },
        pidfile: { type: 'string', short: 'P' },
        node: { type: 'string' },
        version: { type: 'boolean', short: 'V' },
        check: { type: 'boolean', short: 'n' },
      },
    });
    if (values.help === true || positionals.length > 0) return null;
    return {
      config: resolve(values.config ?? DEFAULT_CONFIG),
      debug: values.debug?.length ?? 0,
      foreground: values.foreground === true,
      pidfile: values.pidfile,
      node: values.node,
      version: values.version === true,
      check: values.check === true,
    };
  } catch (err) {
    process.stderr.write(`hastd: ${(err as Error).message}\n`);
    return null;
  }
}

/** Re-run ourselves detached; return once the child reports start-up success or failure. */
function daemonize(argv: readonly string[]): Promise<number> {
  const script = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [...process.execArgv, script, ...argv], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, [DAEMON_ENV]: '1' },
  });
  child.stderr?.pipe(process.stderr);
  return new Promise((done) => {
    child.on('message', (m: { type?: string }) => {
      if (m.type === 'started') {
        child.stderr?.unpipe(process.stderr);
        child.stderr?.destroy();
        child.disconnect();
        child.unref();
        done(0);
      }
    });
    child.on('exit', (code) => done(code ?? EX.SOFTWARE));
  });
}

async function main(argv: readonly string[]): Promise<number> {
  const opts = parseOptions(argv);
  if (opts === null) {
    process.stderr.write(HASTD_USAGE);
    return EX.USAGE;
  }
  if (opts.version) {
    process.stdout.write(`hastd ${packageVersion()}\n`);
    return 0;
  }
  if (opts.check) return checkConfig(opts.config, opts.node);
  const isDaemonChild = process.env[DAEMON_ENV] === '1';
  if (!opts.foreground && !isDaemonChild) return daemonize(argv);

  // A daemon still starting: its lines to the terminal that started it and to syslog.
  logInit({ foreground: true, debugLevel: opts.debug, alsoSyslog: isDaemonChild });
  const load = (): HastConfig =>
    loadConfig(opts.config, { checkFiles: true, ...(opts.node === undefined ? {} : { nodeName: opts.node }) });
  let cfg: HastConfig;
  try {
    cfg = load();
  } catch (err) {
    if (err instanceof ConfigError) {
      log.error(err.message);
      return err.exitCode;
    }
    throw err;
  }

  // Upstream: a pidfile only when daemonising or when -P is given.
  let pidfile: { readonly path: string; release(): void } | null = null;
  const pidPath = opts.pidfile ?? (opts.foreground ? undefined : cfg.pidFile);
  if (pidPath !== undefined) {
    try {
      pidfile = acquirePidfile(pidPath);
    } catch (err) {
      if (err instanceof PidfileError) {
        log.error(err.message);
        return EX.TEMPFAIL;
      }
      log.warning(`Unable to open or create pidfile ${pidPath}`, err);
    }
  }

  let parent: HastdParent | null = null;
  const hooks = new HookRunner({
    foreground: opts.foreground,
    onExit: (hookArgv, code, signal) => parent?.hookExited(hookArgv, code, signal),
  });
  parent = new HastdParent(cfg, {
    debugLevel: opts.debug,
    foreground: opts.foreground,
    stateDir: process.env.HASTD_STATE_DIR ?? `${dirname(cfg.controlPath)}/hastd-state`,
    reloadConfig: load,
    runHook: (exec, args) => hooks.run(exec, args),
    startPeerListeners,
    // Upstream follows a changed `pidfile` only when it chose the path itself (daemonised, no -P).
    pidfileChanged: (path) => {
      if (opts.pidfile !== undefined || opts.foreground) return;
      try {
        const fresh = acquirePidfile(path);
        const old = pidfile;
        pidfile = fresh;
        old?.release();
        log.info(`Pidfile changed from ${old?.path ?? '(none)'} to ${path}.`);
      } catch (err) {
        log.warning(`Unable to open or create pidfile ${path}`, err);
      }
    },
  });
  const hastd = parent;
  try {
    await hastd.start();
  } catch (err) {
    log.error('Unable to start hastd', err);
    pidfile?.release();
    return EX.OSERR;
  }
  if (isDaemonChild) {
    logInit({ foreground: false, debugLevel: opts.debug });
    process.send?.({ type: 'started' });
    process.disconnect?.();
  }

  return new Promise((done) => {
    // The first SIGTERM/SIGINT starts the shutdown (which waits for busy devices to be
    // unmounted); a second one makes it remove them anyway (HastdParent.shutdown).
    let stopping = false;
    const stop = (): void => {
      if (stopping) {
        void hastd.shutdown();
        return;
      }
      stopping = true;
      hastd.shutdown().then(
        () => {
          hooks.close();
          pidfile?.release();
          done(0);
        },
        (err: unknown) => {
          log.error('Shutdown failed', err);
          pidfile?.release();
          done(EX.SOFTWARE);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      hastd.reload().catch((err: unknown) => log.error('Configuration not reloaded', err));
    });
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`hastd: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(EX.SOFTWARE);
  },
);
