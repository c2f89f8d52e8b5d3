// Verifying workload: writes self-describing 4 KiB blocks over NBD, logs what the server
// acknowledged and made durable, and afterwards checks a device or a component's data area
// against that log (lost acknowledged writes, content never written, torn blocks).
//
// Block format (4096 bytes, eight 512-byte sectors). Every sector starts with a stamp
//   [0, 8)   magic "HASTVWL1"
//   [8, 16)  run id (u64 LE)
//   [16, 24) block number (u64 LE)
//   [24, 32) generation (u64 LE; 1, 2, ... per block, in issue order)
// followed by filler derived from (run id, block, generation); the last 4 bytes of the block are
// the crc32 of the first 4092. A block whose sectors carry different generations, or whose crc
// fails while its stamps are ours, is torn; anything else that is neither zero nor ours is foreign.
import { crc32 } from '../peer/checksum.js';

export const VW_BLOCK = 4096;
const SECTOR = 512;
const MAGIC = Buffer.from('HASTVWL1', 'latin1');

/** mulberry32: a small seeded PRNG, so a campaign can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The content of generation `gen` of `block` in run `runId`. */
export function encodeBlock(runId: bigint, block: number, gen: number): Buffer {
  const b = Buffer.allocUnsafe(VW_BLOCK);
  const rnd = prng(Number(runId & 0xffffffffn) ^ Math.imul(block + 1, 0x9e3779b1) ^ Math.imul(gen, 0x85ebca6b));
  for (let s = 0; s < VW_BLOCK; s += SECTOR) {
    MAGIC.copy(b, s);
    b.writeBigUInt64LE(runId, s + 8);
    b.writeBigUInt64LE(BigInt(block), s + 16);
    b.writeBigUInt64LE(BigInt(gen), s + 24);
    for (let i = s + 32; i < s + SECTOR; i += 4) b.writeUInt32LE((rnd() * 4294967296) >>> 0, i);
  }
  b.writeUInt32LE(crc32(b.subarray(0, VW_BLOCK - 4)), VW_BLOCK - 4);
  return b;
}

export type BlockContent =
  | { kind: 'zero' }
  | { kind: 'block'; gen: number }
  | { kind: 'torn'; why: string }
  | { kind: 'foreign'; why: string };

/** Classify the 4096 bytes found at `block`'s place. */
export function decodeBlock(buf: Buffer, runId: bigint, block: number): BlockContent {
  if (buf.length !== VW_BLOCK) throw new RangeError(`a block is ${VW_BLOCK} bytes, got ${buf.length}`);
  let zero = true;
  for (let i = 0; i < VW_BLOCK; i += 8) {
    if (buf.readBigUInt64LE(i) !== 0n) {
      zero = false;
      break;
    }
  }
  if (zero) return { kind: 'zero' };
  const gens = new Set<number>();
  let ours = 0;
  for (let s = 0; s < VW_BLOCK; s += SECTOR) {
    if (buf.compare(MAGIC, 0, 8, s, s + 8) !== 0 || buf.readBigUInt64LE(s + 8) !== runId) continue;
    if (buf.readBigUInt64LE(s + 16) !== BigInt(block)) {
      return { kind: 'foreign', why: `sector ${s / SECTOR} is stamped for block ${buf.readBigUInt64LE(s + 16)}` };
    }
    gens.add(Number(buf.readBigUInt64LE(s + 24)));
    ours++;
  }
  if (ours === 0) return { kind: 'foreign', why: "no sector carries this run's stamp" };
  const sectors = VW_BLOCK / SECTOR;
  if (ours < sectors || gens.size > 1) {
    return {
      kind: 'torn',
      why: `${ours}/${sectors} sectors stamped, generations ${[...gens].sort((x, y) => x - y).join(',')}`,
    };
  }
  const gen = [...gens][0] as number;
  if (buf.readUInt32LE(VW_BLOCK - 4) !== crc32(buf.subarray(0, VW_BLOCK - 4))) {
    return { kind: 'torn', why: `generation ${gen} fails its crc32` };
  }
  if (!encodeBlock(runId, block, gen).equals(buf))
    return { kind: 'foreign', why: `generation ${gen} has content that was never generated` };
  return { kind: 'block', gen };
}

/** What the server said about one write. */
export type WriteState = 'inflight' | 'acked' | 'failed';

export interface WriteRecord {
  readonly block: number;
  readonly gen: number;
  readonly fua: boolean;
  state: WriteState;
  /** Acknowledged with FUA, or acknowledged before a FLUSH that was then acknowledged. */
  durable: boolean;
  /** Sequence number of the acknowledgement (for ordering against flushes). */
  ackSeq: number;
}

