// The nv encoding: byte-exact encoder and fully validating decoder. HAST-SPEC §3.1
// (freebsd-src:sbin/hastd/nv.c nv_add, nv_validate, nv_swap).
//
// A list is a run of elements, optionally followed by zero padding (a 0 type byte ends it):
//
//   off  size                 field
//   0    1                    type: low 7 bits = code 1..17; 0x80 = host order, always clear here
//   1    1                    namesize = strlen(name) + 1, at most 255
//   2    4                    datasize, little-endian, never 0
//   6    roundup8(namesize)   name, NUL-terminated; pad bytes are not checked (upstream leaves
//                             them uninitialised), we write zeros
//   6+roundup8(namesize)      data, roundup8(datasize) bytes: integers and array elements LE,
//                             strings = UTF-8 bytes + one NUL
//
// Element size = 6 + roundup8(namesize) + roundup8(datasize); elements are not 8-aligned as a whole.
import { NvList } from './list.js';
import {
  NV_ORDER_HOST,
  NV_TYPE,
  NvError,
  isNvScalar,
  isNvType,
  nameOfNvType,
  nvTypeWidth,
  type NvElement,
  type NvType,
} from './types.js';

export { NvList } from './list.js';
export * from './types.js';

const HEADER_SIZE = 6;
const UTF8_ENCODER = new TextEncoder();
/**
 * Encoded field names: the lists we build use a few dozen fixed names, each encoded once instead
 * of once per message (TextEncoder was visible in the per-request profile). Bounded, so that names
 * from elsewhere cannot make it grow without limit.
 */
const NAME_CACHE = new Map<string, Uint8Array>();
const NAME_CACHE_MAX = 256;

function encodedName(name: string): Uint8Array {
  let b = NAME_CACHE.get(name);
  if (b === undefined) {
    b = UTF8_ENCODER.encode(name);
    if (NAME_CACHE.size < NAME_CACHE_MAX) NAME_CACHE.set(name, b);
  }
  return b;
}
// Fatal: a name or string that is not UTF-8 is rejected rather than silently altered.
const UTF8_DECODER = new TextDecoder('utf-8', { fatal: true });

function roundup8(n: number): number {
  return n + ((8 - (n % 8)) % 8);
}

interface Prepared {
  readonly el: NvElement;
  readonly name: Uint8Array;
  /** UTF-8 bytes of a string value (without the NUL); null for other types. */
  readonly str: Uint8Array | null;
  readonly dataSize: number;
}

function dataSizeOf(el: NvElement, str: Uint8Array | null): number {
  if (str !== null) return str.length + 1;
  if (isNvScalar(el.type)) return nvTypeWidth(el.type);
  return (el.value as ArrayLike<unknown>).length * nvTypeWidth(el.type);
}

function prepare(list: NvList): Prepared[] {
  const out: Prepared[] = [];
  for (const el of list) {
    const name = encodedName(el.name);
    const str = el.type === NV_TYPE.STRING ? UTF8_ENCODER.encode(el.value) : null;
    const dataSize = dataSizeOf(el, str);
    if (dataSize > 0xffff_ffff) {
      throw new NvError('range', `Field '${el.name}' is too large for the nv encoding`, el.name);
    }
    out.push({ el, name, str, dataSize });
  }
  return out;
}

/** Number of bytes encodeNv() produces for this list (no trailing padding). */
export function nvEncodedSize(list: NvList): number {
  let size = 0;
  for (const p of prepare(list)) size += HEADER_SIZE + roundup8(p.name.length + 1) + roundup8(p.dataSize);
  return size;
}

