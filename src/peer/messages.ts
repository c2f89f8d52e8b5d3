// Typed builders and views for every peer message: the handshake (HAST-SPEC §6.3), I/O requests
// and replies (§6.4). Field names and nv types are upstream's, exactly; they appear only here.
import { NV_TYPE, NvError, NvList, nameOfNvType } from '../nv/codec.js';
import { PeerProtocolError } from './errors.js';
import {
  CONSISTENCY_EXT,
  CSUMS_SHA256,
  HAST_PROTO_VERSION,
  HIO,
  type HioCmd,
  MAXPHYS,
  SYNCSRC,
  SYNCSTATE,
  type SyncState,
  TOKEN_SIZE,
} from './constants.js';
import type { SyncSrc } from './decide.js';

export { HIO, type HioCmd };

/** Upstream's name for a command in logs: "READ", ..., "UNKNOWN(n)". */
export function nameOfHioCmd(cmd: number): string {
  switch (cmd) {
    case HIO.READ:
      return 'READ';
    case HIO.WRITE:
      return 'WRITE';
    case HIO.DELETE:
      return 'DELETE';
    case HIO.FLUSH:
      return 'FLUSH';
    case HIO.KEEPALIVE:
      return 'KEEPALIVE';
    default:
      return `UNKNOWN(${cmd})`;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers: strict field access that names the field and the sender.

function headerError(err: unknown): never {
  if (err instanceof NvError) throw new PeerProtocolError('EPEER_HEADER', err.message, { cause: err });
  throw err;
}

function req<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    return headerError(err);
  }
}

/** A u64/i64 field as a number; throws when it is negative or above 2^53 − 1. */
function toSafeNumber(value: bigint, field: string, what: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new PeerProtocolError('EPEER_HEADER', `${what} field '${field}' is out of range (${value})`);
  }
  return Number(value);
}

// ---------------------------------------------------------------------------------------------
// Handshake, step 1 (primary → secondary on "out") and step 5 (on "in").

/** First message on "out": `{resource: string, version: uint8 2}` (no token). */
export function buildFirstConnect(resource: string): NvList {
  return new NvList().addString('resource', resource).addUint8('version', HAST_PROTO_VERSION);
}

/** Counters the primary announces on "in" (HAST-SPEC §6.3 step 5). */
export interface ConnectCounters {
  readonly resuid: bigint;
  readonly localCnt: bigint;
  readonly remoteCnt: bigint;
  /** The primary has never been paired (its resuid was just generated). */
  readonly virgin: boolean;
  /** Ours: the primary speaks the consistency extension (CONSISTENCY_EXT); absent = FreeBSD's bytes. */
  readonly consistency?: boolean;
  /** Ours: the primary offers checksum-assisted sync with this algorithm (CSUMS_SHA256). */
  readonly csums?: number;
}

/**
 * Second message, on "in": `{resource, token: uint8[16], [virgin: int8 1], resuid: uint64,
 * localcnt: uint64, remotecnt: uint64}`, and ours last: `[consistency: uint8 1] [csums: uint8]`.
 */
export function buildSecondConnect(resource: string, token: Uint8Array, c: ConnectCounters): NvList {
  const nv = new NvList().addString('resource', resource).addUint8Array('token', token);
  if (c.virgin) nv.addInt8('virgin', 1);
  nv.addUint64('resuid', c.resuid).addUint64('localcnt', c.localCnt).addUint64('remotecnt', c.remoteCnt);
  if (c.consistency === true) nv.addUint8('consistency', CONSISTENCY_EXT);
  if (c.csums !== undefined) nv.addUint8('csums', c.csums);
  return nv;
}

/**
 * The checksum-sync algorithm a handshake header offers or acknowledges (`csums`), when it is one
 * we know (CSUMS_SHA256); undefined otherwise, and for a FreeBSD peer, which never sends it.
 */
export function csumsOf(nv: NvList): number | undefined {
  return nv.getUint8('csums') === CSUMS_SHA256 ? CSUMS_SHA256 : undefined;
}

/** Does a handshake header advertise our consistency extension (any version ≥ 1)? Lenient. */
export function hasConsistencyExt(nv: NvList): boolean {
  return (nv.getUint8('consistency') ?? 0) >= CONSISTENCY_EXT;
}

/**
 * The checksum-sync algorithm of a connection, as each side decides it: on only when this node has
 * `checksumsync on` and the other side's handshake carried a known algorithm (the primary's offer,
 * read by the secondary; the secondary's echo, read by the primary). Undefined: a plain sync.
 */
