// One secondary session (HAST-SPEC §6.3 step 7, §6.4, §6.5, §7.2): answers the handshake, then reads
// requests from the primary's "out" connection, applies them and replies on its "in" connection.
import type { Socket } from 'node:net';
import type { Component } from '../component/component.js';
import type { ResourceConfig } from '../config/types.js';
import type { WorkerStats } from '../control/messages.js';
import type { HookEvent, PeerFirstMessage } from '../daemon/worker-ipc.js';
import { log } from '../log/log.js';
import type { NvList } from '../nv/codec.js';
import {
  bitmapSize,
  type Metadata,
  readBitmap,
  reservedMapSize,
  writeBitmap,
  writeMetadata,
} from '../metadata/metadata.js';
import { withoutAgreed } from '../metadata/divergence.js';
import { PeerConnection } from '../peer/connection.js';
import { MAXPHYS, SPLIT_BRAIN_ERRMSG } from '../peer/constants.js';
import { decideSync } from '../peer/decide.js';
import { PeerProtocolError } from '../peer/errors.js';
import type { PeerMessage } from '../peer/framing.js';
import { writeMessage } from '../peer/handshake.js';
import { agreeCsums, buildErrorReply, buildReply, buildSyncReply, csumProblem, readRequest } from '../peer/messages.js';
import { EX } from '../util/sysexits.js';
import { ApplyEngine, type HioReply } from './apply.js';

/** Receive timeout on the request connection: 2 × the primary's 10 s keepalive (HAST-SPEC §6.5). */
const RECV_TIMEOUT_MS = 20_000;
/**
 * Largest request payload read off the wire. Above MAXPHYS so an oversized WRITE still reaches
 * validation and is answered EINVAL instead of dropping the connection.
 */
const MAX_REQUEST_PAYLOAD = MAXPHYS + 4096;
/** Reply payload bytes batched for one write before new requests wait (fast reads fill it in one tick). */
const REPLY_BATCH_BYTES = 4 << 20;

export interface SessionOptions {
  readonly cfg: ResourceConfig;
  readonly comp: Component;
  readonly md: Metadata;
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
  /**
   * Ours (`hastctl role secondary --discard-my-data`): on a split-brain, resync from the primary the
   * extents changed on either side instead of refusing; called (to tell the parent) when used.
   */
  readonly discardMyData?: () => Promise<void>;
}

/** A running secondary session; `start()` performs the handshake and begins the data phase. */
export class SecondarySession {
  readonly #o: SessionOptions;
  #cfg: ResourceConfig;
  #engine: ApplyEngine | null = null;
  /** The primary's "out": requests arrive here. */
  #requests: PeerConnection | null = null;
  /** The primary's "in": replies go here. */
  #replyConn: PeerConnection | null = null;
  #replies: HioReply[] = [];
  #flushScheduled = false;
  /** Requests parsed while the engine was full, in arrival order (back-pressure). */
  #backlog: PeerMessage[] = [];
  #paused = false;
  /** Payload bytes of #replies (replies waiting for the next batch). */
  #queuedReplyBytes = 0;
  /** The reply socket needs drain: no more requests are read or started until it has room. */
  #awaitingDrain = false;
  #dead = false;
  /** Ours: a sync to this copy in this session, as the primary reported it (consistency extension). */
  #sync: { totalBytes: number; leftBytes: number } | null = null;
  /**
   * Ours: the checksum-sync algorithm agreed in this session's handshake: offered by the primary and
   * `checksumsync on` here; undefined otherwise, and then a `csum` request closes the connection.
   */
  #csums: number | undefined = undefined;

  constructor(opts: SessionOptions) {
    this.#o = opts;
    this.#cfg = opts.cfg;
  }

  /** Apply a reloaded configuration (checksum, compression, timeout take effect at once). */
  reload(cfg: ResourceConfig): void {
    this.#cfg = cfg;
    this.#replyConn?.setSendOptions(this.#payloadOpts());
    this.#replyConn?.setSendTimeout(cfg.timeout * 1000);
  }

