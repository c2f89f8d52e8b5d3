// Peer listeners of the parent (HAST-SPEC §6.1, §6.3): accept the primary's two connections, check
// the peer address, resource, role and token, and hand both sockets to a fresh secondary worker.
import type { ChildProcess } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { parsePeerAddress } from '../config/address.js';
import { log } from '../log/log.js';
import type { NvList } from '../nv/codec.js';
import { HAST_PROTO_VERSION, TOKEN_SIZE } from '../peer/constants.js';
import { readFirstHeader, sendFirstReply, sendRefusal } from '../peer/handshake.js';
import { hasConsistencyExt } from '../peer/messages.js';
import type { PeerParent } from './resource-state.js';
import type { ParentToWorker } from './worker-ipc.js';

/** Freshly accepted sockets get this long for the whole handshake (HAST-SPEC §6.5). */
const HANDSHAKE_TIMEOUT_MS = 20_000;

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

/** True when `ip` (IP only, port ignored) is the `remote` of the resource. */
async function matchesRemote(ip: string, remoteAddr: string): Promise<boolean> {
  return (await resolveRemote(remoteAddr)).includes(normalizeIp(ip));
}

interface PendingIn {
  readonly token: Buffer;
  readonly sock: Socket;
  readonly version: number;
  readonly timer: NodeJS.Timeout;
}

/** Result of routing one accepted connection, for logs and tests. */
export type AcceptOutcome =
  | { readonly kind: 'closed'; readonly reason: string }
  | { readonly kind: 'refused'; readonly reason: string; readonly errmsg: string }
  | { readonly kind: 'first'; readonly resource: string; readonly version: number }
  | { readonly kind: 'second'; readonly resource: string; readonly worker: ChildProcess };

/**
 * Routes accepted peer connections (upstream listen_accept()). One instance per daemon; it keeps
 * each resource's pending first ("in") connection and token until the second one arrives.
 */
export class PeerAcceptor {
  readonly #parent: PeerParent;
  readonly #pending = new Map<string, PendingIn>();
  readonly #timeoutMs: number;

  constructor(parent: PeerParent, opts: { timeoutMs?: number } = {}) {
    this.#parent = parent;
    this.#timeoutMs = opts.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  }

  /** Handle one accepted socket; never throws, the socket is closed or handed over. */
  async accept(sock: Socket): Promise<AcceptOutcome> {
    sock.setNoDelay(true);
    sock.on('error', () => undefined);
    const raddr = sock.remoteAddress ?? '';
    const peer = `tcp://${raddr}:${sock.remotePort ?? 0}`;
    log.info(`Connection from ${peer} to tcp://${sock.localAddress ?? ''}:${sock.localPort ?? 0}.`);
    let outcome: AcceptOutcome;
    try {
      outcome = await this.#route(sock, raddr, peer);
    } catch (err) {
      log.error(`Unable to handle connection from ${peer}`, err);
      outcome = { kind: 'closed', reason: err instanceof Error ? err.message : String(err) };
    }
    if (outcome.kind === 'closed') sock.destroy();
    return outcome;
  }

  async #route(sock: Socket, raddr: string, peer: string): Promise<AcceptOutcome> {
    // Before reading a single byte: is this host the remote of any resource at all?
    let known = false;
    for (const res of this.#parent.resources.values()) {
      if (await matchesRemote(raddr, res.cfg.remoteAddr)) {
        known = true;
        break;
      }
    }
    if (!known) {
      log.warning(`Client ${peer} isn't known.`);
      return { kind: 'closed', reason: 'unknown client' };
    }
    let msg: NvList;
    try {
      msg = await readFirstHeader(sock, this.#timeoutMs);
    } catch (err) {
      // A connection closed before saying anything is a liveness probe (contrib/ucarp's peer_alive).
      const probe = err instanceof Error && /closed before/i.test(err.message);
      if (probe) log.info(`Connection from ${peer} closed before the handshake header (probe).`);
      else log.error(`Unable to receive header from ${peer}`, err);
      return { kind: 'closed', reason: err instanceof Error ? err.message : String(err) };
    }
    // The rest runs serialized with role changes, so a role cannot change under our feet.
    return this.#parent.serialize(() => this.#decide(sock, raddr, peer, msg));
  }

  async #refuse(sock: Socket, reason: string, errmsg: string, wait = false): Promise<AcceptOutcome> {
    log.error(reason);
    await sendRefusal(sock, errmsg, wait);
    return { kind: 'refused', reason, errmsg };
  }

