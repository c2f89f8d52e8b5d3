// Logging facade in upstream pjdlog's shape: "[LEVEL] [resource] (role) message: errno text."
// Foreground (-F) writes to stderr, each line led by its time (ISO 8601, UTC) unless stderr is the
// journal (systemd sets JOURNAL_STREAM), which stamps lines itself; a daemon sends the same lines
// to syslog through logger(1) (which reaches journald or syslogd), falling back to stderr when
// logger is missing. While a daemon starts, its lines go to both (`alsoSyslog`): the terminal that
// started it sees why it failed, and syslog keeps it.
import { spawn, type ChildProcess } from 'node:child_process';
import { fstatSync } from 'node:fs';

export type LogLevel = 'ERROR' | 'WARNING' | 'NOTICE' | 'INFO' | 'DEBUG';

const SYSLOG_PRIO: Record<LogLevel, number> = { ERROR: 3, WARNING: 4, NOTICE: 5, INFO: 6, DEBUG: 7 };
const FACILITY_DAEMON = 3 << 3;

interface LogState {
  debugLevel: number;
  foreground: boolean;
  prefix: string;
  ident: string;
  logger: ChildProcess | null;
  /** Foreground lines also to syslog (a daemon still starting). */
  alsoSyslog: boolean;
  /** Lead foreground lines with the time. */
  timestamps: boolean;
}

const state: LogState = {
  debugLevel: 0,
  foreground: true,
  prefix: '',
  ident: 'hastd',
  logger: null,
  alsoSyslog: false,
  // Until logInit (hastd, its workers): plain lines, as library users and unit tests read them.
  timestamps: false,
};

/** True when stderr is the systemd journal's stream (JOURNAL_STREAM is "device:inode" of it). */
function stderrIsJournal(): boolean {
  const js = process.env.JOURNAL_STREAM;
  if (js === undefined || js === '') return false;
  try {
    const st = fstatSync(2);
    return js === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

/** Configure the sink once at start-up (parent) or in a worker (inherits the parent's choice). */
export function logInit(opts: { foreground: boolean; debugLevel: number; ident?: string; alsoSyslog?: boolean }): void {
  state.foreground = opts.foreground;
  state.debugLevel = opts.debugLevel;
  state.alsoSyslog = opts.alsoSyslog === true;
  state.timestamps = !stderrIsJournal();
  if (opts.ident !== undefined) state.ident = opts.ident;
  if ((!state.foreground || state.alsoSyslog) && state.logger === null) {
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
  const toSyslog = logger !== null && logger.stdin !== null && (!state.foreground || state.alsoSyslog);
  if (state.foreground || !toSyslog) {
    process.stderr.write(`${state.timestamps ? `${new Date().toISOString()} ` : ''}${tag} ${text}\n`);
  }
  if (toSyslog) logger.stdin?.write(`<${FACILITY_DAEMON | SYSLOG_PRIO[level]}>${text}\n`);
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
