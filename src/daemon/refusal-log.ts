// Rate-limited logging of refused peer connections: every refusal is logged with the address and
// the reason, but at most `burst` lines per `windowMs`; the rest are counted and summed up in one
// line when the window ends, so that a connection flood cannot fill the log (or slow the listener
// down writing it).
import { log } from '../log/log.js';

const DEFAULT_BURST = 20;
const DEFAULT_WINDOW_MS = 10_000;

export type RefusalLevel = 'error' | 'warning' | 'info';

/** Where lines go: the daemon log, unless a test looks at them. */
type Sink = (level: RefusalLevel, text: string, err?: unknown) => void;

const toLog: Sink = (level, text, err) => {
  if (level === 'error') log.error(text, err);
  else if (level === 'warning') log.warning(text, err);
  else log.info(text);
};

export class RefusalLog {
  readonly #burst: number;
  readonly #windowMs: number;
  #windowStart = 0;
  #logged = 0;
  #suppressed = 0;
  #lastSuppressed = '';
  #timer: NodeJS.Timeout | null = null;
  readonly #sink: Sink;

  constructor(opts: { burst?: number; windowMs?: number; sink?: Sink } = {}) {
    this.#burst = opts.burst ?? DEFAULT_BURST;
    this.#windowMs = opts.windowMs ?? DEFAULT_WINDOW_MS;
    this.#sink = opts.sink ?? toLog;
  }

  /** Log `text` at `level` unless this window's budget is spent. */
  note(level: RefusalLevel, text: string, err?: unknown): void {
    const now = Date.now();
    if (now - this.#windowStart >= this.#windowMs) {
      this.#flush();
      this.#windowStart = now;
      this.#logged = 0;
    }
    if (this.#logged < this.#burst) {
      this.#logged++;
      this.#sink(level, text, err);
      return;
    }
    this.#suppressed++;
    this.#lastSuppressed = text;
    if (this.#timer === null) {
      this.#timer = setTimeout(() => this.#flush(), this.#windowStart + this.#windowMs - now);
      this.#timer.unref();
    }
  }

  #flush(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#suppressed === 0) return;
    this.#sink(
      'warning',
      `${this.#suppressed} more refused connection(s) not logged in the last ${Math.round(this.#windowMs / 1000)} s (last: ${this.#lastSuppressed})`,
    );
    this.#suppressed = 0;
  }

  /** Log what is still counted (daemon shutdown). */
  close(): void {
    this.#flush();
  }
}
