// NBD request validation as a pure function of the decoded header and what was negotiated
// (proto.md "Request types"; nbdkit server/protocol.c validate_request): the connection only
// dispatches what this accepts, so every flag mask, range check and per-command rule is here.
import { NBD_CMD, NBD_CMD_FLAG, NBD_E, nameOfNbdCmd, type NbdErrno } from './constants.js';
import { isRequestMagic, type NbdRequest } from './request.js';

/** What a request is checked against; fixed when the transmission phase starts. */
export interface RequestLimits {
  /** Export size in bytes. */
  readonly size: number;
  /** Largest READ or WRITE (the NBD_INFO_BLOCK_SIZE maximum we advertised). */
  readonly maxBlockSize: number;
  readonly readOnly: boolean;
  /** NBD_CMD_FLAG_FAST_ZERO is allowed only when the backend fails fast (NBD_FLAG_SEND_FAST_ZERO). */
  readonly canFastZero: boolean;
  /** NBD_CMD_FLAG_DF is allowed only with structured replies. */
  readonly structuredReplies: boolean;
  /** base:allocation's context id when the client selected it, else null (no BLOCK_STATUS). */
  readonly metaContextId: number | null;
}

export type Verdict =
  /** Valid: start it (DISC: begin the disconnect). */
  | { readonly kind: 'ok' }
  /** Valid with nothing to do: answer success without the backend (CACHE, zero-length TRIM/WRITE_ZEROES). */
  | { readonly kind: 'noop' }
  /**
   * Refused with `error`; the connection stays usable (a refused WRITE's payload still follows and
   * must be drained). `message` is what a structured error chunk carries; `reason` is for people.
   */
  | { readonly kind: 'error'; readonly error: NbdErrno; readonly message: string; readonly reason: string }
  /** The stream cannot be trusted any more (bad magic, a length we will not buffer): close it. */
  | { readonly kind: 'fatal'; readonly reason: string };

// Shared so the accepted path allocates nothing per request.
const OK: Verdict = { kind: 'ok' };
const NOOP: Verdict = { kind: 'noop' };

/** Check one request header against the negotiated limits. */
export function validateRequest(req: NbdRequest, limits: RequestLimits): Verdict {
  if (!isRequestMagic(req))
    return { kind: 'fatal', reason: `bad request magic 0x${req.magic.toString(16).padStart(8, '0')}` };
  const { flags, type, offset, length } = req;
  // offset is -1 when it does not fit in 53 bits: always out of range.
  const inRange = offset >= 0 && offset + length <= limits.size;
  switch (type) {
    case NBD_CMD.READ: {
      if (length > limits.maxBlockSize) return tooLong(type, length, limits);
      const allowed = NBD_CMD_FLAG.FUA | (limits.structuredReplies ? NBD_CMD_FLAG.DF : 0);
      if ((flags & ~allowed) !== 0) return badFlags(type, flags);
      if (length === 0) return refuse(NBD_E.EINVAL, `${nameOfNbdCmd(type)} of length 0`);
      if (!inRange) return outOfRange(NBD_E.EINVAL, req, limits);
      return OK;
    }
    case NBD_CMD.WRITE: {
      // Longer than we will drain: the stream is lost.
      if (length > limits.maxBlockSize) return tooLong(type, length, limits);
      if ((flags & ~NBD_CMD_FLAG.FUA) !== 0) return badFlags(type, flags);
      if (length === 0) return refuse(NBD_E.EINVAL, `${nameOfNbdCmd(type)} of length 0`);
      if (limits.readOnly) return readOnly(type);
      if (!inRange) return outOfRange(NBD_E.ENOSPC, req, limits);
      return OK;
    }
    case NBD_CMD.DISC:
      return OK;
    case NBD_CMD.FLUSH:
      return (flags & ~NBD_CMD_FLAG.FUA) !== 0 ? badFlags(type, flags) : OK;
    case NBD_CMD.TRIM: {
      if ((flags & ~NBD_CMD_FLAG.FUA) !== 0) return badFlags(type, flags);
      if (!inRange) return outOfRange(NBD_E.EINVAL, req, limits);
      if (limits.readOnly) return readOnly(type);
      return length === 0 ? NOOP : OK;
    }
    case NBD_CMD.CACHE: {
      // Nothing to prefetch into: a valid CACHE succeeds at once.
      if ((flags & ~NBD_CMD_FLAG.FUA) !== 0) return badFlags(type, flags);
      if (!inRange) return outOfRange(NBD_E.EINVAL, req, limits);
      return NOOP;
    }
    case NBD_CMD.WRITE_ZEROES: {
      const allowed = NBD_CMD_FLAG.FUA | NBD_CMD_FLAG.NO_HOLE | (limits.canFastZero ? NBD_CMD_FLAG.FAST_ZERO : 0);
      if ((flags & ~allowed) !== 0) return badFlags(type, flags);
      if (limits.readOnly) return readOnly(type);
      if (!inRange) return outOfRange(NBD_E.ENOSPC, req, limits);
      return length === 0 ? NOOP : OK;
    }
    case NBD_CMD.BLOCK_STATUS: {
      if (limits.metaContextId === null)
        return refuse(NBD_E.EINVAL, `${nameOfNbdCmd(type)} without a selected meta context`);
      if ((flags & ~(NBD_CMD_FLAG.FUA | NBD_CMD_FLAG.REQ_ONE)) !== 0) return badFlags(type, flags);
      if (length === 0) return refuse(NBD_E.EINVAL, `${nameOfNbdCmd(type)} of length 0`);
      if (!inRange) return outOfRange(NBD_E.EINVAL, req, limits);
      return OK;
    }
    default: {
      // The only refusal whose text reaches the client: it names what we do not know.
      const message = `unknown command ${nameOfNbdCmd(type)}`;
      return { kind: 'error', error: NBD_E.EINVAL, message, reason: message };
    }
  }
}

/** A refusal whose structured error chunk carries no message (as the server has always sent). */
function refuse(error: NbdErrno, reason: string): Verdict {
  return { kind: 'error', error, message: '', reason };
}

function badFlags(type: number, flags: number): Verdict {
  return refuse(NBD_E.EINVAL, `${nameOfNbdCmd(type)} with flags 0x${flags.toString(16)} it does not allow`);
}

function readOnly(type: number): Verdict {
  return refuse(NBD_E.EPERM, `${nameOfNbdCmd(type)} on a read-only export`);
}

function outOfRange(error: NbdErrno, req: NbdRequest, limits: RequestLimits): Verdict {
  const at = req.offset < 0 ? 'an offset beyond 2^53' : `offset ${req.offset}`;
  return refuse(
    error,
    `${nameOfNbdCmd(req.type)} at ${at} length ${req.length} is outside the ${limits.size}-byte export`,
  );
}

function tooLong(type: number, length: number, limits: RequestLimits): Verdict {
  return {
    kind: 'fatal',
    reason: `${nameOfNbdCmd(type)} length ${length} exceeds the maximum block size ${limits.maxBlockSize}`,
  };
}
