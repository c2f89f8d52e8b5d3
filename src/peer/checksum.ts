// Payload checksum stage of the peer protocol (HAST-SPEC §6.2): `checksum` (string) and `hash`
// (uint8 array) fields, computed over the payload as sent (after compression).
import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
import type { NvList } from '../nv/codec.js';
import { PeerProtocolError } from './errors.js';

/** The `checksum` settings of hast.conf. */
export type ChecksumAlgorithm = 'none' | 'crc32' | 'sha256';

/** zlib.crc32 exists from Node 20.15 / 22.2; keep a table fallback for older runtimes. */
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

let crcTable: Uint32Array | undefined;
function tableCrc32(data: Uint8Array): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) {
    crc = (crcTable[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** Standard CRC-32 (zlib / IEEE 802.3, reflected polynomial 0xEDB88320, initial value 0). */
export function crc32(data: Uint8Array): number {
  return nativeCrc32 !== undefined ? nativeCrc32(data) >>> 0 : tableCrc32(data);
}

/**
 * The `hash` bytes for `data` under `alg`.
 * crc32: 4 bytes in the sender's native byte order, which is little-endian on every platform
 * upstream runs on (upstream stores the raw uint32 with an XXX about byte order); we always write LE.
 * sha256: the 32-byte digest.
 */
export function computeHash(alg: 'crc32' | 'sha256', data: Uint8Array): Buffer {
  if (alg === 'crc32') {
    const out = Buffer.allocUnsafe(4);
    out.writeUInt32LE(crc32(data), 0);
    return out;
  }
  return createHash('sha256').update(data).digest();
}

/**
 * Add `checksum` and `hash` for `payload` to an outgoing header. Does nothing for `none`.
 * Call after compression: the checksum covers the bytes as sent.
 */
export function addChecksum(alg: ChecksumAlgorithm, nv: NvList, payload: Uint8Array): void {
  if (alg === 'none') return;
  nv.addString('checksum', alg);
  nv.addUint8Array('hash', computeHash(alg, payload));
}

/**
 * Verify a received payload against the header's `checksum`/`hash`; a header without `checksum`
 * is accepted as unchecked. Call before decompression.
 * @throws PeerProtocolError (EPEER_CHECKSUM) for a missing hash, an unknown algorithm, a hash of the
 *   wrong size or a mismatch.
 */
export function verifyChecksum(nv: NvList, payload: Uint8Array): void {
  const alg = nv.getString('checksum');
  if (alg === undefined) return;
  const received = nv.getUint8Array('hash');
  if (received === undefined) {
    throw new PeerProtocolError('EPEER_CHECKSUM', 'Hash is missing');
  }
  if (alg !== 'crc32' && alg !== 'sha256') {
    throw new PeerProtocolError('EPEER_CHECKSUM', `Unknown checksum algorithm '${alg}'`);
  }
  const computed = computeHash(alg, payload);
  if (received.length !== computed.length) {
    throw new PeerProtocolError(
      'EPEER_CHECKSUM',
      `Invalid hash size (${received.length}) for ${alg}, should be ${computed.length}`,
    );
  }
  if (!computed.equals(Buffer.from(received.buffer, received.byteOffset, received.length))) {
    throw new PeerProtocolError('EPEER_CHECKSUM', 'Hash mismatch');
  }
}
