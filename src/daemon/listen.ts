// Peer listeners of the parent (HAST-SPEC §6.1, §6.3): accept the primary's two connections, check
// the peer address, resource, role and token, and hand both sockets to a fresh secondary worker.
import type { ChildProcess } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { parsePeerAddress } from '../config/address.js';
import { log } from '../log/log.js';
import { NvList } from '../nv/codec.js';
import { HAST_PROTO_VERSION, TOKEN_SIZE } from '../peer/constants.js';
import {
  type AuthContext,
  addAuthMac,
  addAuthNonce,
  authMac,
  macMatches,
  newNonce,
  readAuthMac,
  readAuthNonce,
  readSecret,
} from '../peer/auth.js';
import { readFirstHeader, sendFirstReply, sendRefusal } from '../peer/handshake.js';
import { addTlsOffer, offersTls, wantsTls } from '../peer/tls.js';
import { csumsOf, hasConsistencyExt } from '../peer/messages.js';
import { RefusalLog } from './refusal-log.js';
import type { PeerParent } from './resource-state.js';
import type { ParentToWorker } from './worker-ipc.js';

/** Freshly accepted sockets get this long for the whole handshake (HAST-SPEC §6.5). */
const HANDSHAKE_TIMEOUT_MS = 20_000;
/**
 * Listen backlog. Upstream uses 8 (HAST-SPEC §6.1): a connection flood then crowds the real peer
 * out of the accept queue; unknown addresses are refused at once, so a deep queue drains fast.
 */
const LISTEN_BACKLOG = 511;

/** Drop the IPv4-mapped IPv6 prefix so ::ffff:10.0.0.1 compares equal to 10.0.0.1. */
export function normalizeIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m?.[1] ?? ip.toLowerCase();
}

/** The IP addresses a `remote` address stands for (none for `none` or an unresolvable name). */
async function resolveRemote(remoteAddr: string): Promise<string[]> {
  if (remoteAddr === 'none') return [];
  let host: string;
  let family: 0 | 4 | 6;
  try {
    ({ host, family } = parsePeerAddress(remoteAddr));
  } catch {
    return [];
  }
  if (isIP(host) !== 0) return [normalizeIp(host)];
  try {
    const all = await lookup(host, { all: true, ...(family !== 0 ? { family } : {}) });
    return all.map((a) => normalizeIp(a.address));
  } catch (err) {
    log.warning(`Unable to resolve ${remoteAddr}`, err);
    return [];
  }
}

/** How long a resolved host name is trusted before it is looked up again. */
const RESOLVE_TTL_MS = 30_000;

/**
 * The addresses of the configured remotes, resolved once per RESOLVE_TTL_MS rather than on every
 * accepted connection: an address check costs a map lookup, so refusing a flood is cheap.
 */
class RemoteAddresses {
  readonly #cache = new Map<string, { readonly ips: readonly string[]; readonly at: number }>();

  async of(remoteAddr: string): Promise<readonly string[]> {
    const hit = this.#cache.get(remoteAddr);
    if (hit !== undefined && Date.now() - hit.at < RESOLVE_TTL_MS) return hit.ips;
    const ips = await resolveRemote(remoteAddr);
    this.#cache.set(remoteAddr, { ips, at: Date.now() });
    return ips;
  }

  /** True when `ip` (IP only, port ignored) is the `remote` of the resource. */
  async matches(ip: string, remoteAddr: string): Promise<boolean> {
    return (await this.of(remoteAddr)).includes(normalizeIp(ip));
  }
}

/** A first connection waiting for its second, by the token it was given. */
interface PendingIn {
  readonly token: Buffer;
  readonly sock: Socket;
  readonly version: number;
  readonly timer: NodeJS.Timeout;
  /** With `authkey`: both challenges, to check the primary's answer on the second connection. */
  readonly auth: { readonly secret: Buffer; readonly ctx: AuthContext } | null;
  /** TLS was agreed: the worker starts it on both sockets. */
  readonly tls: boolean;
}

/**
 * At most this many first connections wait per resource. They are kept by token, so that a
 * stranger's first connection does not drop the real primary's; past the limit the oldest goes.
 */
const MAX_PENDING = 4;
/** Primary nonces remembered per resource, to refuse a replayed first connection. */
const SEEN_NONCES = 256;

