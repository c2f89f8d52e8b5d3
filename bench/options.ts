// Command line and environment of `npm run bench`: repetitions, sizes, runtimes, phases, output.
import { parseArgs } from 'node:util';
import { parseSize } from '../src/metadata/size.js';
import { FIO_JOBS } from './fio.js';

const PHASES = ['io', 'device', 'resync', 'reconnect', 'rss', 'recovery', 'csums'] as const;
export type Phase = (typeof PHASES)[number];

export interface BenchOptions {
  /** Repetitions of every measurement; the table shows medians. */
  readonly reps: number;
  /** Size of each fio target's export (bytes). */
  readonly size: number;
  /** Seconds per fio job (fractions allowed). */
  readonly runtime: number;
  /** Size of the component fully resynchronised, and of the nbdcopy beside it (bytes). */
  readonly resyncSize: number;
  /** Extents dirtied while the secondary is away, for the reconnect resync. */
  readonly dirtyExtents: number;
  /** Leave backing files sparse instead of filling them with data before the runs. */
  readonly sparse: boolean;
  /** A line added to every hastd resource of the benchmark (e.g. "metaflush off"), or null. */
  readonly resourceExtra: string | null;
  readonly phases: readonly Phase[];
  /** Ids of the io phase's fio jobs to run (default: all of FIO_JOBS), e.g. for a before/after of one job. */
  readonly jobs: readonly string[];
  /** Where the JSON result goes. */
  readonly json: string | null;
}

export const USAGE = `usage: npm run bench -- [options]   (or: node dist/bench/run.js [options])
  --reps N            repetitions per measurement, median shown (env BENCH_REPS; default 3)
  --size SIZE         component size of every fio target (env BENCH_SIZE; default 1G)
  --runtime SECONDS   seconds per fio job (env BENCH_RUNTIME; default 10)
  --resync-size SIZE  component size of the full resync (env BENCH_RESYNC_SIZE; default 2G)
  --dirty N           extents dirtied for the reconnect resync (env BENCH_DIRTY; default 32)
  --quick             small and short: --size 64M --runtime 2 --resync-size 128M --dirty 8
  --sparse            leave backing files sparse (default: filled with data first)
  --hast-conf LINE    add LINE to every hastd resource, e.g. "metaflush off" (experiments)
  --phases LIST       comma-separated subset of ${PHASES.join(',')} (default: all)
  --jobs LIST         the io phase's fio jobs, a subset of ${FIO_JOBS.map((j) => j.id).join(',')} (default: all)
  --json FILE         write the results there (default bench/results/<date>.json)
  -h, --help          this text
Phases: io = fio --ioengine=nbd against nbdkit file, the C replicator (qemu-nbd quorum: a local file
plus NBD to nbdkit on 127.0.0.2), a lone hastd primary and memsync/fullsync/async pairs;
device = fio libaio O_DIRECT on a loop device over a plain file, nbdfuse + loop over nbdkit, and
/dev/hast/<name> of a memsync pair with "device fuse" (needs root; skipped, and reported as not run,
without it); resync, reconnect = full and reconnect resync beside nbdcopy; rss = peak RSS at QD128;
recovery = split-brain recovery bytes ÷ diverged bytes (--dirty extents each side) and verify MB/s;
csums = checksum-assisted full sync (1 % changed) ÷ a plain full sync of --resync-size, SHA-256 MB/s.
Needs fio, nbdkit, nbdcopy, qemu-nbd (Debian: fio nbdkit libnbd-bin qemu-utils); the device phase
also nbdfuse, losetup, fusermount3 (libnbd-bin, mount, fuse3). SIZE takes k/M/G suffixes (powers of
1024). Backing files go on tmpfs: as root a tmpfs the bench mounts under $TMPDIR, otherwise /dev/shm
(else $TMPDIR); they take about 10 x SIZE of memory during the io phase.`;

/** Thrown for bad flags; run.ts prints it with the usage and exits 64. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

function positive(name: string, text: string, integer: boolean): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(text)}`);
  }
  return n;
}

function size(name: string, text: string): number {
  try {
    const n = parseSize(text);
    if (n < 1 << 20) throw new UsageError(`${name} must be at least 1M, got ${JSON.stringify(text)}`);
    return n;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${name}: ${(err as Error).message}`);
  }
}

/** A comma-separated subset of `known` (what `flag` names, for the error). */
function subset(flag: string, what: string, text: string, known: readonly string[]): string[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const p of list) {
    if (!known.includes(p))
      throw new UsageError(`${flag}: unknown ${what} ${JSON.stringify(p)} (known: ${known.join(', ')})`);
  }
  return list;
}

/** Parse argv (without node and the script) and the BENCH_* environment; flags win over env. */
export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): BenchOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        reps: { type: 'string' },
        size: { type: 'string' },
        runtime: { type: 'string' },
        'resync-size': { type: 'string' },
        dirty: { type: 'string' },
        quick: { type: 'boolean' },
        sparse: { type: 'boolean' },
        'hast-conf': { type: 'string' },
        phases: { type: 'string' },
        jobs: { type: 'string' },
        json: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help === true) return 'help';
  const quick = v.quick === true;
  /** A flag's value, else its BENCH_* variable, else the (quick) default; with where it came from. */
  const pick = (flag: keyof typeof v, envName: string, dflt: string, quickDflt: string): [string, string] => {
    const given = v[flag];
    if (typeof given === 'string') return [given, `--${flag}`];
    const e = env[envName];
    if (e !== undefined && e !== '') return [e, envName];
    return [quick ? quickDflt : dflt, `--${flag}`];
  };
  const [reps, repsFrom] = pick('reps', 'BENCH_REPS', '3', '3');
  const [sz, szFrom] = pick('size', 'BENCH_SIZE', '1G', '64M');
  const [rt, rtFrom] = pick('runtime', 'BENCH_RUNTIME', '10', '2');
  const [rs, rsFrom] = pick('resync-size', 'BENCH_RESYNC_SIZE', '2G', '128M');
  const [dirty, dirtyFrom] = pick('dirty', 'BENCH_DIRTY', '32', '8');
  return {
    reps: positive(repsFrom, reps, true),
    size: size(szFrom, sz),
    runtime: positive(rtFrom, rt, false),
    resyncSize: size(rsFrom, rs),
    dirtyExtents: positive(dirtyFrom, dirty, true),
    sparse: v.sparse === true,
    resourceExtra: v['hast-conf'] ?? null,
    phases: v.phases !== undefined ? (subset('--phases', 'phase', v.phases, PHASES) as Phase[]) : [...PHASES],
    jobs: subset(
      '--jobs',
      'job',
      v.jobs ?? FIO_JOBS.map((j) => j.id).join(','),
      FIO_JOBS.map((j) => j.id),
    ),
    json: v.json ?? null,
  };
}
