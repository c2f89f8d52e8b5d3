// Secondary apply engine: runs the primary's requests against the local component, concurrently
// where ranges do not overlap and in arrival order where they do. HAST-SPEC §6.4, §6.6 (memsync), §4.5.
import type { Component } from '../component/component.js';
import { DataArea } from '../component/data-area.js';
import { emptyStats, type WorkerStats } from '../control/messages.js';
import { debugLevel, log } from '../log/log.js';
import { computeHash } from '../peer/checksum.js';
import { HIO, SYNCSTATE, type SyncState } from '../peer/constants.js';
import { type HioRequest as HioHeader, requestProblem, writeDataProblem } from '../peer/messages.js';
import { errnoCodeOf, FREEBSD_ERRNO, toFreeBsdErrno } from '../util/errno.js';

/**
 * One request as received from the primary, before validation: the header as peer/messages reads
 * it (missing offset/length are -1) and `data`, the decoded payload of a WRITE.
 */
export interface HioRequest extends HioHeader {
  readonly data: Buffer | null;
}

/** A reply to the primary: `received` is the memsync early ack, `error` a FreeBSD errno. */
export interface HioReply {
  readonly seq: bigint;
  readonly received?: true;
  readonly error?: number;
  /** READ data (successful reads only). */
  readonly data?: Buffer;
}

/** A request that passed validation, with offsets as numbers (data-area offsets). */
export interface ValidHio {
  readonly cmd: 1 | 2 | 3 | 4;
  readonly seq: bigint;
  readonly offset: number;
  readonly length: number;
  readonly memsync: boolean;
  readonly data: Buffer | null;
  /** Ours: a FLUSH carrying `syncstate` (consistency extension); null for every other request. */
  readonly syncState: SyncState | null;
  /** With syncState 'target': bytes the primary is about to copy (-1 unknown). */
  readonly syncBytes: number;
  /**
   * Ours: a READ carrying `csum` (checksum-assisted sync), answered with the SHA-256 of the range.
   * The session has checked it against the handshake (peer/messages csumProblem) before submitting.
   */
  readonly csum: boolean;
}

/** Why a request was refused (logged; the primary gets EINVAL). */
export type HioCheck =
  | { readonly ok: true; readonly hio: ValidHio | null }
  | { readonly ok: false; readonly reason: string };

/**
 * Validate a request as upstream's requnpack() does (HAST-SPEC §6.4; the checks are
 * peer/messages requestProblem and writeDataProblem). Returns `hio: null` for a KEEPALIVE (nothing
 * to do, no reply), the validated request otherwise, or the reason to refuse.
 */
export function checkHio(req: HioRequest, dataSize: number, sectorSize: number): HioCheck {
  const reason = requestProblem(req, { dataSize, sectorSize }) ?? writeDataProblem(req, req.data);
  if (reason !== null) return { ok: false, reason };
  switch (req.cmd) {
    case HIO.KEEPALIVE:
      return { ok: true, hio: null };
    case HIO.FLUSH:
      return {
        ok: true,
        hio: {
          cmd: HIO.FLUSH,
          seq: req.seq,
          offset: 0,
          length: 0,
          memsync: false,
          data: null,
          // An unknown syncstate is a plain FLUSH, as it would be on FreeBSD.
          syncState: req.syncState === SYNCSTATE.target ? 'target' : req.syncState === SYNCSTATE.done ? 'done' : null,
          syncBytes: req.syncBytes ?? -1,
          csum: false,
        },
      };
    case HIO.READ:
    case HIO.WRITE:
    case HIO.DELETE:
      return {
        ok: true,
        hio: {
          cmd: req.cmd,
          seq: req.seq,
          offset: req.offset,
          length: req.length,
          memsync: req.cmd === HIO.WRITE && req.memsync,
          data: req.cmd === HIO.WRITE ? req.data : null,
          syncState: null,
          syncBytes: -1,
          csum: req.cmd === HIO.READ && req.csum !== undefined,
        },
      };
    default:
      // requestProblem() refuses every other command.
      return { ok: false, reason: `Header contains invalid 'cmd' (${req.cmd}).` };
  }
}

/** "WRITE(offset, length)" as upstream's reqlog() prints requests. */
function describeHio(cmd: number, offset: number, length: number): string {
  switch (cmd) {
    case HIO.READ:
      return `READ(${offset}, ${length})`;
    case HIO.WRITE:
      return `WRITE(${offset}, ${length})`;
    case HIO.DELETE:
      return `DELETE(${offset}, ${length})`;
    case HIO.FLUSH:
      return 'FLUSH';
    case HIO.KEEPALIVE:
      return 'KEEPALIVE';
    default:
      return `UNKNOWN(${cmd})`;
  }
}

