// "hole" compression (HAST-SPEC §6.2): an all-zero buffer travels as its length alone,
// 4 bytes, uint32 little-endian.

/** Size of a hole-compressed payload. */
export const HOLE_PAYLOAD_SIZE = 4;

/** A zero block to compare against: Buffer.compare is a memcmp, far faster than a JS loop. */
const ZERO_BLOCK = Buffer.alloc(64 * 1024);

/** True when every byte of `data` is zero (an empty buffer counts as zero). */
export function isAllZeros(data: Uint8Array): boolean {
  const n = data.length;
  if (n === 0) return true;
  // Probe the ends and the middle first: most non-zero buffers fail here without a full scan.
  if (data[0] !== 0 || data[n - 1] !== 0 || data[n >>> 1] !== 0) return false;
  const buf = Buffer.from(data.buffer, data.byteOffset, n);
  for (let at = 0; at < n; at += ZERO_BLOCK.length) {
    const len = Math.min(ZERO_BLOCK.length, n - at);
    if (Buffer.compare(buf.subarray(at, at + len), ZERO_BLOCK.subarray(0, len)) !== 0) return false;
  }
  return true;
}

/** The hole payload for an all-zero buffer of `size` bytes, or null if `data` is not all zero. */
export function holeCompress(data: Uint8Array): Buffer | null {
  if (data.length === 0 || !isAllZeros(data)) return null;
  const out = Buffer.allocUnsafe(HOLE_PAYLOAD_SIZE);
  out.writeUInt32LE(data.length, 0);
  return out;
}

/** The original size declared by a hole payload, or null if the payload is not 4 bytes. */
export function holeSize(payload: Uint8Array): number | null {
  if (payload.length !== HOLE_PAYLOAD_SIZE) return null;
  return Buffer.from(payload.buffer, payload.byteOffset, HOLE_PAYLOAD_SIZE).readUInt32LE(0);
}
