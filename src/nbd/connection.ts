// One NBD connection: handshake, then the transmission phase with many requests in flight, replies
// in completion order and batched socket writes (proto.md "Transmission", "Request types").
import type { Duplex } from 'node:stream';
import { ByteQueue } from '../util/byte-queue.js';
import type { NbdBackend } from './backend.js';
import {
  NBD_CMD,
  NBD_CMD_FLAG,
  NBD_E,
  NBD_FLAG_T,
  NBD_REQUEST_SIZE,
  NBD_SIMPLE_REPLY_SIZE,
  nameOfNbdCmd,
} from './constants.js';
import { nbdErrnoOf } from './errno.js';
import { encodeGreeting, NbdHandshake, type HandshakeConfig, type Negotiated } from './handshake.js';
import {
  blockStatusChunkSize,
  errorChunkSize,
  OFFSET_DATA_HEADER_SIZE,
  writeBlockStatusChunk,
  writeErrorChunk,
  writeOffsetDataHeader,
  writeSimpleReply,
  type NbdExtent,
} from './reply.js';
import { decodeRequest, newRequest, type NbdRequest } from './request.js';
import { validateRequest, type RequestLimits } from './validate.js';

export type NbdLogLevel = 'error' | 'warning' | 'info' | 'debug';
export type NbdLog = (level: NbdLogLevel, msg: string) => void;

/** Server-wide state a connection shares: the request slots and the backend. */
export interface ConnectionHost {
  readonly backend: NbdBackend;
  readonly maxBlockSize: number;
  readonly log: NbdLog;
  handshakeConfig(): HandshakeConfig;
  /** Take a request slot; false when all `maxInFlight` slots are busy. */
  tryAcquire(): boolean;
  /** Give a slot back (wakes connections waiting for one). */
  release(): void;
  /** Register a connection to be woken (via `wake()`) when a slot frees. */
  waitForSlot(conn: Connection): void;
  onClosed(conn: Connection): void;
  /** With TLS configured (HandshakeConfig.tls): run the server side of TLS over `socket`. */
  startTls?(socket: Duplex): Promise<Duplex>;
}

/** Unread reply bytes beyond which we stop reading requests until the socket drains. */
const MAX_UNSENT_REPLY_BYTES = 16 * 1024 * 1024;

type Phase = 'header' | 'payload' | 'drain';

/*
 * Reading side, per connection:
 *
 *   socket 'data' ──► ByteQueue ──► header (28 B, decoded in place or from a scratch copy)
 *                                    │ WRITE with payload: 'payload' (subarray when contiguous,
 *                                    │ else one Buffer of exactly `length`), refused WRITE: 'drain'
 *                                    ▼
 *                        slot taken ─► backend promise ─► reply (cork/uncork per tick)
 *
 * Reading stops (socket paused) while no slot is free, while unsent replies exceed the limit,
 * and after NBD_CMD_DISC or server close.
 */
export class Connection {
  readonly #host: ConnectionHost;
  #socket: Duplex;
  readonly #peer: string;
  #handshake: NbdHandshake | null;
  #neg: Negotiated | null = null;
  readonly #queue = new ByteQueue();
  readonly #scratch = Buffer.allocUnsafeSlow(NBD_REQUEST_SIZE);
  readonly #req: NbdRequest = newRequest();
  #phase: Phase = 'header';
  #drainLeft = 0;
  /** The WRITE whose payload is awaited (its slot is already taken). */
  #pending: { cookieHi: number; cookieLo: number; offset: number; length: number; fua: boolean } | null = null;
  #inFlight = 0;
  #waitingSlot = false;
  #waitingDrain = false;
  #ending = false;
  #dead = false;
  #corked = false;
  /** What requests are validated against; null until the handshake is done. */
  #limits: RequestLimits | null = null;
  readonly #closed: Promise<void>;

  constructor(host: ConnectionHost, socket: Duplex, peer: string) {
    this.#host = host;
    this.#socket = socket;
    this.#peer = peer;
    this.#handshake = new NbdHandshake(host.handshakeConfig());
    let resolveClosed: () => void = () => undefined;
    this.#closed = new Promise<void>((r) => (resolveClosed = r));
    this.#listen(socket);
    socket.on('close', () => {
      this.#dead = true;
      this.#host.onClosed(this);
      resolveClosed();
    });
    socket.write(encodeGreeting());
  }

