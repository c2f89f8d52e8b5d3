// Phases "resync" and "reconnect" on one memsync pair whose primary holds data:
// - full resync: the secondary's component is re-created (new metadata, sparse data), so the
//   primary copies every byte; beside it, nbdcopy moves the same bytes between two nbdkit servers;
// - reconnect resync: the secondary is killed, N extents are written on the primary alone, the
//   secondary returns; the bytes the resync moved are compared with the dirty extents' bytes.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlRequest } from '../src/control/client.js';
import type { LastSync, WorkerStatus } from '../src/control/messages.js';
import { NbdClient } from '../src/nbd/client.js';
import { hastctl, type NodeSpec, startRole } from '../test/harness/cluster.js';
import { fillPattern, sparseFile } from './fill.js';
import { type HastdTarget, startPair } from './hastd.js';
import { startNbdkitFile } from './nbdkit.js';
import type { BenchOptions } from './options.js';
import type { Scope } from './scope.js';
import { progress, secondsSince } from './stats.js';
import { run } from '../test/harness/process.js';
import { inSync, waitFor } from '../test/harness/wait.js';

/** One full resync and one nbdcopy of the same bytes. */
export interface FullSample {
  readonly bytes: number;
  readonly hastdSeconds: number;
  readonly nbdcopySeconds: number;
}

/** One reconnect resync. */
export interface ReconnectSample {
  /** Extents written while the secondary was away. */
  readonly extents: number;
  readonly extentSize: number;
  /** `dirty` of `hastctl status` just before the secondary returned. */
  readonly statusDirty: number;
  /** `lastSync.bytes` after the resync. */
  readonly moved: number;
}

export interface ResyncPhaseResult {
  readonly full: FullSample[];
  readonly reconnect: ReconnectSample[];
}

type PairTarget = Awaited<ReturnType<typeof startPair>>;

/** Bound for waiting on a sync of `bytes`: generous (1 MB/s), never under two minutes. */
function syncTimeout(bytes: number): number {
  return Math.max(120_000, Math.ceil(bytes / 1000));
}

/**
 * The worker's status straight from the node's control socket: a `hastctl` process per poll costs
 * tens of milliseconds of CPU, which on two cores would be taken from the copy being timed.
 */
async function workerAt(node: NodeSpec, res: string): Promise<WorkerStatus | null> {
  try {
    const r = await controlRequest(join(node.dir, 'control.sock'), { cmd: 'status', resources: [res] });
    return r.resources[0]?.worker ?? null;
  } catch {
    return null;
  }
}

/**
 * Wait until the primary reports complete, nothing dirty, no sync running and a recorded sync;
 * that sync's figures.
 */
async function waitSynced(t: PairTarget, timeoutMs: number): Promise<LastSync> {
  return waitFor(
    'the resync to complete',
    async () => {
      const s = await workerAt(t.primary, t.pair.res);
      return inSync(s) ? s?.lastSync : null;
    },
    timeoutMs,
  );
}

/**
 * Write every dirty page of the machine out (sync(1)) before a timed copy, so that each copy
 * starts from the same page-cache state and none pays for the writeback of the fill or of the
 * copy before it (without this the figures of both copiers swing by 2× from rep to rep).
 */
