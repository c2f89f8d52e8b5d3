// A small promise-based NBD client (fixed newstyle, NBD_OPT_GO, optional structured replies) for
// tests and the demo; many requests in flight, matched by cookie (proto.md "Transmission").
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { ByteQueue } from '../util/byte-queue.js';
import {
  NBD_CMD,
  NBD_CMD_FLAG,
  NBD_FLAG,
  NBD_FLAG_C,
  NBD_IHAVEOPT_HI,
  NBD_IHAVEOPT_LO,
  NBD_INFO,
  NBD_MAGIC_HI,
  NBD_MAGIC_LO,
  NBD_OPT,
  NBD_REP,
  NBD_REP_MAGIC_HI,
  NBD_REP_MAGIC_LO,
  NBD_REPLY_FLAG,
  NBD_REPLY_TYPE,
  NBD_REQUEST_SIZE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  nameOfNbdCmd,
} from './constants.js';
import { codeOfNbdErrno } from './errno.js';
import { encodeRequest, readU64BE } from './request.js';

/** An NBD error reply (code such as 'EINVAL', 'ENOSPC'), or a lost connection ('ECONNRESET'). */
class NbdError extends Error {
  override readonly name = 'NbdError';
  readonly code: string;
  /** NBD error value from the reply, 0 when the error is not from a reply. */
  readonly errno: number;
  constructor(code: string, errno: number, message: string) {
    super(message);
    this.code = code;
    this.errno = errno;
  }
}

/** Where the server is; `stream` is an already connected byte stream (tests script a server on one). */
export type NbdClientAddress = { path: string } | { host: string; port: number } | { stream: Duplex };

export interface NbdClientOptions {
  /** Export to ask for (default ""). */
  readonly exportName?: string;
  /** Negotiate structured replies (default true). */
  readonly structuredReplies?: boolean;
}

/** Largest option reply or structured chunk we accept from a server (besides read data). */
const MAX_REPLY_EXTRA = 64 * 1024;

interface Pending {
  type: number;
  offset: number;
  length: number;
  buf: Buffer | null;
  error: NbdError | null;
  resolve: (v: Buffer | null) => void;
  reject: (e: Error) => void;
}

/** Accumulates socket bytes; `read(n)` resolves with exactly n bytes (handshake only). */
class HandshakeReader {
  readonly #queue = new ByteQueue();
  #want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  #error: Error | null = null;
  push(b: Buffer): void {
    this.#queue.push(b);
    this.#serve();
  }
  fail(e: Error): void {
    this.#error = e;
    const w = this.#want;
    this.#want = null;
    w?.reject(e);
  }
  read(n: number): Promise<Buffer> {
    if (this.#error !== null) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#want = { n, resolve, reject };
      this.#serve();
    });
  }
  rest(): Buffer {
    return this.#queue.readAll();
  }
  #serve(): void {
    const w = this.#want;
    if (w === null || this.#queue.length < w.n) return;
    this.#want = null;
    w.resolve(this.#queue.read(w.n));
  }
}

function optionRequest(opt: number, data: Buffer): Buffer {
  const b = Buffer.allocUnsafe(16 + data.length);
  b.writeUInt32BE(NBD_IHAVEOPT_HI, 0);
  b.writeUInt32BE(NBD_IHAVEOPT_LO, 4);
  b.writeUInt32BE(opt, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, 16);
  return b;
}

/** Client side of an NBD connection. Create with `NbdClient.connect()`. */
export class NbdClient {
  /** Export size in bytes. */
  readonly size: number;
  readonly transmissionFlags: number;
  readonly structuredReplies: boolean;
  /** Largest request the server accepts (NBD_INFO_BLOCK_SIZE maximum; 32 MiB if not sent). */
  readonly maxBlockSize: number;
  readonly #socket: Duplex;
  readonly #pending = new Map<number, Pending>();
  #nextCookie = 1;
  readonly #queue = new ByteQueue();
  #closedError: NbdError | null = null;
  #idle: (() => void) | null = null;
  readonly #closed: Promise<void>;

