// Phase "rss": peak resident memory (VmHWM) of every hastd process of a fresh memsync pair after the
// write jobs at queue depth 128 have run against it.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RSS_JOBS, runFio } from './fio.js';
import { startPair, workerPid } from './hastd.js';
import type { BenchOptions } from './options.js';
import type { Scope } from './scope.js';
import { progress } from './stats.js';

export interface RssRow {
  readonly node: string;
  readonly role: 'primary' | 'secondary';
  readonly process: 'parent' | 'worker';
  readonly pid: number;
  /** VmHWM in MiB. */
  readonly peakMiB: number;
}

/** Peak resident set size of `pid` in MiB, from /proc/<pid>/status (VmHWM, in kB). */
function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  if (m === null) throw new Error(`/proc/${pid}/status has no VmHWM line`);
  return Number(m[1]) / 1024;
}

export async function rssPhase(parent: Scope, opts: BenchOptions): Promise<RssRow[]> {
  const scope = parent.child();
  try {
    const dir = mkdtempSync(join(tmpdir(), 'hastd-bench-rss-'));
    scope.after(() => rmSync(dir, { recursive: true, force: true }));
    progress('rss: starting a fresh memsync pair');
    const t = await startPair(scope, 'memsync', opts.size, { fill: false, extra: opts.resourceExtra });
    for (const job of RSS_JOBS) {
      progress(`rss: ${job.title} → memsync`);
      await runFio(t.uri, job, opts.runtime, join(dir, 'fio.json'));
    }
    const rows: RssRow[] = [];
    for (const [node, role] of [
      [t.primary, 'primary'],
      [t.pair.b, 'secondary'],
    ] as const) {
      const parentPid = t.daemons.get(node.name)?.pid;
      if (parentPid === undefined) throw new Error(`no hastd runs on ${node.name}`);
      const worker = await workerPid(t.conf, node);
      rows.push({ node: node.name, role, process: 'parent', pid: parentPid, peakMiB: peakRssMiB(parentPid) });
      rows.push({ node: node.name, role, process: 'worker', pid: worker, peakMiB: peakRssMiB(worker) });
    }
    return rows;
  } finally {
    await scope.close();
  }
}
