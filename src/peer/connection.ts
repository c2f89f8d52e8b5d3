// One peer TCP connection in the data phase (HAST-SPEC §6.1, §6.5): framed sends batched per tick,
// an incremental reader, receive/send timeouts, and the seq → pending request map.
import type { Socket } from 'node:net';
import type { NvList } from '../nv/codec.js';
import type { ChecksumAlgorithm } from './checksum.js';
import type { CompressionAlgorithm } from './compression/index.js';
import { PeerProtocolError } from './errors.js';
import { HAST_PROTO_VERSION } from './constants.js';
import { encodeMessage, MessageReader, type PayloadLimit, type PeerMessage } from './framing.js';

/** How this side frames what it sends: its own configured algorithms and the negotiated version. */
export interface SendOptions {
  readonly compression: CompressionAlgorithm;
  readonly checksum: ChecksumAlgorithm;
  /** Header version byte; defaults to 2. */
  readonly version?: number;
}

/**
 * Receive timeout, upstream's SO_RCVTIMEO on peer sockets. `ms` of silence closes the connection
 * with ETIMEDOUT — always (secondary: 20 s on its request connection) or only while `whilePending`
 * says a reply is awaited (primary: `timeout` while requests are outstanding).
 */
export interface ReceiveTimeout {
  readonly ms: number;
  readonly whilePending?: () => boolean;
}

export interface PeerConnectionOptions extends SendOptions {
  readonly socket: Socket;
  /** The peer's address for messages ("tcp://10.0.0.2:8457"). */
  readonly name?: string;
  /** Largest payload accepted; defaults to MAXPHYS. */
  readonly maxPayload?: PayloadLimit;
  /** 0 or absent: no receive timeout. */
  readonly receiveTimeout?: ReceiveTimeout;
  /** A send blocked (socket buffer full) for this long closes with ETIMEDOUT; 0 or absent: never. */
  readonly sendTimeoutMs?: number;
  /** Called for every received message, in order. Without it, messages queue for receive(). */
  readonly onMessage?: (msg: PeerMessage) => void;
  /** Called once when the connection is closed, with the reason (undefined after a clean close()). */
  readonly onClose?: (reason: Error | undefined) => void;
}

/**
 * A framed peer connection. Sends made in the same tick are corked together (one writev);
 * TCP_NODELAY is set. Any protocol, socket or timeout error closes the connection once and
 * reports it through onClose; send() after close returns false.
 */
