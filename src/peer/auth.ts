// Peer authentication, our extension (README "Peer authentication"): a shared secret named by the
// resource's `authkey` file and an HMAC-SHA-256 challenge-response inside the handshake (HAST-SPEC
// §6.3). Both sides send a fresh 32-byte nonce; each proves knowledge of the secret with a MAC over
// the resource name, both nonces and the session token (which pairs the two connections), under a
// label naming the prover's role, so that neither a recorded handshake nor a reflected answer
// passes.
//
//   primary → secondary, 1st connection:  {resource, version, authnonce: uint8[32]}
//   secondary → primary, reply:           {version, token, authnonce: uint8[32], authmac: uint8[32]}
//   primary → secondary, 2nd connection:  {resource, token, ..., authmac: uint8[32]}
//
// Without `authkey` none of these fields is sent: the handshake is FreeBSD's, byte for byte. A
// FreeBSD node ignores the unknown fields, so a node with `authkey` refuses it (it never answers).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import type { NvList } from '../nv/codec.js';
import { PeerProtocolError } from './errors.js';

/** Length of each side's challenge (`authnonce`). */
export const AUTH_NONCE_SIZE = 32;
/** Length of an answer (`authmac`, HMAC-SHA-256). */
const AUTH_MAC_SIZE = 32;
/** A shorter secret is refused: `openssl rand -hex 32` makes a good one. */
const MIN_SECRET_SIZE = 16;
/** A secret file is small; anything larger is not one. */
const MAX_SECRET_SIZE = 4096;
const LABEL = 'HAST-AUTH-1';

/** Mode bits that must be clear on a secret or a private key: nobody but the owner. */
function refuseShared(path: string, mode: number, what: string): void {
  if ((mode & 0o077) !== 0) {
    throw new Error(
      `${what} ${path} is accessible by group or others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 0600 it`,
    );
  }
}

/** A private key file (`tlskey`): a regular file only its owner can access. @throws Error naming it */
export function checkPrivateFile(path: string): void {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch (err) {
    throw new Error(`Unable to open private key file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (!st.isFile()) throw new Error(`Private key file ${path} is not a regular file`);
  refuseShared(path, st.mode, 'Private key file');
}

/**
 * Read the secret from `path`: a regular file, not group- or world-accessible (mode & 077 == 0),
 * 16 to 4096 bytes once one trailing newline is removed.
 * @throws Error saying what is wrong with the file (the caller adds where it was configured)
 */
export function readSecret(path: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new Error(`Unable to open secret file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`Secret file ${path} is not a regular file`);
    refuseShared(path, st.mode, 'Secret file');
    if (st.size > MAX_SECRET_SIZE) throw new Error(`Secret file ${path} is larger than ${MAX_SECRET_SIZE} bytes`);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    let secret = buf.subarray(0, got);
    if (secret.at(-1) === 0x0a) secret = secret.subarray(0, -1);
    if (secret.at(-1) === 0x0d) secret = secret.subarray(0, -1);
    if (secret.length < MIN_SECRET_SIZE) {
      throw new Error(`Secret file ${path} is too short (${secret.length} bytes, at least ${MIN_SECRET_SIZE})`);
    }
    return Buffer.from(secret);
  } finally {
    closeSync(fd);
  }
}

export function newNonce(): Buffer {
  return randomBytes(AUTH_NONCE_SIZE);
}

/** What both sides agree on before the answers: who proves, for which resource and session. */
export interface AuthContext {
  readonly resource: string;
  readonly primaryNonce: Uint8Array;
  readonly secondaryNonce: Uint8Array;
  readonly token: Uint8Array;
}

/** The answer `prover` sends: HMAC-SHA-256(secret, label | role | resource | Np | Ns | token). */
export function authMac(secret: Buffer, prover: 'primary' | 'secondary', ctx: AuthContext): Buffer {
  const h = createHmac('sha256', secret);
  const name = Buffer.from(ctx.resource);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(name.length);
  h.update(`${LABEL}\0${prover}\0`).update(len).update(name);
  h.update(ctx.primaryNonce).update(ctx.secondaryNonce).update(ctx.token);
  return h.digest();
}

/** Constant-time check of an answer. */
export function macMatches(expected: Buffer, got: Uint8Array): boolean {
  return got.length === expected.length && timingSafeEqual(expected, got);
}

function fieldOf(nv: NvList, field: 'authnonce' | 'authmac', size: number, from: string): Uint8Array | undefined {
  if (!nv.has(field)) return undefined;
  const v = nv.getUint8Array(field);
  if (v === undefined || v.length !== size) {
    throw new PeerProtocolError(
      'EPEER_HEADER',
      `Header from ${from} has '${field}' of invalid ${v === undefined ? 'type' : `size (${v.length}, expected ${size})`}`,
    );
  }
  return v;
}

/** The sender's challenge, or undefined when it sent none. @throws PeerProtocolError on a bad one */
export function readAuthNonce(nv: NvList, from: string): Uint8Array | undefined {
  return fieldOf(nv, 'authnonce', AUTH_NONCE_SIZE, from);
}

/** The sender's answer, or undefined when it sent none. @throws PeerProtocolError on a bad one */
export function readAuthMac(nv: NvList, from: string): Uint8Array | undefined {
  return fieldOf(nv, 'authmac', AUTH_MAC_SIZE, from);
}

export function addAuthNonce(nv: NvList, nonce: Uint8Array): NvList {
  return nv.addUint8Array('authnonce', nonce);
}

export function addAuthMac(nv: NvList, mac: Uint8Array): NvList {
  return nv.addUint8Array('authmac', mac);
}
