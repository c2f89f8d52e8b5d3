// Logging facade in upstream pjdlog's shape: "[LEVEL] [resource] (role) message: errno text."
// Foreground (-F) writes to stderr; otherwise lines go to syslog via logger(1)/journald (stderr is
// captured by the service manager when no syslog socket exists).
import { createConnection, type Socket } from 'node:net';
import { existsSync } from 'node:fs';

export type LogLevel = 'ERROR' | 'WARNING' | 'NOTICE' | 'INFO' | 'DEBUG';

const SYSLOG_PRIO: Record<LogLevel, number> = { ERROR: 3, WARNING: 4, NOTICE: 5, INFO: 6, DEBUG: 7 };
const FACILITY_DAEMON = 3 << 3;

interface LogState {
  debugLevel: number;
  foreground: boolean;
  prefix: string;
  ident: string;
  syslog: Socket | null;
}

const state: LogState = { debugLevel: 0, foreground: true, prefix: '', ident: 'hastd', syslog: null };

/** Configure the sink once at start-up (parent) or in a worker (inherits the parent's choice). */
export function logInit(opts: { foreground: boolean; debugLevel: number; ident?: string }): void {
  state.foreground = opts.foreground;
  state.debugLevel = opts.debugLevel;
  if (opts.ident !== undefined) state.ident = opts.ident;
  if (!state.foreground && state.syslog === null && existsSync('/dev/log')) {
    try {
      const sock = createConnection({ path: '/dev/log' });
      sock.on('error', () => {
        state.syslog = null;
      });
      sock.unref();
      state.syslog = sock;
    } catch {
      state.syslog = null;
    }
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
  if (state.foreground || state.syslog === null) {
    process.stderr.write(`${tag} ${text}\n`);
    return;
  }
  // RFC 3164 over a datagram-less stream socket is not accepted by every syslogd; journald's
  // /dev/log is a datagram socket, so fall back to stderr on any write error.
  const line = `<${FACILITY_DAEMON | SYSLOG_PRIO[level]}>${state.ident}[${process.pid}]: ${text}`;
  try {
    state.syslog.write(line);
  } catch {
    process.stderr.write(`${tag} ${text}\n`);
  }
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
