// The benchmark's result: medians and ratios (ours ÷ anchor) computed from the raw samples, the
// issue's targets beside them, rendered as a text table (stdout) and kept as JSON (for tracking).
import { FIO_JOBS, type FioFigures } from './fio.js';
import { IO_TARGETS, type IoPhaseResult, type IoTarget } from './io.js';
import type { BenchOptions } from './options.js';
import type { ResyncPhaseResult, FullSample, ReconnectSample } from './resync.js';
import type { RssRow } from './rss.js';
import { median } from './stats.js';

/** A target from issue 5: the figure must be `op` value. */
export interface Goal {
  readonly op: '>=' | '<=';
  readonly value: number;
  readonly met: boolean;
}

export interface IoRow extends FioFigures {
  readonly job: string;
  readonly title: string;
  readonly target: IoTarget;
  /** This target's median IOPS ÷ nbdkit's (equal to the MB/s ratio: same block size). */
  readonly ratio: number;
  readonly goal: Goal | null;
  readonly samples: readonly FioFigures[];
}

export interface FullResyncRow {
  readonly bytes: number;
  readonly hastd: { readonly seconds: number; readonly mbps: number };
  readonly nbdcopy: { readonly seconds: number; readonly mbps: number };
  /** hastd MB/s ÷ nbdcopy MB/s. */
  readonly ratio: number;
  readonly goal: Goal;
  readonly samples: readonly FullSample[];
}

export interface ReconnectRow {
  readonly extents: number;
  readonly extentSize: number;
  /** extents × extentSize. */
  readonly dirtyBytes: number;
  readonly statusDirtyBytes: number;
  readonly movedBytes: number;
  /** movedBytes ÷ dirtyBytes. */
  readonly ratio: number;
  readonly goal: Goal;
  readonly samples: readonly ReconnectSample[];
}

export interface RssReportRow extends RssRow {
  readonly goal: Goal | null;
}

/** A phase that failed; the others are still reported. */
export interface PhaseError {
  readonly phase: string;
  readonly message: string;
}

export interface BenchReport {
  readonly meta: {
    readonly date: string;
    readonly host: string;
    readonly cpus: number;
    readonly node: string;
    readonly tools: Record<string, string>;
    readonly options: BenchOptions;
    readonly exportSize: number | null;
    /** 1-minute load average when the run started and ended (other work on the machine skews figures). */
    readonly loadAvg: { readonly before: number; readonly after: number };
  };
  readonly io: readonly IoRow[];
  readonly resync: FullResyncRow | null;
  readonly reconnect: ReconnectRow | null;
  readonly rss: readonly RssReportRow[];
  readonly errors: readonly PhaseError[];
}

const IO_GOALS: Record<string, { op: '>=' | '<='; value: number }> = {
  'seqwrite-1m/memsync': { op: '>=', value: 0.8 },
  'randwrite-4k-qd32/memsync': { op: '>=', value: 0.5 },
  'randread-4k-qd32/primary': { op: '>=', value: 0.7 },
  'seqread-1m/primary': { op: '>=', value: 0.8 },
};

function goal(op: '>=' | '<=', value: number, actual: number): Goal {
  return { op, value, met: op === '>=' ? actual >= value : actual <= value };
}

/** Median of each figure over the repetitions. */
function medianFigures(samples: readonly FioFigures[]): FioFigures {
  return {
    mbps: median(samples.map((s) => s.mbps)),
    iops: median(samples.map((s) => s.iops)),
    p50us: median(samples.map((s) => s.p50us)),
    p99us: median(samples.map((s) => s.p99us)),
  };
}

export function ioRows(r: IoPhaseResult): IoRow[] {
  const rows: IoRow[] = [];
  for (const job of FIO_JOBS) {
    const byTarget = r.samples[job.id];
    if (byTarget === undefined) continue;
    const anchor = medianFigures(byTarget.nbdkit);
    for (const target of IO_TARGETS) {
      const m = medianFigures(byTarget[target]);
      const ratio = m.iops / anchor.iops;
      const g = IO_GOALS[`${job.id}/${target}`];
      rows.push({ job: job.id, title: job.title, target, ...m, ratio, goal: g === undefined ? null : goal(g.op, g.value, ratio), samples: byTarget[target] });
    }
  }
  return rows;
}

export function fullResyncRow(samples: readonly FullSample[]): FullResyncRow | null {
  const first = samples[0];
  if (first === undefined) return null;
  const hastdSeconds = median(samples.map((s) => s.hastdSeconds));
  const copySeconds = median(samples.map((s) => s.nbdcopySeconds));
  const ratio = copySeconds / hastdSeconds;
  return {
    bytes: first.bytes,
    hastd: { seconds: hastdSeconds, mbps: first.bytes / hastdSeconds / 1e6 },
    nbdcopy: { seconds: copySeconds, mbps: first.bytes / copySeconds / 1e6 },
    ratio,
    goal: goal('>=', 0.8, ratio),
    samples,
  };
}

