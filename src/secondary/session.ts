// One secondary session (HAST-SPEC §6.3 step 7, §6.4, §6.5, §7.2): answers the handshake, then reads
// requests from the primary's "out" connection, applies them and replies on its "in" connection.
import type { Socket } from 'node:net';
import type { Component } from '../component/component.js';
import type { ResourceConfig } from '../config/types.js';
import type { WorkerStats } from '../control/messages.js';
import type { HookEvent, PeerFirstMessage } from '../daemon/worker-ipc.js';
import { log } from '../log/log.js';
import { EX } from '../util/sysexits.js';
import { ApplyEngine, type HioReply, MAXPHYS } from './apply.js';
import { decideSecondary } from './handshake.js';
import { clearMap, mapSize, readMap, type SecondaryMetadata, writeMd } from './local.js';
import { encodeErrmsg, encodeHandshakeReply, encodeReply, FrameReader, requestFromFrame, SYNCSRC } from './wire.js';

/** Receive timeout on the request connection: 2 × the primary's 10 s keepalive (HAST-SPEC §6.5). */
export const RECV_TIMEOUT_MS = 20_000;
/** Bound on a request's nv header; real ones are well under 200 bytes. */
const MAX_REQUEST_NV = 64 * 1024;

export interface SessionOptions {
  readonly cfg: ResourceConfig;
  readonly comp: Component;
  readonly md: SecondaryMetadata;
  /** The primary's "out" (first) connection: requests arrive here, the handshake reply goes here. */
  readonly inSock: Socket;
  /** The primary's "in" (second) connection: replies go here. */
  readonly outSock: Socket;
  readonly first: PeerFirstMessage;
  /** Fire a hook event through the parent; resolves once it has been handed over. */
  readonly emit: (event: HookEvent) => Promise<void>;
  /** End the worker with this exit code (the session never calls process.exit itself). */
  readonly exit: (code: number) => void;
  readonly recvTimeoutMs?: number;
  readonly maxInFlight?: number;
}

/** A running secondary session; `start()` performs the handshake and begins the data phase. */
export class SecondarySession {
  readonly #o: SessionOptions;
  #cfg: ResourceConfig;
  #engine: ApplyEngine | null = null;
  #replies: HioReply[] = [];
  #flushScheduled = false;
  #recvTimer: NodeJS.Timeout | null = null;
  #sendTimer: NodeJS.Timeout | null = null;
  #paused = false;
  #dead = false;

  constructor(opts: SessionOptions) {
    this.#o = opts;
    this.#cfg = opts.cfg;
  }

  /** Apply a reloaded configuration (checksum, compression, timeout take effect at once). */
  reload(cfg: ResourceConfig): void {
    this.#cfg = cfg;
  }

