// NBD_OPT_STARTTLS (NBD protocol "TLS support", /work/shared/NBD.md): the server's certificate and
// key, and the upgrade the connection runs once it has acknowledged the option. With TLS
// configured the handshake requires it (handshake.ts: NBD_REP_ERR_TLS_REQD before STARTTLS), as
// nbdkit --tls=require does. Client certificates are not asked for.
import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { serveTls } from '../util/tls-server.js';

/** TLS handshake bound: as long as the NBD handshake may take. */
const TLS_TIMEOUT_MS = 20_000;

/** `startTls` for ConnectionHost, with the certificate and key read once, now. */
export function nbdTlsUpgrade(files: { readonly cert: string; readonly key: string }): (s: Duplex) => Promise<Duplex> {
  const cert = readFileSync(files.cert);
  const key = readFileSync(files.key);
  return (s) => serveTls(s, { cert, key }, TLS_TIMEOUT_MS);
}
