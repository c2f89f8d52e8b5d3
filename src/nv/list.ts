// NvList: an ordered list of nv elements with typed adders, lenient getters (upstream nv_get_*)
// and strict require* views that throw NvError naming the field. HAST-SPEC §3.1.
import { NV_NAME_MAX, NV_TYPE, NvError, nameOfNvType, type NvElement, type NvType, type NvValueMap } from './types.js';

const UTF8 = new TextEncoder();

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const U64_MAX = (1n << 64n) - 1n;

/**
 * UTF-8 length of a name: its length when it is ASCII (every name the protocol uses), without
 * encoding it (TextEncoder for every field of every message was visible in the QD1 profile).
 */
function utf8Length(name: string): number {
  for (let i = 0; i < name.length; i++) if (name.charCodeAt(i) > 0x7f) return UTF8.encode(name).length;
  return name.length;
}

function checkName(name: string, allowEmpty = false): void {
  const bytes = utf8Length(name);
  if ((bytes === 0 && !allowEmpty) || bytes > NV_NAME_MAX || name.includes('\0')) {
    throw new NvError(
      'range',
      `Invalid nv element name ${JSON.stringify(name)}: must be 1..${NV_NAME_MAX} bytes without NUL`,
      name,
    );
  }
}

function checkInt(name: string, value: number, min: number, max: number, type: NvType): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new NvError('range', `Value ${value} of field '${name}' does not fit ${nameOfNvType(type)}`, name);
  }
}

function checkBig(name: string, value: bigint, min: bigint, max: bigint, type: NvType): void {
  if (value < min || value > max) {
    throw new NvError('range', `Value ${value} of field '${name}' does not fit ${nameOfNvType(type)}`, name);
  }
}

function checkValue(el: NvElement): void {
  switch (el.type) {
    case NV_TYPE.INT8:
      return checkInt(el.name, el.value, -0x80, 0x7f, el.type);
    case NV_TYPE.UINT8:
      return checkInt(el.name, el.value, 0, 0xff, el.type);
    case NV_TYPE.INT16:
      return checkInt(el.name, el.value, -0x8000, 0x7fff, el.type);
    case NV_TYPE.UINT16:
      return checkInt(el.name, el.value, 0, 0xffff, el.type);
    case NV_TYPE.INT32:
      return checkInt(el.name, el.value, -0x8000_0000, 0x7fff_ffff, el.type);
    case NV_TYPE.UINT32:
      return checkInt(el.name, el.value, 0, 0xffff_ffff, el.type);
    case NV_TYPE.INT64:
      return checkBig(el.name, el.value, I64_MIN, I64_MAX, el.type);
    case NV_TYPE.UINT64:
      return checkBig(el.name, el.value, 0n, U64_MAX, el.type);
    case NV_TYPE.STRING:
      if (el.value.includes('\0')) {
        throw new NvError('range', `String value of field '${el.name}' contains a NUL byte`, el.name);
      }
      return;
    default:
      if (el.value.length === 0) {
        throw new NvError('range', `Array value of field '${el.name}' is empty`, el.name);
      }
  }
}

/**
 * An ordered nv list. Names need not be unique; every lookup returns the FIRST element with the
 * name. A getter that finds the name with another type returns undefined (upstream returns 0/NULL
 * and sets its sticky error); use the require* views where a field is mandatory.
 */
export class NvList {
  readonly #elements: NvElement[] = [];

  /** The elements in order (read-only view). */
  get elements(): readonly NvElement[] {
    return this.#elements;
  }

  get length(): number {
    return this.#elements.length;
  }

  [Symbol.iterator](): Iterator<NvElement> {
    return this.#elements[Symbol.iterator]();
  }

  /**
   * Append an element (e.g. copied from another list). The value is checked against its type; an
   * empty name is accepted here because upstream's decoder accepts one (its encoder never makes one).
   */
  addElement(el: NvElement): this {
    checkName(el.name, true);
    checkValue(el);
    this.#elements.push(el);
    return this;
  }

