// Address forms used in hast.conf: peer (listen/remote/source), control socket, NBD export.
// HAST-SPEC §1.6; the export form is our extension.
import { isIP, isIPv6 } from 'node:net';

/** Default TCP port of the peer protocol. */
export const HAST_PORT = 8457;
/** Default port of our `metrics` listen address (the HAST port + 1). */
export const METRICS_PORT = 8458;
/** Default port of a `tcp://` export without one (the IANA NBD port). */
export const NBD_PORT = 10809;

export interface PeerAddress {
  /** Host name or IP literal, without brackets. */
  readonly host: string;
  readonly port: number;
  /** 4 or 6 when forced by tcp4:// / tcp6:// or implied by an IP literal; 0 for a host name. */
  readonly family: 0 | 4 | 6;
}

const HOSTNAME = /^[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?\.?$/;

function parsePort(text: string, addr: string): number {
  if (!/^[0-9]{1,5}$/.test(text)) throw new Error(`invalid port '${text}' in address ${addr}`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw new Error(`port ${port} out of range 1..65535 in address ${addr}`);
  return port;
}

/**
 * Parses a listen/remote/source address: `tcp://`, `tcp4://`, `tcp6://` or no scheme, then
 * `host`, `host:port`, `[v6]`, `[v6]:port`, or a v6 literal without brackets (two or more colons,
 * no port). Port 1..65535; `defaultPort` when absent (pass 0 for `source`).
 * Throws a plain Error with a clear message on anything else (e.g. the man page's `…/64`).
 */
export function parsePeerAddress(addr: string, defaultPort: number = HAST_PORT): PeerAddress {
  let rest = addr;
  let forced: 0 | 4 | 6 = 0;
  const scheme = /^([A-Za-z0-9+.-]*):\/\//.exec(addr);
  if (scheme !== null) {
    const s = (scheme[1] ?? '').toLowerCase();
    if (s === 'tcp') forced = 0;
    else if (s === 'tcp4') forced = 4;
    else if (s === 'tcp6') forced = 6;
    else
      throw new Error(
        `unsupported scheme '${scheme[1] ?? ''}://' in address ${addr} (expected tcp://, tcp4:// or tcp6://)`,
      );
    rest = addr.slice(scheme[0].length);
  }
  if (rest === '') throw new Error(`no host in address ${addr}`);
  let host: string;
  let port = defaultPort;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw new Error(`missing ']' in address ${addr}`);
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw new Error(`unexpected '${after}' after ']' in address ${addr}`);
      port = parsePort(after.slice(1), addr);
    }
    if (!isIPv6(host)) throw new Error(`'${host}' is not an IPv6 address in address ${addr}`);
  } else if ((rest.match(/:/g) ?? []).length >= 2) {
    host = rest;
    if (!isIPv6(host)) throw new Error(`'${host}' is not an IPv6 address in address ${addr}`);
  } else {
    const colon = rest.indexOf(':');
    host = colon < 0 ? rest : rest.slice(0, colon);
    if (colon >= 0) port = parsePort(rest.slice(colon + 1), addr);
    if (host === '') throw new Error(`no host in address ${addr}`);
    if (isIP(host) === 0 && /^[0-9.]+$/.test(host))
      throw new Error(`'${host}' is not an IPv4 address in address ${addr}`);
    if (isIP(host) === 0 && !HOSTNAME.test(host)) throw new Error(`invalid host name '${host}' in address ${addr}`);
  }
  const literal = isIP(host);
  if (forced === 4 && literal === 6) throw new Error(`IPv6 address in tcp4:// address ${addr}`);
  if (forced === 6 && literal === 4) throw new Error(`IPv4 address in tcp6:// address ${addr}`);
  const family: 0 | 4 | 6 = forced !== 0 ? forced : literal === 4 ? 4 : literal === 6 ? 6 : 0;
  return { host, port, family };
}

/**
 * Control socket address → filesystem path: `uds://<path>`, `unix://<path>` or an absolute path
 * with no scheme. Throws Error otherwise.
 */
export function parseControlAddress(addr: string): string {
  const m = /^(uds|unix):\/\/(.*)$/.exec(addr);
  if (m !== null) {
    const path = m[2] ?? '';
    if (path === '') throw new Error(`no socket path in address ${addr}`);
    return path;
  }
  if (addr.includes('://'))
    throw new Error(`unsupported control address ${addr} (expected uds://<path>, unix://<path> or an absolute path)`);
  if (!addr.startsWith('/')) throw new Error(`control address ${addr} is not an absolute path`);
  return addr;
}

export type ExportAddress =
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/**
 * Our `export` extension: `uds:///path`, `unix:///path` (or a bare absolute path) → a unix socket;
 * `tcp://host[:port]` (also tcp4://, tcp6://; port defaults to 10809) → TCP. Throws Error otherwise.
 */
export function parseExportAddress(addr: string): ExportAddress {
  if (/^(uds|unix):\/\//.test(addr) || !addr.includes('://')) {
    const path = parseControlAddress(addr);
    if (!path.startsWith('/')) throw new Error(`socket path ${path} is not absolute`);
    return { kind: 'unix', path };
  }
  if (!/^tcp[46]?:\/\//.test(addr)) {
    throw new Error(`unsupported scheme in ${addr} (expected uds://, unix:// or tcp://)`);
  }
  const { host, port } = parsePeerAddress(addr, NBD_PORT);
  return { kind: 'tcp', host, port };
}

/**
 * True when `host` can only be reached from this machine (127.0.0.0/8, ::1, localhost): a plain
 * TCP export anywhere else is readable and writable by whoever reaches it (README "Security").
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}