  async #decide(sock: Socket, raddr: string, peer: string, msg: NvList): Promise<AcceptOutcome> {
    // Fields are read leniently, like upstream's nv_get_*: each check below names what is wrong,
    // in upstream's order (resource, access, role, then the token).
    const name = msg.getString('resource');
    if (name === undefined) {
      log.error(`Header from ${peer} has no 'resource' field.`);
      return { kind: 'closed', reason: 'no resource field' };
    }
    const res = this.#parent.resources.get(name);
    if (res === undefined) {
      return this.#refuse(sock, `No resource '${name}' as requested by ${peer}.`, 'Resource not configured.');
    }
    if (!(await matchesRemote(raddr, res.cfg.remoteAddr))) {
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

  async #first(sock: Socket, name: string, peer: string, msg: NvList): Promise<AcceptOutcome> {
    const res = this.#parent.resources.get(name);
    if (res === undefined) return { kind: 'closed', reason: 'resource vanished' };
    // A new session replaces whatever the old one left: a running worker or a half-open "in".
    if (res.worker !== null && res.workerRole === 'secondary') {
      log.info(`[${name}] (secondary) Worker process exists (pid=${res.worker.pid ?? 0}), stopping it.`);
      await this.#parent.stopWorker(res);
    }
    this.#dropPending(name, 'Old first connection');
    // A peer that sends no version speaks version 1 (HAST-SPEC §6.3 step 3).
    const version = Math.min(msg.getUint8('version') ?? 1, HAST_PROTO_VERSION);
    const token = randomBytes(TOKEN_SIZE);
    try {
      await sendFirstReply(sock, version, token);
    } catch (err) {
      log.error(`[${name}] (secondary) Unable to send response to ${peer}`, err);
      return { kind: 'closed', reason: 'send failed' };
    }
    // Until the second connection arrives the socket is ours to keep; nothing may be read from it.
    sock.pause();
    const timer = setTimeout(() => this.#dropPending(name, 'Incomplete handshake'), this.#timeoutMs);
    timer.unref();
    sock.once('close', () => {
      if (this.#pending.get(name)?.sock === sock) this.#dropPending(name, null);
    });
    this.#pending.set(name, { token, sock, version, timer });
    log.debug(1, `[${name}] (secondary) Incoming connection from ${peer} configured.`);
    return { kind: 'first', resource: name, version };
  }

  async #second(sock: Socket, name: string, peer: string, msg: NvList): Promise<AcceptOutcome> {
    const res = this.#parent.resources.get(name);
    if (res === undefined) return { kind: 'closed', reason: 'resource vanished' };
    const token = msg.getUint8Array('token');
    if (token === undefined || token.length !== TOKEN_SIZE) {
      log.error(`[${name}] (secondary) Received token of invalid size from ${peer}.`);
      return { kind: 'closed', reason: 'invalid token size' };
    }
    const pending = this.#pending.get(name);
    if (pending === undefined || !timingSafeEqual(pending.token, token)) {
      return this.#refuse(
        sock,
        `[${name}] (secondary) Token received from ${peer} doesn't match.`,
        "Token doesn't match.",
      );
    }
    clearTimeout(pending.timer);
    this.#pending.delete(name);
    sock.pause();
    if (res.worker !== null) await this.#parent.stopWorker(res);
    const child = this.#parent.startWorker(res, 'secondary');
    const first: ParentToWorker = {
      type: 'peer-socket',
      which: 'out',
      first: {
        version: pending.version,
        // Missing counters read as 0, as upstream's nv_get_uint64 (the decision table judges them).
        virgin: msg.has('virgin'),
        resuid: (msg.getUint64('resuid') ?? 0n).toString(),
        localCnt: (msg.getUint64('localcnt') ?? 0n).toString(),
        remoteCnt: (msg.getUint64('remotecnt') ?? 0n).toString(),
        peerAddr: peer,
        // Ours, only when advertised (a FreeBSD primary's handshake is forwarded as before).
        ...(hasConsistencyExt(msg) ? { consistency: true } : {}),
      },
    };
    this.#parent.sendToWorker(child, { type: 'peer-socket', which: 'in' }, pending.sock);
    this.#parent.sendToWorker(child, first, sock);
    log.debug(
      1,
      `[${name}] (secondary) Outgoing connection to ${peer} configured, worker started (pid=${child.pid ?? 0}).`,
    );
    return { kind: 'second', resource: name, worker: child };
  }

  #dropPending(name: string, why: string | null): void {
    const p = this.#pending.get(name);
    if (p === undefined) return;
    this.#pending.delete(name);
    clearTimeout(p.timer);
    if (why !== null) log.debug(1, `[${name}] (secondary) ${why}, dropping it.`);
    p.sock.destroy();
  }

  /** Close every pending first connection (daemon shutdown). */
  close(): void {
    for (const name of [...this.#pending.keys()]) this.#dropPending(name, null);
  }
}

/** Bind failures that only mean "this address family is not available here". */
function isFamilyUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL' || code === 'EPROTONOSUPPORT';
}

/**
 * Listen on every configured peer address (backlog 8). A family that cannot be bound only warns
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
    server.listen({ host: a.host, port: a.port, backlog: 8, ipv6Only: a.family === 6 }, () => {
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