export interface ApplyOptions {
  readonly component: Component;
  /** Byte offset of the data area on the component (metadata `offset`). */
  readonly localOff: number;
  readonly dataSize: number;
  /** Where replies go; called synchronously, in the order replies become ready. */
  readonly sendReply: (reply: HioReply) => void;
  /** Runs once, before the first request of the session touches the disk (§4.5 bitmap zero-fill). */
  readonly onFirstRequest?: () => Promise<void>;
  /**
   * Ours (consistency extension): persist the sync-target state durably. 'target' runs as a barrier:
   * no later request is applied before it resolved, and none touches the disk after it failed.
   * 'done' runs after every earlier write and a flush of the data area. Throw on failure.
   */
  readonly onSyncState?: (state: SyncState, totalBytes: number) => Promise<void>;
  /** Ours: a progress KEEPALIVE from the primary (bytes still to copy). */
  readonly onSyncProgress?: (leftBytes: number) => void;
  /** Requests admitted at once (default 256). */
  readonly maxInFlight?: number;
  /** Payload bytes admitted at once (default 64 MiB). */
  readonly maxInFlightBytes?: number;
}

/*
 * Ordering. Every admitted request is an Entry in `#active`, in arrival order. A new entry waits
 * for each earlier active entry it conflicts with (overlapping range, unless both are reads; a
 * FLUSH waits for every earlier WRITE/DELETE, since memsync may have acknowledged them to the
 * application already). Waits form chains, so overlapping requests complete in arrival order;
 * everything else runs concurrently.
 *
 *   arrival:  W1[0,8)  W2[4,12)  R3[100,104)  F4
 *   waits:    -        W1        -            W1, W2
 *
 * A sync-target FLUSH (consistency extension) is a barrier: every later request waits for it, so
 * the `inconsistent` flag is on stable storage before the first byte of the sync can land.
 */
interface Entry {
  readonly hio: ValidHio;
  readonly start: number;
  readonly end: number;
  readonly bytes: number;
  deps: number;
  readonly waiters: Entry[];
}

function conflicts(earlier: Entry, later: Entry): boolean {
  const e = earlier.hio.cmd;
  const l = later.hio.cmd;
  if (earlier.hio.syncState === 'target') return true;
  if (e === HIO.FLUSH) return false;
  if (l === HIO.FLUSH) return e !== HIO.READ;
  if (e === HIO.READ && l === HIO.READ) return false;
  return earlier.start < later.end && later.start < earlier.end;
}

/** Applies validated requests to the component and produces replies (HAST-SPEC §6.4). */
export class ApplyEngine {
  readonly stats: { -readonly [K in keyof WorkerStats]: WorkerStats[K] } = emptyStats();
  /** Called when the engine has room again after `full` was true. */
  onAvailable: (() => void) | null = null;
  readonly #opts: ApplyOptions;
  readonly #data: DataArea;
  readonly #maxInFlight: number;
  readonly #maxBytes: number;
  readonly #active: Entry[] = [];
  #bytes = 0;
  #ready: Promise<void> | null = null;
  #flushUnsupported = false;
  /** A sync-target barrier failed: nothing after it may touch the disk. */
  #broken = false;
  #idleWaiters: (() => void)[] = [];
  #stopped = false;

  constructor(opts: ApplyOptions) {
    this.#opts = opts;
    this.#data = new DataArea(opts.component, opts.localOff, opts.dataSize);
    this.#maxInFlight = opts.maxInFlight ?? 256;
    this.#maxBytes = opts.maxInFlightBytes ?? 64 << 20;
  }

  /** True when no more requests should be read until onAvailable fires (back-pressure). */
  get full(): boolean {
    return this.#active.length >= this.#maxInFlight || this.#bytes >= this.#maxBytes;
  }

  get inFlight(): number {
    return this.#active.length;
  }

  /** No more replies after this (the connection is gone). */
  stop(): void {
    this.#stopped = true;
  }

