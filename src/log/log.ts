// Logging facade in upstream pjdlog's shape: "[LEVEL] [resource] (role) message: errno text."
// Foreground (-F) writes to stderr; a daemon sends the same lines to syslog through logger(1)
// (which reaches journald or syslogd), falling back to stderr when logger is missing.
import { spawn, type ChildProcess } from 'node:child_process';

export type LogLevel = 'ERROR' | 'WARNING' | 'NOTICE' | 'INFO' | 'DEBUG';

const SYSLOG_PRIO: Record<LogLevel, number> = { ERROR: 3, WARNING: 4, NOTICE: 5, INFO: 6, DEBUG: 7 };
const FACILITY_DAEMON = 3 << 3;

interface LogState {
  debugLevel: number;
  foreground: boolean;
  prefix: string;
  ident: string;
  logger: ChildProcess | null;
}

const state: LogState = { debugLevel: 0, foreground: true, prefix: '', ident: 'hastd', logger: null };

/** Configure the sink once at start-up (parent) or in a worker (inherits the parent's choice). */
export function logInit(opts: { foreground: boolean; debugLevel: number; ident?: string }): void {
  state.foreground = opts.foreground;
  state.debugLevel = opts.debugLevel;
  if (opts.ident !== undefined) state.ident = opts.ident;
  if (!state.foreground && state.logger === null) {
    const child = spawn('logger', ['--prio-prefix', '-t', state.ident, `--id=${process.pid}`], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    child.on('error', () => {
      state.logger = null;
    });
    child.stdin?.on('error', () => {
      state.logger = null;
    });
    child.unref();
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    state.logger = child;
  }
}
/** Set the per-context prefix, e.g. logPrefix('mirror', 'primary') → "[mirror] (primary) ". */
export function logPrefix(resource: string | null, role?: string): void {
  state.prefix = resource === null ? '' : `[${resource}] (${role ?? 'init'}) `;
}

export function debugLevel(): number {
  return state.debugLevel;
}

function emit(level: LogLevel, message: string, debugN?: number): void {
  const tag = level === 'DEBUG' ? `[DEBUG][${debugN ?? 1}]` : `[${level}]`;
  const text = `${state.prefix}${message}`;
  const logger = state.logger;
  if (state.foreground || logger === null || logger.stdin === null) {
    process.stderr.write(`${tag} ${text}\n`);
    return;
  }
  logger.stdin.write(`<${FACILITY_DAEMON | SYSLOG_PRIO[level]}>${text}\n`);
}

function withErr(message: string, err?: unknown): string {
  if (err === undefined) return message.endsWith('.') ? message : `${message}.`;
  const detail = err instanceof Error ? err.message : String(err);
  const base = message.endsWith('.') ? message.slice(0, -1) : message;
  return `${base}: ${detail}.`;
}

export const log = {
  error(message: string, err?: unknown): void {
    emit('ERROR', withErr(message, err));
  },
  warning(message: string, err?: unknown): void {
    emit('WARNING', withErr(message, err));
  },
  info(message: string): void {
    emit('INFO', withErr(message));
  },
  notice(message: string): void {
    emit('NOTICE', withErr(message));
  },
  /** Debug line at level n; callers on the data path check debugLevel() first. */
  debug(n: number, message: string): void {
    if (state.debugLevel >= n) emit('DEBUG', message, n);
  },
};
