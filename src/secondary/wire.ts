// The peer wire format as the primary's and secondary's data paths use it (HAST-SPEC §3.1 nv lists,
// §6.2 framing, §6.3 handshake, §6.4 requests/replies). The nv encoding is src/nv, payload
// compression (hole, lzf) and checksums (crc32, sha256) are src/peer; this file adapts them to
// the small field-list shape the sessions build and read, and keeps the incremental FrameReader.
import type { Socket } from 'node:net';
import { decodeNv, encodeNv, NvError, NvList, type NvElement } from '../nv/codec.js';
import { computeHash } from '../peer/checksum.js';
import { compressPayload, decompressPayload } from '../peer/compression/index.js';
import { PeerProtocolError } from '../peer/errors.js';
import type { HioReply, HioRequest } from './apply.js';

/** nv type codes (HAST-SPEC §3.1) used by the field helpers below. */
const NV = { INT8: 1, UINT8: 2, INT16: 3, UINT16: 4, INT32: 5, UINT32: 6, INT64: 7, UINT64: 8, UINT8_ARRAY: 10, STRING: 17 } as const;

/** Bad bytes from the peer: the connection is dropped, the daemon lives. */
export class WireError extends Error {
  override readonly name = 'WireError';
}

export interface NvField {
  readonly name: string;
  readonly type: number;
  /** Integers as bigint, strings as string, arrays as the raw little-endian bytes. */
  readonly value: bigint | string | Buffer;
}

/** A decoded nv list with first-match lookups. */
export class NvFields {
  readonly fields: readonly NvField[];
  constructor(fields: readonly NvField[]) {
    this.fields = fields;
  }
  #find(name: string, type: number): NvField | undefined {
    return this.fields.find((f) => f.name === name && f.type === type);
  }
  has(name: string): boolean {
    return this.fields.some((f) => f.name === name);
  }
  int(name: string, type: number): bigint | null {
    const v = this.#find(name, type)?.value;
    return typeof v === 'bigint' ? v : null;
  }
  string(name: string): string | null {
    const v = this.#find(name, NV.STRING)?.value;
    return typeof v === 'string' ? v : null;
  }
  bytes(name: string): Buffer | null {
    const v = this.#find(name, NV.UINT8_ARRAY)?.value;
    return Buffer.isBuffer(v) ? v : null;
  }
}

/** One decoded src/nv element as a field: integers widened to bigint, arrays as their LE bytes. */
function fieldOf(el: NvElement): NvField {
  const v = el.value;
  if (typeof v === 'string' || typeof v === 'bigint') return { name: el.name, type: el.type, value: v };
  if (typeof v === 'number') return { name: el.name, type: el.type, value: BigInt(v) };
  // Typed arrays: the host is little-endian (x86-64, arm64), as the wire is.
  return { name: el.name, type: el.type, value: Buffer.from(v.buffer, v.byteOffset, v.byteLength) };
}

/** Decode and validate a whole nv list (HAST-SPEC §3.1, src/nv); throws WireError on any violation. */
export function decodeNvList(buf: Buffer): NvFields {
  try {
    return new NvFields(decodeNv(buf).elements.map(fieldOf));
  } catch (err) {
    if (err instanceof NvError) throw new WireError(err.message, { cause: err });
    throw err;
  }
}

/** Encode an nv list with src/nv (little-endian, each part padded to 8 bytes). */
export function encodeNvList(fields: readonly NvField[]): Buffer {
  const list = new NvList();
  for (const f of fields) {
    const v = f.value;
    switch (f.type) {
      case NV.INT8: list.addInt8(f.name, Number(v)); break;
      case NV.UINT8: list.addUint8(f.name, Number(v)); break;
      case NV.INT16: list.addInt16(f.name, Number(v)); break;
      case NV.UINT16: list.addUint16(f.name, Number(v)); break;
      case NV.INT32: list.addInt32(f.name, Number(v)); break;
      case NV.UINT32: list.addUint32(f.name, Number(v)); break;
      case NV.INT64: list.addInt64(f.name, v as bigint); break;
      case NV.UINT64: list.addUint64(f.name, v as bigint); break;
      case NV.STRING: list.addString(f.name, v as string); break;
      case NV.UINT8_ARRAY: list.addUint8Array(f.name, v as Buffer); break;
      default: throw new TypeError(`nv field '${f.name}': type ${f.type} is not produced by the peer protocol`);
    }
  }
  return encodeNv(list);
}