  get #peer(): string {
    return this.#o.first.peerAddr;
  }

  /**
   * The local copy's consistency state for `hastctl status`: `inconsistent` from the metadata (the
   * flag is written before the first sync byte and cleared after the sync's flush), with the bytes
   * the primary still has to copy when it reports them (null: unknown).
   */
  consistency(): { inconsistent: boolean; totalBytes: number | null; leftBytes: number | null } {
    const inconsistent = this.#o.md.inconsistent === true;
    const s = inconsistent ? this.#sync : null;
    return {
      inconsistent,
      totalBytes: s !== null && s.totalBytes >= 0 ? s.totalBytes : null,
      leftBytes: s !== null && s.leftBytes >= 0 ? s.leftBytes : null,
    };
  }

  /** Persist a sync-state change from the primary (consistency extension): durable, then go on. */
  async #onSyncState(state: 'target' | 'done', totalBytes: number): Promise<void> {
    const { md, comp } = this.#o;
    if (state === 'target') {
      this.#sync = { totalBytes, leftBytes: totalBytes };
      if (md.inconsistent === true) return;
      md.inconsistent = true;
      try {
        await writeMetadata(comp, md, true);
      } catch (err) {
        md.inconsistent = false;
        // Nothing after the barrier may land: the engine refuses it, and the session ends.
        setImmediate(() => this.#fatal('Unable to mark the local copy inconsistent', err));
        throw err;
      }
      log.info('Synchronization from the primary starts: local copy marked inconsistent.');
      return;
    }
    this.#sync = null;
    if (md.inconsistent !== true) return;
    md.inconsistent = false;
    try {
      await writeMetadata(comp, md, true);
    } catch (err) {
      md.inconsistent = true;
      throw err;
    }
    log.info('Synchronization complete: local copy marked consistent.');
  }

  /** The on-disk activemap for the handshake reply; null when it cannot be read (the session ended). */
  async #readMap(): Promise<Buffer | null> {
    try {
      return await readBitmap(this.#o.comp, this.#o.md);
    } catch (err) {
      log.error('Unable to read activemap', err);
      this.#end(EX.NOINPUT);
      return null;
    }
  }

  /** Write the metadata during the handshake; false when it failed (the session ended). */
  async #writeMetadata(durable: boolean): Promise<boolean> {
    try {
      await writeMetadata(this.#o.comp, this.#o.md, durable);
      return true;
    } catch (err) {
      log.error('Unable to write metadata', err);
      this.#end(EX.NOINPUT);
      return false;
    }
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
    const d = decideSync({ resuid: md.resuid, localCnt: md.localCnt, remoteCnt: md.remoteCnt }, p);
    // A divergence record belongs to the primary's data path, which alone maintains it: a primary's
    // writes are about to land here, so it is out of every metadata write from now on, and off the
    // disk (durably) before the reply (issue 17). A discarded split-brain uses it once, below.
    const record = md.agreed;
    delete md.agreed;
    let map: Buffer | null;
    let virgin = false;
    switch (d.kind) {
      case 'refuse':
        log.error(d.errmsg);
        await this.#sendHandshake(buildErrorReply(d.errmsg), null);
        this.#end(EX.CONFIG);
        return false;
      case 'split-brain':
        if (this.#o.discardMyData !== undefined) {
          // Both copies changed since they last agreed; this node's changes go. Its map holds the
          // extents it changed (the primary's holds its own): the primary copies their union. Its
          // divergence record, when valid, names extents of the map both copies hold alike
          // (issue 17): they are left out.
          log.warning(
            'Split-brain detected; discarding the changes of this node as asked (--discard-my-data): ' +
              'the extents changed on either side are resynchronized from the primary.',
          );
          map = await this.#readMap();
          if (map === null) return false;
          if (record !== undefined) {
            log.info(`The divergence record leaves ${record.extents.length} extent(s) of the map out of the resync.`);
            map = withoutAgreed(map, record.extents);
          }
          if (first.consistency === true) {
            md.inconsistent = true;
            if (!(await this.#writeMetadata(true))) return false;
          }
          await this.#o.discardMyData();
          break;
        }
        log.error('Split-brain detected, exiting.');
        await this.#sendHandshake(buildErrorReply(SPLIT_BRAIN_ERRMSG), null);
        await this.#o.emit('split-brain');
        this.#end(EX.CONFIG);
        return false;
      case 'adopt': {
        // Ours: a component created with `hastctl create --full-sync` carries an all-ones map; it
        // asks for the copy a virgin primary would otherwise skip. A plain create's map is all
        // zero, and then nothing is sent, as upstream.
        let own: Buffer | null = null;
        if (d.sendBitmap === 'none') {
          own = await this.#readMap();
          if (own === null) return false;
          if (own.every((b) => b === 0)) own = null;
        }
        md.resuid = p.resuid;
        md.prevRole = 'secondary';
        // A full sync follows: this copy is a sync target from now on (only a primary that speaks
        // the extension will ever tell us the sync is done).
        if ((d.sendBitmap === 'all-ones' || own !== null) && first.consistency === true) md.inconsistent = true;
        if (!(await this.#writeMetadata(md.inconsistent === true))) return false;
        map = d.sendBitmap === 'none' ? own : Buffer.alloc(bitmapSize(md, comp.sectorSize), 0xff);
        virgin = true;
        break;
      }
      case 'sync':
        if (d.bitmap === 'all-ones') {
          if (d.warning !== undefined) log.warning(d.warning);
          map = Buffer.alloc(bitmapSize(md, comp.sectorSize), 0xff);
          break;
        }
        map = await this.#readMap();
        if (map === null) return false;
        break;
    }
    if (record !== undefined && !(await this.#writeMetadata(true))) return false;
    if (map !== null && map.length === 0) map = null;
    this.#csums = agreeCsums(this.#cfg.checksumSync === true, first.csums);
    if (this.#csums !== undefined) {
      log.info('Checksum-assisted synchronization agreed with the primary (SHA-256).');
    }
    const reply = buildSyncReply({
      dataSize: md.dataSize,
      extentSize: md.extentSize,
      localCnt: md.localCnt,
      remoteCnt: md.remoteCnt,
      virgin,
      // A split-brain that got here is discarded: the primary's copy wins.
      syncSrc: d.kind === 'split-brain' ? 'primary' : d.syncSrc,
      mapSize: map?.length ?? 0,
      consistency: first.consistency === true,
      inconsistent: md.inconsistent === true,
      // Echoed only when offered and on here: otherwise the reply is the one without the extension.
      ...(this.#csums !== undefined ? { csums: this.#csums } : {}),
    });
    if (!(await this.#sendHandshake(reply, map))) {
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

  /** A handshake answer on the request connection (step 7); false when it could not be written. */
  async #sendHandshake(nv: NvList, payload: Buffer | null): Promise<boolean> {
    const opts = { ...this.#payloadOpts(), version: this.#o.first.version };
    try {
      await writeMessage(this.#o.inSock, nv, payload ?? undefined, opts);
      return true;
    } catch (err) {
      log.warning(`Unable to send the handshake reply to ${this.#peer}`, err);
      return false;
    }
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
        await writeBitmap(comp, md, Buffer.alloc(reservedMapSize(md)));
        log.debug(1, 'Local activemap cleared.');
      },
      onSyncState: (state, total) => this.#onSyncState(state, total),
      onSyncProgress: (left) => {
        if (this.#sync !== null) this.#sync.leftBytes = left;
      },
      ...(this.#o.maxInFlight !== undefined ? { maxInFlight: this.#o.maxInFlight } : {}),
    });
    this.#engine = engine;
    const version = this.#o.first.version;
    this.#requests = new PeerConnection({
      socket: inSock,
      name: this.#peer,
      ...this.#payloadOpts(),
      version,
      maxPayload: MAX_REQUEST_PAYLOAD,
      receiveTimeout: { ms: this.#recvTimeoutMs },
      onMessage: (msg) => this.#onRequest(msg),
      onClose: (reason) => {
        // Garbage is a bad request; anything else (EOF, reset, silence) is a lost connection.
        const what =
          reason instanceof PeerProtocolError && reason.code !== 'EPEER_CONNECTION'
            ? 'Unable to receive request'
            : 'Unable to receive request header';
        // An orderly close (EOF) is the primary stopping: a planned switchover, not an alert.
        const orderly = reason instanceof PeerProtocolError && reason.message.startsWith('Connection closed by');
        this.#fatal(what, timeoutAsUpstream(reason), orderly ? 'info' : 'error');
      },
    });
    // Nothing is expected on the reply connection; reading it only notices the peer closing it.
    this.#replyConn = new PeerConnection({
      socket: outSock,
      name: this.#peer,
      ...this.#payloadOpts(),
      version,
      maxPayload: 0,
      // A peer that stops reading for longer than `timeout` is as good as gone (HAST-SPEC §6.5).
      sendTimeoutMs: this.#cfg.timeout * 1000,
      onMessage: () => undefined,
      onClose: (reason) => this.#fatal('Unable to send reply', timeoutAsUpstream(reason)),
    });
    engine.onAvailable = () => {
      if (!this.#dead) this.#pump();
    };
    inSock.resume();
    outSock.resume();
  }

  get #recvTimeoutMs(): number {
    return this.#o.recvTimeoutMs ?? RECV_TIMEOUT_MS;
  }

  #onRequest(msg: PeerMessage): void {
    this.#backlog.push(msg);
    this.#pump();
  }

  /**
   * Hand queued requests to the engine while it has room and the reply socket takes more; stop
   * reading while either is not so.
   */
  #pump(): void {
    const engine = this.#engine;
    if (engine === null) return;
    while (!this.#dead && !engine.full && !this.#replyBlocked) {
      const msg = this.#backlog.shift();
      if (msg === undefined) break;
      const req = readRequest(msg.nv);
      const problem = csumProblem(req, this.#csums);
      if (problem !== null) {
        // Not a request to refuse with EINVAL: the primary does not speak what was agreed.
        this.#fatal('Unable to receive request', new PeerProtocolError('EPEER_HEADER', problem));
        return;
      }
      engine.submit({ ...req, data: msg.payload ?? null });
    }
    if (this.#dead) return;
    // Back-pressure: stop reading while blocked; the receive timeout pauses too (the primary is
    // not silent, we are not listening). A primary that stops reading replies meets the send timeout.
    const block = engine.full || this.#replyBlocked;
    if (block && !this.#paused) {
      this.#paused = true;
      this.#requests?.pauseReading();
      this.#requests?.setReceiveTimeout(undefined);
    } else if (!block && this.#paused) {
      this.#paused = false;
      this.#requests?.resumeReading();
      this.#requests?.setReceiveTimeout({ ms: this.#recvTimeoutMs });
    }
  }

  /** Replies waiting for the socket: new requests are not started meanwhile (bounded memory). */
  get #replyBlocked(): boolean {
    return this.#awaitingDrain || this.#queuedReplyBytes >= REPLY_BATCH_BYTES;
  }

  /**
   * Replies are batched and written corked (one syscall for many small replies). The batch is
   * written at the end of the current tick, once every request of the received chunk and every
   * completion of the pool task have queued theirs: a later turn of the loop (setImmediate) made
   * each reply wait behind the rest of the turn, the memsync early reply behind the disk write's
   * hand-off to the pool (queue depth 1, README "Benchmarks"). "End of the tick" is after the
   * promise jobs too (a microtask that schedules the flush with nextTick runs after the jobs
   * queued before it, and the tick after all of them): a write done on the event loop (a tmpfs
   * component) has then queued its final reply, which leaves in the same segment as the memsync
   * early reply instead of waking the primary a second time.
   */
  #queueReply(r: HioReply): void {
    if (this.#dead) return;
    this.#replies.push(r);
    this.#queuedReplyBytes += r.data?.length ?? 0;
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => process.nextTick(() => this.#flushReplies()));
  }

  #flushReplies(): void {
    this.#flushScheduled = false;
    const conn = this.#replyConn;
    if (this.#dead || conn === null) return;
    const batch = this.#replies;
    this.#replies = [];
    this.#queuedReplyBytes = 0;
    // PeerConnection corks everything sent in this tick into one write.
    for (const r of batch) {
      const opts = {
        ...(r.received === true ? { received: true } : {}),
        ...(r.error !== undefined ? { error: r.error } : {}),
      };
      conn.send(buildReply(r.seq, opts), r.data);
    }
    // Replies the socket cannot take yet stop the reading of new requests (bounded memory).
    if (conn.needsDrain && !this.#awaitingDrain) {
      this.#awaitingDrain = true;
      conn.onDrain(() => {
        this.#awaitingDrain = false;
        if (!this.#dead) this.#pump();
      });
    }
    this.#pump();
  }

  /** Network failure: log, fire `disconnect`, exit 75 (HAST-SPEC §6.5, §8). */
  #fatal(what: string, err: unknown, level: 'error' | 'info' = 'error'): void {
    if (this.#dead) return;
    if (level === 'error') log.error(what, err);
    else log.info(`${what}: ${err instanceof Error ? err.message : String(err)}`);
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
    this.#engine?.stop();
    this.#backlog = [];
    this.#requests?.close();
    this.#replyConn?.close();
    this.#o.inSock.destroy();
    this.#o.outSock.destroy();
  }

  /** Stop quietly (signal from the parent): no event; waits for admitted disk writes, bounded. */
  async shutdown(maxWaitMs = 5000): Promise<void> {
    if (this.#dead) return;
    this.#dead = true;
    this.#requests?.setReceiveTimeout(undefined);
    this.#o.inSock.pause();
    const engine = this.#engine;
    if (engine !== null) {
      let timer: NodeJS.Timeout | null = null;
      await Promise.race([
        engine.idle(),
        new Promise<void>((r) => {
          timer = setTimeout(r, maxWaitMs);
        }),
      ]);
      if (timer !== null) clearTimeout(timer);
    }
    this.#teardown();
  }

  /** Statistics and queue sizes for `hastctl status`. */
  stats(): WorkerStats | null {
    const e = this.#engine;
    if (e === null) return null;
    return { ...e.queueStats(), sendQueue: this.#replies.length + (this.#replyConn?.unwritten.messages ?? 0) };
  }
}

/** A timeout reads as upstream's "Operation timed out" in the log (ETIMEDOUT of SO_RCVTIMEO). */
function timeoutAsUpstream(reason: Error | undefined): Error {
  if (reason instanceof PeerProtocolError && reason.errno === 'ETIMEDOUT') return new Error('Operation timed out');
  return reason ?? new Error('Connection closed');
}