export function agreeCsums(mine: boolean, theirs: number | undefined): number | undefined {
  return mine && theirs === CSUMS_SHA256 ? theirs : undefined;
}

/** What the secondary's parent reads from any incoming connection's first header. */
export interface ConnectHeader {
  readonly resource: string;
  /** Present (16 bytes) on the second connection only. */
  readonly token: Uint8Array | undefined;
  /** The peer's protocol version; 1 when it sent none. */
  readonly version: number;
}

/**
 * View of a connection's first header for the listener (HAST-SPEC §6.3 steps 2, 3, 6).
 * @param from the peer address, for messages
 * @throws PeerProtocolError when `resource` is missing or a token has the wrong type or size
 */
export function readConnectHeader(nv: NvList, from: string): ConnectHeader {
  const resource = nv.getString('resource');
  if (resource === undefined) {
    throw new PeerProtocolError('EPEER_HEADER', `No 'resource' field in the header received from ${from}`);
  }
  let token: Uint8Array | undefined;
  if (nv.has('token')) {
    token = nv.getUint8Array('token');
    if (token === undefined || token.length !== TOKEN_SIZE) {
      throw new PeerProtocolError('EPEER_HEADER', `Received token of invalid size from ${from}`);
    }
  }
  const version = nv.has('version') ? req(() => nv.requireUint8('version', `Header from ${from}`)) : 1;
  return { resource, token, version };
}

/**
 * The primary's counters from the second connection's header, as the secondary worker reads them.
 * @throws PeerProtocolError naming a missing or mistyped field
 */
export function readConnectCounters(nv: NvList, from: string): ConnectCounters {
  const what = `Header from ${from}`;
  const csums = csumsOf(nv);
  return req(() => ({
    resuid: nv.requireUint64('resuid', what),
    localCnt: nv.requireUint64('localcnt', what),
    remoteCnt: nv.requireUint64('remotecnt', what),
    virgin: nv.has('virgin'),
    // Ours, only when advertised: a FreeBSD primary's header reads exactly as before.
    ...(hasConsistencyExt(nv) ? { consistency: true } : {}),
    ...(csums !== undefined ? { csums } : {}),
  }));
}

// ---------------------------------------------------------------------------------------------
// Handshake, step 3/4: the secondary's reply on "out".

/** Accepting reply to the first connection: `{version: uint8, token: uint8[16]}`. */
export function buildHandshakeReply(version: number, token: Uint8Array): NvList {
  return new NvList().addUint8('version', version).addUint8Array('token', token);
}

/**
 * Refusal (any handshake step): `{errmsg: string, [wait: uint8 1]}`; `wait` tells the primary the
 * node is itself primary for now ("peer busy").
 */
export function buildErrorReply(errmsg: string, wait = false): NvList {
  const nv = new NvList().addString('errmsg', errmsg);
  if (wait) nv.addUint8('wait', 1);
  return nv;
}

export type HandshakeReply =
  | { readonly kind: 'ok'; readonly version: number; readonly token: Uint8Array }
  | { readonly kind: 'error'; readonly errmsg: string; readonly wait: boolean };

/**
 * The primary's view of the reply on "out" (HAST-SPEC §6.3 step 4).
 * @throws PeerProtocolError for a version above 2 or a missing or wrong-size token
 */
export function readHandshakeReply(nv: NvList, from: string): HandshakeReply {
  const errmsg = nv.getString('errmsg');
  if (errmsg !== undefined) return { kind: 'error', errmsg, wait: nv.has('wait') };
  const what = `Handshake header from ${from}`;
  const version = nv.has('version') ? req(() => nv.requireUint8('version', what)) : 1;
  if (version > HAST_PROTO_VERSION) {
    throw new PeerProtocolError('EPEER_VERSION', `${what} has unsupported version ${version}`, {
      errno: 'ERPCMISMATCH',
    });
  }
  const token = req(() => nv.requireUint8Array('token', what));
  if (token.length !== TOKEN_SIZE) {
    throw new PeerProtocolError('EPEER_HEADER', `${what} has 'token' of invalid size (${token.length})`);
  }
  return { kind: 'ok', version, token };
}

// ---------------------------------------------------------------------------------------------
// Handshake, step 7/8: the secondary worker's final reply, on its "in" (the primary's "out").