function writeValue(buf: Buffer, at: number, p: Prepared): void {
  const el = p.el;
  switch (el.type) {
    case NV_TYPE.INT8:
      buf.writeInt8(el.value, at);
      return;
    case NV_TYPE.UINT8:
      buf.writeUInt8(el.value, at);
      return;
    case NV_TYPE.INT16:
      buf.writeInt16LE(el.value, at);
      return;
    case NV_TYPE.UINT16:
      buf.writeUInt16LE(el.value, at);
      return;
    case NV_TYPE.INT32:
      buf.writeInt32LE(el.value, at);
      return;
    case NV_TYPE.UINT32:
      buf.writeUInt32LE(el.value, at);
      return;
    case NV_TYPE.INT64:
      buf.writeBigInt64LE(el.value, at);
      return;
    case NV_TYPE.UINT64:
      buf.writeBigUInt64LE(el.value, at);
      return;
    case NV_TYPE.STRING:
      // The NUL terminator is already there: the buffer is zero-filled.
      buf.set(p.str ?? new Uint8Array(0), at);
      return;
    case NV_TYPE.INT8_ARRAY:
    case NV_TYPE.UINT8_ARRAY:
      buf.set(new Uint8Array(el.value.buffer, el.value.byteOffset, el.value.length), at);
      return;
    case NV_TYPE.INT16_ARRAY:
      for (let i = 0; i < el.value.length; i++) buf.writeInt16LE(el.value[i] ?? 0, at + 2 * i);
      return;
    case NV_TYPE.UINT16_ARRAY:
      for (let i = 0; i < el.value.length; i++) buf.writeUInt16LE(el.value[i] ?? 0, at + 2 * i);
      return;
    case NV_TYPE.INT32_ARRAY:
      for (let i = 0; i < el.value.length; i++) buf.writeInt32LE(el.value[i] ?? 0, at + 4 * i);
      return;
    case NV_TYPE.UINT32_ARRAY:
      for (let i = 0; i < el.value.length; i++) buf.writeUInt32LE(el.value[i] ?? 0, at + 4 * i);
      return;
    case NV_TYPE.INT64_ARRAY:
      for (let i = 0; i < el.value.length; i++) buf.writeBigInt64LE(el.value[i] ?? 0n, at + 8 * i);
      return;
    case NV_TYPE.UINT64_ARRAY:
      for (let i = 0; i < el.value.length; i++) buf.writeBigUInt64LE(el.value[i] ?? 0n, at + 8 * i);
      return;
  }
}

/**
 * Encode a list in network (little-endian) order, exactly as upstream nv_hton() leaves it:
 * names and data zero-padded to multiples of 8, no trailing padding. `minSize` zero-pads the
 * result to at least that many bytes (the 4096-byte metadata block). `headroom` bytes are left
 * free (zero) before the list, for a caller's own header (one buffer per message instead of two);
 * the list's length is then `result.length - headroom`.
 */
export function encodeNv(list: NvList, minSize = 0, headroom = 0): Buffer {
  const prepared = prepare(list);
  let size = 0;
  for (const p of prepared) size += HEADER_SIZE + roundup8(p.name.length + 1) + roundup8(p.dataSize);
  const buf = Buffer.alloc(headroom + Math.max(size, minSize));
  let off = headroom;
  for (const p of prepared) {
    const nameSize = p.name.length + 1;
    buf[off] = p.el.type;
    buf[off + 1] = nameSize;
    buf.writeUInt32LE(p.dataSize, off + 2);
    buf.set(p.name, off + HEADER_SIZE);
    const dataAt = off + HEADER_SIZE + roundup8(nameSize);
    writeValue(buf, dataAt, p);
    off = dataAt + roundup8(p.dataSize);
  }
  return buf;
}

function malformed(off: number, reason: string, field?: string, cause?: unknown): NvError {
  const where = field === undefined ? '' : ` (field '${field}')`;
  return new NvError('malformed', `Invalid nv list at offset ${off}${where}: ${reason}`, field, cause);
}

function decodeUtf8(bytes: Uint8Array, off: number, what: string): string {
  try {
    return UTF8_DECODER.decode(bytes);
  } catch (err) {
    throw malformed(off, `${what} is not valid UTF-8`, undefined, err);
  }
}

