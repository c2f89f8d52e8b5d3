// NBD server: listens on a unix socket or TCP, runs one Connection per client, and bounds the
// requests in flight across all connections (DESIGN.md "The primary's data path"; NBD.md).
import { chmod, lstat, unlink } from 'node:fs/promises';
import { createServer, Socket, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import type { NbdBackend } from './backend.js';
import { Connection, transmissionFlagsOf, type ConnectionHost, type NbdLog } from './connection.js';
import type { HandshakeConfig } from './handshake.js';
import { nbdTlsUpgrade } from './starttls.js';

export type { NbdBackend } from './backend.js';
export type { NbdExtent } from './reply.js';
export type { NbdLog, NbdLogLevel } from './connection.js';

/** Default maximum request size: MAXPHYS (1 MiB), as upstream HAST's largest I/O. */
const NBD_DEFAULT_MAX_BLOCK_SIZE = 1024 * 1024;
const NBD_DEFAULT_MAX_IN_FLIGHT = 256;
const NBD_PREFERRED_BLOCK_SIZE = 4096;

export interface NbdServerOptions {
  /** Export name accepted besides "" (the default export); omitted: any name is accepted. */
  readonly exportName?: string;
  readonly description?: string;
  /** Requests in flight across all connections; beyond it, sockets are paused. Default 256. */
  readonly maxInFlight?: number;
  /** Largest READ/WRITE length (NBD_INFO_BLOCK_SIZE maximum). Default 1 MiB. */
  readonly maxBlockSize?: number;
  /** One line per notable event; 'warning' for every connection closed for bad input. */
  readonly log?: NbdLog;
  /** Mode of a unix socket (default 0o600). */
  readonly socketMode?: number;
  /** NBD_OPT_STARTTLS with this certificate and key, and TLS required (starttls.ts). */
  readonly tls?: { readonly cert: string; readonly key: string };
}

export type NbdListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export interface NbdServer {
  /** Start listening. Unix: a stale socket file at `path` is removed first, then chmod'ed. */
  listen(addr: NbdListenAddress): Promise<void>;
  /** Where the server listens (TCP: the actual port, also when 0 was asked), or null. */
  address(): NbdListenAddress | null;
  /** Serve an already connected socket or any byte stream (tests, socket activation). */
  accept(socket: Duplex): void;
  /** Stop accepting, let in-flight requests finish and reply, then close every connection. */
  close(): Promise<void>;
  /** Open connections. */
  readonly connections: number;
  /** Requests in flight across connections. */
  readonly inFlight: number;
}

/**
 * Create an NBD server for `backend` (fixed newstyle only). Nothing is listened on until
 * `listen()`. Never throws for client input: bad clients are logged and disconnected.
 */
export function createNbdServer(backend: NbdBackend, opts: NbdServerOptions = {}): NbdServer {
  const maxInFlight = Math.max(1, opts.maxInFlight ?? NBD_DEFAULT_MAX_IN_FLIGHT);
  const maxBlockSize = opts.maxBlockSize ?? NBD_DEFAULT_MAX_BLOCK_SIZE;
  const log: NbdLog = opts.log ?? (() => undefined);
  const conns = new Set<Connection>();
  const waiters: Connection[] = [];
  let inFlight = 0;
  let closing = false;
  let listening: NbdListenAddress | null = null;
  let net: Server | null = null;
  let peerSeq = 0;
  const tlsUpgrade = opts.tls !== undefined ? nbdTlsUpgrade(opts.tls) : undefined;

  const host: ConnectionHost = {
    backend,
    maxBlockSize,
    log,
    handshakeConfig(): HandshakeConfig {
      return {
        exportName: opts.exportName,
        description: opts.description ?? '',
        size: backend.size,
        transmissionFlags: transmissionFlagsOf(backend),
        minBlockSize: 1,
        preferredBlockSize: Math.min(NBD_PREFERRED_BLOCK_SIZE, maxBlockSize),
        maxBlockSize,
        ...(tlsUpgrade !== undefined ? { tls: true } : {}),
      };
    },
    ...(tlsUpgrade !== undefined ? { startTls: tlsUpgrade } : {}),
    tryAcquire(): boolean {
      if (inFlight >= maxInFlight) return false;
      inFlight++;
      return true;
    },
    release(): void {
      inFlight--;
      // Wake waiting connections while slots are free; a woken connection that takes the
      // last slot and still has requests queues itself again at the back (fairness).
      while (inFlight < maxInFlight && waiters.length > 0) waiters.shift()?.wake();
    },
    waitForSlot(conn: Connection): void {
      waiters.push(conn);
    },
    onClosed(conn: Connection): void {
      conns.delete(conn);
      const i = waiters.indexOf(conn);
      if (i >= 0) waiters.splice(i, 1);
    },
  };

  function accept(socket: Duplex): void {
    if (closing) {
      socket.destroy();
      return;
    }
    let peer = `#${++peerSeq}`;
    if (socket instanceof Socket) {
      if (socket.remoteAddress !== undefined) peer = `${socket.remoteAddress}:${socket.remotePort ?? 0}`;
      socket.setNoDelay(true);
    }
    conns.add(new Connection(host, socket, peer));
  }

  return {
    async listen(addr: NbdListenAddress): Promise<void> {
      if (net !== null) throw new Error('NBD server is already listening');
      if (addr.kind === 'unix') await removeStaleSocket(addr.path);
      const srv = createServer({ allowHalfOpen: true, pauseOnConnect: false }, accept);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        if (addr.kind === 'unix') srv.listen(addr.path, () => resolve());
        else srv.listen(addr.port, addr.host, () => resolve());
      });
      srv.on('error', (err: Error) => log('error', `NBD listener: ${err.message}`));
      net = srv;
      if (addr.kind === 'unix') {
        await chmod(addr.path, opts.socketMode ?? 0o600);
        listening = { kind: 'unix', path: addr.path };
      } else {
        const a = srv.address();
        const port = a !== null && typeof a === 'object' ? a.port : addr.port;
        listening = { kind: 'tcp', host: addr.host, port };
      }
    },
    address(): NbdListenAddress | null {
      return listening;
    },
    accept,
    async close(): Promise<void> {
      closing = true;
      const srv = net;
      net = null;
      const stopped = srv === null ? Promise.resolve() : new Promise<void>((resolve) => srv.close(() => resolve()));
      const all = [...conns];
      for (const c of all) c.shutdown();
      await Promise.all(all.map((c) => c.closed));
      await stopped;
      listening = null;
    },
    get connections(): number {
      return conns.size;
    },
    get inFlight(): number {
      return inFlight;
    },
  };
}

/** Remove a leftover unix socket (from a crashed run); refuse to remove anything else. */
async function removeStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new Error(`Unable to listen on ${path}: not a socket`);
  await unlink(path);
}
