// Errors of the node-to-node protocol (HAST-SPEC §6, §8): malformed or refused input from a peer.
// Tier "connection error" of STYLE §2.7: the caller logs the reason once and closes that connection.
import type { NvList } from '../nv/codec.js';

/** Stable codes for PeerProtocolError, listed once. */
const PEER_ERROR_CODES = [
  /** Header version byte above what we speak ("RPC version mismatch"). */
  'EPEER_VERSION',
  /** A declared length (nv list or payload) is over its limit; nothing was buffered. */
  'EPEER_TOO_LARGE',
  /** The nv list did not decode, or a required field is missing or has the wrong type. */
  'EPEER_HEADER',
  /** Checksum mismatch or unknown checksum algorithm. */
  'EPEER_CHECKSUM',
  /** Decompression failed or unknown compression algorithm. */
  'EPEER_COMPRESSION',
  /** The connection timed out or closed while a message was expected. */
  'EPEER_CONNECTION',
] as const;
export type PeerErrorCode = (typeof PEER_ERROR_CODES)[number];

/**
 * Bad bytes or a broken exchange on a peer connection. `errno` is the FreeBSD-style errno name
 * upstream would report (EINVAL for malformed input, ERPCMISMATCH for a version mismatch, ...).
 */
export class PeerProtocolError extends Error {
  override readonly name = 'PeerProtocolError';
  readonly code: PeerErrorCode;
  readonly errno: string;
  /**
   * The decoded header of the message whose payload failed (checksum, decompression): the
   * receiver can still tell which request the broken reply was for and fail that one with EIO.
   */
  readonly header: NvList | undefined;
  constructor(code: PeerErrorCode, message: string, options?: { errno?: string; cause?: unknown; header?: NvList }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.errno = options?.errno ?? 'EINVAL';
    this.header = options?.header;
  }

  /** The same error, naming the header of the message it belongs to. */
  withHeader(header: NvList): PeerProtocolError {
    const cause: unknown = this.cause;
    return new PeerProtocolError(this.code, this.message, { errno: this.errno, cause, header });
  }
}