export const nvU8 = (name: string, v: number): NvField => ({ name, type: NV.UINT8, value: BigInt(v) });
export const nvI8 = (name: string, v: number): NvField => ({ name, type: NV.INT8, value: BigInt(v) });
export const nvI16 = (name: string, v: number): NvField => ({ name, type: NV.INT16, value: BigInt(v) });
export const nvU32 = (name: string, v: number): NvField => ({ name, type: NV.UINT32, value: BigInt(v) });
export const nvI32 = (name: string, v: number): NvField => ({ name, type: NV.INT32, value: BigInt(v) });
export const nvU64 = (name: string, v: bigint): NvField => ({ name, type: NV.UINT64, value: v });
export const nvI64 = (name: string, v: bigint): NvField => ({ name, type: NV.INT64, value: v });
export const nvString = (name: string, v: string): NvField => ({ name, type: NV.STRING, value: v });
export const nvBytes = (name: string, v: Buffer): NvField => ({ name, type: NV.UINT8_ARRAY, value: v });

export interface PayloadOptions {
  readonly compression: 'none' | 'hole' | 'lzf';
  readonly checksum: 'none' | 'crc32' | 'sha256';
}

/**
 * One framed message (HAST-SPEC §6.2): version byte, u32 LE nv length, nv list, payload. The payload
 * is compressed (src/peer: hole, or lzf when it saves at least 1 KiB) and then checksummed over the
 * bytes as sent, as upstream hast_proto_send does.
 */
export function encodeFrame(version: number, fields: readonly NvField[], payload: Buffer | null, opts: PayloadOptions): Buffer[] {
  const all = [...fields];
  let body = payload;
  if (body !== null && body.length > 0) {
    const packed = compressPayload(opts.compression, body);
    body = packed.data;
    if (packed.compression !== null) all.push(nvString('compression', packed.compression));
    if (opts.checksum !== 'none') all.push(nvString('checksum', opts.checksum), nvBytes('hash', computeHash(opts.checksum, body)));
    all.push(nvU32('size', body.length));
  }
  const nv = encodeNvList(all);
  const head = Buffer.alloc(5);
  head[0] = version;
  head.writeUInt32LE(nv.length, 1);
  return body !== null && body.length > 0 ? [head, nv, body] : [head, nv];
}

/**
 * Undo checksum then compression on a received payload (HAST-SPEC §6.2); the result is at most
 * maxSize bytes and nothing larger is allocated. Throws WireError with upstream's wording.
 */
export function decodePayload(nv: NvFields, payload: Buffer, maxSize: number): Buffer {
  const alg = nv.string('checksum');
  if (alg !== null) {
    const hash = nv.bytes('hash');
    if (hash === null) throw new WireError('Hash is missing');
    if (alg !== 'crc32' && alg !== 'sha256') throw new WireError(`Unknown checksum algorithm '${alg}'`);
    const computed = computeHash(alg, payload);
    if (hash.length !== computed.length) throw new WireError(`Invalid hash size (${hash.length}) for ${alg}, should be ${computed.length}`);
    if (!computed.equals(hash)) throw new WireError('Hash mismatch');
  }
  const comp = nv.string('compression');
  if (comp === null) return payload;
  try {
    return decompressPayload(comp, payload, maxSize);
  } catch (err) {
    if (err instanceof PeerProtocolError) throw new WireError(err.message, { cause: err });
    throw err;
  }
}

export interface Frame {
  readonly version: number;
  readonly nv: NvFields;
  /** Raw payload bytes as sent (before checksum/decompression), null when none. */
  readonly payload: Buffer | null;
}

/**
 * Incremental frame parser: push() socket chunks, next() whole frames. Every declared length is
 * checked against its bound before any byte of it is buffered (STYLE §2.5.7).
 */
export class FrameReader {
  readonly #maxNv: number;
  readonly #maxPayload: number;
  #chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  #offset = 0;
  #have = 0;
  #head: { version: number; nvLen: number } | null = null;
  #nv: NvFields | null = null;
  #payloadLen = 0;
  /** A payload spanning chunks, assembled as bytes arrive (one copy; chunks released early). */
  #payload: Buffer | null = null;
  #payloadFill = 0;

  constructor(opts: { maxNv: number; maxPayload: number }) {
    this.#maxNv = opts.maxNv;
    this.#maxPayload = opts.maxPayload;
  }

  get buffered(): number {
    return this.#have;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#have += chunk.length;
  }

  /** Consume n ≤ #have bytes: a subarray when inside one chunk, else one fresh Buffer. */
  #take(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.length - this.#offset >= n) {
      const out = first.subarray(this.#offset, this.#offset + n);
      this.#advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.#copyInto(out, 0, n);
    return out;
  }

  #copyInto(dst: Buffer, at: number, n: number): void {
    let done = 0;
    while (done < n) {
      const c = this.#chunks[0] as Buffer;
      const len = Math.min(c.length - this.#offset, n - done);
      c.copy(dst, at + done, this.#offset, this.#offset + len);
      done += len;
      this.#advance(len);
    }
  }

  #advance(n: number): void {
    this.#have -= n;
    this.#offset += n;
    while (this.#chunks.length > 0 && this.#offset >= (this.#chunks[0] as Buffer).length) {
      this.#offset -= (this.#chunks.shift() as Buffer).length;
    }
  }

