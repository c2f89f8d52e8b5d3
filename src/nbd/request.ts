// NBD transmission request header: decoded in place from a socket buffer (proto.md "Request message").
import { NBD_REQUEST_MAGIC } from './constants.js';

/*
 * Request header, 28 bytes, big-endian:
 *   0  u32  magic 0x25609513 (NBD_REQUEST_MAGIC)
 *   4  u16  command flags (NBD_CMD_FLAG_*)
 *   6  u16  type (NBD_CMD_*)
 *   8  u64  cookie (handle), opaque to the server: echoed in the reply
 *  16  u64  offset
 *  24  u32  length
 *  then `length` bytes of payload for NBD_CMD_WRITE only.
 */

/** A decoded request header; the cookie stays two opaque u32s. */
export interface NbdRequest {
  magic: number;
  flags: number;
  type: number;
  cookieHi: number;
  cookieLo: number;
  /** Offset as a number, or -1 when it does not fit in 53 bits (always out of range). */
  offset: number;
  length: number;
}

/** Big-endian u64 at `at` as a number; -1 when it does not fit in 53 bits. */
export function readU64BE(buf: Buffer, at: number): number {
  const hi = buf.readUInt32BE(at);
  return hi > 0x1f_ffff ? -1 : hi * 0x1_0000_0000 + buf.readUInt32BE(at + 4);
}

/** Write a non-negative integer (≤ 2^53 − 1) as a big-endian u64 at `at`. */
export function writeU64BE(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}

/** A fresh request record to be filled by decodeRequest(). */
export function newRequest(): NbdRequest {
  return { magic: 0, flags: 0, type: 0, cookieHi: 0, cookieLo: 0, offset: 0, length: 0 };
}

/**
 * Decode the 28-byte header at `at` into `out` (no allocation). The caller checks
 * `isRequestMagic(out)`: a bad magic means the stream is lost.
 */
export function decodeRequest(buf: Buffer, at: number, out: NbdRequest): NbdRequest {
  out.magic = buf.readUInt32BE(at);
  out.flags = buf.readUInt16BE(at + 4);
  out.type = buf.readUInt16BE(at + 6);
  out.cookieHi = buf.readUInt32BE(at + 8);
  out.cookieLo = buf.readUInt32BE(at + 12);
  out.offset = readU64BE(buf, at + 16);
  out.length = buf.readUInt32BE(at + 24);
  return out;
}

export function isRequestMagic(req: NbdRequest): boolean {
  return req.magic === NBD_REQUEST_MAGIC;
}

/** Encode a request header into `buf` at `at` (used by the client). */
export function encodeRequest(
  buf: Buffer,
  at: number,
  req: { flags: number; type: number; cookieHi: number; cookieLo: number; offset: number; length: number },
): void {
  buf.writeUInt32BE(NBD_REQUEST_MAGIC, at);
  buf.writeUInt16BE(req.flags, at + 4);
  buf.writeUInt16BE(req.type, at + 6);
  buf.writeUInt32BE(req.cookieHi >>> 0, at + 8);
  buf.writeUInt32BE(req.cookieLo >>> 0, at + 12);
  writeU64BE(buf, req.offset, at + 16);
  buf.writeUInt32BE(req.length >>> 0, at + 24);
}