export class PeerConnection {
  readonly socket: Socket;
  readonly name: string;
  #send: SendOptions;
  readonly #reader: MessageReader;
  #onMessage: ((msg: PeerMessage) => void) | undefined;
  #onClose: ((reason: Error | undefined) => void) | undefined;
  #closed = false;
  #closeReason: Error | undefined;
  #corked = false;
  /** Messages received while no onMessage handler is set, and receive() callers waiting. */
  readonly #queue: PeerMessage[] = [];
  readonly #waiters: Array<{ resolve: (m: PeerMessage) => void; reject: (e: Error) => void }> = [];
  #receiveTimeout: ReceiveTimeout | undefined;
  #receiveTimer: NodeJS.Timeout | undefined;
  /** When bytes last arrived (ms, monotonic); the timer checks it instead of being re-armed per chunk. */
  #lastReceive = performance.now();
  #sendTimeoutMs: number;
  #sendTimer: NodeJS.Timeout | undefined;
  /** Messages handed to send() whose last byte the socket has not yet written (status `send` queue). */
  #unwritten = 0;
  readonly #written = (): void => {
    this.#unwritten--;
  };

  constructor(opts: PeerConnectionOptions) {
    this.socket = opts.socket;
    this.name = opts.name ?? `${opts.socket.remoteAddress ?? '?'}:${opts.socket.remotePort ?? '?'}`;
    this.#send = {
      compression: opts.compression,
      checksum: opts.checksum,
      version: opts.version ?? HAST_PROTO_VERSION,
    };
    this.#reader = new MessageReader(opts.maxPayload === undefined ? {} : { maxPayload: opts.maxPayload });
    this.#onMessage = opts.onMessage;
    this.#onClose = opts.onClose;
    this.#receiveTimeout = opts.receiveTimeout;
    this.#sendTimeoutMs = opts.sendTimeoutMs ?? 0;

    this.socket.setNoDelay(true);
    this.socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.socket.on('drain', () => this.#clearSendTimer());
    this.socket.on('end', () =>
      this.#fail(
        new PeerProtocolError('EPEER_CONNECTION', `Connection closed by ${this.name}`, { errno: 'ECONNRESET' }),
      ),
    );
    this.socket.on('error', (err: Error) => this.#fail(err));
    this.socket.on('close', () =>
      this.#fail(
        new PeerProtocolError('EPEER_CONNECTION', `Connection to ${this.name} closed`, { errno: 'ECONNRESET' }),
      ),
    );
    this.#armReceiveTimer();
  }

  /** True once the connection is closed (by us, the peer or an error). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Why the connection closed (undefined while open or after a clean close()). */
  get closeReason(): Error | undefined {
    return this.#closeReason;
  }

  /** Set or replace the message handler; queued messages are delivered to it first. */
  set onMessage(handler: ((msg: PeerMessage) => void) | undefined) {
    this.#onMessage = handler;
    while (handler !== undefined && this.#queue.length > 0 && this.#onMessage === handler) {
      handler(this.#queue.shift() as PeerMessage);
    }
  }

  /**
   * Set or replace the close handler (the handshake hands the connection to the data phase). A
   * connection that is already closed does not call it: check `closed` after setting it.
   */
  set onClose(handler: ((reason: Error | undefined) => void) | undefined) {
    this.#onClose = handler;
  }

  /** Change the framing of later sends (e.g. the negotiated version after the handshake). */
  setSendOptions(opts: Partial<SendOptions>): void {
    this.#send = { ...this.#send, ...opts };
  }

  /** Change the payload limit of later messages (e.g. the handshake bitmap, then MAXPHYS). */
  setMaxPayload(limit: PayloadLimit): void {
    this.#reader.setMaxPayload(limit);
  }

  /** Change the receive timeout (e.g. on reload); undefined or ms 0 disables it. */
  setReceiveTimeout(t: ReceiveTimeout | undefined): void {
    this.#receiveTimeout = t;
    this.#lastReceive = performance.now();
    this.#armReceiveTimer();
  }

  /** Change the send timeout (ms, 0 = none). */
  setSendTimeout(ms: number): void {
    this.#sendTimeoutMs = ms;
  }

  /**
   * Frame and queue one message. The nv list gets the payload fields added (see encodeMessage);
   * the payload buffer is not copied, so it must stay unchanged until written.
   * Returns false when the connection is closed (nothing sent), true otherwise.
   * @throws NvError only if `nv` cannot be encoded (a bug in the caller)
   */
  send(nv: NvList, payload?: Buffer): boolean {
    if (this.#closed) return false;
    const parts = encodeMessage(nv, payload, this.#send);
    if (!this.#corked) {
      // Batch everything sent in this tick into one writev.
      this.#corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        if (!this.socket.destroyed) this.socket.uncork();
      });
    }
    let ok = true;
    this.#unwritten++;
    for (let i = 0; i < parts.length; i++)
      ok =
        i === parts.length - 1
          ? this.socket.write(parts[i] as Buffer, this.#written)
          : this.socket.write(parts[i] as Buffer);
    if (!ok) this.#armSendTimer();
    return true;
  }

  /** Messages sent but not yet written to the socket, and their bytes in its buffer. */
  get unwritten(): { readonly messages: number; readonly bytes: number } {
    return { messages: this.#closed ? 0 : this.#unwritten, bytes: this.#closed ? 0 : this.socket.writableLength };
  }

  /** True when the socket's send buffer is full: the caller should wait for onDrain(). */
  get needsDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  /** Call `cb` once when the send buffer has room again (immediately if it has now). */
  onDrain(cb: () => void): void {
    if (!this.socket.writableNeedDrain) queueMicrotask(cb);
    else this.socket.once('drain', cb);
  }

  /** Stop reading from the socket (back-pressure); messages already parsed are still delivered. */
  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  /**
   * The next message not taken by an onMessage handler (handshake steps).
   * @param timeoutMs reject with ETIMEDOUT after this long (0 = wait forever)
   * @throws the close reason if the connection closes first
   */
  receive(timeoutMs = 0): Promise<PeerMessage> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#closed) {
      return Promise.reject(
        this.#closeReason ?? new PeerProtocolError('EPEER_CONNECTION', `Connection to ${this.name} is closed`),
      );
    }
    return new Promise<PeerMessage>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter = {
        resolve: (m: PeerMessage) => {
          if (timer !== undefined) clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          if (timer !== undefined) clearTimeout(timer);
          reject(e);
        },
      };
      this.#waiters.push(waiter);
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(
            new PeerProtocolError('EPEER_CONNECTION', `Timed out waiting for a message from ${this.name}`, {
              errno: 'ETIMEDOUT',
            }),
          );
        }, timeoutMs);
      }
    });
  }

  /**
   * Close the connection (idempotent). `reason` is reported to onClose and to waiting receive()
   * callers; without one the close counts as clean.
   */
  close(reason?: Error | string): void {
    const err = typeof reason === 'string' ? new PeerProtocolError('EPEER_CONNECTION', reason) : reason;
    this.#shutdown(err, true);
  }

  #fail(err: Error): void {
    this.#shutdown(err, false);
  }

  #shutdown(reason: Error | undefined, byUs: boolean): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeReason = reason;
    this.#clearReceiveTimer();
    this.#clearSendTimer();
    if (byUs) this.socket.destroy();
    else if (!this.socket.destroyed) this.socket.destroy();
    const waiters = this.#waiters.splice(0);
    const err = reason ?? new PeerProtocolError('EPEER_CONNECTION', `Connection to ${this.name} closed`);
    for (const w of waiters) w.reject(err);
    this.#onClose?.(reason);
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    this.#lastReceive = performance.now();
    let msgs: PeerMessage[];
    try {
      msgs = this.#reader.push(chunk);
    } catch (err) {
      this.#fail(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    for (const msg of msgs) {
      if (this.#closed) return;
      this.#deliver(msg);
    }
  }

  #deliver(msg: PeerMessage): void {
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter.resolve(msg);
      return;
    }
    if (this.#onMessage !== undefined) this.#onMessage(msg);
    else this.#queue.push(msg);
  }

  #armReceiveTimer(delay?: number): void {
    this.#clearReceiveTimer();
    const t = this.#receiveTimeout;
    if (this.#closed || t === undefined || t.ms <= 0) return;
    this.#receiveTimer = setTimeout(
      () => {
        this.#receiveTimer = undefined;
        const silent = performance.now() - this.#lastReceive;
        if (silent < t.ms) {
          this.#armReceiveTimer(t.ms - silent);
          return;
        }
        if (t.whilePending !== undefined && !t.whilePending()) {
          // Nothing awaited: silence is fine; the clock starts again from now.
          this.#lastReceive = performance.now();
          this.#armReceiveTimer();
          return;
        }
        this.#fail(
          new PeerProtocolError('EPEER_CONNECTION', `Timed out receiving from ${this.name}`, { errno: 'ETIMEDOUT' }),
        );
      },
      Math.max(1, Math.ceil(delay ?? t.ms)),
    );
    this.#receiveTimer.unref();
  }

  #clearReceiveTimer(): void {
    if (this.#receiveTimer !== undefined) clearTimeout(this.#receiveTimer);
    this.#receiveTimer = undefined;
  }

  #armSendTimer(): void {
    if (this.#sendTimeoutMs <= 0 || this.#sendTimer !== undefined) return;
    this.#sendTimer = setTimeout(() => {
      this.#sendTimer = undefined;
      if (!this.socket.writableNeedDrain) return;
      this.#fail(
        new PeerProtocolError('EPEER_CONNECTION', `Timed out sending to ${this.name}`, { errno: 'ETIMEDOUT' }),
      );
    }, this.#sendTimeoutMs);
    this.#sendTimer.unref();
  }

  #clearSendTimer(): void {
    if (this.#sendTimer !== undefined) clearTimeout(this.#sendTimer);
    this.#sendTimer = undefined;
  }
}