export interface SyncReply {
  readonly dataSize: number;
  readonly extentSize: number;
  readonly localCnt: bigint;
  readonly remoteCnt: bigint;
  /** The secondary adopted the primary's resuid (decision rule 1). */
  readonly virgin: boolean;
  readonly syncSrc: SyncSrc;
  /** Bitmap bytes that follow as payload; 0 = none. */
  readonly mapSize: number;
  /** Ours: the secondary speaks the consistency extension (only when the primary advertised it). */
  readonly consistency?: boolean;
  /** Ours, with `consistency`: the secondary's copy is marked inconsistent (an unfinished sync). */
  readonly inconsistent?: boolean;
  /** Ours: checksum-assisted sync agreed with this algorithm (only when the primary offered it). */
  readonly csums?: number;
}

/**
 * `{datasize: int64, extentsize: int32, localcnt: uint64, remotecnt: uint64, [virgin: int8 1],
 * syncsrc: uint8, mapsize: uint32}`, and ours last: `[consistency: uint8 1, [inconsistent: uint8 1]]
 * [csums: uint8]`; send it with the bitmap as payload (absent when mapSize 0).
 */
export function buildSyncReply(r: SyncReply): NvList {
  const nv = new NvList()
    .addInt64('datasize', BigInt(r.dataSize))
    .addInt32('extentsize', r.extentSize)
    .addUint64('localcnt', r.localCnt)
    .addUint64('remotecnt', r.remoteCnt);
  if (r.virgin) nv.addInt8('virgin', 1);
  nv.addUint8('syncsrc', SYNCSRC[r.syncSrc]).addUint32('mapsize', r.mapSize);
  if (r.consistency === true) {
    nv.addUint8('consistency', CONSISTENCY_EXT);
    if (r.inconsistent === true) nv.addUint8('inconsistent', 1);
  }
  if (r.csums !== undefined) nv.addUint8('csums', r.csums);
  return nv;
}

/**
 * The primary's view of the final reply (HAST-SPEC §6.3 step 8). `errmsg` wins over everything
 * else (upstream adds it to a list that may already hold the sizes).
 * @throws PeerProtocolError naming a missing or mistyped field, or an unknown syncsrc
 */
export function readSyncReply(
  nv: NvList,
  from: string,
): SyncReply | { readonly kind: 'error'; readonly errmsg: string } {
  const errmsg = nv.getString('errmsg');
  if (errmsg !== undefined) return { kind: 'error', errmsg };
  const what = `Header from ${from}`;
  return req(() => {
    const dataSize = toSafeNumber(nv.requireInt64('datasize', what), 'datasize', what);
    const extentSize = nv.requireInt32('extentsize', what);
    const localCnt = nv.requireUint64('localcnt', what);
    const remoteCnt = nv.requireUint64('remotecnt', what);
    const src = nv.requireUint8('syncsrc', what);
    const syncSrc = src === SYNCSRC.primary ? 'primary' : src === SYNCSRC.secondary ? 'secondary' : undefined;
    if (syncSrc === undefined) {
      throw new PeerProtocolError('EPEER_HEADER', `${what} has invalid 'syncsrc' (${src})`);
    }
    const mapSize = nv.requireUint32('mapsize', what);
    const csums = csumsOf(nv);
    const r: SyncReply = {
      dataSize,
      extentSize,
      localCnt,
      remoteCnt,
      virgin: nv.has('virgin'),
      syncSrc,
      mapSize,
      ...(csums !== undefined ? { csums } : {}),
    };
    // Ours, only when acknowledged: a FreeBSD secondary's reply reads exactly as before.
    if (!hasConsistencyExt(nv)) return r;
    return { ...r, consistency: true, inconsistent: (nv.getUint8('inconsistent') ?? 0) !== 0 };
  });
}

/** True when a readSyncReply() result is a refusal. */
export function isErrorReply<T extends object>(
  r: T | { readonly kind: 'error'; readonly errmsg: string },
): r is {
  readonly kind: 'error';
  readonly errmsg: string;
} {
  return 'kind' in r && r.kind === 'error';
}

// ---------------------------------------------------------------------------------------------
// I/O requests (primary → secondary on "out") and replies (secondary → primary on "in").

/**
 * `{cmd: uint8, seq: uint64, offset: uint64, length: uint64, [memsync: uint8 1]}`; a WRITE's data
 * goes as the message payload. FLUSH sends offset and length 0. Use buildKeepalive() for KEEPALIVE.
 */