/** Result of routing one accepted connection, for logs and tests. */
export type AcceptOutcome =
  | { readonly kind: 'closed'; readonly reason: string }
  | { readonly kind: 'refused'; readonly reason: string; readonly errmsg: string }
  | { readonly kind: 'first'; readonly resource: string; readonly version: number }
  | { readonly kind: 'second'; readonly resource: string; readonly worker: ChildProcess };

/**
 * Routes accepted peer connections (upstream listen_accept()). One instance per daemon; it keeps
 * each resource's pending first ("in") connections and tokens until the second one arrives.
 *
 * Hardening (README "Security"): a connection from an address that is no resource's remote is
 * reset before a byte is read; every refusal is logged with the address and the reason, rate
 * limited (refusal-log.ts); a running secondary session is stopped only for a second connection
 * that matched its token, passed authentication when `authkey` is set, and names the session's
 * resource unique ID: a stranger at the peer address cannot tear it down.
 */
export class PeerAcceptor {
  readonly #parent: PeerParent;
  readonly #pending = new Map<string, Map<string, PendingIn>>();
  readonly #timeoutMs: number;
  readonly #remotes = new RemoteAddresses();
  readonly #refusals: RefusalLog;
  /** The resuid the running secondary worker of each resource was started for. */
  readonly #sessions = new Map<string, { readonly worker: ChildProcess; readonly resuid: bigint }>();
  readonly #seenNonces = new Map<string, Set<string>>();

  constructor(parent: PeerParent, opts: { timeoutMs?: number; refusals?: RefusalLog } = {}) {
    this.#parent = parent;
    this.#timeoutMs = opts.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    this.#refusals = opts.refusals ?? new RefusalLog();
  }

  /** Handle one accepted socket; never throws, the socket is closed or handed over. */
  async accept(sock: Socket): Promise<AcceptOutcome> {
    sock.on('error', () => undefined);
    const raddr = sock.remoteAddress;
    if (raddr === undefined) {
      // Reset before we looked at it: there is no address to check or name.
      this.#refusals.note('info', 'Connection reset by the peer before it could be checked.');
      sock.destroy();
      return { kind: 'closed', reason: 'connection reset' };
    }
    sock.setNoDelay(true);
    const peer = `tcp://${raddr}:${sock.remotePort ?? 0}`;
    let outcome: AcceptOutcome;
    try {
      outcome = await this.#route(sock, raddr, peer);
    } catch (err) {
      this.#refusals.note('error', `Unable to handle connection from ${peer}`, err);
      outcome = { kind: 'closed', reason: err instanceof Error ? err.message : String(err) };
    }
    if (outcome.kind === 'closed') sock.destroy();
    return outcome;
  }

  async #route(sock: Socket, raddr: string, peer: string): Promise<AcceptOutcome> {
    // Before reading a single byte: is this host the remote of any resource at all?
    let known = false;
    for (const res of this.#parent.resources.values()) {
      if (await this.#remotes.matches(raddr, res.cfg.remoteAddr)) {
        known = true;
        break;
      }
    }
    if (!known) {
      this.#refusals.note('warning', `Client ${peer} isn't known.`);
      // A reset rather than a FIN: nothing is left in TIME_WAIT for a flood to pile up.
      sock.resetAndDestroy();
      return { kind: 'closed', reason: 'unknown client' };
    }
    log.info(`Connection from ${peer} to tcp://${sock.localAddress ?? ''}:${sock.localPort ?? 0}.`);
    let msg: NvList;
    try {
      msg = await readFirstHeader(sock, this.#timeoutMs);
    } catch (err) {
      // A connection closed before saying anything is a liveness probe (contrib/ucarp's peer_alive).
      const probe = err instanceof Error && /closed before/i.test(err.message);
      if (probe) this.#refusals.note('info', `Connection from ${peer} closed before the handshake header (probe).`);
      else this.#refusals.note('error', `Unable to receive header from ${peer}`, err);
      return { kind: 'closed', reason: err instanceof Error ? err.message : String(err) };
    }
    // The rest runs serialized with role changes, so a role cannot change under our feet.
    return this.#parent.serialize(() => this.#decide(sock, raddr, peer, msg));
  }