/** The log of one workload run: serialisable, so a run and its verification can be separate steps. */
export class WorkloadLog {
  readonly runId: bigint;
  readonly firstBlock: number;
  readonly blocks: number;
  /** Per block, every write in generation order (index = gen − 1). */
  readonly writes: WriteRecord[][];
  flushesAcked = 0;
  flushesFailed = 0;
  #seq = 0;
  /** Blocks whose newest acknowledged write is not yet durable: what the next FLUSH covers. */
  readonly #unflushed = new Set<number>();

  constructor(runId: bigint, firstBlock: number, blocks: number) {
    this.runId = runId;
    this.firstBlock = firstBlock;
    this.blocks = blocks;
    this.writes = Array.from({ length: blocks }, () => []);
  }

  /** Record the issue of the next generation of `block` (relative to firstBlock). */
  issue(block: number, fua: boolean): WriteRecord {
    const list = this.writes[block];
    if (list === undefined) throw new RangeError(`block ${block} is outside the workload's ${this.blocks} blocks`);
    const rec: WriteRecord = { block, gen: list.length + 1, fua, state: 'inflight', durable: false, ackSeq: 0 };
    list.push(rec);
    return rec;
  }

  ack(rec: WriteRecord): void {
    rec.state = 'acked';
    rec.ackSeq = ++this.#seq;
    if (rec.fua) rec.durable = true;
    else this.#unflushed.add(rec.block);
  }

  fail(rec: WriteRecord): void {
    rec.state = 'failed';
  }

  /** Sequence point taken when a FLUSH is sent: it covers the writes acknowledged up to here. */
  flushIssued(): number {
    return this.#seq;
  }

  /** A FLUSH sent at `issuedAt` was acknowledged: everything acknowledged before it is durable. */
  flushAcked(issuedAt: number): void {
    this.flushesAcked++;
    for (const block of this.#unflushed) {
      const list = this.writes[block] as WriteRecord[];
      let newestAcked: WriteRecord | null = null;
      for (let i = list.length - 1; i >= 0; i--) {
        const w = list[i] as WriteRecord;
        if (w.state !== 'acked') continue;
        newestAcked ??= w;
        if (w.ackSeq <= issuedAt) {
          // Earlier generations of the block are superseded by this one.
          w.durable = true;
          break;
        }
      }
      if (newestAcked === null || newestAcked.durable) this.#unflushed.delete(block);
    }
  }

  counts(): { issued: number; acked: number; durable: number; failed: number; inflight: number } {
    let issued = 0,
      acked = 0,
      durable = 0,
      failed = 0,
      inflight = 0;
    for (const list of this.writes) {
      for (const w of list) {
        issued++;
        if (w.state === 'acked') acked++;
        if (w.state === 'failed') failed++;
        if (w.state === 'inflight') inflight++;
        if (w.durable) durable++;
      }
    }
    return { issued, acked, durable, failed, inflight };
  }

  toJSON(): unknown {
    return {
      runId: this.runId.toString(),
      firstBlock: this.firstBlock,
      blocks: this.blocks,
      flushesAcked: this.flushesAcked,
      writes: this.writes.map((l) => l.map((w) => [w.gen, w.fua ? 1 : 0, w.state, w.durable ? 1 : 0])),
    };
  }

  static fromJSON(j: {
    runId: string;
    firstBlock: number;
    blocks: number;
    flushesAcked: number;
    writes: [number, number, WriteState, number][][];
  }): WorkloadLog {
    const log = new WorkloadLog(BigInt(j.runId), j.firstBlock, j.blocks);
    log.flushesAcked = j.flushesAcked;
    j.writes.forEach((l, block) => {
      for (const [gen, fua, state, durable] of l) {
        (log.writes[block] as WriteRecord[]).push({
          block,
          gen,
          fua: fua === 1,
          state,
          durable: durable === 1,
          ackSeq: 0,
        });
      }
    });
    return log;
  }
}

/** The NBD operations the workload needs (NbdClient provides them). */
export interface BlockTarget {
  write(offset: number, data: Buffer, opts?: { fua?: boolean }): Promise<void>;
  flush(): Promise<void>;
}