export function buildRequest(cmd: HioCmd, seq: bigint, offset: number, length: number, memsync = false): NvList {
  const nv = new NvList()
    .addUint8('cmd', cmd)
    .addUint64('seq', seq)
    .addUint64('offset', BigInt(offset))
    .addUint64('length', BigInt(length));
  if (memsync) nv.addUint8('memsync', 1);
  return nv;
}

/**
 * Ours (checksum-assisted sync, negotiated): a READ `{cmd 1, seq, offset, length, csum: uint8}`
 * answered with the CSUM_SIZE-byte hash of the range as payload instead of its data.
 */
export function buildCsumRequest(seq: bigint, offset: number, length: number): NvList {
  return buildRequest(HIO.READ, seq, offset, length).addUint8('csum', CSUMS_SHA256);
}

/** KEEPALIVE carries only `cmd`. */
export function buildKeepalive(): NvList {
  return new NvList().addUint8('cmd', HIO.KEEPALIVE);
}

/**
 * Ours (consistency extension, negotiated): a FLUSH `{cmd 4, seq, offset 0, length 0, syncstate}`
 * telling the secondary it is a sync target (`target`, with `synctotal` = bytes to copy in this
 * pass) or that the sync is done (`done`). Answered like any FLUSH, once the state is durable.
 */
export function buildSyncStateRequest(seq: bigint, state: SyncState, totalBytes = 0): NvList {
  const nv = buildRequest(HIO.FLUSH, seq, 0, 0).addUint8('syncstate', SYNCSTATE[state]);
  if (state === 'target') nv.addUint64('synctotal', BigInt(totalBytes));
  return nv;
}

/** Ours (negotiated): a KEEPALIVE `{cmd 5, syncleft: uint64}` reporting the bytes still to copy. */
export function buildSyncProgress(leftBytes: number): NvList {
  return buildKeepalive().addUint64('syncleft', BigInt(leftBytes));
}

/**
 * A request as received, before validation. Lenient like upstream's nv_get_*: a missing or
 * mistyped field reads as 0 (cmd, seq) or -1 (offset, length, which are also -1 above 2^53 − 1),
 * so the secondary can still answer EINVAL for that `seq`.
 */
export interface HioRequest {
  readonly cmd: number;
  readonly seq: bigint;
  readonly offset: number;
  readonly length: number;
  readonly memsync: boolean;
  /** Ours: `syncstate` of a FLUSH (SYNCSTATE value), 0 when absent. */
  readonly syncState?: number;
  /** Ours: `synctotal` of a sync-target FLUSH, `syncleft` of a progress KEEPALIVE; -1 when absent. */
  readonly syncBytes?: number;
  /** Ours: `csum` (checksum-assisted sync), the algorithm asked for; -1 when present but not a uint8. */
  readonly csum?: number;
}

function u64AsNumber(nv: NvList, name: string): number {
  const v = nv.getUint64(name);
  if (v === undefined || v > BigInt(Number.MAX_SAFE_INTEGER)) return -1;
  return Number(v);
}

/** Read a request header; never throws (validateRequest() judges it). */
export function readRequest(nv: NvList): HioRequest {
  return {
    cmd: nv.getUint8('cmd') ?? 0,
    seq: nv.getUint64('seq') ?? 0n,
    offset: u64AsNumber(nv, 'offset'),
    length: u64AsNumber(nv, 'length'),
    memsync: nv.has('memsync'),
    // Ours (consistency extension), only when present.
    ...(nv.has('syncstate') ? { syncState: nv.getUint8('syncstate') ?? 0 } : {}),
    ...(nv.has('synctotal')
      ? { syncBytes: u64AsNumber(nv, 'synctotal') }
      : nv.has('syncleft')
        ? { syncBytes: u64AsNumber(nv, 'syncleft') }
        : {}),
    ...(nv.has('csum') ? { csum: nv.getUint8('csum') ?? -1 } : {}),
  };
}

export interface RequestLimits {
  /** Size of the data area (bytes). */
  readonly dataSize: number;
  /** The component's sector size; offsets and lengths must be multiples of it. */
  readonly sectorSize: number;
  /** Largest READ/WRITE; defaults to MAXPHYS (1 MiB). */
  readonly maxIo?: number;
}

/**
 * Upstream's reason for refusing a request (secondary.c requnpack; its log text), or null when the
 * request is acceptable. The secondary replies `error` EINVAL for any refusal (except that a
 * KEEPALIVE never gets a reply).
 */
