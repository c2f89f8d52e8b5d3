// Bit-level helpers for FreeBSD `bitstring` maps (HAST-SPEC §3.3): extent n is bit (n % 8), least
// significant first, of byte n >> 3. Pure functions over Uint8Array (a Buffer is one).

/** Bytes needed for `nbits` bits (bitstr_size). */
export function bitmapBytes(nbits: number): number {
  return (nbits + 7) >>> 3;
}

/** Round `n` up to a multiple of `multiple` (roundup2 for any positive multiple). */
export function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

/** True when bit `n` is set. Bits past the end of the map read as clear. */
export function testBit(map: Uint8Array, n: number): boolean {
  return ((map[n >>> 3] ?? 0) & (1 << (n & 7))) !== 0;
}

/** Set bit `n`; returns true when it was clear before. */
export function setBit(map: Uint8Array, n: number): boolean {
  const i = n >>> 3;
  const mask = 1 << (n & 7);
  const b = map[i] ?? 0;
  if ((b & mask) !== 0) return false;
  map[i] = b | mask;
  return true;
}

/** Clear bit `n`; returns true when it was set before. */
export function clearBit(map: Uint8Array, n: number): boolean {
  const i = n >>> 3;
  const mask = 1 << (n & 7);
  const b = map[i] ?? 0;
  if ((b & mask) === 0) return false;
  map[i] = b & ~mask;
  return true;
}

/** dst |= src over the first `bytes` bytes (default: the shorter of the two). */
export function orInto(dst: Uint8Array, src: Uint8Array, bytes = Math.min(dst.length, src.length)): void {
  for (let i = 0; i < bytes; i++) dst[i] = (dst[i] ?? 0) | (src[i] ?? 0);
}

const POP8 = new Uint8Array(256);
for (let i = 1; i < 256; i++) POP8[i] = (i & 1) + (POP8[i >>> 1] ?? 0);

/** Number of set bits among the first `nbits` bits (all bits when omitted). */
export function popcount(map: Uint8Array, nbits = map.length * 8): number {
  const full = nbits >>> 3;
  let n = 0;
  for (let i = 0; i < full; i++) n += POP8[map[i] ?? 0] ?? 0;
  const rest = nbits & 7;
  if (rest !== 0) n += POP8[(map[full] ?? 0) & ((1 << rest) - 1)] ?? 0;
  return n;
}

/** Index of the first set bit at or after `from` among the first `nbits` bits; -1 when none (bit_ffs). */
export function findFirstSet(map: Uint8Array, nbits: number, from = 0): number {
  if (from < 0) from = 0;
  if (from >= nbits) return -1;
  let i = from >>> 3;
  // First, partial byte: mask off bits below `from`.
  let b = (map[i] ?? 0) & (0xff << (from & 7));
  const lastByte = (nbits - 1) >>> 3;
  for (;;) {
    if (b !== 0) {
      const bit = i * 8 + (31 - Math.clz32(b & -b));
      return bit < nbits ? bit : -1;
    }
    i++;
    if (i > lastByte) return -1;
    b = map[i] ?? 0;
  }
}

/**
 * A map of `sizeBytes` bytes with the first `nbits` bits set and everything after them clear
 * (the "full synchronisation" map of HAST-SPEC §7.2).
 */
export function allOnes(nbits: number, sizeBytes = bitmapBytes(nbits)): Buffer {
  const map = Buffer.alloc(sizeBytes);
  const full = Math.min(nbits >>> 3, sizeBytes);
  map.fill(0xff, 0, full);
  const rest = nbits & 7;
  if (rest !== 0 && full < sizeBytes) map[full] = (1 << rest) - 1;
  return map;
}