/**
 * Requests awaiting a reply, keyed by `seq`. Register an entry BEFORE sending its request: the
 * reply can arrive before send() returns to the event loop's next turn on a fast peer.
 */
export class PendingMap<E> {
  readonly #map = new Map<bigint, E>();

  get size(): number {
    return this.#map.size;
  }

  /**
   * Register `entry` under `seq`.
   * @throws Error if `seq` is already pending (an invariant violation: seq values must be unique
   *   among outstanding requests; upstream's shared seq 1 for resync is the bug of HAST-SPEC §11.13)
   */
  add(seq: bigint, entry: E): void {
    if (this.#map.has(seq)) throw new Error(`seq ${seq} is already pending`);
    this.#map.set(seq, entry);
  }

  /** The entry for `seq` without removing it (memsync: the `received` reply keeps it waiting). */
  get(seq: bigint): E | undefined {
    return this.#map.get(seq);
  }

  /** The entry registered earliest and still pending (the primary's reply timeout looks at it). */
  oldest(): E | undefined {
    for (const e of this.#map.values()) return e;
    return undefined;
  }

  /** Remove and return the entry for `seq`; undefined for an unknown seq (log and ignore it). */
  take(seq: bigint): E | undefined {
    const e = this.#map.get(seq);
    if (e !== undefined) this.#map.delete(seq);
    return e;
  }

  /** Remove every entry and hand each to `cb` in the order added (disconnect: fail with ENOTCONN). */
  drainAll(cb: (entry: E, seq: bigint) => void): void {
    const entries = [...this.#map];
    this.#map.clear();
    for (const [seq, e] of entries) cb(e, seq);
  }
}