  private constructor(
    socket: Duplex,
    size: number,
    flags: number,
    structured: boolean,
    maxBlock: number,
    rest: Buffer,
  ) {
    this.#socket = socket;
    this.size = size;
    this.transmissionFlags = flags;
    this.structuredReplies = structured;
    this.maxBlockSize = maxBlock;
    this.#closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (b: Buffer) => this.#onData(b));
    socket.on('close', () => this.#failAll(new NbdError('ECONNRESET', 0, 'NBD connection closed')));
    if (rest.length > 0) this.#onData(rest);
  }

  /**
   * Connect and negotiate (fixed newstyle, optional NBD_OPT_STRUCTURED_REPLY, NBD_OPT_GO).
   * Rejects with an NbdError when the server refuses the export or speaks something else.
   */
  static async connect(addr: NbdClientAddress, opts: NbdClientOptions = {}): Promise<NbdClient> {
    const socket =
      'stream' in addr ? addr.stream : 'path' in addr ? netConnect(addr.path) : netConnect(addr.port, addr.host);
    const reader = new HandshakeReader();
    const onData = (b: Buffer): void => reader.push(b);
    const onClose = (): void =>
      reader.fail(new NbdError('ECONNRESET', 0, 'NBD server closed the connection during the handshake'));
    const onError = (e: Error): void => reader.fail(e);
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', onError);
    try {
      const g = await reader.read(18);
      if (
        g.readUInt32BE(0) !== NBD_MAGIC_HI ||
        g.readUInt32BE(4) !== NBD_MAGIC_LO ||
        g.readUInt32BE(8) !== NBD_IHAVEOPT_HI ||
        g.readUInt32BE(12) !== NBD_IHAVEOPT_LO
      ) {
        throw new NbdError('EPROTO', 0, 'not a fixed newstyle NBD server');
      }
      const hflags = g.readUInt16BE(16);
      if ((hflags & NBD_FLAG.FIXED_NEWSTYLE) === 0) throw new NbdError('EPROTO', 0, 'server lacks fixed newstyle');
      const cflags = Buffer.allocUnsafe(4);
      cflags.writeUInt32BE(NBD_FLAG_C.FIXED_NEWSTYLE | (hflags & NBD_FLAG.NO_ZEROES ? NBD_FLAG_C.NO_ZEROES : 0), 0);
      socket.write(cflags);

      const readReply = async (opt: number): Promise<{ type: number; data: Buffer }> => {
        const h = await reader.read(20);
        if (
          h.readUInt32BE(0) !== NBD_REP_MAGIC_HI ||
          h.readUInt32BE(4) !== NBD_REP_MAGIC_LO ||
          h.readUInt32BE(8) !== opt
        ) {
          throw new NbdError('EPROTO', 0, 'bad option reply');
        }
        const len = h.readUInt32BE(16);
        if (len > MAX_REPLY_EXTRA) throw new NbdError('EPROTO', 0, `option reply of ${len} bytes`);
        return { type: h.readUInt32BE(12), data: await reader.read(len) };
      };

      let structured = false;
      if (opts.structuredReplies ?? true) {
        socket.write(optionRequest(NBD_OPT.STRUCTURED_REPLY, Buffer.alloc(0)));
        const r = await readReply(NBD_OPT.STRUCTURED_REPLY);
        structured = r.type === NBD_REP.ACK;
      }

      const name = Buffer.from(opts.exportName ?? '', 'utf8');
      const go = Buffer.allocUnsafe(4 + name.length + 4);
      go.writeUInt32BE(name.length, 0);
      name.copy(go, 4);
      go.writeUInt16BE(1, 4 + name.length);
      go.writeUInt16BE(NBD_INFO.BLOCK_SIZE, 6 + name.length);
      socket.write(optionRequest(NBD_OPT.GO, go));
      let size = -1;
      let tflags = 0;
      let maxBlock = 32 * 1024 * 1024;
      for (;;) {
        const r = await readReply(NBD_OPT.GO);
        if (r.type === NBD_REP.ACK) break;
        if (r.type >= 0x8000_0000) {
          throw new NbdError('EPROTO', 0, `NBD_OPT_GO refused (0x${r.type.toString(16)}): ${r.data.toString('utf8')}`);
        }
        if (r.type !== NBD_REP.INFO || r.data.length < 2) continue;
        const info = r.data.readUInt16BE(0);
        if (info === NBD_INFO.EXPORT && r.data.length >= 12) {
          size = readU64BE(r.data, 2);
          tflags = r.data.readUInt16BE(10);
        } else if (info === NBD_INFO.BLOCK_SIZE && r.data.length >= 14) {
          maxBlock = r.data.readUInt32BE(10);
        }
      }
      if (size < 0) throw new NbdError('EPROTO', 0, 'server sent no NBD_INFO_EXPORT');
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
      socket.on('error', () => undefined);
      return new NbdClient(socket, size, tflags, structured, maxBlock, reader.rest());
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  /** Read `length` bytes at `offset` (split into requests of at most maxBlockSize). */
  async read(offset: number, length: number): Promise<Buffer> {
    if (length <= this.maxBlockSize) return this.#request(NBD_CMD.READ, 0, offset, length, null) as Promise<Buffer>;
    const out = Buffer.allocUnsafe(length);
    const parts: Promise<void>[] = [];
    for (let at = 0; at < length; at += this.maxBlockSize) {
      const n = Math.min(this.maxBlockSize, length - at);
      parts.push(
        (this.#request(NBD_CMD.READ, 0, offset + at, n, null) as Promise<Buffer>).then((b) => void b.copy(out, at)),
      );
    }
    await Promise.all(parts);
    return out;
  }

  /** Write `data` at `offset` (split into requests of at most maxBlockSize). */
  async write(offset: number, data: Buffer, opts: { fua?: boolean } = {}): Promise<void> {
    const flags = opts.fua === true ? NBD_CMD_FLAG.FUA : 0;
    if (data.length <= this.maxBlockSize) {
      await this.#request(NBD_CMD.WRITE, flags, offset, data.length, data);
      return;
    }
    const parts: Promise<unknown>[] = [];
    for (let at = 0; at < data.length; at += this.maxBlockSize) {
      const n = Math.min(this.maxBlockSize, data.length - at);
      parts.push(this.#request(NBD_CMD.WRITE, flags, offset + at, n, data.subarray(at, at + n)));
    }
    await Promise.all(parts);
  }

  async flush(): Promise<void> {
    await this.#request(NBD_CMD.FLUSH, 0, 0, 0, null);
  }

  async trim(offset: number, length: number, opts: { fua?: boolean } = {}): Promise<void> {
    await this.#request(NBD_CMD.TRIM, opts.fua === true ? NBD_CMD_FLAG.FUA : 0, offset, length, null);
  }

  async writeZeroes(
    offset: number,
    length: number,
    opts: { fua?: boolean; noHole?: boolean; fastZero?: boolean } = {},
  ): Promise<void> {
    const flags =
      (opts.fua === true ? NBD_CMD_FLAG.FUA : 0) |
      (opts.noHole === true ? NBD_CMD_FLAG.NO_HOLE : 0) |
      (opts.fastZero === true ? NBD_CMD_FLAG.FAST_ZERO : 0);
    await this.#request(NBD_CMD.WRITE_ZEROES, flags, offset, length, null);
  }

  async cache(offset: number, length: number): Promise<void> {
    await this.#request(NBD_CMD.CACHE, 0, offset, length, null);
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Wait for in-flight requests, send NBD_CMD_DISC, and wait for the server to close. */
  async disconnect(): Promise<void> {
    if (this.#closedError === null && this.#pending.size > 0) {
      await new Promise<void>((resolve) => (this.#idle = resolve));
    }
    if (this.#closedError === null) {
      const h = Buffer.allocUnsafe(NBD_REQUEST_SIZE);
      encodeRequest(h, 0, { flags: 0, type: NBD_CMD.DISC, cookieHi: 0, cookieLo: 0, offset: 0, length: 0 });
      this.#socket.end(h);
    }
    await this.#closed;
  }

  /** Drop the connection at once (pending requests reject). */
  destroy(): void {
    this.#socket.destroy();
  }

  #request(type: number, flags: number, offset: number, length: number, data: Buffer | null): Promise<Buffer | null> {
    if (this.#closedError !== null) return Promise.reject(this.#closedError);
    const cookie = this.#nextCookie;
    this.#nextCookie = this.#nextCookie >= 0xffff_ffff ? 1 : this.#nextCookie + 1;
    return new Promise((resolve, reject) => {
      this.#pending.set(cookie, { type, offset, length, buf: null, error: null, resolve, reject });
      const h = Buffer.allocUnsafe(NBD_REQUEST_SIZE);
      encodeRequest(h, 0, { flags, type, cookieHi: 0, cookieLo: cookie, offset, length });
      this.#socket.write(h);
      if (data !== null && data.length > 0) this.#socket.write(data);
    });
  }

  #failAll(err: NbdError): void {
    this.#closedError ??= err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    this.#idle?.();
    this.#idle = null;
  }

  #protocolError(msg: string): void {
    this.#failAll(new NbdError('EPROTO', 0, msg));
    this.#socket.destroy();
  }

  #onData(b: Buffer): void {
    const q = this.#queue;
    q.push(b);
    while (this.#closedError === null) {
      if (q.length < 4) return;
      const magic = q.peekUInt32BE(0);
      if (magic === NBD_SIMPLE_REPLY_MAGIC) {
        if (q.length < 16) return;
        const error = q.peekUInt32BE(4);
        const cookie = q.peekUInt32BE(12);
        const p = this.#pending.get(cookie);
        if (p === undefined) return this.#protocolError(`reply for unknown cookie ${cookie}`);
        const dataLen = p.type === NBD_CMD.READ && error === 0 ? p.length : 0;
        if (q.length < 16 + dataLen) return;
        q.skip(16);
        // Copied: the caller keeps read data, and must not pin (or see reused) socket chunks.
        let data: Buffer | null = null;
        if (dataLen > 0) {
          data = Buffer.allocUnsafe(dataLen);
          q.readInto(data, 0, dataLen);
        }
        this.#finish(cookie, p, error === 0 ? null : this.#errorOf(p, error, ''), data);
      } else if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
        if (q.length < 20) return;
        const flags = q.peekUInt16BE(4);
        const type = q.peekUInt16BE(6);
        const cookie = q.peekUInt32BE(12);
        const len = q.peekUInt32BE(16);
        const p = this.#pending.get(cookie);
        if (p === undefined) return this.#protocolError(`chunk for unknown cookie ${cookie}`);
        if (len > p.length + MAX_REPLY_EXTRA) return this.#protocolError(`chunk of ${len} bytes`);
        if (q.length < 20 + len) return;
        q.skip(20);
        this.#chunk(p, type, q.read(len));
        if ((flags & NBD_REPLY_FLAG.DONE) !== 0) this.#finish(cookie, p, p.error, p.buf);
      } else {
        return this.#protocolError(`bad reply magic 0x${magic.toString(16)}`);
      }
    }
  }

  #chunk(p: Pending, type: number, payload: Buffer): void {
    if (type === NBD_REPLY_TYPE.OFFSET_DATA || type === NBD_REPLY_TYPE.OFFSET_HOLE) {
      p.buf ??= Buffer.alloc(p.length);
      const off = readU64BE(payload, 0) - p.offset;
      if (type === NBD_REPLY_TYPE.OFFSET_DATA) payload.copy(p.buf, off, 8);
      else p.buf.fill(0, off, off + payload.readUInt32BE(8));
    } else if ((type & 0x8000) !== 0 && payload.length >= 6) {
      const msgLen = payload.readUInt16BE(4);
      p.error ??= this.#errorOf(p, payload.readUInt32BE(0), payload.toString('utf8', 6, 6 + msgLen));
    }
  }

  #errorOf(p: Pending, errno: number, msg: string): NbdError {
    const code = codeOfNbdErrno(errno);
    return new NbdError(
      code,
      errno,
      `${nameOfNbdCmd(p.type)} at ${p.offset} length ${p.length}: ${code}${msg !== '' ? ` (${msg})` : ''}`,
    );
  }

  #finish(cookie: number, p: Pending, error: NbdError | null, data: Buffer | null): void {
    this.#pending.delete(cookie);
    if (error !== null) p.reject(error);
    else if (p.type === NBD_CMD.READ) p.resolve(data ?? Buffer.alloc(p.length));
    else p.resolve(null);
    if (this.#pending.size === 0 && this.#idle !== null) {
      const idle = this.#idle;
      this.#idle = null;
      idle();
    }
  }
}