function readValue(buf: Buffer, at: number, size: number, type: NvType): NvElement['value'] {
  const end = at + size;
  switch (type) {
    case NV_TYPE.INT8:
      return buf.readInt8(at);
    case NV_TYPE.UINT8:
      return buf.readUInt8(at);
    case NV_TYPE.INT16:
      return buf.readInt16LE(at);
    case NV_TYPE.UINT16:
      return buf.readUInt16LE(at);
    case NV_TYPE.INT32:
      return buf.readInt32LE(at);
    case NV_TYPE.UINT32:
      return buf.readUInt32LE(at);
    case NV_TYPE.INT64:
      return buf.readBigInt64LE(at);
    case NV_TYPE.UINT64:
      return buf.readBigUInt64LE(at);
    case NV_TYPE.STRING:
      return decodeUtf8(buf.subarray(at, end - 1), at, 'string value');
    case NV_TYPE.INT8_ARRAY:
      return Int8Array.from(buf.subarray(at, end), (b) => (b << 24) >> 24);
    case NV_TYPE.UINT8_ARRAY:
      return new Uint8Array(buf.subarray(at, end));
    case NV_TYPE.INT16_ARRAY: {
      const a = new Int16Array(size / 2);
      for (let i = 0; i < a.length; i++) a[i] = buf.readInt16LE(at + 2 * i);
      return a;
    }
    case NV_TYPE.UINT16_ARRAY: {
      const a = new Uint16Array(size / 2);
      for (let i = 0; i < a.length; i++) a[i] = buf.readUInt16LE(at + 2 * i);
      return a;
    }
    case NV_TYPE.INT32_ARRAY: {
      const a = new Int32Array(size / 4);
      for (let i = 0; i < a.length; i++) a[i] = buf.readInt32LE(at + 4 * i);
      return a;
    }
    case NV_TYPE.UINT32_ARRAY: {
      const a = new Uint32Array(size / 4);
      for (let i = 0; i < a.length; i++) a[i] = buf.readUInt32LE(at + 4 * i);
      return a;
    }
    case NV_TYPE.INT64_ARRAY: {
      const a = new BigInt64Array(size / 8);
      for (let i = 0; i < a.length; i++) a[i] = buf.readBigInt64LE(at + 8 * i);
      return a;
    }
    case NV_TYPE.UINT64_ARRAY: {
      const a = new BigUint64Array(size / 8);
      for (let i = 0; i < a.length; i++) a[i] = buf.readBigUInt64LE(at + 8 * i);
      return a;
    }
  }
}

/**
 * Decode and validate a whole encoded list (HAST-SPEC §3.1). A zero byte where a type byte is
 * expected ends the list; what follows is ignored (upstream trims it as padding). Every element
 * is checked before any value is read; any violation throws NvError (reason `malformed`) and no
 * partial list is returned. Values are copied out, so `buf` may be reused afterwards. Allocates
 * at most about the size of `buf`.
 */
export function decodeNv(buf: Uint8Array): NvList {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const list = new NvList();
  let off = 0;
  while (off < b.length) {
    const typeByte = b[off] ?? 0;
    if (typeByte === 0) break;
    const remaining = b.length - off;
    // Upstream's minimum: header plus a one-character name and its NUL.
    if (remaining < HEADER_SIZE + 2) throw malformed(off, 'truncated element header');
    if ((typeByte & NV_ORDER_HOST) !== 0) throw malformed(off, 'host byte order flag set');
    const nameSize = b[off + 1] ?? 0;
    if (nameSize === 0) throw malformed(off, 'name size is 0');
    const headerSize = HEADER_SIZE + roundup8(nameSize);
    if (remaining < headerSize) throw malformed(off, 'name does not fit in the buffer');
    const nameAt = off + HEADER_SIZE;
    const nul = b.indexOf(0, nameAt);
    if (nul !== nameAt + nameSize - 1) {
      throw malformed(off, nul < nameAt + nameSize - 1 ? 'NUL inside the name' : 'name not NUL-terminated');
    }
    const name = decodeUtf8(b.subarray(nameAt, nameAt + nameSize - 1), off, 'name');
    const type = typeByte & 0x7f;
    if (!isNvType(type)) throw malformed(off, `invalid type code ${type}`, name);
    const dataSize = b.readUInt32LE(off + 2);
    if (dataSize === 0) throw malformed(off, 'data size is 0', name);
    if (remaining < headerSize + roundup8(dataSize)) throw malformed(off, 'element does not fit in the buffer', name);
    const width = nvTypeWidth(type);
    const dataAt = off + headerSize;
    if (type === NV_TYPE.STRING) {
      if (b.indexOf(0, dataAt) !== dataAt + dataSize - 1) {
        throw malformed(off, 'string not NUL-terminated or contains a NUL', name);
      }
    } else if (isNvScalar(type)) {
      if (dataSize !== width) {
        throw malformed(off, `${nameOfNvType(type)} with data size ${dataSize}`, name);
      }
    } else if (dataSize % width !== 0) {
      throw malformed(off, `${nameOfNvType(type)} with data size ${dataSize}, not a multiple of ${width}`, name);
    }
    list.addElement({ name, type, value: readValue(b, dataAt, dataSize, type) } as NvElement);
    off = dataAt + roundup8(dataSize);
  }
  return list;
}
