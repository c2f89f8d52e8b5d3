// What the primary knows about its link to the peer, for `hastctl status`: why it is degraded
// (split-brain, refused and the peer's message, unreachable, size mismatch, protocol error, a
// timeout or a disconnect), the peer's role when it said so, and when the last connection began
// and ended and why.
import type { PeerDownReason, PeerLinkStatus } from '../control/messages.js';
import { PeerProtocolError } from '../peer/errors.js';

/** A failed handshake with the reason status shows. */
export class ConnectError extends Error {
  override readonly name = 'ConnectError';
  readonly reason: PeerDownReason;
  constructor(reason: PeerDownReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** Errors of connect(2) and of the route: the peer cannot be reached at all. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** The status reason of a failed connection attempt. */
function connectFailureReason(err: unknown): PeerDownReason {
  if (err instanceof ConnectError) return err.reason;
  if (err instanceof PeerProtocolError) {
    if (err.code !== 'EPEER_CONNECTION') return 'protocol';
    return err.errno === 'ETIMEDOUT' ? 'timeout' : 'disconnected';
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && UNREACHABLE.has(code)) return 'unreachable';
  return 'protocol';
}

export class PeerLink {
  #reason: PeerDownReason | null = null;
  #message: string | null = null;
  #role: PeerLinkStatus['role'] = null;
  #lastConnect: string | null = null;
  #lastDisconnect: string | null = null;
  #disconnectCause: string | null = null;

  connected(): void {
    this.#reason = null;
    this.#message = null;
    this.#role = 'secondary';
    this.#lastConnect = new Date().toISOString();
  }

  /** The peer answered that it is still primary (`wait`). */
  busy(errmsg: string): void {
    this.#reason = 'refused';
    this.#message = errmsg;
    this.#role = 'primary';
  }

  failed(err: unknown): void {
    this.#reason = connectFailureReason(err);
    this.#message = err instanceof Error ? err.message : String(err);
    // A peer that refused or found a split-brain answered, as a secondary; otherwise unknown.
    this.#role =
      this.#reason === 'refused' || this.#reason === 'split-brain' || this.#reason === 'mismatch' ? 'secondary' : null;
  }

  disconnected(cause: string): void {
    this.#reason = 'disconnected';
    this.#message = cause;
    this.#lastDisconnect = new Date().toISOString();
    this.#disconnectCause = cause;
  }

  snapshot(sendQueueBytes: number): PeerLinkStatus {
    return {
      reason: this.#reason,
      message: this.#message,
      role: this.#role,
      lastConnect: this.#lastConnect,
      lastDisconnect: this.#lastDisconnect,
      disconnectCause: this.#disconnectCause,
      sendQueueBytes,
    };
  }
}