  readonly #onDataFn = (chunk: Buffer): void => this.#onData(chunk);
  readonly #onEndFn = (): void => this.#onEnd();
  readonly #onErrorFn = (err: Error): void => {
    this.#host.log('debug', `NBD connection ${this.#peer}: ${err.message}`);
    this.#dead = true;
  };

  #listen(s: Duplex): void {
    s.on('data', this.#onDataFn);
    s.on('end', this.#onEndFn);
    s.on('error', this.#onErrorFn);
  }

  /** NBD_OPT_STARTTLS acknowledged: the rest of the connection runs over TLS (starttls.ts). */
  #startTls(): void {
    const raw = this.#socket;
    const start = this.#host.startTls;
    raw.off('data', this.#onDataFn);
    raw.off('end', this.#onEndFn);
    raw.pause();
    if (start === undefined) {
      raw.destroy();
      return;
    }
    start.call(this.#host, raw).then(
      (tls) => {
        if (this.#dead) {
          tls.destroy();
          return;
        }
        this.#socket = tls;
        this.#listen(tls);
        this.#handshake?.tlsStarted();
        this.#host.log('debug', `NBD connection ${this.#peer}: TLS established`);
      },
      (err: unknown) => {
        this.#host.log('warning', `NBD connection ${this.#peer} closed: TLS failed: ${(err as Error).message}`);
        this.#dead = true;
        raw.destroy();
      },
    );
  }

  /** Resolves when the socket is closed. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /** Stop reading, let in-flight requests reply, then close (server shutdown). */
  shutdown(): void {
    if (this.#dead) return;
    if (this.#handshake !== null) {
      this.#socket.destroy();
      return;
    }
    this.#dropPending();
    this.#ending = true;
    this.#socket.pause();
    this.#maybeFinish();
  }

  /** A WRITE whose payload has not fully arrived is dropped: give its slot back. */
  #dropPending(): void {
    if (this.#pending === null) return;
    this.#pending = null;
    this.#phase = 'header';
    this.#inFlight--;
    this.#host.release();
  }

  /** Called by the host when a request slot is free again. */
  wake(): void {
    this.#waitingSlot = false;
    if (this.#dead || this.#ending) return;
    this.#resume();
  }

  #onData(chunk: Buffer): void {
    if (this.#dead || this.#ending) return;
    if (this.#handshake !== null) {
      this.#onHandshakeData(chunk);
      return;
    }
    this.#queue.push(chunk);
    this.#process();
  }

  #onEnd(): void {
    // The client half-closed: answer what is in flight, then close (as for NBD_CMD_DISC).
    if (this.#handshake !== null) {
      this.#socket.destroy();
      return;
    }
    this.#dropPending();
    this.#ending = true;
    this.#maybeFinish();
  }

  #onHandshakeData(chunk: Buffer): void {
    const hs = this.#handshake;
    if (hs === null) return;
    const step = hs.push(chunk);
    for (const b of step.send) this.#socket.write(b);
    if (step.state === 'more') return;
    if (step.state === 'starttls') {
      this.#startTls();
      return;
    }
    if (step.state === 'close') {
      if (step.protocolError) this.#host.log('warning', `NBD connection ${this.#peer} closed: ${step.reason}`);
      this.#handshake = null;
      this.#dead = true;
      this.#socket.end(() => this.#socket.destroy());
      return;
    }
    this.#handshake = null;
    this.#neg = step.negotiated;
    const backend = this.#host.backend;
    this.#limits = {
      size: backend.size,
      maxBlockSize: this.#host.maxBlockSize,
      readOnly: backend.readOnly,
      canFastZero: backend.canFastZero,
      structuredReplies: step.negotiated.structuredReplies,
      metaContextId: step.negotiated.metaContextId,
    };
    this.#host.log(
      'debug',
      `NBD connection ${this.#peer}: export "${step.negotiated.exportName}", structured replies ${step.negotiated.structuredReplies ? 'on' : 'off'}`,
    );
    if (step.rest.length > 0) {
      this.#queue.push(step.rest);
      this.#process();
    }
  }

  /** Close for bad input found in a request header: free its slot, then close. */
  #failRequest(reason: string): void {
    this.#inFlight--;
    this.#host.release();
    this.#fail(reason);
  }

  /** Close for bad input: the stream can no longer be trusted. */
  #fail(reason: string): void {
    if (this.#dead) return;
    this.#host.log('warning', `NBD connection ${this.#peer} closed: ${reason}`);
    this.#dead = true;
    this.#queue.clear();
    this.#socket.destroy();
  }

  #resume(): void {
    if (this.#waitingSlot || this.#waitingDrain || this.#ending || this.#dead) return;
    this.#socket.resume();
    this.#process();
  }

  /** Parse and dispatch as many buffered requests as slots and back-pressure allow. */
  #process(): void {
    while (!this.#dead && !this.#ending) {
      if (this.#phase === 'drain') {
        const n = Math.min(this.#drainLeft, this.#queue.length);
        this.#queue.skip(n);
        this.#drainLeft -= n;
        if (this.#drainLeft > 0) return;
        this.#phase = 'header';
        continue;
      }
      if (this.#phase === 'payload') {
        const p = this.#pending;
        if (p === null) {
          this.#phase = 'header';
          continue;
        }
        if (this.#queue.length < p.length) return;
        // A subarray when header and payload came in one chunk, else one copy of exactly `length`.
        const data = this.#queue.read(p.length);
        this.#pending = null;
        this.#phase = 'header';
        this.#dispatchWrite(p.cookieHi, p.cookieLo, p.offset, data, p.fua);
        continue;
      }
      if (this.#queue.length < NBD_REQUEST_SIZE) return;
      if (this.#socket.writableLength > MAX_UNSENT_REPLY_BYTES) {
        this.#waitingDrain = true;
        this.#socket.pause();
        this.#socket.once('drain', () => {
          this.#waitingDrain = false;
          this.#resume();
        });
        return;
      }
      if (!this.#host.tryAcquire()) {
        // Back-pressure: no free slot, stop reading until one frees.
        this.#waitingSlot = true;
        this.#socket.pause();
        this.#host.waitForSlot(this);
        return;
      }
      this.#inFlight++;
      const req = this.#readHeader();
      this.#handleRequest(req);
    }
  }

  #readHeader(): NbdRequest {
    const q = this.#queue;
    if (q.contiguous >= NBD_REQUEST_SIZE) {
      decodeRequest(q.read(NBD_REQUEST_SIZE), 0, this.#req);
    } else {
      q.readInto(this.#scratch, 0, NBD_REQUEST_SIZE);
      decodeRequest(this.#scratch, 0, this.#req);
    }
    return this.#req;
  }

  /** Validate one request (a slot is held) and start it, or answer with an error. */
  #handleRequest(req: NbdRequest): void {
    const limits = this.#limits;
    if (limits === null) return;
    const v = validateRequest(req, limits);
    const { cookieHi, cookieLo, offset, length, flags, type } = req;
    switch (v.kind) {
      case 'fatal':
        this.#failRequest(v.reason);
        return;
      case 'error':
        this.#complete(cookieHi, cookieLo, v.error, v.message);
        if (type === NBD_CMD.WRITE) {
          // Refused: the payload still follows on the wire and must be read and discarded.
          this.#drainLeft = length;
          this.#phase = 'drain';
        }
        return;
      case 'noop':
        this.#complete(cookieHi, cookieLo, 0);
        return;
      case 'ok':
        break;
    }
    const backend = this.#host.backend;
    const fua = (flags & NBD_CMD_FLAG.FUA) !== 0;
    switch (type) {
      case NBD_CMD.READ:
        backend.read(offset, length).then(
          (data) => {
            if (data.length !== length) this.#complete(cookieHi, cookieLo, NBD_E.EIO, 'short read');
            else this.#completeRead(cookieHi, cookieLo, offset, data);
          },
          (e: unknown) => this.#complete(cookieHi, cookieLo, nbdErrnoOf(e), messageOf(e)),
        );
        return;
      case NBD_CMD.WRITE:
        this.#pending = { cookieHi, cookieLo, offset, length, fua };
        this.#phase = 'payload';
        return;
      case NBD_CMD.DISC:
        this.#inFlight--;
        this.#host.release();
        this.#ending = true;
        this.#socket.pause();
        this.#maybeFinish();
        return;
      case NBD_CMD.FLUSH:
        this.#track(cookieHi, cookieLo, backend.flush());
        return;
      case NBD_CMD.TRIM:
        this.#track(cookieHi, cookieLo, backend.trim(offset, length, fua));
        return;
      case NBD_CMD.WRITE_ZEROES: {
        const noHole = (flags & NBD_CMD_FLAG.NO_HOLE) !== 0;
        const fastZero = (flags & NBD_CMD_FLAG.FAST_ZERO) !== 0;
        this.#track(cookieHi, cookieLo, backend.writeZeroes(offset, length, { fua, noHole, fastZero }));
        return;
      }
      case NBD_CMD.BLOCK_STATUS: {
        const ctx = limits.metaContextId as number; // validated: a context is selected
        const reqOne = (flags & NBD_CMD_FLAG.REQ_ONE) !== 0;
        const status = backend.blockStatus?.(offset, length) ?? Promise.resolve([{ length, flags: 0 }]);
        status.then(
          (extents) => this.#completeBlockStatus(cookieHi, cookieLo, ctx, clampExtents(extents, length, reqOne)),
          (e: unknown) => this.#complete(cookieHi, cookieLo, nbdErrnoOf(e), messageOf(e)),
        );
        return;
      }
      default:
        // validateRequest() accepts no other command.
        this.#complete(cookieHi, cookieLo, NBD_E.EINVAL, `unknown command ${nameOfNbdCmd(type)}`);
    }
  }

  #dispatchWrite(cookieHi: number, cookieLo: number, offset: number, data: Buffer, fua: boolean): void {
    this.#track(cookieHi, cookieLo, this.#host.backend.write(offset, data, fua));
  }

  #track(cookieHi: number, cookieLo: number, p: Promise<void>): void {
    p.then(
      () => this.#complete(cookieHi, cookieLo, 0),
      (e: unknown) => this.#complete(cookieHi, cookieLo, nbdErrnoOf(e), messageOf(e)),
    );
  }

  /** Finish a request without data: success or error reply, then free its slot. */
  #complete(cookieHi: number, cookieLo: number, error: number, message = ''): void {
    if (!this.#dead) {
      const neg = this.#neg;
      if (error !== 0 && neg !== null && neg.structuredReplies) {
        const msg = message.length > 200 ? message.slice(0, 200) : message;
        const b = Buffer.allocUnsafe(errorChunkSize(msg));
        writeErrorChunk(b, 0, cookieHi, cookieLo, error, msg);
        this.#send(b, null);
      } else {
        // A simple reply to a failed READ carries no data (proto.md, NBD_CMD_READ simple replies).
        const b = Buffer.allocUnsafe(NBD_SIMPLE_REPLY_SIZE);
        writeSimpleReply(b, 0, error, cookieHi, cookieLo);
        this.#send(b, null);
      }
    }
    this.#done();
  }

  #completeRead(cookieHi: number, cookieLo: number, offset: number, data: Buffer): void {
    if (!this.#dead) {
      const neg = this.#neg;
      if (neg?.structuredReplies) {
        const h = Buffer.allocUnsafe(OFFSET_DATA_HEADER_SIZE);
        writeOffsetDataHeader(h, 0, cookieHi, cookieLo, offset, data.length);
        this.#send(h, data);
      } else {
        const h = Buffer.allocUnsafe(NBD_SIMPLE_REPLY_SIZE);
        writeSimpleReply(h, 0, 0, cookieHi, cookieLo);
        this.#send(h, data);
      }
    }
    this.#done();
  }

  #completeBlockStatus(cookieHi: number, cookieLo: number, ctx: number, extents: NbdExtent[]): void {
    if (!this.#dead) {
      const b = Buffer.allocUnsafe(blockStatusChunkSize(extents.length));
      writeBlockStatusChunk(b, 0, cookieHi, cookieLo, ctx, extents);
      this.#send(b, null);
    }
    this.#done();
  }

  #done(): void {
    this.#inFlight--;
    this.#host.release();
    this.#maybeFinish();
  }

  /**
   * Write a reply (header, optional data) inside a per-tick cork, so replies leave in batches. The
   * reply of the only request in flight has nothing to be batched with: it leaves at once, one
   * write, instead of waiting for the next turn of the loop (queue depth 1, README "Benchmarks").
   */
  #send(head: Buffer, data: Buffer | null): void {
    if (!this.#corked && this.#inFlight <= 1) {
      if (data === null || data.length === 0) {
        this.#socket.write(head);
        return;
      }
      this.#socket.cork();
      this.#socket.write(head);
      this.#socket.write(data);
      this.#socket.uncork();
      return;
    }
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      setImmediate(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    this.#socket.write(head);
    if (data !== null && data.length > 0) this.#socket.write(data);
  }

  /** After DISC, client EOF or shutdown: close once nothing is in flight (replies flushed first). */
  #maybeFinish(): void {
    if (!this.#ending || this.#inFlight > 0 || this.#dead) return;
    this.#dead = true;
    this.#socket.end(() => this.#socket.destroy());
  }
}

