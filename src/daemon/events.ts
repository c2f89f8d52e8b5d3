// `hastctl events`: the stream of state changes of hastd's resources (like `drbdsetup events2`).
// A subscriber first gets one `exists` event per resource (its current state), then every change:
// role, connect/disconnect (with the cause), sync start/progress/done/interrupted, split-brain,
// consistency of the local copy, hook runs and their exit status. The stream ends when hastd stops.
// Wire: one JSON object per line on the control connection that asked (`{"cmd":"events"}`).
import type { Socket } from 'node:net';
import type { ResourceStatus } from '../control/messages.js';

/** Every kind of event, in the order a reader meets them. */
const EVENT_KINDS = [
  'exists',
  'role',
  'connect',
  'disconnect',
  'sync-start',
  'sync-progress',
  'sync-done',
  'sync-interrupted',
  'split-brain',
  'disk',
  'hook',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

/** One event: when, which resource, what, and fields of its own (flat: strings and numbers). */
export interface HastEvent {
  readonly time: string;
  readonly resource: string;
  readonly event: EventKind;
  readonly [field: string]: string | number | boolean | null;
}

/** How often the state of watched resources is compared with the last one seen (sync progress, disk). */
const WATCH_INTERVAL_MS = 1000;

/** The part of a resource's status the stream reports as state (and compares between polls). */
interface WatchedState {
  readonly role: string;
  readonly connection: string;
  readonly disk: string;
  readonly syncLeft: number | null;
}

function watchedState(s: ResourceStatus): WatchedState {
  const w = s.worker ?? null;
  const connection =
    w === null
      ? s.role === 'init' || s.role === undefined
        ? 'standalone'
        : 'unknown'
      : w.status === 'complete'
        ? 'connected'
        : `disconnected${w.peer?.reason !== null && w.peer?.reason !== undefined ? ` (${w.peer.reason})` : ''}`;
  const disk = w?.disk === undefined ? 'unknown' : w.disk.consistent ? 'consistent' : 'inconsistent';
  return { role: s.role ?? 'unknown', connection, disk, syncLeft: w?.sync?.leftBytes ?? null };
}

interface Subscriber {
  readonly sock: Socket;
  /** Resource names to report; empty: all. */
  readonly names: ReadonlySet<string>;
}

/**
 * The subscribers of one hastd parent. `poll` gives the current status of every resource; it is
 * called once per subscriber at subscription and every second while anyone listens (the parent
 * asks its workers then, and only then).
 */
export class EventStream {
  readonly #subs = new Set<Subscriber>();
  readonly #poll: () => Promise<readonly ResourceStatus[]>;
  readonly #last = new Map<string, WatchedState>();
  #timer: NodeJS.Timeout | null = null;
  #polling = false;
  #closed = false;

  constructor(poll: () => Promise<readonly ResourceStatus[]>) {
    this.#poll = poll;
  }

  /** A control connection asked for events: send the current state, then keep it. */
  async subscribe(sock: Socket, names: readonly string[]): Promise<void> {
    const sub: Subscriber = { sock, names: new Set(names[0] === 'all' ? [] : names) };
    if (this.#closed) {
      sock.end();
      return;
    }
    const now = await this.#poll();
    for (const s of now) {
      const st = watchedState(s);
      if (!this.#last.has(s.name)) this.#last.set(s.name, st);
      this.#write(sub, this.#event(s.name, 'exists', { ...st }));
    }
    this.#subs.add(sub);
    const drop = (): void => {
      this.#subs.delete(sub);
      if (this.#subs.size === 0) this.#stopWatch();
    };
    sock.once('close', drop);
    sock.once('error', drop);
    this.#startWatch();
  }

  /** Report an event now (from the parent: role changes, worker events, hook exits). */
  emit(resource: string, event: EventKind, fields: Record<string, string | number | boolean | null> = {}): void {
    if (this.#subs.size === 0) return;
    const ev = this.#event(resource, event, fields);
    for (const sub of this.#subs) this.#write(sub, ev);
    if (event === 'role') {
      const last = this.#last.get(resource);
      if (last !== undefined && typeof fields.new === 'string') this.#last.set(resource, { ...last, role: fields.new });
    }
  }

  /** hastd stops: end every stream (readers exit 0). */
  close(): void {
    this.#closed = true;
    this.#stopWatch();
    for (const sub of this.#subs) sub.sock.end();
    this.#subs.clear();
  }

  get listening(): boolean {
    return this.#subs.size > 0;
  }

  #event(resource: string, event: EventKind, fields: Record<string, string | number | boolean | null>): HastEvent {
    return { time: new Date().toISOString(), resource, event, ...fields };
  }

  #write(sub: Subscriber, ev: HastEvent): void {
    if (sub.names.size > 0 && !sub.names.has(ev.resource)) return;
    if (!sub.sock.writable) return;
    sub.sock.write(`${JSON.stringify(ev)}\n`);
  }

  #startWatch(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => void this.#compare(), WATCH_INTERVAL_MS);
    this.#timer.unref();
  }

  #stopWatch(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Poll and report what changed that no explicit event said: sync progress, consistency. */
  async #compare(): Promise<void> {
    if (this.#polling || this.#subs.size === 0) return;
    this.#polling = true;
    try {
      for (const s of await this.#poll()) {
        const now = watchedState(s);
        const was = this.#last.get(s.name);
        this.#last.set(s.name, now);
        if (was === undefined) continue;
        if (now.disk !== was.disk && now.disk !== 'unknown')
          this.emit(s.name, 'disk', { old: was.disk, new: now.disk });
        const sync = s.worker?.sync ?? null;
        if (sync !== null && now.syncLeft !== was.syncLeft) {
          this.emit(s.name, 'sync-progress', {
            direction: sync.direction,
            total: sync.totalBytes,
            done: sync.doneBytes,
            left: sync.leftBytes,
            rate: sync.rate,
          });
        }
      }
    } finally {
      this.#polling = false;
    }
  }
}

/** One event as `hastctl events` prints it without --json: `[time] event resource key:value ...`. */
export function formatEvent(ev: HastEvent, timestamps: boolean): string {
  const fields = Object.entries(ev)
    .filter(([k]) => k !== 'time' && k !== 'resource' && k !== 'event')
    .map(([k, v]) => `${k}:${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : String(v)}`);
  return `${timestamps ? `${ev.time} ` : ''}${[ev.event, ev.resource, ...fields].join(' ')}\n`;
}
