// The node-to-node protocol's fixed values (HAST-SPEC §6, §7.2), written once: every module that
// speaks to the peer imports them from here.

/** The protocol version we speak and the highest we accept (HAST-SPEC §6.2). */
export const HAST_PROTO_VERSION = 2;

/** Request commands (upstream HIO_*; HAST-SPEC §6.4). */
export const HIO = { READ: 1, WRITE: 2, DELETE: 3, FLUSH: 4, KEEPALIVE: 5 } as const;
export type HioCmd = (typeof HIO)[keyof typeof HIO];

/** Largest I/O request (MAXPHYS, pinned at 1 MiB: DESIGN.md, HAST-SPEC §11.6). */
export const MAXPHYS = 1024 * 1024;

/** Length of the session token issued by the secondary's parent (HAST-SPEC §6.3). */
export const TOKEN_SIZE = 16;

/** `syncsrc` values on the wire (upstream HAST_SYNCSRC_*; 0 = undefined is never sent). */
export const SYNCSRC = { primary: 1, secondary: 2 } as const;

/**
 * Our consistency extension (README "Deviations"). The primary advertises it with `consistency`
 * (uint8, this version) in its second connect message, the secondary acknowledges it with the same
 * field in its handshake reply; FreeBSD ignores unknown fields in both. Only when both did, the
 * primary tells a sync target where it stands with a FLUSH request carrying `syncstate`
 * (SYNCSTATE), and reports progress in KEEPALIVEs carrying `syncleft`: a FreeBSD secondary would
 * only flush, or ignore the keepalive, were either ever sent to it.
 */
export const CONSISTENCY_EXT = 1;

/**
 * Our checksum-assisted sync (issue 17, DRBD's csums-alg). A primary with `checksumsync on` offers
 * it with `csums` (uint8, the hash algorithm) in its second connect message; a secondary with it on
 * too echoes the same value in its handshake reply, else nothing (FreeBSD ignores the field). Only
 * then may the primary send a READ carrying `csum` (uint8, the same value), answered with the hash
 * of the range instead of its data. 1 = SHA-256, the only algorithm.
 */
export const CSUMS_SHA256 = 1;
/** Bytes of a `csum` READ reply's payload (a SHA-256 digest). */
export const CSUM_SIZE = 32;

/** `syncstate` values: 1 = you are a sync target (persist inconsistent first), 2 = sync done. */
export const SYNCSTATE = { target: 1, done: 2 } as const;
export type SyncState = keyof typeof SYNCSTATE;

/** Text of the split-brain refusal; the primary runs its hook when it receives exactly this. */
export const SPLIT_BRAIN_ERRMSG = 'Split-brain condition!';

/**
 * Largest nv list we accept. Real headers are well under 1 KiB (the largest, the handshake reply,
 * is about 300 bytes); bitmaps and data travel as payload, so 64 KiB is generous and bounds
 * what a hostile peer can make us buffer before the list is even parsed.
 */
export const MAX_NV_SIZE = 64 * 1024;
