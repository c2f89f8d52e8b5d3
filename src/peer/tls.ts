// TLS on the replication link, our extension (README "Security"): TLS 1.3 only, both nodes show a
// certificate (`tlscert`/`tlskey`) and check the other's against `tlsca` and/or the pinned SHA-256
// fingerprint `tlspeer`. Negotiated in the plain handshake (HAST-SPEC §6.3) like `authkey`: the
// primary's first message carries `tls` (uint8 1), the secondary's reply echoes it. After the
// second connection's header, both connections turn into TLS, the secondary's worker acting as
// the TLS client: the parent has handed the sockets over by then and never sees a TLS byte, and
// the primary sends nothing until its TLS server side is up. Host names are not checked: a node
// is identified by its CA or its pinned certificate, not by a DNS name.
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { type PeerCertificate, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { serveTls } from '../util/tls-server.js';
import type { NvList } from '../nv/codec.js';
import { PeerProtocolError } from './errors.js';

/** The TLS settings of a resource, as ResourceConfig carries them. */
export interface TlsFiles {
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsCa?: string;
  readonly tlsPeer?: string;
}

/** True when the resource is configured for TLS. */
export function wantsTls(cfg: TlsFiles): boolean {
  return cfg.tlsCert !== undefined && cfg.tlsKey !== undefined;
}

/**
 * `{tls: uint8 1}`: in the handshake, the offer and its acceptance; after TLS is up, the
 * primary's word on "out" that it accepted the secondary's certificate (the secondary, as the TLS
 * client, would otherwise learn of a refusal only as a closed connection).
 */
export function addTlsOffer(nv: NvList): NvList {
  return nv.addUint8('tls', 1);
}

/** Did the peer offer (or accept) TLS? Lenient, like the other extension fields. */
export function offersTls(nv: NvList): boolean {
  return (nv.getUint8('tls') ?? 0) >= 1;
}

function contextOf(cfg: TlsFiles): { cert: Buffer; key: Buffer; ca?: Buffer } {
  return {
    cert: readFileSync(cfg.tlsCert ?? ''),
    key: readFileSync(cfg.tlsKey ?? ''),
    ...(cfg.tlsCa !== undefined ? { ca: readFileSync(cfg.tlsCa) } : {}),
  };
}

/** Why the peer's certificate is not acceptable, or null. */
function judgePeer(sock: TLSSocket, cfg: TlsFiles): string | null {
  const cert: PeerCertificate | null = sock.getPeerCertificate();
  if (cert === null || Object.keys(cert).length === 0) return 'the peer showed no certificate';
  if (cfg.tlsCa !== undefined && !sock.authorized) {
    return `the peer's certificate is not accepted: ${String(sock.authorizationError ?? 'unknown reason')}`;
  }
  if (cfg.tlsPeer !== undefined && cert.fingerprint256.toUpperCase() !== cfg.tlsPeer) {
    return `the peer's certificate fingerprint ${cert.fingerprint256} is not tlspeer ${cfg.tlsPeer}`;
  }
  if (cfg.tlsCa === undefined) {
    // Pinned only: the chain is not checked, but an expired pinned certificate is still refused.
    const now = Date.now();
    if (now < Date.parse(cert.valid_from) || now > Date.parse(cert.valid_to)) {
      return `the peer's certificate is not valid now (${cert.valid_from} – ${cert.valid_to})`;
    }
  }
  return null;
}

/**
 * Run TLS over `sock` as `side` and check the peer's certificate.
 * @throws PeerProtocolError naming what failed (handshake, certificate, timeout)
 */
export function startTls(
  sock: Socket,
  cfg: TlsFiles,
  side: 'client' | 'server',
  timeoutMs: number,
): Promise<TLSSocket> {
  const ctx = contextOf(cfg);
  const common = {
    ...ctx,
    minVersion: 'TLSv1.3' as const,
    maxVersion: 'TLSv1.3' as const,
    // Checked by judgePeer() with the reason logged; with only a pin there is no CA to check.
    rejectUnauthorized: false,
  };
  return new Promise((resolve, reject) => {
    let tls: TLSSocket | null = null;
    const timer = setTimeout(() => fail(new Error('timed out')), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      tls?.destroy();
      sock.destroy();
      reject(new PeerProtocolError('EPEER_CONNECTION', `TLS handshake failed: ${err.message}`, { cause: err }));
    };
    const done = (t: TLSSocket): void => {
      clearTimeout(timer);
      t.off('error', fail);
      const why = judgePeer(t, cfg);
      if (why !== null) {
        t.destroy();
        reject(new PeerProtocolError('EPEER_CONNECTION', `TLS refused: ${why}`));
        return;
      }
      resolve(t);
    };
    if (side === 'client') {
      const t = tlsConnect({ ...common, socket: sock, checkServerIdentity: () => undefined });
      tls = t;
      t.once('error', fail);
      t.once('secureConnect', () => done(t));
    } else {
      serveTls(sock, { ...common, requestCert: true }, timeoutMs).then((t) => {
        tls = t;
        t.once('error', fail);
        done(t);
      }, fail);
    }
  });
}