  #push<T extends NvType>(name: string, type: T, value: NvValueMap[T]): this {
    checkName(name);
    this.#elements.push({ name, type, value } as NvElement);
    return this;
  }

  addInt8(name: string, value: number): this {
    checkInt(name, value, -0x80, 0x7f, NV_TYPE.INT8);
    return this.#push(name, NV_TYPE.INT8, value);
  }
  addUint8(name: string, value: number): this {
    checkInt(name, value, 0, 0xff, NV_TYPE.UINT8);
    return this.#push(name, NV_TYPE.UINT8, value);
  }
  addInt16(name: string, value: number): this {
    checkInt(name, value, -0x8000, 0x7fff, NV_TYPE.INT16);
    return this.#push(name, NV_TYPE.INT16, value);
  }
  addUint16(name: string, value: number): this {
    checkInt(name, value, 0, 0xffff, NV_TYPE.UINT16);
    return this.#push(name, NV_TYPE.UINT16, value);
  }
  addInt32(name: string, value: number): this {
    checkInt(name, value, -0x8000_0000, 0x7fff_ffff, NV_TYPE.INT32);
    return this.#push(name, NV_TYPE.INT32, value);
  }
  addUint32(name: string, value: number): this {
    checkInt(name, value, 0, 0xffff_ffff, NV_TYPE.UINT32);
    return this.#push(name, NV_TYPE.UINT32, value);
  }
  addInt64(name: string, value: bigint): this {
    checkBig(name, value, I64_MIN, I64_MAX, NV_TYPE.INT64);
    return this.#push(name, NV_TYPE.INT64, value);
  }
  addUint64(name: string, value: bigint): this {
    checkBig(name, value, 0n, U64_MAX, NV_TYPE.UINT64);
    return this.#push(name, NV_TYPE.UINT64, value);
  }
  /** Add a string; it must not contain NUL (the encoding terminates it with one). */
  addString(name: string, value: string): this {
    if (value.includes('\0')) {
      throw new NvError('range', `String value of field '${name}' contains a NUL byte`, name);
    }
    return this.#push(name, NV_TYPE.STRING, value);
  }
  /** Arrays must be non-empty: the encoding forbids a zero data size. */
  addInt8Array(name: string, value: Int8Array): this {
    return this.#pushArray(name, NV_TYPE.INT8_ARRAY, value);
  }
  addUint8Array(name: string, value: Uint8Array): this {
    return this.#pushArray(name, NV_TYPE.UINT8_ARRAY, value);
  }
  addInt16Array(name: string, value: Int16Array): this {
    return this.#pushArray(name, NV_TYPE.INT16_ARRAY, value);
  }
  addUint16Array(name: string, value: Uint16Array): this {
    return this.#pushArray(name, NV_TYPE.UINT16_ARRAY, value);
  }
  addInt32Array(name: string, value: Int32Array): this {
    return this.#pushArray(name, NV_TYPE.INT32_ARRAY, value);
  }
  addUint32Array(name: string, value: Uint32Array): this {
    return this.#pushArray(name, NV_TYPE.UINT32_ARRAY, value);
  }
  addInt64Array(name: string, value: BigInt64Array): this {
    return this.#pushArray(name, NV_TYPE.INT64_ARRAY, value);
  }
  addUint64Array(name: string, value: BigUint64Array): this {
    return this.#pushArray(name, NV_TYPE.UINT64_ARRAY, value);
  }

  #pushArray<T extends NvType>(name: string, type: T, value: NvValueMap[T] & ArrayLike<unknown>): this {
    if (value.length === 0) {
      throw new NvError('range', `Array value of field '${name}' is empty`, name);
    }
    return this.#push(name, type, value);
  }

  /** The first element with this name, whatever its type. */
  find(name: string): NvElement | undefined {
    for (const el of this.#elements) if (el.name === name) return el;
    return undefined;
  }

  /** True when an element with this name exists (any type); upstream nv_exists. */
  has(name: string): boolean {
    return this.find(name) !== undefined;
  }

  /** Value of the first element named `name` if it has type `type`, else undefined. */
  get<T extends NvType>(name: string, type: T): NvValueMap[T] | undefined {
    const el = this.find(name);
    if (el === undefined || el.type !== type) return undefined;
    return el.value as NvValueMap[T];
  }

  getInt8(name: string): number | undefined {
    return this.get(name, NV_TYPE.INT8);
  }
  getUint8(name: string): number | undefined {
    return this.get(name, NV_TYPE.UINT8);
  }
  getInt16(name: string): number | undefined {
    return this.get(name, NV_TYPE.INT16);
  }
  getUint16(name: string): number | undefined {
    return this.get(name, NV_TYPE.UINT16);
  }
  getInt32(name: string): number | undefined {
    return this.get(name, NV_TYPE.INT32);
  }
  getUint32(name: string): number | undefined {
    return this.get(name, NV_TYPE.UINT32);
  }
  getInt64(name: string): bigint | undefined {
    return this.get(name, NV_TYPE.INT64);
  }
  getUint64(name: string): bigint | undefined {
    return this.get(name, NV_TYPE.UINT64);
  }
  getString(name: string): string | undefined {
    return this.get(name, NV_TYPE.STRING);
  }
  getInt8Array(name: string): Int8Array | undefined {
    return this.get(name, NV_TYPE.INT8_ARRAY);
  }
  getUint8Array(name: string): Uint8Array | undefined {
    return this.get(name, NV_TYPE.UINT8_ARRAY);
  }
  getInt16Array(name: string): Int16Array | undefined {
    return this.get(name, NV_TYPE.INT16_ARRAY);
  }
  getUint16Array(name: string): Uint16Array | undefined {
    return this.get(name, NV_TYPE.UINT16_ARRAY);
  }
  getInt32Array(name: string): Int32Array | undefined {
    return this.get(name, NV_TYPE.INT32_ARRAY);
  }
  getUint32Array(name: string): Uint32Array | undefined {
    return this.get(name, NV_TYPE.UINT32_ARRAY);
  }
  getInt64Array(name: string): BigInt64Array | undefined {
    return this.get(name, NV_TYPE.INT64_ARRAY);
  }
  getUint64Array(name: string): BigUint64Array | undefined {
    return this.get(name, NV_TYPE.UINT64_ARRAY);
  }

  /**
   * Value of a mandatory field. Throws NvError (reason `missing` or `type`) with a message such as
   * "Header from 10.0.0.2 has no 'token' field" or "... field 'token' is uint64, expected uint8 array",
   * where `what` ("Header from 10.0.0.2", "Metadata") names the list for the reader.
   */
  require<T extends NvType>(name: string, type: T, what = 'nv list'): NvValueMap[T] {
    const el = this.find(name);
    if (el === undefined) throw new NvError('missing', `${what} has no '${name}' field`, name);
    if (el.type !== type) {
      throw new NvError(
        'type',
        `${what} field '${name}' is ${nameOfNvType(el.type)}, expected ${nameOfNvType(type)}`,
        name,
      );
    }
    return el.value as NvValueMap[T];
  }

  requireInt8(name: string, what?: string): number {
    return this.require(name, NV_TYPE.INT8, what);
  }
  requireUint8(name: string, what?: string): number {
    return this.require(name, NV_TYPE.UINT8, what);
  }
  requireInt16(name: string, what?: string): number {
    return this.require(name, NV_TYPE.INT16, what);
  }
  requireUint16(name: string, what?: string): number {
    return this.require(name, NV_TYPE.UINT16, what);
  }
  requireInt32(name: string, what?: string): number {
    return this.require(name, NV_TYPE.INT32, what);
  }
  requireUint32(name: string, what?: string): number {
    return this.require(name, NV_TYPE.UINT32, what);
  }
  requireInt64(name: string, what?: string): bigint {
    return this.require(name, NV_TYPE.INT64, what);
  }
  requireUint64(name: string, what?: string): bigint {
    return this.require(name, NV_TYPE.UINT64, what);
  }
  requireString(name: string, what?: string): string {
    return this.require(name, NV_TYPE.STRING, what);
  }
  requireUint8Array(name: string, what?: string): Uint8Array {
    return this.require(name, NV_TYPE.UINT8_ARRAY, what);
  }
  requireUint64Array(name: string, what?: string): BigUint64Array {
    return this.require(name, NV_TYPE.UINT64_ARRAY, what);
  }
}