  /**
   * The payload once complete, else null. One inside a single socket chunk is copied out (small,
   * and the chunk is not kept alive by it); one spanning chunks is assembled as bytes arrive.
   */
  #takePayload(): Buffer | null {
    const size = this.#payloadLen;
    if (this.#payload === null) {
      const first = this.#chunks[0];
      if (first !== undefined && first.length - this.#offset >= size) return Buffer.from(this.#take(size));
      this.#payload = Buffer.allocUnsafe(size);
      this.#payloadFill = 0;
    }
    const n = Math.min(this.#have, size - this.#payloadFill);
    if (n > 0) {
      this.#copyInto(this.#payload, this.#payloadFill, n);
      this.#payloadFill += n;
    }
    if (this.#payloadFill < size) return null;
    const out = this.#payload;
    this.#payload = null;
    this.#payloadFill = 0;
    return out;
  }

  /** The next complete frame, or null when more bytes are needed. Throws WireError on garbage. */
  next(): Frame | null {
    if (this.#head === null) {
      if (this.#have < 5) return null;
      const h = this.#take(5);
      const version = h[0] ?? 0;
      const nvLen = h.readUInt32LE(1);
      if (version === 0 || version > 2) throw new WireError(`RPC version mismatch (${version})`);
      if (nvLen === 0 || nvLen > this.#maxNv) throw new WireError(`Invalid header size ${nvLen}`);
      this.#head = { version, nvLen };
    }
    if (this.#nv === null) {
      if (this.#have < this.#head.nvLen) return null;
      this.#nv = decodeNvList(this.#take(this.#head.nvLen));
      const size = this.#nv.int('size', NV.UINT32);
      this.#payloadLen = size === null ? 0 : Number(size);
      if (this.#payloadLen > this.#maxPayload) throw new WireError(`Payload too large (${this.#payloadLen} > ${this.#maxPayload})`);
    }
    let payload: Buffer | null = null;
    if (this.#payloadLen > 0) {
      payload = this.#takePayload();
      if (payload === null) return null;
    }
    const frame: Frame = { version: this.#head.version, nv: this.#nv, payload };
    this.#head = null;
    this.#nv = null;
    this.#payloadLen = 0;
    return frame;
  }
}

/** Fields of a handshake message the parent routes on (HAST-SPEC §6.3 steps 1 and 5). */
export interface HandshakeFields {
  readonly resource: string | null;
  /** Present token bytes (any length), an empty Buffer for a token of the wrong type, null when absent. */
  readonly token: Buffer | null;
  readonly version: number | null;
  readonly virgin: boolean;
  readonly resuid: bigint;
  readonly localCnt: bigint;
  readonly remoteCnt: bigint;
}

/** Handshake messages are small: a generous bound for the nv list, and no payload at all. */
const HANDSHAKE_MAX_NV = 64 * 1024;

/** The routing fields of a handshake nv list (missing counters read as 0, as upstream). */
export function handshakeFields(nv: NvFields): HandshakeFields {
  const token = nv.bytes('token') ?? (nv.has('token') ? Buffer.alloc(0) : null);
  const version = nv.int('version', NV.UINT8);
  return {
    resource: nv.string('resource'),
    token,
    version: version === null ? null : Number(version),
    virgin: nv.has('virgin'),
    resuid: nv.int('resuid', NV.UINT64) ?? 0n,
    localCnt: nv.int('localcnt', NV.UINT64) ?? 0n,
    remoteCnt: nv.int('remotecnt', NV.UINT64) ?? 0n,
  };
}

/**
 * Read exactly one handshake message from a fresh socket within timeoutMs, then pause the socket
 * (it may be handed to a worker, so nothing past this message may be consumed). Throws on garbage,
 * an oversized header, a payload, EOF or timeout.
 */
export function readHandshakeMessage(sock: Socket, timeoutMs: number): Promise<HandshakeFields> {
  const reader = new FrameReader({ maxNv: HANDSHAKE_MAX_NV, maxPayload: 0 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new WireError('Timeout while waiting for the handshake header')), timeoutMs);
    const finish = (err: Error | null, fields?: HandshakeFields): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
      sock.pause();
      if (err !== null) reject(err);
      else if (fields !== undefined) resolve(fields);
    };
    const onData = (chunk: Buffer): void => {
      try {
        reader.push(chunk);
        const frame = reader.next();
        if (frame === null) return;
        if (reader.buffered > 0) throw new WireError('Unexpected data after the handshake header');
        finish(null, handshakeFields(frame.nv));
      } catch (err) {
        finish(err instanceof Error ? err : new WireError(String(err)));
      }
    };
    const onEnd = (): void => finish(new WireError('Connection closed before the handshake header'));
    const onError = (err: Error): void => finish(err);
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('error', onError);
    sock.resume();
  });
}

function writeAll(sock: Socket, bufs: readonly Buffer[], end: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    if (sock.destroyed || !sock.writable) {
      reject(new WireError('Socket is not writable'));
      return;
    }
    sock.cork();
    const last = bufs.length - 1;
    bufs.forEach((b, i) => {
      if (i < last) sock.write(b);
      else if (end) sock.end(b, () => resolve());
      else sock.write(b, (err) => (err == null ? resolve() : reject(err)));
    });
    sock.uncork();
  });
}

/** Refuse a handshake: send `{errmsg, [wait]}` with version 2, then close. Never throws. */
export async function sendRefusal(sock: Socket, errmsg: string, wait: boolean): Promise<void> {
  const fields = [nvString('errmsg', errmsg)];
  if (wait) fields.push(nvU8('wait', 1));
  try {
    await writeAll(sock, encodeFrame(2, fields, null, { compression: 'none', checksum: 'none' }), true);
  } catch {
    // The peer is gone already; the refusal was only a courtesy.
  }
  sock.destroy();
}

/** First-connection reply `{version, token}` (HAST-SPEC §6.3 step 3). */
export function writeFirstReply(sock: Socket, version: number, token: Buffer): Promise<void> {
  const fields = [nvU8('version', version), nvBytes('token', token)];
  return writeAll(sock, encodeFrame(version, fields, null, { compression: 'none', checksum: 'none' }), false);
}

/** Syncsrc values on the wire (upstream HAST_SYNCSRC_*). */
export const SYNCSRC = { UNDEF: 0, PRIMARY: 1, SECONDARY: 2 } as const;

/** The secondary's handshake answer (HAST-SPEC §6.3 step 7). */
export interface HandshakeReply {
  readonly dataSize: number;
  readonly extentSize: number;
  readonly localCnt: bigint;
  readonly remoteCnt: bigint;
  readonly virgin: boolean;
  readonly syncSrc: number;
  /** Bitmap to send (mapsize = its length), or null for mapsize 0. */
  readonly map: Buffer | null;
}

export function encodeHandshakeReply(version: number, r: HandshakeReply, opts: PayloadOptions): Buffer[] {
  const fields = [
    nvI64('datasize', BigInt(r.dataSize)),
    nvI32('extentsize', r.extentSize),
    nvU64('localcnt', r.localCnt),
    nvU64('remotecnt', r.remoteCnt),
  ];
  if (r.virgin) fields.push(nvI8('virgin', 1));
  fields.push(nvU8('syncsrc', r.syncSrc), nvU32('mapsize', r.map?.length ?? 0));
  return encodeFrame(version, fields, r.map, opts);
}

export function encodeErrmsg(version: number, errmsg: string): Buffer[] {
  return encodeFrame(version, [nvString('errmsg', errmsg)], null, { compression: 'none', checksum: 'none' });
}

/** A request frame as the apply engine sees it; the WRITE payload is decoded here. */
export function requestFromFrame(frame: Frame, maxData: number): HioRequest {
  const nv = frame.nv;
  const cmd = Number(nv.int('cmd', NV.UINT8) ?? 0n);
  const data = frame.payload === null ? null : decodePayload(nv, frame.payload, maxData);
  return {
    cmd,
    seq: nv.int('seq', NV.UINT64) ?? 0n,
    offset: nv.int('offset', NV.UINT64),
    length: nv.int('length', NV.UINT64),
    memsync: (nv.int('memsync', NV.UINT8) ?? 0n) !== 0n,
    data,
  };
}

/** A reply frame `{seq, [received], [error]}` + READ data (HAST-SPEC §6.4). */
export function encodeReply(version: number, r: HioReply, opts: PayloadOptions): Buffer[] {
  const fields = [nvU64('seq', r.seq)];
  if (r.received === true) fields.push(nvI8('received', 1));
  if (r.error !== undefined) fields.push(nvI16('error', r.error));
  return encodeFrame(version, fields, r.data ?? null, opts);
}

/** A request frame, for tests and tools: `{cmd, [seq], [offset, length], [memsync]}` + data. */
export function encodeRequest(
  version: number,
  req: { cmd: number; seq?: bigint; offset?: bigint; length?: bigint; memsync?: boolean; data?: Buffer },
  opts: PayloadOptions,
): Buffer[] {
  const fields = [nvU8('cmd', req.cmd)];
  if (req.seq !== undefined) fields.push(nvU64('seq', req.seq));
  if (req.offset !== undefined) fields.push(nvU64('offset', req.offset));
  if (req.length !== undefined) fields.push(nvU64('length', req.length));
  if (req.memsync === true) fields.push(nvU8('memsync', 1));
  return encodeFrame(version, fields, req.data ?? null, opts);
}