async function settle(): Promise<void> {
  const r = await run('sync', [], { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`sync exited ${r.code}: ${r.stderr.trim()}`);
}

/** Kill the secondary's hastd (parent and worker). */
async function killSecondary(t: PairTarget): Promise<void> {
  const b = t.pair.b;
  await t.daemons.get(b.name)?.kill();
  t.daemons.delete(b.name);
}

/** Start the secondary's hastd again in role secondary. */
async function startSecondary(scope: Scope, t: PairTarget): Promise<void> {
  const b = t.pair.b;
  t.daemons.set(b.name, await startRole(scope, t.conf, b, t.pair.res, 'secondary', t.pair.sock(b)));
}

/**
 * Re-create the secondary's component and time the full resync that follows. `prepare` lays out the
 * component file before `hastctl create` (default: from scratch, a sparse file of `fileSize` bytes).
 */
export async function fullResync(
  scope: Scope,
  t: PairTarget,
  fileSize: number,
  prepare: (img: string) => void = (img) => sparseFile(img, fileSize),
): Promise<LastSync> {
  const b = t.pair.b;
  await killSecondary(t);
  prepare(t.pair.img(b));
  const r = await hastctl(t.conf, b.name, ['create', t.pair.res]);
  if (r.code !== 0) throw new Error(`hastctl create on ${b.name} failed (${r.code}): ${r.stderr}`);
  await startSecondary(scope, t);
  progress(`resync: ${b.name} re-created and started as secondary`);
  await settle();
  // A new primary worker connects at once instead of at its next reconnect attempt (10 s); the
  // figure is the worker's own sync time either way.
  for (const role of ['init', 'primary']) {
    const rr = await hastctl(t.conf, t.primary.name, ['role', role, t.pair.res]);
    if (rr.code !== 0) throw new Error(`hastctl role ${role} on ${t.primary.name} failed (${rr.code}): ${rr.stderr}`);
  }
  // Until the new worker serves its export it may not answer status queries (the parent then
  // waits 5 s for it); its first completed sync is the one measured.
  await waitFor(`export socket ${t.sock}`, () => existsSync(t.sock));
  progress(`resync: ${t.primary.name} restarted as primary`);
  const last = await waitSynced(t, syncTimeout(t.dataSize));
  if (last.bytes !== t.dataSize)
    throw new Error(`expected a full sync of ${t.dataSize} bytes, the primary reports ${last.bytes}`);
  return last;
}

/** nbdcopy of the source export to a fresh sparse file served by nbdkit; wall-clock seconds. */
async function nbdcopyOnce(scope: Scope, dir: string, srcUri: string, size: number): Promise<number> {
  const dst = join(dir, 'dst.img');
  sparseFile(dst, size);
  const server = await startNbdkitFile(scope, join(dir, 'dst.sock'), dst);
  try {
    await settle();
    const start = process.hrtime.bigint();
    const r = await run('nbdcopy', [srcUri, server.uri], { timeoutMs: syncTimeout(size) });
    const seconds = secondsSince(start);
    if (r.code !== 0) throw new Error(`nbdcopy exited ${r.code}: ${r.stderr.trim()}`);
    return seconds;
  } finally {
    await server.stop();
  }
}

/** Kill the secondary, dirty `n` extents spread over the disk, bring it back, measure the resync. */
async function reconnectResync(scope: Scope, t: HastdTarget & PairTarget, n: number): Promise<ReconnectSample> {
  await killSecondary(t);
  await waitFor('primary degraded', async () => (await workerAt(t.primary, t.pair.res))?.status === 'degraded', 30_000);
  const extents = Math.floor(t.dataSize / t.extentSize);
  const stride = Math.max(1, Math.floor(extents / n));
  const client = await NbdClient.connect({ path: t.sock });
  try {
    const block = Buffer.alloc(4096, 0x5a);
    for (let i = 0; i < n; i++) await client.write(i * stride * t.extentSize + 4096, block);
    await client.flush();
  } finally {
    await client.disconnect();
  }
  const statusDirty = (await workerAt(t.primary, t.pair.res))?.dirty ?? 0;
  await startSecondary(scope, t);
  // Degraded until the secondary is back, so 'complete' here is after the reconnect's sync.
  const last = await waitSynced(t, syncTimeout(t.dataSize));
  return { extents: n, extentSize: t.extentSize, statusDirty, moved: last.bytes };
}

export async function resyncPhase(
  parent: Scope,
  opts: BenchOptions,
  full: boolean,
  reconnect: boolean,
): Promise<ResyncPhaseResult> {
  const scope = parent.child();
  try {
    progress(`resync: starting a memsync pair on ${opts.resyncSize} byte components, filling the primary's`);
    // Always filled: a sparse source would let hole compression (and nbdcopy's extent map) skip it.
    const t = await startPair(scope, 'memsync', opts.resyncSize, {
      fill: true,
      fillSecondary: false,
      extra: opts.resourceExtra,
    });
    const result: ResyncPhaseResult = { full: [], reconnect: [] };
    if (full) {
      const dir = mkdtempSync(join(tmpdir(), 'hastd-bench-copy-'));
      scope.after(() => rmSync(dir, { recursive: true, force: true }));
      const srcFile = join(dir, 'src.img');
      sparseFile(srcFile, t.dataSize);
      fillPattern(srcFile, 0, t.dataSize);
      const src = await startNbdkitFile(scope, join(dir, 'src.sock'), srcFile);
      // Rep 0 is an untimed warm-up of both copiers: in a VM the first touch of memory the page
      // cache has not used yet costs the host a fault per page, which made the first copy of
      // either side up to 3x slower than the rest.
      for (let rep = 0; rep <= opts.reps; rep++) {
        const label = rep === 0 ? 'warm-up' : `rep ${rep}/${opts.reps}`;
        progress(`resync: ${label} full resync of ${t.dataSize} bytes`);
        const h = await fullResync(scope, t, opts.resyncSize);
        progress(`resync: ${label} nbdcopy of ${t.dataSize} bytes`);
        const c = await nbdcopyOnce(scope, dir, src.uri, t.dataSize);
        if (rep > 0) result.full.push({ bytes: h.bytes, hastdSeconds: h.seconds, nbdcopySeconds: c });
      }
      await src.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    if (reconnect) {
      const n = Math.max(1, Math.min(opts.dirtyExtents, Math.floor(t.dataSize / t.extentSize)));
      for (let rep = 1; rep <= opts.reps; rep++) {
        progress(`reconnect: rep ${rep}/${opts.reps} ${n} dirty extents`);
        result.reconnect.push(await reconnectResync(scope, t, n));
      }
    }
    return result;
  } finally {
    await scope.close();
  }
}
