// A TCP proxy between two hastd nodes that fails on demand: cut (reset every connection, in the
// middle of whatever payload is on the wire), down (refuse new connections: a partition) and stall
// (stop forwarding in both directions; TCP flow control backs up to the sender), and a rate limit.
// With `inspect`, it also parses the peer protocol's frames in both directions (header and nv list;
// payloads stream through) and can corrupt the secondary's replies or a WRITE's payload, or answer
// a FLUSH with an error reply in the secondary's place.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { decodeNv, type NvList } from '../../src/nv/codec.js';
import { HIO, MAX_NV_SIZE } from '../../src/peer/constants.js';
import { encodeMessage, MESSAGE_HEADER_SIZE } from '../../src/peer/framing.js';
import { buildReply, readRequest } from '../../src/peer/messages.js';

/**
 * How the proxy corrupts a message: `version` (reply header's version byte), `length` (reply
 * header's nv length, made huge), `nv-byte` (one random byte of a reply's nv list flipped),
 * `write-payload` (one byte of a WRITE request's payload flipped: the secondary's checksum check).
 */
export const CORRUPT_KINDS = ['version', 'length', 'nv-byte', 'write-payload'] as const;
export type CorruptKind = (typeof CORRUPT_KINDS)[number];

/** FreeBSD's EIO, as a reply's `error` carries it. */
const FREEBSD_EIO = 5;

/**
 * Splits one direction of a peer stream into messages: the 5-byte header and the nv list are held
 * back until complete and handed to `onHead` (which returns the bytes to forward instead), the
 * payload streams through `onPayload`. A stream it cannot parse is passed through untouched.
 */
class FrameTap {
  #held: Buffer = Buffer.alloc(0);
  #payloadLeft = 0;
  #payloadAt = 0;
  #broken = false;
  #corruptAt = -1;
  readonly #onHead: (frame: Buffer, nv: NvList) => { out: Buffer[]; corruptPayloadAt?: number };
  constructor(onHead: (frame: Buffer, nv: NvList) => { out: Buffer[]; corruptPayloadAt?: number }) {
    this.#onHead = onHead;
  }

