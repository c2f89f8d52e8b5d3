// Peer message framing (HAST-SPEC §6.2, upstream hast_proto.c): version byte, nv length, nv list,
// optional payload, with the compression → checksum pipeline on send and its reverse on receive.
//
//   off  size      field
//   0    1         protocol version (2; a receiver rejects anything above 2: "RPC version mismatch";
//                  0 and 1 are accepted, as upstream hast_proto_recv_hdr does)
//   1    4         length of the nv list in bytes, uint32 little-endian (never 0: see below)
//   5    nvlen     the nv list (HAST-SPEC §3.1)
//   5+nvlen size   payload, present only when the nv list has `size` (uint32) = payload length as
//                  sent (after compression); `compression`, `checksum` and `hash` describe it
import { decodeNv, encodeNv, NV_TYPE, NvError, type NvList } from '../nv/codec.js';
import { addChecksum, verifyChecksum, type ChecksumAlgorithm } from './checksum.js';
import { compressPayload, decompressPayload, type CompressionAlgorithm } from './compression/index.js';
import { HAST_PROTO_VERSION, MAX_NV_SIZE, MAXPHYS } from './constants.js';
import { PeerProtocolError } from './errors.js';
import { ByteQueue } from '../util/byte-queue.js';

export { MAXPHYS };
/** Size of the fixed message header. */
export const MESSAGE_HEADER_SIZE = 5;

/** What the sender applies to a payload: its own configured algorithms. */
export interface EncodeOptions {
  /** Header version byte; defaults to 2. */
  readonly version?: number;
  readonly compression: CompressionAlgorithm;
  readonly checksum: ChecksumAlgorithm;
}

/**
 * Frame one message. With a non-empty `payload`, compresses it, checksums the bytes as sent and
 * adds `compression` (only when it compressed), `checksum`, `hash` and `size` to `nv` — the list is
 * modified in place, like upstream's. An empty or absent payload sends no `size` (the receiver
 * reads "no payload").
 * Returns [header + nv list, payload?] for a corked write or writev; the payload buffer may be the
 * caller's own `payload` (not copied), so it must not change until written.
 */
export function encodeMessage(nv: NvList, payload: Buffer | undefined, opts: EncodeOptions): Buffer[] {
  let data: Buffer | undefined;
  if (payload !== undefined && payload.length > 0) {
    const c = compressPayload(opts.compression, payload);
    if (c.compression !== null) nv.addString('compression', c.compression);
    addChecksum(opts.checksum, nv, c.data);
    nv.addUint32('size', c.data.length);
    data = c.data;
  }
  const version = opts.version ?? HAST_PROTO_VERSION;
  // The nv list is encoded after room for the header: one buffer, no copy.
  const head = encodeNv(nv, 0, MESSAGE_HEADER_SIZE);
  head.writeUInt8(version, 0);
  head.writeUInt32LE(head.length - MESSAGE_HEADER_SIZE, 1);
  return data === undefined ? [head] : [head, data];
}

/** One received message: the payload is verified and decompressed (absent when no `size`). */
export interface PeerMessage {
  readonly version: number;
  readonly nv: NvList;
  readonly payload: Buffer | undefined;
}

/**
 * Largest payload the caller accepts, as sent and after decompression; a function sees the
 * header first (e.g. the handshake reply's `mapsize` decides the bitmap's limit).
 */
export type PayloadLimit = number | ((nv: NvList) => number);

export interface MessageReaderOptions {
  /** Payload limit; defaults to MAXPHYS. */
  readonly maxPayload?: PayloadLimit;
  /** nv list limit; defaults to MAX_NV_SIZE. */
  readonly maxNvSize?: number;
}

/** What the reader is waiting for. */
const STATE = { HEADER: 0, NV: 1, PAYLOAD: 2, FAILED: 3 } as const;
type State = (typeof STATE)[keyof typeof STATE];

/**
 * Incremental parser for a peer byte stream: feed it socket chunks in order with push(); it
 * returns the messages completed by each chunk. Every declared length is checked against its
 * limit before any byte of it is buffered. After a PeerProtocolError the reader stays failed
 * (every later push throws the same error): the caller must close the connection.
 */
export class MessageReader {
  #maxPayload: PayloadLimit;
  readonly #maxNvSize: number;
  /** Received bytes not yet consumed, and a payload being assembled when it spans chunks. */
  readonly #queue = new ByteQueue();
  #state: State = STATE.HEADER;
  #error: PeerProtocolError | undefined;
  // Current message.
  #version = 0;
  #nvLen = 0;
  #nv: NvList | undefined;
  #size = 0;
  #limit = 0;

  constructor(opts: MessageReaderOptions = {}) {
    this.#maxPayload = opts.maxPayload ?? MAXPHYS;
    this.#maxNvSize = opts.maxNvSize ?? MAX_NV_SIZE;
  }

  /** Change the payload limit for the messages that follow (e.g. after the handshake). */
  setMaxPayload(limit: PayloadLimit): void {
    this.#maxPayload = limit;
  }

