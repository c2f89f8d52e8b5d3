// NBD transmission replies: simple reply and structured reply chunks (proto.md "Simple reply message",
// "Structured reply chunk message", "Structured reply types"), written into caller-owned buffers.
import {
  NBD_REPLY_FLAG,
  NBD_REPLY_TYPE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_SIMPLE_REPLY_SIZE,
  NBD_STRUCTURED_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_SIZE,
} from './constants.js';
import { writeU64BE } from './request.js';

/*
 * Simple reply, 16 bytes, then the data of a successful READ:
 *   0  u32  magic 0x67446698
 *   4  u32  error (NBD_E*, 0 = success)
 *   8  u64  cookie
 */

/** Write a simple reply header at `at`; returns the number of bytes written (16). */
export function writeSimpleReply(buf: Buffer, at: number, error: number, cookieHi: number, cookieLo: number): number {
  buf.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, at);
  buf.writeUInt32BE(error, at + 4);
  buf.writeUInt32BE(cookieHi, at + 8);
  buf.writeUInt32BE(cookieLo, at + 12);
  return NBD_SIMPLE_REPLY_SIZE;
}

/*
 * Structured reply chunk header, 20 bytes, then `length` bytes of payload:
 *   0  u32  magic 0x668e33ef
 *   4  u16  flags (NBD_REPLY_FLAG_DONE = 1 on the last chunk)
 *   6  u16  type (NBD_REPLY_TYPE_*)
 *   8  u64  cookie
 *  16  u32  payload length
 */

/** Write a structured chunk header at `at`; returns 20. */
function writeStructuredHeader(
  buf: Buffer,
  at: number,
  flags: number,
  type: number,
  cookieHi: number,
  cookieLo: number,
  length: number,
): number {
  buf.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, at);
  buf.writeUInt16BE(flags, at + 4);
  buf.writeUInt16BE(type, at + 6);
  buf.writeUInt32BE(cookieHi, at + 8);
  buf.writeUInt32BE(cookieLo, at + 12);
  buf.writeUInt32BE(length, at + 16);
  return NBD_STRUCTURED_REPLY_SIZE;
}

/** Size of the header written by writeOffsetDataHeader(): chunk header + 64-bit offset. */
export const OFFSET_DATA_HEADER_SIZE = NBD_STRUCTURED_REPLY_SIZE + 8;

/*
 * NBD_REPLY_TYPE_OFFSET_DATA payload: u64 offset, then the data (length = 8 + data bytes).
 * The data follows as a separate buffer so it is never copied.
 */

/** Write an OFFSET_DATA chunk header (DONE set) for `dataLength` bytes at `offset`; returns 28. */
export function writeOffsetDataHeader(
  buf: Buffer,
  at: number,
  cookieHi: number,
  cookieLo: number,
  offset: number,
  dataLength: number,
  done = true,
): number {
  writeStructuredHeader(
    buf,
    at,
    done ? NBD_REPLY_FLAG.DONE : 0,
    NBD_REPLY_TYPE.OFFSET_DATA,
    cookieHi,
    cookieLo,
    8 + dataLength,
  );
  writeU64BE(buf, offset, at + NBD_STRUCTURED_REPLY_SIZE);
  return OFFSET_DATA_HEADER_SIZE;
}

/*
 * NBD_REPLY_TYPE_ERROR payload: u32 error (nonzero), u16 message length, message bytes.
 */

/** Bytes needed by an ERROR chunk carrying `message`. */
export function errorChunkSize(message: string): number {
  return NBD_STRUCTURED_REPLY_SIZE + 6 + Buffer.byteLength(message);
}

/** Write an ERROR chunk (DONE set) with an optional human-readable message; returns its size. */
export function writeErrorChunk(
  buf: Buffer,
  at: number,
  cookieHi: number,
  cookieLo: number,
  error: number,
  message = '',
): number {
  const msgLen = Buffer.byteLength(message);
  writeStructuredHeader(buf, at, NBD_REPLY_FLAG.DONE, NBD_REPLY_TYPE.ERROR, cookieHi, cookieLo, 6 + msgLen);
  buf.writeUInt32BE(error, at + 20);
  buf.writeUInt16BE(msgLen, at + 24);
  if (msgLen > 0) buf.write(message, at + 26, 'utf8');
  return NBD_STRUCTURED_REPLY_SIZE + 6 + msgLen;
}

/** One base:allocation (or other context) extent. */
export interface NbdExtent {
  length: number;
  flags: number;
}

/*
 * NBD_REPLY_TYPE_BLOCK_STATUS payload: u32 metadata context id, then per extent
 * u32 length (nonzero) and u32 status flags.
 */

/** Bytes needed by a BLOCK_STATUS chunk with `n` extents. */
export function blockStatusChunkSize(n: number): number {
  return NBD_STRUCTURED_REPLY_SIZE + 4 + 8 * n;
}

/** Write a BLOCK_STATUS chunk (DONE set); returns its size. */
export function writeBlockStatusChunk(
  buf: Buffer,
  at: number,
  cookieHi: number,
  cookieLo: number,
  contextId: number,
  extents: readonly NbdExtent[],
): number {
  writeStructuredHeader(
    buf,
    at,
    NBD_REPLY_FLAG.DONE,
    NBD_REPLY_TYPE.BLOCK_STATUS,
    cookieHi,
    cookieLo,
    4 + 8 * extents.length,
  );
  buf.writeUInt32BE(contextId, at + 20);
  let p = at + 24;
  for (const e of extents) {
    buf.writeUInt32BE(e.length, p);
    buf.writeUInt32BE(e.flags, p + 4);
    p += 8;
  }
  return p - at;
}