  async #refuse(sock: Socket, reason: string, errmsg: string, wait = false): Promise<AcceptOutcome> {
    this.#refusals.note('error', reason);
    await sendRefusal(sock, errmsg, wait);
    return { kind: 'refused', reason, errmsg };
  }

  #close(reason: string, text: string, err?: unknown): AcceptOutcome {
    this.#refusals.note('error', text, err);
    return { kind: 'closed', reason };
  }

  async #decide(sock: Socket, raddr: string, peer: string, msg: NvList): Promise<AcceptOutcome> {
    // Fields are read leniently, like upstream's nv_get_*: each check below names what is wrong,
    // in upstream's order (resource, access, role, then the token).
    const name = msg.getString('resource');
    if (name === undefined) return this.#close('no resource field', `Header from ${peer} has no 'resource' field.`);
    const res = this.#parent.resources.get(name);
    if (res === undefined) {
      return this.#refuse(sock, `No resource '${name}' as requested by ${peer}.`, 'Resource not configured.');
    }
    if (!(await this.#remotes.matches(raddr, res.cfg.remoteAddr))) {
      return this.#refuse(
        sock,
        `[${name}] (${res.role}) Peer ${peer} has no access to the resource.`,
        'No access to the resource.',
      );
    }
    if (res.role !== 'secondary') {
      return this.#refuse(
        sock,
        `[${name}] (${res.role}) We act as ${res.role} for the resource and not as secondary as requested by ${peer}.`,
        `Remote node acts as ${res.role} for the resource and not as secondary.`,
        res.role === 'primary',
      );
    }
    if (!msg.has('token')) return this.#first(sock, name, peer, msg);
    return this.#second(sock, name, peer, msg);
  }

  /** The resource's secret, or null without `authkey`. @throws when the file went bad since start */
  #secretOf(name: string): Buffer | null {
    const path = this.#parent.resources.get(name)?.cfg.authKey;
    return path === undefined ? null : readSecret(path);
  }

  async #first(sock: Socket, name: string, peer: string, msg: NvList): Promise<AcceptOutcome> {
    const res = this.#parent.resources.get(name);
    if (res === undefined) return { kind: 'closed', reason: 'resource vanished' };
    const who = `[${name}] (secondary)`;
    let secret: Buffer | null;
    let primaryNonce: Uint8Array | undefined;
    try {
      secret = this.#secretOf(name);
      primaryNonce = readAuthNonce(msg, peer);
    } catch (err) {
      return this.#close('bad authentication field', `${who} Refused connection from ${peer}`, err);
    }
    if (secret !== null && primaryNonce === undefined) {
      return this.#refuse(
        sock,
        `${who} Peer ${peer} did not offer authentication, but authkey is configured: refused.`,
        'Authentication required.',
      );
    }
    if (secret === null && primaryNonce !== undefined) {
      log.warning(`${who} Peer ${peer} asks for authentication, but no authkey is configured for the resource.`);
    }
    const tls = wantsTls(res.cfg);
    if (tls && !offersTls(msg)) {
      return this.#refuse(
        sock,
        `${who} Peer ${peer} did not offer TLS, but tlscert is configured: refused.`,
        'TLS required.',
      );
    }
    if (!tls && offersTls(msg)) {
      log.warning(`${who} Peer ${peer} asks for TLS, but no tlscert is configured for the resource.`);
    }
    // A new session replaces whatever the old one left, but only once its second connection has
    // proved itself (#second): here nothing that runs is touched.
    const version = Math.min(msg.getUint8('version') ?? 1, HAST_PROTO_VERSION);
    const token = randomBytes(TOKEN_SIZE);
    let auth: PendingIn['auth'] = null;
    let extra: NvList | undefined;
    if (secret !== null && primaryNonce !== undefined) {
      const key = Buffer.from(primaryNonce).toString('hex');
      const seen = this.#seenNonces.get(name) ?? new Set<string>();
      this.#seenNonces.set(name, seen);
      if (seen.has(key)) {
        return this.#refuse(
          sock,
          `${who} Replayed authentication nonce from ${peer}: refused.`,
          'Authentication failed.',
        );
      }
      seen.add(key);
      if (seen.size > SEEN_NONCES) seen.delete(seen.values().next().value as string);
      const ctx: AuthContext = { resource: name, primaryNonce, secondaryNonce: newNonce(), token };
      auth = { secret, ctx };
      extra = addAuthMac(addAuthNonce(new NvList(), ctx.secondaryNonce), authMac(secret, 'secondary', ctx));
    }
    if (tls) extra = addTlsOffer(extra ?? new NvList());
    try {
      await sendFirstReply(sock, version, token, extra);
    } catch (err) {
      return this.#close('send failed', `${who} Unable to send response to ${peer}`, err);
    }
    // Until the second connection arrives the socket is ours to keep; nothing may be read from it.
    sock.pause();
    const key = token.toString('hex');
    const timer = setTimeout(() => this.#dropPending(name, key, 'Incomplete handshake'), this.#timeoutMs);
    timer.unref();
    sock.once('close', () => this.#dropPending(name, key, null));
    const waiting = this.#pending.get(name) ?? new Map<string, PendingIn>();
    this.#pending.set(name, waiting);
    waiting.set(key, { token, sock, version, timer, auth, tls });
    while (waiting.size > MAX_PENDING)
      this.#dropPending(name, waiting.keys().next().value as string, 'Oldest first connection');
    log.debug(1, `${who} Incoming connection from ${peer} configured.`);
    return { kind: 'first', resource: name, version };
  }

  async #second(sock: Socket, name: string, peer: string, msg: NvList): Promise<AcceptOutcome> {
    const res = this.#parent.resources.get(name);
    if (res === undefined) return { kind: 'closed', reason: 'resource vanished' };
    const who = `[${name}] (secondary)`;
    const token = msg.getUint8Array('token');
    if (token === undefined || token.length !== TOKEN_SIZE) {
      return this.#close('invalid token size', `${who} Received token of invalid size from ${peer}.`);
    }
    const key = Buffer.from(token).toString('hex');
    const pending = this.#pending.get(name)?.get(key);
    if (pending === undefined || !timingSafeEqual(pending.token, token)) {
      return this.#refuse(sock, `${who} Token received from ${peer} doesn't match.`, "Token doesn't match.");
    }
    // One attempt per token, whatever its outcome.
    this.#takePending(name, key);
    const failed = async (reason: string, errmsg: string): Promise<AcceptOutcome> => {
      pending.sock.destroy();
      return this.#refuse(sock, `${who} ${reason}`, errmsg);
    };
    if (pending.auth !== null) {
      let mac: Uint8Array | undefined;
      try {
        mac = readAuthMac(msg, peer);
      } catch (err) {
        return failed(`Refused connection from ${peer}: ${(err as Error).message}.`, 'Authentication failed.');
      }
      if (mac === undefined) {
        return failed(`Peer ${peer} did not answer the authentication challenge: refused.`, 'Authentication failed.');
      }
      if (!macMatches(authMac(pending.auth.secret, 'primary', pending.auth.ctx), mac)) {
        return failed(`Peer ${peer} failed authentication (wrong authkey?): refused.`, 'Authentication failed.');
      }
    }
    const resuid = msg.getUint64('resuid') ?? 0n;
    const running = this.#sessions.get(name);
    if (res.worker !== null && running?.worker === res.worker && running.resuid !== resuid) {
      // The answer the running worker's decision would give (HAST-SPEC §7.2 rule 2), without
      // stopping it: this is not its primary.
      return failed(
        `Resource unique ID of ${peer} (${resuid}) is not the running session's (${running.resuid}): refused, session kept.`,
        `Resource unique ID mismatch (primary=${resuid}, secondary=${running.resuid}).`,
      );
    }
    sock.pause();
    if (res.worker !== null) {
      log.info(`${who} Worker process exists (pid=${res.worker.pid ?? 0}), stopping it.`);
      await this.#parent.stopWorker(res);
    }
    const child = this.#parent.startWorker(res, 'secondary');
    this.#sessions.set(name, { worker: child, resuid });
    const offered = csumsOf(msg);
    const first: ParentToWorker = {
      type: 'peer-socket',
      which: 'out',
      first: {
        version: pending.version,
        // Missing counters read as 0, as upstream's nv_get_uint64 (the decision table judges them).
        virgin: msg.has('virgin'),
        resuid: resuid.toString(),
        localCnt: (msg.getUint64('localcnt') ?? 0n).toString(),
        remoteCnt: (msg.getUint64('remotecnt') ?? 0n).toString(),
        peerAddr: peer,
        // Ours, only when advertised (a FreeBSD primary's handshake is forwarded as before).
        ...(hasConsistencyExt(msg) ? { consistency: true } : {}),
        ...(offered !== undefined ? { csums: offered } : {}),
        ...(pending.tls ? { tls: true } : {}),
      },
    };
    this.#parent.sendToWorker(child, { type: 'peer-socket', which: 'in' }, pending.sock);
    this.#parent.sendToWorker(child, first, sock);
    log.debug(1, `${who} Outgoing connection to ${peer} configured, worker started (pid=${child.pid ?? 0}).`);
    return { kind: 'second', resource: name, worker: child };
  }

  /** Remove a pending first connection without closing it. */
  #takePending(name: string, key: string): PendingIn | undefined {
    const waiting = this.#pending.get(name);
    const p = waiting?.get(key);
    if (p === undefined) return undefined;
    waiting?.delete(key);
    clearTimeout(p.timer);
    return p;
  }

  #dropPending(name: string, key: string, why: string | null): void {
    const p = this.#takePending(name, key);
    if (p === undefined) return;
    if (why !== null) log.debug(1, `[${name}] (secondary) ${why}, dropping it.`);
    p.sock.destroy();
  }

  /** Close every pending first connection (daemon shutdown). */
  close(): void {
    for (const [name, waiting] of [...this.#pending]) {
      for (const key of [...waiting.keys()]) this.#dropPending(name, key, null);
    }
    this.#refusals.close();
  }
}