  /** Bytes received and not yet part of a returned message. */
  get buffered(): number {
    return this.#queue.buffered;
  }

  /** True between messages: no partial message is buffered. */
  get idle(): boolean {
    return this.#state === STATE.HEADER && this.#queue.length === 0;
  }

  /**
   * Feed received bytes; returns the messages they complete, in order (often none).
   * @throws PeerProtocolError for a malformed or over-limit message.
   */
  push(chunk: Buffer): PeerMessage[] {
    if (this.#error !== undefined) throw this.#error;
    const out: PeerMessage[] = [];
    this.#queue.push(chunk);
    try {
      for (;;) {
        const msg = this.#step();
        if (msg === null) break;
        if (msg !== undefined) out.push(msg);
      }
    } catch (err) {
      this.#state = STATE.FAILED;
      this.#queue.clear();
      this.#error =
        err instanceof PeerProtocolError
          ? err
          : new PeerProtocolError('EPEER_HEADER', `Malformed message: ${String(err)}`, { cause: err });
      throw this.#error;
    }
    return out;
  }

  /** Advance by one state; null = need more bytes, undefined = progressed without a message. */
  #step(): PeerMessage | null | undefined {
    switch (this.#state) {
      case STATE.HEADER: {
        if (this.#queue.length < MESSAGE_HEADER_SIZE) return null;
        const h = this.#queue.read(MESSAGE_HEADER_SIZE);
        this.#version = h.readUInt8(0);
        this.#nvLen = h.readUInt32LE(1);
        if (this.#version > HAST_PROTO_VERSION) {
          throw new PeerProtocolError(
            'EPEER_VERSION',
            `RPC version mismatch (received version ${this.#version}, highest supported ${HAST_PROTO_VERSION})`,
            { errno: 'ERPCMISMATCH' },
          );
        }
        // Upstream cannot receive an empty list (proto_common_recv asserts size > 0) and never sends
        // one (every message has at least one field): a zero length is malformed input, refused
        // here instead of upstream's abort.
        if (this.#nvLen === 0) {
          throw new PeerProtocolError('EPEER_HEADER', 'Invalid header size 0 (empty nv list)');
        }
        if (this.#nvLen > this.#maxNvSize) {
          throw new PeerProtocolError(
            'EPEER_TOO_LARGE',
            `Header too large (${this.#nvLen} bytes, limit ${this.#maxNvSize})`,
          );
        }
        this.#state = STATE.NV;
        return undefined;
      }
      case STATE.NV: {
        if (this.#queue.length < this.#nvLen) return null;
        const nv = decodeHeader(this.#queue.read(this.#nvLen));
        const size = nv.find('size');
        if (size === undefined) return this.#finish(nv, undefined);
        if (size.type !== NV_TYPE.UINT32) {
          throw new PeerProtocolError('EPEER_HEADER', "Header field 'size' is not a uint32");
        }
        const limit = typeof this.#maxPayload === 'number' ? this.#maxPayload : this.#maxPayload(nv);
        if (size.value > limit) {
          throw new PeerProtocolError('EPEER_TOO_LARGE', `Payload too large (${size.value} bytes, limit ${limit})`);
        }
        if (size.value === 0) return this.#finish(nv, undefined);
        this.#nv = nv;
        this.#size = size.value;
        this.#limit = limit;
        this.#state = STATE.PAYLOAD;
        return undefined;
      }
      case STATE.PAYLOAD: {
        // Inside one chunk: a subarray; spanning chunks: one copy, assembled as bytes arrive.
        const raw = this.#queue.readRun(this.#size);
        if (raw === null) return null;
        const nv = this.#nv as NvList;
        this.#nv = undefined;
        let payload: Buffer;
        try {
          payload = unpackPayload(nv, raw, this.#limit);
        } catch (err) {
          throw err instanceof PeerProtocolError ? err.withHeader(nv) : err;
        }
        return this.#finish(nv, payload);
      }
      default:
        return null;
    }
  }

  #finish(nv: NvList, payload: Buffer | undefined): PeerMessage {
    this.#state = STATE.HEADER;
    return { version: this.#version, nv, payload };
  }
}

function decodeHeader(bytes: Buffer): NvList {
  try {
    return decodeNv(bytes);
  } catch (err) {
    if (err instanceof NvError) {
      throw new PeerProtocolError('EPEER_HEADER', `Unable to decode header: ${err.message}`, { cause: err });
    }
    throw err;
  }
}

/**
 * Receive pipeline for one payload: verify the checksum over the bytes as sent, then decompress;
 * the result must fit `maxSize`.
 * @throws PeerProtocolError on any failure
 */
function unpackPayload(nv: NvList, raw: Buffer, maxSize: number): Buffer {
  verifyChecksum(nv, raw);
  const name = nv.find('compression');
  if (name === undefined) return raw;
  if (name.type !== NV_TYPE.STRING) {
    throw new PeerProtocolError('EPEER_HEADER', "Header field 'compression' is not a string");
  }
  return decompressPayload(name.value, raw, maxSize);
}
