// Payload compression stage of the peer protocol (HAST-SPEC §6.2): the sender's choice per its
// own `compression` setting; the receiver follows the `compression` name in the header.
import { PeerProtocolError } from '../errors.js';
import { HOLE_PAYLOAD_SIZE, holeCompress, holeSize } from './hole.js';
import { LzfError, lzfCompress, lzfDecompress } from './lzf.js';

/** The `compression` settings of hast.conf. */
export type CompressionAlgorithm = 'none' | 'hole' | 'lzf';
/** What actually travels in the header's `compression` field (absent = uncompressed). */
export type CompressionName = 'hole' | 'lzf';

/** LZF is tried only above this size, and must save at least this many bytes. */
const LZF_MIN_SIZE = 1024;
/** The original length that prefixes hole and lzf payloads (uint32 LE). */
const ORIGSIZE_BYTES = 4;

/**
 * Compress a payload for sending.
 * - `hole`: an all-zero buffer becomes 4 bytes (original length, uint32 LE).
 * - `lzf`: the zero test runs first (→ `hole`); otherwise, for buffers over 1024 bytes, the LZF
 *   stream is kept only when it fits in (original − 1024) bytes; payload = uint32 LE original
 *   length + stream.
 * Returns the bytes to send and the name for the header's `compression` field (null when sent as is,
 * in which case `data` is the input buffer itself).
 */
export function compressPayload(
  alg: CompressionAlgorithm,
  data: Buffer,
): { data: Buffer; compression: CompressionName | null } {
  if (alg === 'none' || data.length === 0) return { data, compression: null };
  const hole = holeCompress(data);
  if (hole !== null) return { data: hole, compression: 'hole' };
  if (alg === 'hole' || data.length <= LZF_MIN_SIZE) return { data, compression: null };

  const out = Buffer.allocUnsafe(ORIGSIZE_BYTES + data.length - LZF_MIN_SIZE);
  const n = lzfCompress(data, out.subarray(ORIGSIZE_BYTES));
  if (n === 0) return { data, compression: null };
  out.writeUInt32LE(data.length, 0);
  return { data: out.subarray(0, ORIGSIZE_BYTES + n), compression: 'lzf' };
}

/**
 * Undo the compression named in a received header.
 * @param name the header's `compression` string
 * @param data the (already checksum-verified) payload
 * @param maxSize the largest result the caller accepts (its receive buffer)
 * @throws PeerProtocolError (EPEER_COMPRESSION) for an unknown name, a malformed payload or a
 *   result larger than `maxSize`; nothing larger than `maxSize` is ever allocated.
 */
export function decompressPayload(name: string, data: Buffer, maxSize: number): Buffer {
  if (name === 'hole') {
    const size = holeSize(data);
    if (size === null) {
      throw new PeerProtocolError(
        'EPEER_COMPRESSION',
        `Unable to decompress (invalid size: ${data.length}, expected ${HOLE_PAYLOAD_SIZE})`,
      );
    }
    checkFits(size, maxSize);
    return Buffer.alloc(size);
  }
  if (name === 'lzf') {
    if (data.length <= ORIGSIZE_BYTES) {
      throw new PeerProtocolError('EPEER_COMPRESSION', `Unable to decompress (invalid size: ${data.length})`);
    }
    const size = data.readUInt32LE(0);
    checkFits(size, maxSize);
    const out = Buffer.allocUnsafe(size);
    let n: number;
    try {
      n = lzfDecompress(data.subarray(ORIGSIZE_BYTES), out);
    } catch (err) {
      if (err instanceof LzfError) {
        throw new PeerProtocolError('EPEER_COMPRESSION', `Unable to decompress: ${err.message}`, { cause: err });
      }
      throw err;
    }
    if (n !== size) {
      throw new PeerProtocolError(
        'EPEER_COMPRESSION',
        `Unable to decompress: stream produced ${n} bytes, header declared ${size}`,
      );
    }
    return out;
  }
  throw new PeerProtocolError('EPEER_COMPRESSION', `Unknown compression algorithm '${name}'`);
}

function checkFits(size: number, maxSize: number): void {
  if (size > maxSize) {
    throw new PeerProtocolError(
      'EPEER_COMPRESSION',
      `Unable to decompress: declared size ${size} exceeds the receive buffer (${maxSize} bytes)`,
    );
  }
}
