// nv name/value lists: type codes, element shapes and the codec's error. HAST-SPEC §3.1
// (freebsd-src:sbin/hastd/nv.c).

/** nv type codes as they appear in the low 7 bits of the element's type byte. */
export const NV_TYPE = {
  INT8: 1,
  UINT8: 2,
  INT16: 3,
  UINT16: 4,
  INT32: 5,
  UINT32: 6,
  INT64: 7,
  UINT64: 8,
  INT8_ARRAY: 9,
  UINT8_ARRAY: 10,
  INT16_ARRAY: 11,
  UINT16_ARRAY: 12,
  INT32_ARRAY: 13,
  UINT32_ARRAY: 14,
  INT64_ARRAY: 15,
  UINT64_ARRAY: 16,
  STRING: 17,
} as const;
export type NvType = (typeof NV_TYPE)[keyof typeof NV_TYPE];

/** Smallest and largest valid type code. */
export const NV_TYPE_FIRST = NV_TYPE.INT8;
export const NV_TYPE_LAST = NV_TYPE.STRING;
/** Bit 0x80 of the type byte: "host byte order". Always clear on disk and on the wire. */
export const NV_ORDER_HOST = 0x80;
/** Longest name in bytes, excluding its NUL (namesize is one byte and counts the NUL). */
export const NV_NAME_MAX = 254;

/** The JavaScript value carried by each type. */
export interface NvValueMap {
  1: number;
  2: number;
  3: number;
  4: number;
  5: number;
  6: number;
  7: bigint;
  8: bigint;
  9: Int8Array;
  10: Uint8Array;
  11: Int16Array;
  12: Uint16Array;
  13: Int32Array;
  14: Uint32Array;
  15: BigInt64Array;
  16: BigUint64Array;
  17: string;
}

/** One element of a list; `type` discriminates `value`. */
export type NvElement = {
  [T in NvType]: { readonly name: string; readonly type: T; readonly value: NvValueMap[T] };
}[NvType];

const TYPE_NAMES: Record<NvType, string> = {
  1: 'int8',
  2: 'uint8',
  3: 'int16',
  4: 'uint16',
  5: 'int32',
  6: 'uint32',
  7: 'int64',
  8: 'uint64',
  9: 'int8 array',
  10: 'uint8 array',
  11: 'int16 array',
  12: 'uint16 array',
  13: 'int32 array',
  14: 'uint32 array',
  15: 'int64 array',
  16: 'uint64 array',
  17: 'string',
};

/** Human name of a type code for messages ("uint64", "uint8 array"); "type N" when unknown. */
export function nameOfNvType(type: number): string {
  return (TYPE_NAMES as Record<number, string>)[type] ?? `type ${type}`;
}

/** True when `type` is a valid code (1..17). */
export function isNvType(type: number): type is NvType {
  return Number.isInteger(type) && type >= NV_TYPE_FIRST && type <= NV_TYPE_LAST;
}

/**
 * Width in bytes of a scalar value or of one array element; 1 for strings (byte-counted).
 * Scalars must have exactly this data size, arrays a multiple of it.
 */
export function nvTypeWidth(type: NvType): 1 | 2 | 4 | 8 {
  switch (type) {
    case NV_TYPE.INT8:
    case NV_TYPE.UINT8:
    case NV_TYPE.INT8_ARRAY:
    case NV_TYPE.UINT8_ARRAY:
    case NV_TYPE.STRING:
      return 1;
    case NV_TYPE.INT16:
    case NV_TYPE.UINT16:
    case NV_TYPE.INT16_ARRAY:
    case NV_TYPE.UINT16_ARRAY:
      return 2;
    case NV_TYPE.INT32:
    case NV_TYPE.UINT32:
    case NV_TYPE.INT32_ARRAY:
    case NV_TYPE.UINT32_ARRAY:
      return 4;
    default:
      return 8;
  }
}

/** True for the eight scalar integer types (1..8). */
export function isNvScalar(type: NvType): boolean {
  return type <= NV_TYPE.UINT64;
}

/** Why an nv operation failed. */
export type NvErrorReason = 'malformed' | 'missing' | 'type' | 'range';

/**
 * Any failure of the nv codec or of a strict lookup: a malformed encoded list (`malformed`), a
 * required field absent (`missing`) or of the wrong type (`type`), or a value that does not fit
 * its type when adding (`range`). `field` names the element concerned, when there is one.
 */
export class NvError extends Error {
  override readonly name = 'NvError';
  readonly code = 'EINVAL';
  readonly reason: NvErrorReason;
  readonly field: string | undefined;
  constructor(reason: NvErrorReason, message: string, field?: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.reason = reason;
    this.field = field;
  }
}