export interface WorkloadOptions {
  readonly seed: number;
  /** Blocks [firstBlock, firstBlock + blocks) of the device are used. */
  readonly firstBlock?: number;
  readonly blocks: number;
  /** Concurrent writers; a block is never written by two at once, so generations order completions. */
  readonly lanes?: number;
  /** Stop after this many writes (the workload also stops at stop() or on the first failed request). */
  readonly maxWrites?: number;
  /** Probability that a write carries FUA, and that a lane sends a FLUSH after a write. */
  readonly fuaRate?: number;
  readonly flushRate?: number;
  readonly runId?: bigint;
}

/** A running workload: `stop()` ends it, `done` settles when every lane has ended. */
export interface Workload {
  readonly log: WorkloadLog;
  readonly done: Promise<void>;
  stop(): void;
  /** The first request error, if the workload ended because of one. */
  readonly error: Error | null;
}

/**
 * Start writing. Lanes pick random free blocks; each write's record is in the log before it is
 * sent, so a request that never gets an answer stays `inflight` (it may or may not have landed).
 */
export function startWorkload(target: BlockTarget, opts: WorkloadOptions): Workload {
  const rnd = prng(opts.seed);
  const runId = opts.runId ?? (BigInt(opts.seed >>> 0) << 32n) | BigInt((rnd() * 4294967296) >>> 0);
  const first = opts.firstBlock ?? 0;
  const log = new WorkloadLog(runId, first, opts.blocks);
  const busy = new Uint8Array(opts.blocks);
  const fuaRate = opts.fuaRate ?? 0.05;
  const flushRate = opts.flushRate ?? 0.05;
  let stopped = false;
  let writes = 0;
  let error: Error | null = null;
  const pick = (): number => {
    for (let tries = 0; tries < 64; tries++) {
      const b = Math.floor(rnd() * opts.blocks);
      if (busy[b] === 0) return b;
    }
    return -1;
  };
  const lane = async (): Promise<void> => {
    while (!stopped && error === null && (opts.maxWrites === undefined || writes < opts.maxWrites)) {
      const b = pick();
      if (b < 0) {
        await new Promise((r) => setImmediate(r));
        continue;
      }
      busy[b] = 1;
      writes++;
      const fua = rnd() < fuaRate;
      const rec = log.issue(b, fua);
      try {
        await target.write((first + b) * VW_BLOCK, encodeBlock(runId, first + b, rec.gen), { fua });
        log.ack(rec);
      } catch (err) {
        log.fail(rec);
        error ??= err as Error;
      } finally {
        busy[b] = 0;
      }
      if (error === null && rnd() < flushRate) {
        const at = log.flushIssued();
        try {
          await target.flush();
          log.flushAcked(at);
        } catch (err) {
          log.flushesFailed++;
          error ??= err as Error;
        }
      }
    }
  };
  const done = Promise.all(Array.from({ length: opts.lanes ?? 8 }, lane)).then(() => undefined);
  return {
    log,
    done,
    stop: () => {
      stopped = true;
    },
    get error() {
      return error;
    },
  };
}

/**
 * What must be found on a copy:
 * - `durable`: every acknowledged write that was flushed or carried FUA (after a crash that may
 *   lose volatile caches, or in async after the primary died: see `none`);
 * - `acked`: every acknowledged write (the copy's node never lost its page cache: a process kill);
 * - `none`: nothing is required, only that every block holds zero or a generation that was issued
 *   (async after the primary died: the tail that had not reached the secondary may be missing).
 */
export type Requirement = 'durable' | 'acked' | 'none';

export interface VerifyReport {
  readonly blocksChecked: number;
  /** Writes whose presence was required and confirmed (the write or a later one of its block). */
  readonly writesVerified: number;
  /** Required writes not found (neither them nor a later generation). */
  readonly lost: { block: number; required: number; found: string }[];
  /** Blocks whose newest acknowledged write is missing, where the requirement allowed it (async tail). */
  readonly allowedMissing: number;
  /** Acknowledged writes found (themselves or a later generation), whatever the requirement. */
  readonly ackedPresent: number;
  readonly ackedTotal: number;
  readonly foreign: { block: number; why: string }[];
  readonly torn: { block: number; why: string }[];
  /** Per block, the generation found (0 = zero), for comparing two copies. */
  readonly found: Int32Array;
}

export function reportOk(r: VerifyReport): boolean {
  return r.lost.length === 0 && r.foreign.length === 0 && r.torn.length === 0;
}