export function reconnectRow(samples: readonly ReconnectSample[]): ReconnectRow | null {
  const first = samples[0];
  if (first === undefined) return null;
  const dirtyBytes = first.extents * first.extentSize;
  const movedBytes = median(samples.map((s) => s.moved));
  const ratio = movedBytes / dirtyBytes;
  return {
    extents: first.extents,
    extentSize: first.extentSize,
    dirtyBytes,
    statusDirtyBytes: median(samples.map((s) => s.statusDirty)),
    movedBytes,
    ratio,
    goal: goal('<=', 1.05, ratio),
    samples,
  };
}

export function rssRows(rows: readonly RssRow[]): RssReportRow[] {
  return rows.map((r) => ({ ...r, goal: r.process === 'worker' ? goal('<=', 256, r.peakMiB) : null }));
}

export function buildReport(
  meta: BenchReport['meta'],
  io: IoPhaseResult | null,
  resync: ResyncPhaseResult | null,
  rss: readonly RssRow[],
  errors: readonly PhaseError[],
): BenchReport {
  return {
    meta,
    io: io === null ? [] : ioRows(io),
    resync: resync === null ? null : fullResyncRow(resync.full),
    reconnect: resync === null ? null : reconnectRow(resync.reconnect),
    rss: rssRows(rss),
    errors,
  };
}

// ---- text rendering ----

function num(n: number): string {
  if (n >= 10_000) return Math.round(n).toLocaleString('en-US');
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function bytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(0)} KiB`;
}

function goalText(g: Goal | null): string {
  return g === null ? '' : `${g.op === '>=' ? '≥' : '≤'} ${g.value} ${g.met ? 'met' : 'MISSED'}`;
}

/** Lay out rows as columns: first `left` columns left-aligned, the rest right-aligned. */
function columns(rows: readonly (readonly string[])[], left: number): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, [...c].length)));
  return rows.map((r) =>
    r
      .map((c, i) => {
        const pad = ' '.repeat((widths[i] ?? 0) - [...c].length);
        return i < left ? c + pad : pad + c;
      })
      .join('  ')
      .trimEnd(),
  );
}

export function renderTable(rep: BenchReport): string {
  const o = rep.meta.options;
  const out: string[] = [];
  out.push(`hastd benchmark ${rep.meta.date} on ${rep.meta.host} (${rep.meta.cpus} CPUs, node ${rep.meta.node}); median of ${o.reps}; load ${rep.meta.loadAvg.before.toFixed(1)} → ${rep.meta.loadAvg.after.toFixed(1)}`);
  if (o.resourceExtra !== null) out.push(`every hastd resource has the extra hast.conf line: ${o.resourceExtra}`);
  if (rep.io.length > 0) {
    out.push('');
    out.push(`fio --ioengine=nbd, ${o.runtime} s per job, exports of ${bytes(rep.meta.exportSize ?? 0)}${o.sparse ? ' (sparse)' : ''}; ratio = IOPS ÷ nbdkit's`);
    const rows: string[][] = [['job', 'target', 'ratio', 'MB/s', 'IOPS', 'p50 µs', 'p99 µs', 'goal']];
    let last = '';
    for (const r of rep.io) {
      rows.push([r.title === last ? '' : r.title, r.target, r.ratio.toFixed(2), num(r.mbps), num(r.iops), num(r.p50us), num(r.p99us), goalText(r.goal)]);
      last = r.title;
    }
    out.push(...columns(rows, 2));
  }
  if (rep.resync !== null) {
    const s = rep.resync;
    out.push('');
    out.push(`full resync of ${bytes(s.bytes)}; ratio = hastd MB/s ÷ nbdcopy MB/s`);
    out.push(
      ...columns(
        [
          ['copy', 'ratio', 'seconds', 'MB/s', 'goal'],
          ['hastd full resync (memsync pair)', s.ratio.toFixed(2), s.hastd.seconds.toFixed(2), num(s.hastd.mbps), goalText(s.goal)],
          ['nbdcopy nbdkit → nbdkit', '1.00', s.nbdcopy.seconds.toFixed(2), num(s.nbdcopy.mbps), ''],
        ],
        1,
      ),
    );
  }
  if (rep.reconnect !== null) {
    const c = rep.reconnect;
    out.push('');
    out.push(`reconnect resync after ${c.extents} dirty extents of ${bytes(c.extentSize)}; ratio = bytes moved ÷ dirty-extent bytes`);
    out.push(
      ...columns(
        [
          ['ratio', 'dirty extents', 'status dirty', 'moved', 'goal'],
          [c.ratio.toFixed(3), bytes(c.dirtyBytes), bytes(c.statusDirtyBytes), bytes(c.movedBytes), goalText(c.goal)],
        ],
        0,
      ),
    );
  }
  if (rep.rss.length > 0) {
    out.push('');
    out.push(`peak RSS (VmHWM) of each hastd process of a memsync pair after the QD128 write jobs (${o.runtime} s each)`);
    const rows: string[][] = [['node', 'role', 'process', 'pid', 'MiB', 'goal']];
    for (const r of rep.rss) rows.push([r.node, r.role, r.process, String(r.pid), r.peakMiB.toFixed(1), goalText(r.goal)]);
    out.push(...columns(rows, 3));
  }
  for (const e of rep.errors) out.push('', `phase ${e.phase} FAILED: ${e.message}`);
  return `${out.join('\n')}\n`;
}