  push(chunk: Buffer): Buffer[] {
    if (this.#broken) return [chunk];
    const out: Buffer[] = [];
    while (chunk.length > 0) {
      if (this.#payloadLeft > 0) {
        const n = Math.min(this.#payloadLeft, chunk.length);
        let part = chunk.subarray(0, n);
        if (this.#corruptAt >= this.#payloadAt && this.#corruptAt < this.#payloadAt + n) {
          part = Buffer.from(part);
          const i = this.#corruptAt - this.#payloadAt;
          part[i] = (part[i] ?? 0) ^ 0x5a;
          this.#corruptAt = -1;
        }
        out.push(part);
        this.#payloadLeft -= n;
        this.#payloadAt += n;
        chunk = chunk.subarray(n);
        continue;
      }
      const head = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk]);
      chunk = Buffer.alloc(0);
      if (head.length < MESSAGE_HEADER_SIZE) {
        this.#held = Buffer.from(head);
        break;
      }
      const nvLen = head.readUInt32LE(1);
      if (nvLen === 0 || nvLen > MAX_NV_SIZE) {
        this.#broken = true;
        out.push(head);
        break;
      }
      if (head.length < MESSAGE_HEADER_SIZE + nvLen) {
        this.#held = Buffer.from(head);
        break;
      }
      this.#held = Buffer.alloc(0);
      const frame = head.subarray(0, MESSAGE_HEADER_SIZE + nvLen);
      chunk = head.subarray(MESSAGE_HEADER_SIZE + nvLen);
      let nv: NvList;
      try {
        nv = decodeNv(frame.subarray(MESSAGE_HEADER_SIZE));
      } catch {
        this.#broken = true;
        out.push(head);
        break;
      }
      this.#payloadLeft = nv.getUint32('size') ?? 0;
      this.#payloadAt = 0;
      const r = this.#onHead(frame, nv);
      this.#corruptAt = r.corruptPayloadAt ?? -1;
      out.push(...r.out);
    }
    return out;
  }
}

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
  /** Connections accepted and forwarded, and closed (by either side, or by cut()). */
  opened = 0;
  closed = 0;
  readonly #inspect: boolean;
  readonly #rnd: () => number;
  /** Messages still to corrupt, and how. */
  #corrupt: { left: number; kind: CorruptKind } | null = null;
  /** What was corrupted ("version of the reply to seq 17"). */
  readonly corrupted: string[] = [];
  /** FLUSH requests still to fail, and the seqs of those seen whose reply is to be replaced. */
  #failFlushes = 0;
  readonly #flushSeqs = new Set<bigint>();
  /** FLUSH replies replaced with an EIO reply. */
  flushesFailed = 0;

  constructor(
    listen: { host: string; port: number },
    target: { host: string; port: number },
    bind: string,
    opts: { inspect?: boolean; rnd?: () => number } = {},
  ) {
    this.#listen = listen;
    this.#target = target;
    this.#bind = bind;
    this.#inspect = opts.inspect === true;
    this.#rnd = opts.rnd ?? Math.random;
  }

  /** Corrupt the next `count` messages of this kind (needs `inspect`). */
  corruptNext(count: number, kind: CorruptKind): void {
    if (!this.#inspect) throw new Error('the proxy does not inspect frames');
    this.#corrupt = { left: count, kind };
  }

  /** Answer the next `count` FLUSH requests (not the consistency extension's) with `error` EIO. */
  failNextFlushes(count: number): void {
    if (!this.#inspect) throw new Error('the proxy does not inspect frames');
    this.#failFlushes = count;
  }

  /** Requests (client → upstream): note FLUSHes to fail, corrupt a WRITE's payload. */
  #onRequest(frame: Buffer, nv: NvList): { out: Buffer[]; corruptPayloadAt?: number } {
    if (!nv.has('seq') || !nv.has('cmd')) return { out: [frame] };
    const r = readRequest(nv);
    if (r.cmd === HIO.FLUSH && r.syncState === undefined && this.#failFlushes > 0) {
      this.#failFlushes--;
      this.#flushSeqs.add(r.seq);
    }
    const size = nv.getUint32('size') ?? 0;
    const c = this.#corrupt;
    if (c !== null && c.left > 0 && c.kind === 'write-payload' && r.cmd === HIO.WRITE && size > 0) {
      c.left--;
      const at = Math.floor(this.#rnd() * size);
      this.corrupted.push(`byte ${at} of the payload of WRITE seq ${r.seq}`);
      return { out: [frame], corruptPayloadAt: at };
    }
    return { out: [frame] };
  }

  /** Replies (upstream → client): replace a failed FLUSH's reply, corrupt a reply's header. */
  #onReply(frame: Buffer, nv: NvList): { out: Buffer[] } {
    const seq = nv.getUint64('seq');
    if (seq === undefined || nv.has('token') || nv.has('resource')) return { out: [frame] };
    if (this.#flushSeqs.delete(seq) && !nv.has('received')) {
      this.flushesFailed++;
      return {
        out: encodeMessage(buildReply(seq, { error: FREEBSD_EIO }), undefined, {
          compression: 'none',
          checksum: 'none',
        }),
      };
    }
    const c = this.#corrupt;
    if (c === null || c.left <= 0 || c.kind === 'write-payload') return { out: [frame] };
    c.left--;
    const f = Buffer.from(frame);
    if (c.kind === 'version') f[0] = 0x7f;
    else if (c.kind === 'length') f.writeUInt32LE(0x7fffffff, 1);
    else {
      const at = MESSAGE_HEADER_SIZE + Math.floor(this.#rnd() * (f.length - MESSAGE_HEADER_SIZE));
      f[at] = (f[at] ?? 0) ^ (1 << Math.floor(this.#rnd() * 8));
    }
    this.corrupted.push(`${c.kind} of the reply to seq ${seq}`);
    return { out: [f] };
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
      this.opened++;
      upstream.once('close', () => {
        this.closed++;
        // A new session numbers its requests from 1 again.
        this.#flushSeqs.clear();
      });
      const req = this.#inspect ? new FrameTap((f, nv) => this.#onRequest(f, nv)) : null;
      const rep = this.#inspect ? new FrameTap((f, nv) => this.#onReply(f, nv)) : null;
      this.#forward(client, upstream, req);
      this.#forward(upstream, client, rep);
      if (!this.#stalled) client.resume();
    });
  }

  /** Copy from → to, with back-pressure; a stall pauses reading. */
  #forward(from: Socket, to: Socket, tap: FrameTap | null): void {
    from.on('data', (d: Buffer) => {
      let full = false;
      if (tap === null) full = !to.write(d);
      else for (const b of tap.push(d)) full = !to.write(b) || full;
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
    this.#flushSeqs.clear();
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
  /** Where it listens: with port 0 in the constructor, the port the kernel chose (after start()). */
  get address(): string {
    const bound = this.#server?.address();
    const port = typeof bound === 'object' && bound !== null ? bound.port : this.#listen.port;
    return `${this.#listen.host}:${port}`;
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