  /** Resolves when every admitted request has completed. */
  idle(): Promise<void> {
    if (this.#active.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Validate and admit one request (in arrival order). Invalid ones get an EINVAL reply. */
  submit(req: HioRequest): void {
    const check = checkHio(req, this.#opts.dataSize, this.#opts.component.sectorSize);
    if (!check.ok) {
      log.error(`${check.reason.replace(/\.$/, '')}: ${describeHio(req.cmd, req.offset, req.length)}`);
      this.#reply({ seq: req.seq, error: FREEBSD_ERRNO.EINVAL });
      return;
    }
    const hio = check.hio;
    if (hio === null) {
      if ((req.syncBytes ?? -1) >= 0) this.#opts.onSyncProgress?.(req.syncBytes ?? 0);
      return;
    }
    switch (hio.cmd) {
      case HIO.READ:
        this.stats.reads++;
        break;
      case HIO.WRITE:
        this.stats.writes++;
        break;
      case HIO.DELETE:
        this.stats.deletes++;
        break;
      case HIO.FLUSH:
        this.stats.flushes++;
        break;
    }
    if (debugLevel() >= 2) log.debug(2, `recv: Got request: ${describeHio(hio.cmd, hio.offset, hio.length)}.`);
    // memsync: the early "received" reply goes out before the data touches the disk (§6.6).
    if (hio.memsync) this.#reply({ seq: hio.seq, received: true });
    const bytes = hio.cmd === HIO.READ || hio.cmd === HIO.WRITE ? hio.length : 0;
    const entry: Entry = { hio, start: hio.offset, end: hio.offset + hio.length, bytes, deps: 0, waiters: [] };
    for (const earlier of this.#active) {
      if (conflicts(earlier, entry)) {
        entry.deps++;
        earlier.waiters.push(entry);
      }
    }
    this.#active.push(entry);
    this.#bytes += bytes;
    if (this.#ready === null) this.#ready = this.#firstRequest();
    if (entry.deps === 0) this.#start(entry);
  }

  async #firstRequest(): Promise<void> {
    const fn = this.#opts.onFirstRequest;
    if (fn === undefined) return;
    try {
      await fn();
    } catch (err) {
      log.warning('Unable to store cleared activemap', err);
    }
  }

  #start(entry: Entry): void {
    const ready = this.#ready ?? Promise.resolve();
    ready
      .then(() => this.#run(entry.hio))
      .then(
        (reply) => this.#complete(entry, reply),
        (err: unknown) => {
          // #run converts every I/O error into a reply; reaching here is a bug in this module.
          log.error('Request processing failed unexpectedly', err);
          this.#complete(entry, { seq: entry.hio.seq, error: FREEBSD_ERRNO.EIO });
        },
      );
  }

  async #run(hio: ValidHio): Promise<HioReply> {
    const data = this.#data;
    if (this.#broken) return { seq: hio.seq, error: FREEBSD_ERRNO.EIO };
    if (hio.syncState !== null) return await this.#runSyncState(hio);
    try {
      switch (hio.cmd) {
        case HIO.READ: {
          const buf = Buffer.allocUnsafe(hio.length);
          await data.read(buf, hio.offset);
          return { seq: hio.seq, data: hio.csum ? computeHash('sha256', buf) : buf };
        }
        case HIO.WRITE:
          await data.write([hio.data ?? Buffer.alloc(0)], hio.offset);
          return { seq: hio.seq };
        case HIO.DELETE:
          await data.discard(hio.offset, hio.length);
          return { seq: hio.seq };
        case HIO.FLUSH:
          if (this.#flushUnsupported) return { seq: hio.seq, error: FREEBSD_ERRNO.EOPNOTSUPP };
          await data.flush();
          return { seq: hio.seq };
      }
    } catch (err) {
      const code = errnoCodeOf(err);
      if (hio.cmd === HIO.FLUSH && (code === 'EOPNOTSUPP' || code === 'ENOTSUP')) this.#flushUnsupported = true;
      log.error(`Request failed: ${describeHio(hio.cmd, hio.offset, hio.length)}`, err);
      this.#countError(hio.cmd);
      return { seq: hio.seq, error: toFreeBsdErrno(code) };
    }
  }

  /** A `syncstate` FLUSH: persist the state (after flushing the sync data, for 'done'). */
  async #runSyncState(hio: ValidHio): Promise<HioReply> {
    const state = hio.syncState ?? 'done';
    try {
      if (state === 'done' && !this.#flushUnsupported) {
        try {
          await this.#data.flush();
        } catch (err) {
          const code = errnoCodeOf(err);
          if (code !== 'EOPNOTSUPP' && code !== 'ENOTSUP') throw err;
          this.#flushUnsupported = true;
        }
      }
      await this.#opts.onSyncState?.(state, hio.syncBytes);
      return { seq: hio.seq };
    } catch (err) {
      if (state === 'target') this.#broken = true;
      log.error(
        state === 'target' ? 'Unable to mark the local copy inconsistent' : 'Unable to mark the local copy consistent',
        err,
      );
      this.stats.flushErrors++;
      return { seq: hio.seq, error: FREEBSD_ERRNO.EIO };
    }
  }

  #countError(cmd: number): void {
    if (cmd === HIO.READ) this.stats.readErrors++;
    else if (cmd === HIO.WRITE) this.stats.writeErrors++;
    else if (cmd === HIO.DELETE) this.stats.deleteErrors++;
    else this.stats.flushErrors++;
  }

  #complete(entry: Entry, reply: HioReply): void {
    const wasFull = this.full;
    const i = this.#active.indexOf(entry);
    if (i >= 0) this.#active.splice(i, 1);
    this.#bytes -= entry.bytes;
    this.#reply(reply);
    for (const w of entry.waiters) {
      w.deps--;
      if (w.deps === 0) this.#start(w);
    }
    if (this.#active.length === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const f of waiters) f();
    }
    if (wasFull && !this.full) this.onAvailable?.();
  }

  #reply(reply: HioReply): void {
    if (this.#stopped) return;
    this.#opts.sendReply(reply);
  }

  /** Queue sizes for `hastctl status` (HAST-SPEC §2.5). */
  queueStats(): WorkerStats {
    const running = this.#active.filter((e) => e.deps === 0).length;
    return {
      ...this.stats,
      localQueue: running,
      recvQueue: this.#active.length - running,
      idleQueue: Math.max(0, this.#maxInFlight - this.#active.length),
    };
  }
}
