// Phase "io": the fio jobs against the anchors (nbdkit file; qemu-nbd quorum replicating to nbdkit on
// 127.0.0.2) and four hastd targets, all started once with identical export sizes and contents; repetitions interleave targets so that machine
// noise spreads over all of them alike.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fillPattern, sparseFile } from './fill.js';
import { FIO_JOBS, type FioFigures, runFio } from './fio.js';
import { startPair, startSolo } from './hastd.js';
import { startNbdkitFile } from './nbdkit.js';
import { startQuorum } from './quorum.js';
import type { BenchOptions } from './options.js';
import type { Scope } from './scope.js';
import { progress } from './stats.js';

/** `memsync-tls`: the memsync pair with TLS on its replication link (its cost: issue 18). */
export const IO_TARGETS = ['nbdkit', 'quorum', 'primary', 'memsync', 'fullsync', 'async', 'memsync-tls'] as const;
export type IoTarget = (typeof IO_TARGETS)[number];

/** Raw samples: samples[jobId][target] = one FioFigures per repetition. */
export type IoSamples = Record<string, Record<IoTarget, FioFigures[]>>;

export interface IoPhaseResult {
  /** The export size every target had. */
  readonly exportSize: number;
  readonly samples: IoSamples;
}

/** Start every target, run reps × jobs × targets, stop everything. */
export async function ioPhase(parent: Scope, opts: BenchOptions): Promise<IoPhaseResult> {
  const scope = parent.child();
  try {
    const dir = mkdtempSync(join(tmpdir(), 'hastd-bench-io-'));
    scope.after(() => rmSync(dir, { recursive: true, force: true }));
    const fill = !opts.sparse;
    progress(`io: starting targets (${opts.size} byte components${fill ? ', filling them' : ', sparse'})`);
    // The hastd targets come up side by side (each start is mostly waiting on hastctl).
    const [solo, memsync, fullsync, async, memsyncTls] = await Promise.all([
      startSolo(scope, opts.size, fill, opts.resourceExtra),
      startPair(scope, 'memsync', opts.size, { fill, extra: opts.resourceExtra }),
      startPair(scope, 'fullsync', opts.size, { fill, extra: opts.resourceExtra }),
      startPair(scope, 'async', opts.size, { fill, extra: opts.resourceExtra }),
      startPair(scope, 'memsync', opts.size, { fill, extra: opts.resourceExtra, tls: true }),
    ]);
    const anchorFile = join(dir, 'anchor.img');
    sparseFile(anchorFile, solo.dataSize);
    if (fill) fillPattern(anchorFile, 0, solo.dataSize);
    const anchor = await startNbdkitFile(scope, join(dir, 'anchor.sock'), anchorFile);
    const quorum = await startQuorum(scope, dir, solo.dataSize, fill);
    const uris: Record<IoTarget, string> = {
      nbdkit: anchor.uri,
      quorum: quorum.uri,
      primary: solo.uri,
      memsync: memsync.uri,
      fullsync: fullsync.uri,
      async: async.uri,
      'memsync-tls': memsyncTls.uri,
    };
    const samples: IoSamples = {};
    const jobs = FIO_JOBS.filter((j) => opts.jobs.includes(j.id));
    for (const job of jobs)
      samples[job.id] = {
        nbdkit: [],
        quorum: [],
        primary: [],
        memsync: [],
        fullsync: [],
        async: [],
        'memsync-tls': [],
      };
    const out = join(dir, 'fio.json');
    for (let rep = 1; rep <= opts.reps; rep++) {
      for (const job of jobs) {
        for (const target of IO_TARGETS) {
          progress(`io: rep ${rep}/${opts.reps} ${job.title} → ${target}`);
          const figures = await runFio(uris[target], job, opts.runtime, out);
          samples[job.id]![target].push(figures);
        }
      }
    }
    return { exportSize: solo.dataSize, samples };
  } finally {
    await scope.close();
  }
}
