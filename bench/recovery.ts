// Phase "recovery" (issue 17) on one memsync pair of `--resync-size` components:
// - split-brain recovery: replicated writes first fill a's keepdirty LRU (extents both copies hold
//   alike, which a's divergence record leaves out), then the link breaks, each node writes
//   `--dirty` extents as primary while apart, then `hastctl role secondary --discard-my-data` on one
//   of them; the bytes the recovery moved are compared with the bytes of the extents written on
//   either side;
// - verify: `hastctl verify` of the whole data area of the identical copies; MB/s compared.
// Checksum-assisted sync has its own phase (./csums.ts).
import { join } from 'node:path';
import { controlRequest } from '../src/control/client.js';
import type { VerifyReport, WorkerStatus } from '../src/control/messages.js';
import { NbdClient } from '../src/nbd/client.js';
import { hastctl, type NodeSpec, startRole } from '../test/harness/cluster.js';
import { inSync, waitFor } from '../test/harness/wait.js';
import { startPair } from './hastd.js';
import type { BenchOptions } from './options.js';
import type { Scope } from './scope.js';
import { progress } from './stats.js';

export interface RecoveryPhaseResult {
  /** Extents written on each side while apart, and their size. */
  readonly extentsPerSide: number;
  readonly extentSize: number;
  /** Bytes the recovery's sync moved. */
  readonly moved: number;
  /** moved ÷ the bytes of the extents written on either side. */
  readonly ratio: number;
  readonly verifyBytes: number;
  readonly verifySeconds: number;
  readonly verifyMBps: number;
}

async function workerAt(node: NodeSpec, res: string): Promise<WorkerStatus | null> {
  try {
    const r = await controlRequest(join(node.dir, 'control.sock'), { cmd: 'status', resources: [res] });
    return r.resources[0]?.worker ?? null;
  } catch {
    return null;
  }
}

/** Write 4 KiB into each of `n` extents spread over the first half (a) or the second half (b). */
async function dirty(sock: string, n: number, first: number, stride: number, extentSize: number): Promise<void> {
  const c = await NbdClient.connect({ path: sock });
  try {
    for (let i = 0; i < n; i++) await c.write((first + i * stride) * extentSize + 8192, Buffer.alloc(4096, 0x6b));
    await c.flush();
  } finally {
    await c.disconnect();
  }
}

function checked(r: { code: number; stderr: string }, what: string): void {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr.trim()}`);
}

export async function recoveryPhase(parent: Scope, opts: BenchOptions): Promise<RecoveryPhaseResult> {
  const scope = parent.child();
  try {
    progress(`recovery: starting a memsync pair on ${opts.resyncSize} byte components`);
    const t = await startPair(scope, 'memsync', opts.resyncSize, { fill: false, extra: opts.resourceExtra });
    const { a, b } = t.pair;
    const res = t.pair.res;
    const extents = Math.floor(t.dataSize / t.extentSize);
    const n = Math.max(1, Math.min(opts.dirtyExtents, Math.floor(extents / 4)));
    const stride = Math.max(1, Math.floor(extents / 2 / n));

    // Verify of identical copies.
    progress(`recovery: verify of ${t.dataSize} bytes`);
    const v = await hastctl(t.conf, a.name, ['verify', '--json', res]);
    checked(v, 'hastctl verify');
    const report = JSON.parse(v.stdout) as VerifyReport;

    // The replicated past: up to 64 extents (the default keepdirty) written and flushed on both.
    const kept = Math.min(64, extents);
    progress(`recovery: ${kept} extents written while connected`);
    await dirty(t.sock, kept, 0, Math.max(1, Math.floor(extents / kept)), t.extentSize);
    await waitFor('a in sync', async () => inSync(await workerAt(a, res)), 60_000);

    // The split-brain: b goes away, a writes; a goes away, b is promoted and writes.
    progress(`recovery: split-brain with ${n} extents written on each side`);
    await t.daemons.get(b.name)?.kill();
    await waitFor('a degraded', async () => (await workerAt(a, res))?.status === 'degraded', 30_000);
    await dirty(t.sock, n, 0, stride, t.extentSize);
    await t.daemons.get(a.name)?.stop();
    t.daemons.set(b.name, await startRole(scope, t.conf, b, res, 'primary', t.pair.sock(b)));
    await dirty(t.pair.sock(b), n, Math.floor(extents / 2), stride, t.extentSize);
    t.daemons.set(a.name, await startRole(scope, t.conf, a, res, 'secondary', t.pair.sock(a)));
    checked(await hastctl(t.conf, a.name, ['role', 'secondary', '--discard-my-data', res]), 'role --discard-my-data');
    const last = await waitFor(
      'the recovery to complete',
      async () => {
        const s = await workerAt(b, res);
        return inSync(s) ? s?.lastSync : null;
      },
      120_000,
    );
    const written = 2 * n * t.extentSize;
    return {
      extentsPerSide: n,
      extentSize: t.extentSize,
      moved: last.bytes,
      ratio: last.bytes / written,
      verifyBytes: report.comparedBytes,
      verifySeconds: report.seconds,
      verifyMBps: report.comparedBytes / 1e6 / Math.max(report.seconds, 0.001),
    };
  } finally {
    await scope.close();
  }
}
