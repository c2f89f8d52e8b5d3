// Fixed newstyle handshake and option haggling as a sans-I/O state machine: bytes in, bytes out,
// and a verdict (proto.md "Handshake", "Option types", "Option reply types", INFO/GO, meta contexts).
import { ByteQueue } from '../util/byte-queue.js';
import {
  BASE_ALLOCATION,
  NBD_FLAG,
  NBD_FLAG_C,
  NBD_FLAG_T,
  NBD_IHAVEOPT_HI,
  NBD_IHAVEOPT_LO,
  NBD_INFO,
  NBD_MAGIC_HI,
  NBD_MAGIC_LO,
  NBD_MAX_STRING,
  NBD_OPT,
  NBD_REP,
  NBD_REP_MAGIC_HI,
  NBD_REP_MAGIC_LO,
} from './constants.js';
import { writeU64BE } from './request.js';

/**
 * Largest option data we buffer. A maximal string (4096 bytes) plus the framing of any option we
 * support fits; longer option data is discarded without being buffered and answered
 * NBD_REP_ERR_TOO_BIG.
 */
const MAX_OPTION_LENGTH = NBD_MAX_STRING + 256;
/** Beyond this, discarding is not worth the bandwidth: the connection is closed. */
const MAX_SKIP_LENGTH = 64 * 1024;
/** Options per connection before we call it a denial of service (nbdkit uses a similar cap). */
const MAX_OPTIONS = 64;

/** What the handshake offers; fixed for the life of the server. */
export interface HandshakeConfig {
  /** Export name to accept besides "" (the default export); undefined accepts any name. */
  readonly exportName: string | undefined;
  readonly description: string;
  readonly size: number;
  /** Transmission flags without NBD_FLAG_SEND_DF (added when structured replies are negotiated). */
  readonly transmissionFlags: number;
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  readonly maxBlockSize: number;
  /**
   * TLS is configured (starttls.ts): NBD_OPT_STARTTLS is accepted, and every other option but
   * NBD_OPT_ABORT is refused with NBD_REP_ERR_TLS_REQD until TLS is up (nbdkit's --tls=require).
   */
  readonly tls?: boolean;
}

/** What the client negotiated, for the transmission phase. */
export interface Negotiated {
  readonly exportName: string;
  readonly structuredReplies: boolean;
  /** Context id of base:allocation when the client selected it, else null. */
  readonly metaContextId: number | null;
  /** The transmission flags actually sent to the client. */
  readonly transmissionFlags: number;
}

/** Result of feeding bytes: replies to send, then continue, enter transmission, or close. */
export type HandshakeStep =
  | { readonly state: 'more'; readonly send: Buffer[] }
  | { readonly state: 'transmission'; readonly send: Buffer[]; readonly negotiated: Negotiated; readonly rest: Buffer }
  /** NBD_OPT_STARTTLS was acknowledged: write `send`, run TLS, then call tlsStarted() and go on. */
  | { readonly state: 'starttls'; readonly send: Buffer[] }
  /** `protocolError` false for a polite end (NBD_OPT_ABORT), true for bad input worth logging. */
  | { readonly state: 'close'; readonly send: Buffer[]; readonly reason: string; readonly protocolError: boolean };

const BASE_ALLOCATION_ID = 1;

type Phase = 'clientFlags' | 'optHeader' | 'optData' | 'skip' | 'done';

/** Build the server greeting: NBDMAGIC, IHAVEOPT, handshake flags (18 bytes). */
export function encodeGreeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeUInt32BE(NBD_MAGIC_HI, 0);
  b.writeUInt32BE(NBD_MAGIC_LO, 4);
  b.writeUInt32BE(NBD_IHAVEOPT_HI, 8);
  b.writeUInt32BE(NBD_IHAVEOPT_LO, 12);
  b.writeUInt16BE(NBD_FLAG.FIXED_NEWSTYLE | NBD_FLAG.NO_ZEROES, 16);
  return b;
}

