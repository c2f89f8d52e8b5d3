// NBD wire constants (magics, options, replies, info types, commands, flags, errors), named as in the
// NBD protocol document (NetworkBlockDevice/nbd doc/proto.md) and nbdkit's nbd-protocol.h.

/** "NBDMAGIC": first 8 bytes the server sends. */
export const NBD_MAGIC_HI = 0x4e42444d;
export const NBD_MAGIC_LO = 0x41474943;
/** "IHAVEOPT": newstyle magic, sent by the server after NBDMAGIC and by the client before each option. */
export const NBD_IHAVEOPT_HI = 0x49484156;
export const NBD_IHAVEOPT_LO = 0x454f5054;
/** Option reply magic 0x0003e889045565a9. */
export const NBD_REP_MAGIC_HI = 0x0003e889;
export const NBD_REP_MAGIC_LO = 0x045565a9;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server, 16 bits). */
export const NBD_FLAG = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Client flags (32 bits). */
export const NBD_FLAG_C = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Transmission flags (16 bits). */
export const NBD_FLAG_T = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Option codes (NBD_OPT_*). */
export const NBD_OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;
export type NbdOpt = (typeof NBD_OPT)[keyof typeof NBD_OPT];

const ERR = 0x8000_0000;
/** Option reply types (NBD_REP_*); errors have bit 31 set. */
export const NBD_REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_PLATFORM: ERR + 4,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
  ERR_SHUTDOWN: ERR + 7,
  ERR_BLOCK_SIZE_REQD: ERR + 8,
  ERR_TOO_BIG: ERR + 9,
} as const;

/** Information types inside NBD_REP_INFO and in INFO/GO requests (NBD_INFO_*). */
export const NBD_INFO = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Request types (NBD_CMD_*). */
export const NBD_CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;
export type NbdCmd = (typeof NBD_CMD)[keyof typeof NBD_CMD];

/** Command flags (NBD_CMD_FLAG_*). */
export const NBD_CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** Structured reply chunk flags and types. */
export const NBD_REPLY_FLAG = { DONE: 1 } as const;
export const NBD_REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;

/** Error values on the wire: NBD's own numbering, not the host's errno. */
export const NBD_E = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrno = (typeof NBD_E)[keyof typeof NBD_E];

/** Sizes of fixed headers. */
export const NBD_REQUEST_SIZE = 28;
export const NBD_SIMPLE_REPLY_SIZE = 16;
export const NBD_STRUCTURED_REPLY_SIZE = 20;
/** The only metadata context we serve. */
export const BASE_ALLOCATION = 'base:allocation';
/** Strings (export names, descriptions, queries) are at most 4096 bytes by the spec. */
export const NBD_MAX_STRING = 4096;

/** Command name for logs ("NBD_CMD_WRITE"); unknown numbers print as their value. */
export function nameOfNbdCmd(type: number): string {
  for (const [name, v] of Object.entries(NBD_CMD)) if (v === type) return `NBD_CMD_${name}`;
  return `NBD_CMD_${type}`;
}