  get #peer(): string {
    return this.#o.first.peerAddr;
  }

  /** Answer the handshake (§7.2); returns false when the session ended there. */
  async start(): Promise<boolean> {
    const { md, comp, first, inSock, outSock } = this.#o;
    inSock.setNoDelay(true);
    outSock.setNoDelay(true);
    inSock.on('error', (err) => this.#fatal('Unable to receive request header', err));
    outSock.on('error', (err) => this.#fatal('Unable to send reply', err));
    const p = {
      resuid: BigInt(first.resuid),
      localCnt: BigInt(first.localCnt),
      remoteCnt: BigInt(first.remoteCnt),
      virgin: first.virgin,
    };
    const d = decideSecondary({ resuid: md.resuid, localCnt: md.localCnt, remoteCnt: md.remoteCnt }, p);
    let map: Buffer | null;
    let syncSrc: number;
    let virgin = false;
    switch (d.kind) {
      case 'mismatch':
        log.error(d.errmsg);
        await this.#sendRaw(inSock, encodeErrmsg(first.version, d.errmsg));
        this.#end(EX.CONFIG);
        return false;
      case 'split-brain':
        log.error('Split-brain detected, exiting.');
        await this.#sendRaw(inSock, encodeErrmsg(first.version, 'Split-brain condition!'));
        await this.#o.emit('split-brain');
        this.#end(EX.CONFIG);
        return false;
      case 'adopt':
        md.resuid = p.resuid;
        md.prevRole = 'secondary';
        try {
          await writeMd(comp, md);
        } catch (err) {
          log.error('Unable to write metadata', err);
          this.#end(EX.NOINPUT);
          return false;
        }
        map = d.bitmap === 'none' ? null : Buffer.alloc(mapSize(md, comp.sectorSize), 0xff);
        syncSrc = SYNCSRC.PRIMARY;
        virgin = true;
        break;
      case 'sync':
        try {
          map = await readMap(comp, md);
        } catch (err) {
          log.error('Unable to read activemap', err);
          this.#end(EX.NOINPUT);
          return false;
        }
        syncSrc = d.syncSrc === 'secondary' ? SYNCSRC.SECONDARY : SYNCSRC.PRIMARY;
        break;
      case 'never':
        log.warning(d.warning);
        map = Buffer.alloc(mapSize(md, comp.sectorSize), 0xff);
        syncSrc = d.syncSrc === 'secondary' ? SYNCSRC.SECONDARY : SYNCSRC.PRIMARY;
        break;
    }
    if (map !== null && map.length === 0) map = null;
    const reply = encodeHandshakeReply(
      first.version,
      { dataSize: md.dataSize, extentSize: md.extentSize, localCnt: md.localCnt, remoteCnt: md.remoteCnt, virgin, syncSrc, map },
      this.#payloadOpts(),
    );
    if (!(await this.#sendRaw(inSock, reply))) {
      log.error(`Unable to send activemap to ${this.#peer}`);
      this.#end(EX.TEMPFAIL);
      return false;
    }
    await this.#o.emit('connect');
    this.#startDataPhase();
    return true;
  }

  #payloadOpts(): { compression: ResourceConfig['compression']; checksum: ResourceConfig['checksum'] } {
    return { compression: this.#cfg.compression, checksum: this.#cfg.checksum };
  }

  #sendRaw(sock: Socket, bufs: readonly Buffer[]): Promise<boolean> {
    return new Promise((resolve) => {
      if (sock.destroyed || !sock.writable) {
        resolve(false);
        return;
      }
      sock.cork();
      const last = bufs.length - 1;
      bufs.forEach((b, i) => {
        if (i < last) sock.write(b);
        else sock.write(b, (err) => resolve(err == null));
      });
      sock.uncork();
    });
  }

  #startDataPhase(): void {
    const { comp, md, inSock, outSock } = this.#o;
    const engine = new ApplyEngine({
      component: comp,
      localOff: md.localOff,
      dataSize: md.dataSize,
      sendReply: (r) => this.#queueReply(r),
      // By the first request the primary has merged our bitmap and stored it (§4.5).
      onFirstRequest: async () => {
        await clearMap(comp, md);
        log.debug(1, 'Local activemap cleared.');
      },
      ...(this.#o.maxInFlight !== undefined ? { maxInFlight: this.#o.maxInFlight } : {}),
    });
    this.#engine = engine;
    const reader = new FrameReader({ maxNv: MAX_REQUEST_NV, maxPayload: MAXPHYS + 4096 });
    const pump = (): void => {
      try {
        while (!this.#dead && !engine.full) {
          const frame = reader.next();
          if (frame === null) break;
          engine.submit(requestFromFrame(frame, MAXPHYS));
        }
      } catch (err) {
        this.#fatal('Unable to receive request', err);
        return;
      }
      // Back-pressure: stop reading while the engine is full; the receive timeout pauses too.
      if (engine.full && !this.#paused) {
        this.#paused = true;
        inSock.pause();
        this.#stopRecvTimer();
      }
    };
    engine.onAvailable = () => {
      if (this.#dead || !this.#paused) return;
      this.#paused = false;
      pump();
      if (!this.#paused) {
        inSock.resume();
        this.#armRecvTimer();
      }
    };
    inSock.on('data', (chunk: Buffer) => {
      this.#armRecvTimer();
      reader.push(chunk);
      pump();
    });
    inSock.on('end', () => this.#fatal('Unable to receive request header', new Error('Connection closed by the peer')));
    // Nothing is expected on the reply connection; reading it only notices the peer closing it.
    outSock.on('data', () => undefined);
    outSock.on('end', () => this.#fatal('Unable to send reply', new Error('Connection closed by the peer')));
    outSock.on('drain', () => this.#stopSendTimer());
    this.#armRecvTimer();
    inSock.resume();
    outSock.resume();
  }

  #armRecvTimer(): void {
    this.#stopRecvTimer();
    if (this.#dead) return;
    this.#recvTimer = setTimeout(
      () => this.#fatal('Unable to receive request header', new Error('Operation timed out')),
      this.#o.recvTimeoutMs ?? RECV_TIMEOUT_MS,
    );
  }

  #stopRecvTimer(): void {
    if (this.#recvTimer !== null) clearTimeout(this.#recvTimer);
    this.#recvTimer = null;
  }

  #stopSendTimer(): void {
    if (this.#sendTimer !== null) clearTimeout(this.#sendTimer);
    this.#sendTimer = null;
  }

  /** Replies are batched per tick and written corked (one syscall for many small replies). */
  #queueReply(r: HioReply): void {
    if (this.#dead) return;
    this.#replies.push(r);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => this.#flushReplies());
  }

  #flushReplies(): void {
    this.#flushScheduled = false;
    if (this.#dead) return;
    const out = this.#o.outSock;
    const batch = this.#replies;
    this.#replies = [];
    const version = this.#o.first.version;
    const opts = this.#payloadOpts();
    let ok = true;
    out.cork();
    for (const r of batch) {
      for (const b of encodeReply(version, r, opts)) ok = out.write(b);
    }
    out.uncork();
    // A peer that stops reading for longer than `timeout` is as good as gone (HAST-SPEC §6.5).
    if (!ok && this.#sendTimer === null) {
      this.#sendTimer = setTimeout(
        () => this.#fatal('Unable to send reply', new Error('Operation timed out')),
        this.#cfg.timeout * 1000,
      );
    }
  }

  /** Network failure: log, fire `disconnect`, exit 75 (HAST-SPEC §6.5, §8). */
  #fatal(what: string, err: unknown): void {
    if (this.#dead) return;
    log.error(what, err);
    this.#dead = true;
    this.#teardown();
    void this.#o.emit('disconnect').then(() => this.#o.exit(EX.TEMPFAIL));
  }

  #end(code: number): void {
    this.#dead = true;
    this.#teardown();
    this.#o.exit(code);
  }

  #teardown(): void {
    this.#stopRecvTimer();
    this.#stopSendTimer();
    this.#engine?.stop();
    this.#o.inSock.destroy();
    this.#o.outSock.destroy();
  }

  /** Stop quietly (signal from the parent): no event; waits for admitted disk writes, bounded. */
  async shutdown(maxWaitMs = 5000): Promise<void> {
    if (this.#dead) return;
    this.#dead = true;
    this.#stopRecvTimer();
    this.#stopSendTimer();
    this.#o.inSock.pause();
    const engine = this.#engine;
    if (engine !== null) {
      let timer: NodeJS.Timeout | null = null;
      await Promise.race([engine.idle(), new Promise<void>((r) => { timer = setTimeout(r, maxWaitMs); })]);
      if (timer !== null) clearTimeout(timer);
    }
    this.#teardown();
  }

  /** Statistics and queue sizes for `hastctl status`. */
  stats(): WorkerStats | null {
    const e = this.#engine;
    if (e === null) return null;
    return { ...e.queueStats(), sendQueue: this.#replies.length };
  }
}
