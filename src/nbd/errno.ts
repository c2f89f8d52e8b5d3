// Maps error codes of the backend (Node SystemError codes, ErrnoError codes) to NBD error values
// (proto.md "Error values"): the wire never carries the host's errno numbers.
import { NBD_E, type NbdErrno } from './constants.js';

const CODE_TO_NBD: Readonly<Record<string, NbdErrno>> = {
  EPERM: NBD_E.EPERM,
  EACCES: NBD_E.EPERM,
  EROFS: NBD_E.EPERM,
  EIO: NBD_E.EIO,
  ENOMEM: NBD_E.ENOMEM,
  ENOBUFS: NBD_E.ENOMEM,
  EINVAL: NBD_E.EINVAL,
  ENOSPC: NBD_E.ENOSPC,
  // proto.md: the server SHOULD map EDQUOT and EFBIG to ENOSPC.
  EDQUOT: NBD_E.ENOSPC,
  EFBIG: NBD_E.ENOSPC,
  EOVERFLOW: NBD_E.EOVERFLOW,
  ENOTSUP: NBD_E.ENOTSUP,
  EOPNOTSUPP: NBD_E.ENOTSUP,
  ESHUTDOWN: NBD_E.ESHUTDOWN,
};

/** NBD error value for an error code string; unknown codes become EIO. */
export function nbdErrnoOfCode(code: string): NbdErrno {
  return CODE_TO_NBD[code] ?? NBD_E.EIO;
}

/** NBD error value for any rejected value (uses its string `code`); EIO when it has none. */
export function nbdErrnoOf(err: unknown): NbdErrno {
  if (err !== null && typeof err === 'object' && 'code' in err && typeof err.code === 'string') {
    return nbdErrnoOfCode(err.code);
  }
  return NBD_E.EIO;
}

/** Code string for an NBD error value received by a client ('EIO' for unknown values). */
export function codeOfNbdErrno(n: number): string {
  for (const [code, v] of Object.entries(NBD_E)) if (v === n) return code;
  return 'EIO';
}