/** Extents the client may receive: nonzero, summing to at most `length`, one when REQ_ONE. */
function clampExtents(extents: readonly NbdExtent[], length: number, reqOne: boolean): NbdExtent[] {
  const out: NbdExtent[] = [];
  let left = length;
  for (const e of extents) {
    if (left === 0) break;
    const len = Math.min(e.length, left);
    if (len <= 0) continue;
    out.push({ length: len, flags: e.flags >>> 0 });
    left -= len;
    if (reqOne) break;
  }
  if (out.length === 0) out.push({ length, flags: 0 });
  return out;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : '';
}

/** Base transmission flags for a backend (NBD_FLAG_SEND_DF is added per connection). */
export function transmissionFlagsOf(backend: NbdBackend): number {
  let f =
    NBD_FLAG_T.HAS_FLAGS |
    NBD_FLAG_T.SEND_FLUSH |
    NBD_FLAG_T.SEND_FUA |
    NBD_FLAG_T.SEND_TRIM |
    NBD_FLAG_T.SEND_WRITE_ZEROES |
    NBD_FLAG_T.SEND_CACHE;
  if (backend.readOnly) f |= NBD_FLAG_T.READ_ONLY;
  if (backend.canMultiConn) f |= NBD_FLAG_T.CAN_MULTI_CONN;
  if (backend.canFastZero) f |= NBD_FLAG_T.SEND_FAST_ZERO;
  return f;
}