export function formatReport(r: VerifyReport): string {
  const lines = [
    `${r.blocksChecked} blocks checked, ${r.writesVerified} writes verified, ${r.lost.length} lost, ${r.foreign.length} foreign, ${r.torn.length} torn, ${r.allowedMissing} missing-but-allowed (${r.ackedPresent}/${r.ackedTotal} acknowledged writes present)`,
  ];
  for (const l of r.lost.slice(0, 10))
    lines.push(`  lost: block ${l.block} needs generation ≥ ${l.required}, found ${l.found}`);
  for (const f of r.foreign.slice(0, 10)) lines.push(`  foreign: block ${f.block}: ${f.why}`);
  for (const t of r.torn.slice(0, 10)) lines.push(`  torn: block ${t.block}: ${t.why}`);
  return lines.join('\n');
}

/** Read `length` bytes at the workload's device offset `offset`. */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/** Verify a copy, read through `readAt` (device offsets), against the log. */
export async function verify(log: WorkloadLog, readAt: ReadAt, require: Requirement): Promise<VerifyReport> {
  const lost: VerifyReport['lost'] = [];
  const foreign: VerifyReport['foreign'] = [];
  const torn: VerifyReport['torn'] = [];
  const found = new Int32Array(log.blocks);
  let writesVerified = 0;
  let allowedMissing = 0;
  let ackedPresent = 0;
  let ackedTotal = 0;
  const CHUNK = 256;
  for (let base = 0; base < log.blocks; base += CHUNK) {
    const n = Math.min(CHUNK, log.blocks - base);
    const buf = await readAt((log.firstBlock + base) * VW_BLOCK, n * VW_BLOCK);
    for (let i = 0; i < n; i++) {
      const b = base + i;
      const abs = log.firstBlock + b;
      const content = decodeBlock(buf.subarray(i * VW_BLOCK, (i + 1) * VW_BLOCK), log.runId, abs);
      const writes = log.writes[b] as WriteRecord[];
      let gen = 0;
      if (content.kind === 'block') {
        gen = content.gen;
        if (gen > writes.length) {
          foreign.push({ block: abs, why: `generation ${gen} was never issued (last issued ${writes.length})` });
          continue;
        }
      } else if (content.kind === 'foreign') {
        foreign.push({ block: abs, why: content.why });
        continue;
      } else if (content.kind === 'torn') {
        torn.push({ block: abs, why: content.why });
        continue;
      }
      found[b] = gen;
      // The newest generation that must be there, and the newest acknowledged one.
      let required = 0;
      let newestAcked = 0;
      let requiredCount = 0;
      for (const w of writes) {
        if (w.state === 'acked') {
          newestAcked = w.gen;
          ackedTotal++;
          if (w.gen <= gen) ackedPresent++;
        }
        if (require === 'durable' ? w.durable : require === 'acked' ? w.state === 'acked' : false) {
          required = w.gen;
          requiredCount++;
        }
      }
      if (gen >= required) writesVerified += requiredCount;
      else lost.push({ block: abs, required, found: gen === 0 ? 'zero' : `generation ${gen}` });
      if (gen < newestAcked && gen >= required) allowedMissing++;
    }
  }
  return {
    blocksChecked: log.blocks,
    writesVerified,
    lost,
    allowedMissing,
    ackedPresent,
    ackedTotal,
    foreign,
    torn,
    found,
  };
}

/** A ReadAt over a file holding the data area at `dataOffset` (a component: metadata localoff). */
export async function fileReader(
  path: string,
  dataOffset: number,
): Promise<{ readAt: ReadAt; close(): Promise<void> }> {
  const { open } = await import('node:fs/promises');
  const fh = await open(path, 'r');
  return {
    readAt: async (offset, length) => {
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, dataOffset + offset + done);
        if (bytesRead === 0) break; // past the end: reads as zeros
        done += bytesRead;
      }
      return buf;
    },
    close: () => fh.close(),
  };
}

/** The data area offset of a HAST component, from its metadata block. */
async function componentDataOffset(path: string): Promise<{ localOff: number; dataSize: number }> {
  const { open } = await import('node:fs/promises');
  const { decodeMetadata } = await import('../metadata/metadata.js');
  const { METADATA_SIZE } = await import('../metadata/layout.js');
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(METADATA_SIZE);
    await fh.read(buf, 0, METADATA_SIZE, 0);
    const md = decodeMetadata(buf);
    return { localOff: md.localOff, dataSize: md.dataSize };
  } finally {
    await fh.close();
  }
}

/** Verify a HAST component file (its data area found through its metadata). */
export async function verifyComponent(log: WorkloadLog, path: string, require: Requirement): Promise<VerifyReport> {
  const { localOff } = await componentDataOffset(path);
  const r = await fileReader(path, localOff);
  try {
    return await verify(log, r.readAt, require);
  } finally {
    await r.close();
  }
}
