// The fio jobs of the benchmark and how one is run against an NBD URI (fio's nbd engine, libnbd) or
// a block device (libaio, O_DIRECT): JSON output read back into MB/s, IOPS and completion-latency percentiles.
import { readFileSync } from 'node:fs';
import { run } from '../test/harness/process.js';

export interface FioJob {
  /** Stable key in the JSON output. */
  readonly id: string;
  /** What the table prints. */
  readonly title: string;
  readonly rw: 'write' | 'read' | 'randwrite' | 'randread';
  readonly bs: number;
  readonly iodepth: number;
}

/** The five measured jobs, in the order they run (the sequential write first). */
export const FIO_JOBS: readonly FioJob[] = [
  { id: 'seqwrite-1m', title: '1 MiB seq write QD8', rw: 'write', bs: 1 << 20, iodepth: 8 },
  { id: 'seqread-1m', title: '1 MiB seq read QD8', rw: 'read', bs: 1 << 20, iodepth: 8 },
  { id: 'randwrite-4k-qd32', title: '4 KiB randwrite QD32', rw: 'randwrite', bs: 4096, iodepth: 32 },
  { id: 'randread-4k-qd32', title: '4 KiB randread QD32', rw: 'randread', bs: 4096, iodepth: 32 },
  { id: 'randwrite-4k-qd1', title: '4 KiB randwrite QD1', rw: 'randwrite', bs: 4096, iodepth: 1 },
];

/** The write jobs at queue depth 128 during which peak RSS is taken. */
export const RSS_JOBS: readonly FioJob[] = [
  { id: 'seqwrite-1m-qd128', title: '1 MiB seq write QD128', rw: 'write', bs: 1 << 20, iodepth: 128 },
  { id: 'randwrite-4k-qd128', title: '4 KiB randwrite QD128', rw: 'randwrite', bs: 4096, iodepth: 128 },
];

/** The jobs of the block-device phase (fio libaio, O_DIRECT, on /dev/loopN and /dev/hast/<name>). */
export const DEVICE_JOBS: readonly FioJob[] = [
  { id: 'seqwrite-1m', title: '1 MiB seq write QD8', rw: 'write', bs: 1 << 20, iodepth: 8 },
  { id: 'randwrite-4k-qd32', title: '4 KiB randwrite QD32', rw: 'randwrite', bs: 4096, iodepth: 32 },
  { id: 'randwrite-4k-qd1', title: '4 KiB randwrite QD1', rw: 'randwrite', bs: 4096, iodepth: 1 },
  { id: 'randread-4k-qd32', title: '4 KiB randread QD32', rw: 'randread', bs: 4096, iodepth: 32 },
];

/** The jobs of the io phase that are compared with the C replicator (qemu-nbd quorum). */
export const QUORUM_JOB_IDS: readonly string[] = ['seqwrite-1m', 'randwrite-4k-qd32', 'randwrite-4k-qd1'];

/** One fio run's figures (MB = 10^6 bytes; latencies are completion latencies in µs). */
export interface FioFigures {
  readonly mbps: number;
  readonly iops: number;
  readonly p50us: number;
  readonly p99us: number;
}

/** The NBD URI of a unix-socket export, as fio and nbdcopy take it. */
export function nbdUri(sock: string): string {
  return `nbd+unix:///?socket=${sock}`;
}

interface FioDirection {
  bw_bytes: number;
  iops: number;
  clat_ns: { percentile?: Record<string, number> };
}

/** Pull the figures of the job's direction out of fio's JSON document. */
function parseFioJson(text: string, job: FioJob): FioFigures {
  const doc = JSON.parse(text) as { jobs?: { error?: number; read?: FioDirection; write?: FioDirection }[] };
  const j = doc.jobs?.[0];
  if (j === undefined) throw new Error('fio JSON has no jobs');
  if (j.error !== undefined && j.error !== 0) throw new Error(`fio job ${job.id} failed with error ${j.error}`);
  const d = job.rw === 'read' || job.rw === 'randread' ? j.read : j.write;
  const pct = d?.clat_ns.percentile;
  const p50 = pct?.['50.000000'];
  const p99 = pct?.['99.000000'];
  if (d === undefined || p50 === undefined || p99 === undefined)
    throw new Error(`fio JSON for ${job.id} lacks bandwidth or latency percentiles`);
  return { mbps: d.bw_bytes / 1e6, iops: d.iops, p50us: p50 / 1000, p99us: p99 / 1000 };
}

/** Where a job runs: an NBD export (fio's nbd engine) or a block device (libaio, O_DIRECT). */
export type FioTarget = string | { readonly device: string };

/**
 * Run `job` for `runtimeSec` seconds (time based, over the whole export or device) against
 * `target`: an NBD URI (fio's nbd engine) or `{ device }` (libaio with O_DIRECT on the block
 * device); fio's JSON goes to `outFile` (its stdout also carries libnbd chatter).
 */
export async function runFio(target: FioTarget, job: FioJob, runtimeSec: number, outFile: string): Promise<FioFigures> {
  const where =
    typeof target === 'string'
      ? ['--ioengine=nbd', `--uri=${target}`]
      : ['--ioengine=libaio', '--direct=1', `--filename=${target.device}`];
  const args = [
    `--name=${job.id}`,
    ...where,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`,
    '--time_based',
    `--runtime=${Math.max(1, Math.round(runtimeSec * 1000))}ms`,
    '--randrepeat=0',
    '--output-format=json',
    `--output=${outFile}`,
  ];
  const label = typeof target === 'string' ? target : target.device;
  const r = await run('fio', args, { timeoutMs: Math.ceil(runtimeSec * 1000) + 120_000 });
  if (r.code !== 0)
    throw new Error(`fio ${job.id} against ${label} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return parseFioJson(readFileSync(outFile, 'utf8'), job);
}