/*
 * Option reply: u64 magic 0x0003e889045565a9, u32 option, u32 reply type, u32 length, data.
 */

/** Encode one option reply. */
function encodeOptionReply(option: number, type: number, data?: Buffer): Buffer {
  const len = data?.length ?? 0;
  const b = Buffer.allocUnsafe(20 + len);
  b.writeUInt32BE(NBD_REP_MAGIC_HI, 0);
  b.writeUInt32BE(NBD_REP_MAGIC_LO, 4);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(len, 16);
  if (data !== undefined) data.copy(b, 20);
  return b;
}

function errorReply(option: number, type: number, message: string): Buffer {
  return encodeOptionReply(option, type, Buffer.from(message, 'utf8'));
}

/** A bounds-checked reader over one option's data; returns null when the data is malformed. */
class OptionReader {
  readonly #buf: Buffer;
  #at = 0;
  constructor(buf: Buffer) {
    this.#buf = buf;
  }
  u16(): number | null {
    if (this.#at + 2 > this.#buf.length) return null;
    const v = this.#buf.readUInt16BE(this.#at);
    this.#at += 2;
    return v;
  }
  u32(): number | null {
    if (this.#at + 4 > this.#buf.length) return null;
    const v = this.#buf.readUInt32BE(this.#at);
    this.#at += 4;
    return v;
  }
  string(len: number): string | null {
    if (len > NBD_MAX_STRING || this.#at + len > this.#buf.length) return null;
    const s = this.#buf.toString('utf8', this.#at, this.#at + len);
    this.#at += len;
    return s;
  }
  get atEnd(): boolean {
    return this.#at === this.#buf.length;
  }
}

/**
 * Server side of fixed newstyle negotiation. Send `encodeGreeting()` first, then feed every
 * received chunk to `push()` and write out `send` in order until the state is no longer 'more'.
 */
export class NbdHandshake {
  readonly #cfg: HandshakeConfig;
  #phase: Phase = 'clientFlags';
  readonly #queue = new ByteQueue();
  #noZeroes = false;
  #structured = false;
  #metaContextId: number | null = null;
  #option = 0;
  #optLength = 0;
  #skipLeft = 0;
  #options = 0;
  #tlsUp = false;

  constructor(cfg: HandshakeConfig) {
    this.#cfg = cfg;
  }

  /** The connection now runs over TLS: options are accepted again. */
  tlsStarted(): void {
    this.#tlsUp = true;
  }

  /** Feed received bytes. Never throws on bad input: it answers with a 'close' step instead. */
  push(chunk: Buffer): HandshakeStep {
    const send: Buffer[] = [];
    if (this.#phase === 'done')
      return { state: 'close', send, reason: 'data after the end of the handshake', protocolError: true };
    this.#queue.push(chunk);
    for (;;) {
      switch (this.#phase as Phase) {
        case 'clientFlags': {
          const b = this.#take(4);
          if (b === null) return { state: 'more', send };
          const flags = b.readUInt32BE(0);
          if ((flags & NBD_FLAG_C.FIXED_NEWSTYLE) === 0) {
            return this.#close(send, `client flags 0x${flags.toString(16)} lack NBD_FLAG_C_FIXED_NEWSTYLE`);
          }
          if ((flags & ~(NBD_FLAG_C.FIXED_NEWSTYLE | NBD_FLAG_C.NO_ZEROES)) !== 0) {
            return this.#close(send, `unknown client flags 0x${flags.toString(16)}`);
          }
          this.#noZeroes = (flags & NBD_FLAG_C.NO_ZEROES) !== 0;
          this.#phase = 'optHeader';
          break;
        }
        case 'optHeader': {
          const b = this.#take(16);
          if (b === null) return { state: 'more', send };
          if (b.readUInt32BE(0) !== NBD_IHAVEOPT_HI || b.readUInt32BE(4) !== NBD_IHAVEOPT_LO) {
            return this.#close(send, 'bad option magic (expected IHAVEOPT)');
          }
          if (++this.#options > MAX_OPTIONS) return this.#close(send, `more than ${MAX_OPTIONS} options`);
          this.#option = b.readUInt32BE(8);
          this.#optLength = b.readUInt32BE(12);
          // Bound before buffering: the length is checked before a byte of data is kept.
          if (this.#optLength > MAX_OPTION_LENGTH) {
            if (this.#option === NBD_OPT.EXPORT_NAME || this.#optLength > MAX_SKIP_LENGTH) {
              return this.#close(send, `option ${this.#option} data length ${this.#optLength} is too large`);
            }
            this.#skipLeft = this.#optLength;
            this.#phase = 'skip';
          } else {
            this.#phase = 'optData';
          }
          break;
        }
        case 'skip': {
          const n = Math.min(this.#skipLeft, this.#queue.length);
          this.#queue.skip(n);
          this.#skipLeft -= n;
          if (this.#skipLeft > 0) return { state: 'more', send };
          send.push(errorReply(this.#option, NBD_REP.ERR_TOO_BIG, 'option data too long'));
          this.#phase = 'optHeader';
          break;
        }
        case 'optData': {
          const data = this.#take(this.#optLength);
          if (data === null) return { state: 'more', send };
          this.#phase = 'optHeader';
          const step = this.#handleOption(this.#option, data, send);
          if (step !== null) return step;
          break;
        }
        case 'done':
          return { state: 'close', send, reason: 'handshake already finished', protocolError: true };
      }
    }
  }

  #close(send: Buffer[], reason: string, protocolError = true): HandshakeStep {
    this.#phase = 'done';
    return { state: 'close', send, reason, protocolError };
  }

  /** Remove and return exactly n buffered bytes, or null until they have all arrived. */
  #take(n: number): Buffer | null {
    return this.#queue.length < n ? null : this.#queue.read(n);
  }

  #acceptsName(name: string): boolean {
    return this.#cfg.exportName === undefined || name === '' || name === this.#cfg.exportName;
  }

  #flags(): number {
    return this.#cfg.transmissionFlags | (this.#structured ? NBD_FLAG_T.SEND_DF : 0);
  }

  #negotiated(name: string): Negotiated {
    return {
      exportName: name,
      structuredReplies: this.#structured,
      metaContextId: this.#structured ? this.#metaContextId : null,
      transmissionFlags: this.#flags(),
    };
  }

  /** Handle one complete option; returns a step when haggling ends, null to continue. */
  #handleOption(opt: number, data: Buffer, send: Buffer[]): HandshakeStep | null {
    if (this.#cfg.tls === true && !this.#tlsUp && opt !== NBD_OPT.STARTTLS && opt !== NBD_OPT.ABORT) {
      if (opt === NBD_OPT.EXPORT_NAME) return this.#close(send, 'NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS');
      send.push(errorReply(opt, NBD_REP.ERR_TLS_REQD, 'TLS is required on this export: use NBD_OPT_STARTTLS'));
      return null;
    }
    switch (opt) {
      case NBD_OPT.EXPORT_NAME: {
        const name = data.toString('utf8');
        if (data.length > NBD_MAX_STRING || !this.#acceptsName(name)) {
          // No error reply exists for EXPORT_NAME: the spec says terminate the session.
          return this.#close(send, `unknown export name "${name.slice(0, 64)}"`);
        }
        const b = Buffer.alloc(this.#noZeroes ? 10 : 134);
        writeU64BE(b, this.#cfg.size, 0);
        b.writeUInt16BE(this.#flags(), 8);
        send.push(b);
        this.#phase = 'done';
        return { state: 'transmission', send, negotiated: this.#negotiated(name), rest: this.#queue.readAll() };
      }
      case NBD_OPT.ABORT:
        send.push(encodeOptionReply(opt, NBD_REP.ACK));
        return this.#close(send, 'client sent NBD_OPT_ABORT', false);
      case NBD_OPT.LIST: {
        if (data.length !== 0) {
          send.push(errorReply(opt, NBD_REP.ERR_INVALID, 'NBD_OPT_LIST takes no data'));
          return null;
        }
        const name = Buffer.from(this.#cfg.exportName ?? '', 'utf8');
        const desc = Buffer.from(this.#cfg.description, 'utf8');
        const server = Buffer.allocUnsafe(4 + name.length + desc.length);
        server.writeUInt32BE(name.length, 0);
        name.copy(server, 4);
        desc.copy(server, 4 + name.length);
        send.push(encodeOptionReply(opt, NBD_REP.SERVER, server), encodeOptionReply(opt, NBD_REP.ACK));
        return null;
      }
      case NBD_OPT.STARTTLS:
        if (this.#cfg.tls !== true) {
          send.push(errorReply(opt, NBD_REP.ERR_POLICY, 'TLS is not configured on this export'));
          return null;
        }
        if (this.#tlsUp) {
          send.push(errorReply(opt, NBD_REP.ERR_INVALID, 'TLS is already in use'));
          return null;
        }
        if (data.length !== 0) {
          send.push(errorReply(opt, NBD_REP.ERR_INVALID, 'NBD_OPT_STARTTLS takes no data'));
          return null;
        }
        // The client sends nothing more until it has our ACK: bytes already here are not TLS.
        if (this.#queue.length > 0) return this.#close(send, 'data after NBD_OPT_STARTTLS');
        send.push(encodeOptionReply(opt, NBD_REP.ACK));
        return { state: 'starttls', send };
      case NBD_OPT.INFO:
      case NBD_OPT.GO:
        return this.#infoOrGo(opt, data, send);
      case NBD_OPT.STRUCTURED_REPLY:
        if (data.length !== 0) {
          send.push(errorReply(opt, NBD_REP.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data'));
        } else {
          this.#structured = true;
          send.push(encodeOptionReply(opt, NBD_REP.ACK));
        }
        return null;
      case NBD_OPT.LIST_META_CONTEXT:
      case NBD_OPT.SET_META_CONTEXT:
        this.#metaContext(opt, data, send);
        return null;
      default:
        send.push(errorReply(opt, NBD_REP.ERR_UNSUP, `option ${opt} is not supported`));
        return null;
    }
  }

  /*
   * INFO/GO data: u32 name length, name, u16 number of info requests, that many u16 info types.
   * Replies: NBD_REP_INFO chunks (u16 info type + payload), then NBD_REP_ACK.
   *   NBD_INFO_EXPORT      u64 size, u16 transmission flags
   *   NBD_INFO_NAME        string
   *   NBD_INFO_DESCRIPTION string
   *   NBD_INFO_BLOCK_SIZE  u32 minimum, u32 preferred, u32 maximum
   */
  #infoOrGo(opt: number, data: Buffer, send: Buffer[]): HandshakeStep | null {
    const r = new OptionReader(data);
    const nameLen = r.u32();
    const name = nameLen === null ? null : r.string(nameLen);
    const n = r.u16();
    const requests: number[] = [];
    for (let i = 0; n !== null && i < n; i++) {
      const t = r.u16();
      if (t === null) break;
      requests.push(t);
    }
    if (name === null || n === null || requests.length !== n || !r.atEnd) {
      send.push(errorReply(opt, NBD_REP.ERR_INVALID, 'malformed NBD_OPT_INFO/NBD_OPT_GO data'));
      return null;
    }
    if (!this.#acceptsName(name)) {
      send.push(errorReply(opt, NBD_REP.ERR_UNKNOWN, `unknown export "${name.slice(0, 64)}"`));
      return null;
    }
    const exp = Buffer.allocUnsafe(12);
    exp.writeUInt16BE(NBD_INFO.EXPORT, 0);
    writeU64BE(exp, this.#cfg.size, 2);
    exp.writeUInt16BE(this.#flags(), 10);
    send.push(encodeOptionReply(opt, NBD_REP.INFO, exp));
    if (requests.includes(NBD_INFO.NAME)) {
      const s = Buffer.from(name === '' ? (this.#cfg.exportName ?? '') : name, 'utf8');
      const b = Buffer.allocUnsafe(2 + s.length);
      b.writeUInt16BE(NBD_INFO.NAME, 0);
      s.copy(b, 2);
      send.push(encodeOptionReply(opt, NBD_REP.INFO, b));
    }
    if (requests.includes(NBD_INFO.DESCRIPTION) && this.#cfg.description !== '') {
      const s = Buffer.from(this.#cfg.description, 'utf8');
      const b = Buffer.allocUnsafe(2 + s.length);
      b.writeUInt16BE(NBD_INFO.DESCRIPTION, 0);
      s.copy(b, 2);
      send.push(encodeOptionReply(opt, NBD_REP.INFO, b));
    }
    // Block size is sent even when not requested: clients that ignore it lose nothing, and
    // clients that honour it (libnbd, qemu) then never exceed the maximum.
    const bs = Buffer.allocUnsafe(14);
    bs.writeUInt16BE(NBD_INFO.BLOCK_SIZE, 0);
    bs.writeUInt32BE(this.#cfg.minBlockSize, 2);
    bs.writeUInt32BE(this.#cfg.preferredBlockSize, 6);
    bs.writeUInt32BE(this.#cfg.maxBlockSize, 10);
    send.push(encodeOptionReply(opt, NBD_REP.INFO, bs));
    send.push(encodeOptionReply(opt, NBD_REP.ACK));
    if (opt === NBD_OPT.INFO) return null;
    this.#phase = 'done';
    return { state: 'transmission', send, negotiated: this.#negotiated(name), rest: this.#queue.readAll() };
  }

  /*
   * LIST_META_CONTEXT / SET_META_CONTEXT data: u32 export name length, name, u32 number of
   * queries, then per query u32 length and string. Replies: one NBD_REP_META_CONTEXT per matching
   * context (u32 context id, name), then NBD_REP_ACK. SET replaces the selected set.
   */
  #metaContext(opt: number, data: Buffer, send: Buffer[]): void {
    if (!this.#structured) {
      send.push(errorReply(opt, NBD_REP.ERR_INVALID, 'structured replies must be negotiated first'));
      return;
    }
    const r = new OptionReader(data);
    const nameLen = r.u32();
    const name = nameLen === null ? null : r.string(nameLen);
    const n = r.u32();
    const queries: string[] = [];
    for (let i = 0; n !== null && i < n; i++) {
      const len = r.u32();
      const q = len === null ? null : r.string(len);
      if (q === null) break;
      queries.push(q);
    }
    if (name === null || n === null || queries.length !== n || !r.atEnd) {
      send.push(errorReply(opt, NBD_REP.ERR_INVALID, 'malformed meta context request'));
      return;
    }
    if (!this.#acceptsName(name)) {
      send.push(errorReply(opt, NBD_REP.ERR_UNKNOWN, `unknown export "${name.slice(0, 64)}"`));
      return;
    }
    const isList = opt === NBD_OPT.LIST_META_CONTEXT;
    // An empty query list means "all contexts" for LIST and "none" for SET.
    const matches =
      isList && n === 0
        ? true
        : queries.some((q) => q === BASE_ALLOCATION || (isList && (q === 'base:' || q === 'base')));
    if (!isList) this.#metaContextId = matches ? BASE_ALLOCATION_ID : null;
    if (matches) {
      const s = Buffer.from(BASE_ALLOCATION, 'utf8');
      const b = Buffer.allocUnsafe(4 + s.length);
      b.writeUInt32BE(isList ? 0 : BASE_ALLOCATION_ID, 0);
      s.copy(b, 4);
      send.push(encodeOptionReply(opt, NBD_REP.META_CONTEXT, b));
    }
    send.push(encodeOptionReply(opt, NBD_REP.ACK));
  }
}