/** Bind failures that only mean "this address family is not available here". */
function isFamilyUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL' || code === 'EPROTONOSUPPORT';
}

/**
 * Listen on every configured peer address (backlog LISTEN_BACKLOG). A family that cannot be bound only warns
 * (upstream listens on tcp4 and tcp6 by default); nothing bound throws "No address to listen on.";
 * any other bind failure throws. Resolves with a function that closes the listeners.
 */
/** The parent's peer listeners: one server per `listen` address, updated on reload. */
export interface PeerListeners {
  /** Apply a reloaded `listen` list (HAST-SPEC §10.3); rejects, changing nothing, when none would remain. */
  update(addrs: readonly string[]): Promise<void>;
  close(): void;
}

async function listenOn(addr: string, acceptor: PeerAcceptor): Promise<Server> {
  const a = parsePeerAddress(addr);
  const server = createServer({ pauseOnConnect: true }, (sock) => {
    void acceptor.accept(sock);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: a.host, port: a.port, backlog: LISTEN_BACKLOG, ipv6Only: a.family === 6 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error(`Listener on ${addr} failed`, err));
  return server;
}

export async function startPeerListeners(parent: PeerParent): Promise<PeerListeners> {
  const acceptor = new PeerAcceptor(parent);
  const servers = new Map<string, Server>();
  const closeAll = (): void => {
    for (const s of servers.values()) s.close();
    servers.clear();
    acceptor.close();
  };
  for (const addr of parent.cfg.listen) {
    try {
      servers.set(addr, await listenOn(addr, acceptor));
    } catch (err) {
      if (isFamilyUnavailable(err)) {
        log.warning(`Unable to listen on address ${addr}`, err);
        continue;
      }
      closeAll();
      throw new Error(`Unable to listen on address ${addr}: ${err instanceof Error ? err.message : String(err)}`);
    }
    log.info(`Listening on address ${addr}.`);
  }
  if (servers.size === 0) throw new Error('No address to listen on.');
  return {
    close: closeAll,
    async update(addrs: readonly string[]): Promise<void> {
      const wanted = new Set(addrs);
      const opened = new Map<string, Server>();
      for (const addr of wanted) {
        if (servers.has(addr)) continue;
        try {
          opened.set(addr, await listenOn(addr, acceptor));
          log.info(`Listening on new address ${addr}.`);
        } catch (err) {
          log.warning(`Unable to listen on address ${addr}`, err);
        }
      }
      const kept = [...servers.keys()].filter((a) => wanted.has(a));
      if (kept.length + opened.size === 0) {
        for (const s of opened.values()) s.close();
        throw new Error('No address to listen on.');
      }
      for (const addr of kept) log.info(`Keep listening on address ${addr}.`);
      for (const [addr, s] of [...servers]) {
        if (wanted.has(addr)) continue;
        s.close();
        servers.delete(addr);
        log.info(`No longer listening on address ${addr}.`);
      }
      for (const [addr, s] of opened) servers.set(addr, s);
    },
  };
}
