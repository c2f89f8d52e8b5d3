// Phase "csums" (issue 17) on one memsync pair of `--resync-size` components, the primary's filled:
// the secondary is re-created (`hastctl create`) on a copy of the primary's disk with 1 % of its
// chunks changed, and the full sync that follows is timed twice: with checksumsync on at both
// nodes (only the changed chunks cross the network, both disks are read and hashed in full), and
// with it off at the secondary (a plain full sync of every byte). Beside them, the SHA-256
// throughput of this machine over 1 MiB chunks (one core), which bounds the checksum sync.
import { closeSync, copyFileSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Pair } from '../test/harness/cluster.js';
import { computeHash } from '../src/peer/checksum.js';
import { MAXPHYS } from '../src/peer/constants.js';
import { startPair } from './hastd.js';
import type { BenchOptions } from './options.js';
import { fullResync } from './resync.js';
import type { Scope } from './scope.js';
import { progress, secondsSince } from './stats.js';

export interface ChecksumSyncSample {
  readonly csumsSeconds: number;
  readonly plainSeconds: number;
  /** Bytes the checksum sync transferred and skipped (found identical). */
  readonly transferred: number;
  readonly skipped: number;
}

export interface ChecksumSyncPhaseResult {
  /** Bytes synchronized by each full sync (the data area). */
  readonly bytes: number;
  /** Bytes changed on the secondary before each sync (1 % of the chunks, at least one). */
  readonly changed: number;
  readonly samples: readonly ChecksumSyncSample[];
  /** SHA-256 over 1 MiB chunks in one process (MB/s, 10^6 bytes). */
  readonly hashMBps: number;
}

/** SHA-256 throughput over `bytes` (capped at 256 MiB) of 1 MiB chunks, MB/s. */
function hashThroughput(bytes: number): number {
  const chunk = randomBytes(MAXPHYS);
  const n = Math.max(1, Math.min(256, Math.floor(bytes / MAXPHYS)));
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    chunk.writeUInt32LE(i, 0);
    computeHash('sha256', chunk);
  }
  return (n * MAXPHYS) / 1e6 / Math.max(secondsSince(start), 1e-6);
}

/** `checksumsync off` in the secondary's `on` block (node > resource), or not. */
function secondaryCsums(pair: Pair, on: boolean): void {
  const off = '    checksumsync off\n';
  const at = `  on ${pair.b.name} {\n`;
  let text = readFileSync(pair.conf, 'utf8').replace(`${at}${off}`, at);
  if (!on) text = text.replace(at, `${at}${off}`);
  writeFileSync(pair.conf, text);
}

/** Every 100th chunk of the data area (at least one) overwritten with random bytes; the bytes changed. */
function changeOnePercent(img: string, localOff: number, dataSize: number): number {
  const chunks = Math.ceil(dataSize / MAXPHYS);
  const fd = openSync(img, 'r+');
  let changed = 0;
  try {
    for (let c = 0; c < chunks; c += 100) {
      const n = Math.min(MAXPHYS, dataSize - c * MAXPHYS);
      writeSync(fd, randomBytes(n), 0, n, localOff + c * MAXPHYS);
      changed += n;
    }
  } finally {
    closeSync(fd);
  }
  return changed;
}

export async function checksumSyncPhase(parent: Scope, opts: BenchOptions): Promise<ChecksumSyncPhaseResult> {
  const scope = parent.child();
  try {
    progress(`csums: starting a memsync pair with checksumsync on, ${opts.resyncSize} byte components`);
    const extra = ['checksumsync on', ...(opts.resourceExtra !== null ? [opts.resourceExtra] : [])].join('\n  ');
    const t = await startPair(scope, 'memsync', opts.resyncSize, { fill: true, fillSecondary: false, extra });
    const primaryImg = t.pair.img(t.pair.a);
    let changed = 0;
    const prepare = (img: string): void => {
      // The primary is idle (its secondary is down): its file is the data the secondary still has.
      copyFileSync(primaryImg, img);
      changed = changeOnePercent(img, t.localOff, t.dataSize);
    };
    const samples: ChecksumSyncSample[] = [];
    for (let rep = 1; rep <= opts.reps; rep++) {
      progress(`csums: rep ${rep}/${opts.reps} checksum full sync of ${t.dataSize} bytes, 1 % changed`);
      secondaryCsums(t.pair, true);
      const c = await fullResync(scope, t, opts.resyncSize, prepare);
      if (c.transferred >= c.bytes) throw new Error(`the checksum sync transferred everything: ${JSON.stringify(c)}`);
      progress(`csums: rep ${rep}/${opts.reps} plain full sync of the same`);
      secondaryCsums(t.pair, false);
      const plain = await fullResync(scope, t, opts.resyncSize, prepare);
      samples.push({
        csumsSeconds: c.seconds,
        plainSeconds: plain.seconds,
        transferred: c.transferred,
        skipped: c.skipped,
      });
    }
    return { bytes: t.dataSize, changed, samples, hashMBps: hashThroughput(t.dataSize) };
  } finally {
    await scope.close();
  }
}
