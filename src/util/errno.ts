// Errno numbers: Node error codes ↔ FreeBSD numbering (peer wire, HAST-SPEC §6.4/§11.7) ↔ NBD numbering.

/** FreeBSD errno values for the codes hastd can produce or receive on the wire. */
export const FREEBSD_ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  EROFS: 30,
  EPIPE: 32,
  EAGAIN: 35,
  EOPNOTSUPP: 45,
  ECONNRESET: 54,
  ENOBUFS: 55,
  ENOTCONN: 57,
  ETIMEDOUT: 60,
  ECONNREFUSED: 61,
  EOVERFLOW: 84,
  ENOTSUP: 45,
  ESHUTDOWN: 58,
  EINTEGRITY: 97,
} as const;
export type ErrnoCode = keyof typeof FREEBSD_ERRNO;

/** An error that carries the errno to report (to an NBD client or over the peer wire). */
export class ErrnoError extends Error {
  override readonly name = 'ErrnoError';
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The errno code carried by any thrown value (Node SystemError, ErrnoError); 'EIO' when none. */
export function errnoCodeOf(err: unknown): string {
  if (err !== null && typeof err === 'object' && 'code' in err && typeof err.code === 'string') {
    return err.code;
  }
  return 'EIO';
}

/** FreeBSD number for a code; unknown codes map to EIO. */
export function toFreeBsdErrno(code: string): number {
  return (FREEBSD_ERRNO as Record<string, number>)[code] ?? FREEBSD_ERRNO.EIO;
}

/** Code for a FreeBSD errno number received from a peer; unknown numbers become EIO. */
export function fromFreeBsdErrno(n: number): string {
  for (const [code, num] of Object.entries(FREEBSD_ERRNO)) {
    if (num === n) return code;
  }
  return 'EIO';
}