export function requestProblem(r: HioRequest, limits: RequestLimits): string | null {
  const maxIo = limits.maxIo ?? MAXPHYS;
  if (r.cmd === 0) return "Header contains no 'cmd' field.";
  if (r.cmd !== HIO.KEEPALIVE && r.seq === 0n) return "Header contains no 'seq' field.";
  switch (r.cmd) {
    case HIO.FLUSH:
    case HIO.KEEPALIVE:
      return null;
    case HIO.READ:
    case HIO.WRITE:
    case HIO.DELETE:
      break;
    default:
      return `Header contains invalid 'cmd' (${r.cmd}).`;
  }
  if (r.offset < 0) return "Header is missing 'offset' field.";
  if (r.length < 0) return "Header is missing 'length' field.";
  if (r.length === 0) return 'Data length is zero.';
  if (r.cmd !== HIO.DELETE && r.length > maxIo) return `Data length is too large (${r.length} > ${maxIo}).`;
  if (r.offset % limits.sectorSize !== 0) return `Offset ${r.offset} is not multiple of sector size.`;
  if (r.length % limits.sectorSize !== 0) return `Length ${r.length} is not multiple of sector size.`;
  if (r.offset + r.length > limits.dataSize) {
    return `Data offset is too large (${r.offset + r.length} > ${limits.dataSize}).`;
  }
  return null;
}

/**
 * Ours: why a request's `csum` field is a protocol violation, or null (no `csum`, or a valid one).
 * `negotiated` is the algorithm agreed in this session's handshake, undefined when none was. A
 * violation is no request to answer EINVAL: the peer does not speak the protocol we agreed on, and
 * the secondary closes the connection with this reason.
 */
export function csumProblem(r: HioRequest, negotiated: number | undefined): string | null {
  if (r.csum === undefined) return null;
  if (negotiated === undefined) return "Header contains a 'csum' field, but checksum sync was not negotiated.";
  if (r.cmd !== HIO.READ) return `Header contains a 'csum' field on ${nameOfHioCmd(r.cmd)}.`;
  if (r.csum !== negotiated) return `Header contains an unknown 'csum' algorithm (${r.csum}).`;
  return null;
}

/**
 * The secondary's check of a WRITE's payload once the header passed requestProblem(): the data must
 * be there and be exactly `length` bytes. Null when acceptable (and for every other command).
 */
export function writeDataProblem(r: HioRequest, data: Buffer | null): string | null {
  if (r.cmd !== HIO.WRITE) return null;
  if (data === null) return 'Write request carries no data.';
  if (data.length !== r.length) {
    return `Write data size differs from request length (${data.length} != ${r.length}).`;
  }
  return null;
}

/** The secondary's request checks (HAST-SPEC §6.4): 'EINVAL' to reply with, or null when valid. */
export function validateRequest(r: HioRequest, limits: RequestLimits): 'EINVAL' | null {
  return requestProblem(r, limits) === null ? null : 'EINVAL';
}

/** A reply: `received` marks the memsync early ack; `error` is a FreeBSD errno number (0 = none). */
export interface HioReply {
  readonly seq: bigint;
  readonly received: boolean;
  readonly error: number;
}

/** `{seq: uint64, [received: int8 1], [error: int16]}`; successful READ data goes as payload. */
export function buildReply(seq: bigint, opts: { received?: boolean; error?: number } = {}): NvList {
  const nv = new NvList().addUint64('seq', seq);
  if (opts.received === true) nv.addInt8('received', 1);
  if (opts.error !== undefined && opts.error !== 0) nv.addInt16('error', opts.error);
  return nv;
}

/**
 * The primary's view of a reply.
 * @throws PeerProtocolError when `seq` is missing or zero, or `error` is not an int16
 */
export function readReply(nv: NvList): HioReply {
  const seq = nv.getUint64('seq') ?? 0n;
  if (seq === 0n) throw new PeerProtocolError('EPEER_HEADER', "Header contains no 'seq' field");
  const errEl = nv.find('error');
  let error = 0;
  if (errEl !== undefined) {
    if (errEl.type !== NV_TYPE.INT16) {
      throw new PeerProtocolError('EPEER_HEADER', `Reply field 'error' is ${nameOfNvType(errEl.type)}, expected int16`);
    }
    error = errEl.value;
  }
  return { seq, received: nv.has('received'), error };
}
