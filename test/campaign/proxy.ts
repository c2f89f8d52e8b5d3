// A TCP proxy between two hastd nodes that fails on demand: cut (reset every connection, in the
// middle of whatever payload is on the wire), down (refuse new connections: a partition) and stall
// (stop forwarding in both directions; TCP flow control backs up to the sender), and a rate limit.
import { createServer, connect, type Server, type Socket } from 'node:net';

interface Link {
  readonly client: Socket;
  readonly upstream: Socket;
}

export class FaultProxy {
  readonly #listen: { host: string; port: number };
  readonly #target: { host: string; port: number };
  /** Outgoing connections bind here, so the target sees the real peer's address. */
  readonly #bind: string;
  readonly #links = new Set<Link>();
  #server: Server | null = null;
  #down = false;
  #stalled = false;
  /** Bytes per second per direction and connection; 0 = unlimited. */
  #rate = 0;
  /** Connections reset by cut() or refused while down. */
  cuts = 0;

  constructor(listen: { host: string; port: number }, target: { host: string; port: number }, bind: string) {
    this.#listen = listen;
    this.#target = target;
    this.#bind = bind;
  }

  async start(): Promise<void> {
    const srv = createServer({ pauseOnConnect: true }, (c) => this.#accept(c));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(this.#listen.port, this.#listen.host, () => resolve());
    });
    this.#server = srv;
  }

  #accept(client: Socket): void {
    client.on('error', () => undefined);
    if (this.#down) {
      this.cuts++;
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host: this.#target.host, port: this.#target.port, localAddress: this.#bind });
    upstream.on('error', () => undefined);
    const link: Link = { client, upstream };
    this.#links.add(link);
    const drop = (): void => {
      this.#links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', drop);
    upstream.on('close', drop);
    upstream.once('connect', () => {
      this.#forward(client, upstream);
      this.#forward(upstream, client);
      if (!this.#stalled) client.resume();
    });
  }

  /** Copy from → to, with back-pressure; a stall pauses reading. */
  #forward(from: Socket, to: Socket): void {
    from.on('data', (d: Buffer) => {
      const full = !to.write(d);
      if (full || this.#rate > 0) {
        from.pause();
        let waits = (full ? 1 : 0) + (this.#rate > 0 ? 1 : 0);
        const go = (): void => {
          if (--waits === 0 && !this.#stalled) from.resume();
        };
        if (full) to.once('drain', go);
        if (this.#rate > 0) setTimeout(go, (d.length / this.#rate) * 1000);
      }
    });
    from.on('end', () => to.end());
  }

  /** Reset every current connection (RST to both sides). */
  cut(): void {
    for (const l of [...this.#links]) {
      this.cuts++;
      reset(l.client);
      reset(l.upstream);
      this.#links.delete(l);
    }
  }

  /** Link down: cut everything and refuse new connections until setDown(false). */
  setDown(down: boolean): void {
    this.#down = down;
    if (down) this.cut();
  }

  /** Limit each direction of each connection to `bytesPerSec` (0: no limit), e.g. to make a resync last. */
  setRate(bytesPerSec: number): void {
    this.#rate = bytesPerSec;
  }

  /** Stop (or resume) forwarding in both directions without closing anything. */
  setStalled(stalled: boolean): void {
    this.#stalled = stalled;
    for (const l of this.#links) {
      if (stalled) {
        l.client.pause();
        l.upstream.pause();
      } else {
        l.client.resume();
        l.upstream.resume();
      }
    }
  }

  /** host:port the proxy listens on. */
  get address(): string {
    return `${this.#listen.host}:${this.#listen.port}`;
  }

  get connections(): number {
    return this.#links.size;
  }

  async close(): Promise<void> {
    this.setDown(true);
    const srv = this.#server;
    this.#server = null;
    if (srv !== null) await new Promise<void>((r) => srv.close(() => r()));
  }
}

/**
 * RST the connection, unless a graceful shutdown (end()) is already under way or it is still
 * connecting: resetAndDestroy() then can leave the native TCP handle referenced, and Node spins at
 * 100% CPU at exit waiting for it (seen after a campaign; the same race as libp2p/js-libp2p#3597).
 */
function reset(sock: Socket): void {
  if (sock.writableEnded || sock.connecting || sock.destroyed) sock.destroy();
  else sock.resetAndDestroy();
}
