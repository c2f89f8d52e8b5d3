// The benchmark's result: medians and ratios (ours ÷ anchor) computed from the raw samples, the
// issue's targets beside them, rendered as a text table (stdout) and kept as JSON (for tracking).
import { DEVICE_TARGETS, type DevicePhaseResult, type DeviceTarget } from './device.js';
import { DEVICE_JOBS, FIO_JOBS, type FioFigures, QUORUM_JOB_IDS } from './fio.js';
import { IO_TARGETS, type IoPhaseResult, type IoTarget } from './io.js';
import type { BenchOptions } from './options.js';
import type { ResyncPhaseResult, FullSample, ReconnectSample } from './resync.js';
import type { RecoveryPhaseResult } from './recovery.js';
import type { ChecksumSyncPhaseResult, ChecksumSyncSample } from './csums.js';
import type { RssRow } from './rss.js';
import { median } from './stats.js';

/** A target from issue 5 or 14: the figure must be `op` value. */
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

/** The replicated targets beside the C replicator (qemu-nbd quorum), from the io phase's samples. */
export interface QuorumRow extends FioFigures {
  readonly job: string;
  readonly title: string;
  readonly target: 'quorum' | 'fullsync' | 'memsync';
  /** This target's median IOPS ÷ quorum's. */
  readonly ratio: number;
  /** This target's median p99 ÷ quorum's (lower is better). */
  readonly p99Ratio: number;
  readonly goal: Goal | null;
  readonly p99Goal: Goal | null;
}

/** One block device in one job of the device phase. */
export interface DeviceRow extends FioFigures {
  readonly job: string;
  readonly title: string;
  readonly target: DeviceTarget;
  /** Median IOPS ÷ that of nbdfuse + loop over nbdkit (the device transport alone). */
  readonly ratioNbdfuse: number;
  /** Median IOPS ÷ that of the loop device on a plain file (the local disk). */
  readonly ratioLoop: number;
  readonly goal: Goal | null;
  readonly samples: readonly FioFigures[];
}

/** One line of issue 14's targets table: met, missed, reported only (goal null), or not run. */
export interface TargetLine {
  readonly workload: string;
  readonly target: string;
  /** The figure of this run, or null when its phase did not run. */
  readonly actual: number | null;
  readonly goal: Goal | null;
  /** Why there is no figure (phase not chosen, skipped, failed). */
  readonly note: string | null;
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
    /** Where the backing files were (tmpfs mounted by the bench, /dev/shm, or $TMPDIR). */
    readonly backing: string;
    /** Size of each block device of the device phase, when it ran. */
    readonly deviceSize: number | null;
    /** The /dev/hast/<name> the device phase measured (gone after the run), when it ran. */
    readonly hastDevice: string | null;
    /** 1-minute load average when the run started and ended (other work on the machine skews figures). */
    readonly loadAvg: { readonly before: number; readonly after: number };
  };
  readonly io: readonly IoRow[];
  /** fullsync and memsync ÷ qemu-nbd quorum (empty when the io phase did not run). */
  readonly quorum: readonly QuorumRow[];
  readonly device: readonly DeviceRow[];
  /** Why the device phase did not run (e.g. not root), or null when it ran or was not chosen. */
  readonly deviceSkipped: string | null;
  /** Issue 14's targets table, met / missed / reported / not run. */
  readonly targets: readonly TargetLine[];
  readonly resync: FullResyncRow | null;
  readonly reconnect: ReconnectRow | null;
  readonly rss: readonly RssReportRow[];
  /** Issue 17: split-brain recovery bytes ÷ diverged bytes (goal ≤ 1.05) and verify MB/s. */
  readonly recovery: (RecoveryPhaseResult & { readonly goal: Goal }) | null;
  /** Issue 17: checksum-assisted full sync with 1 % changed ÷ a plain full sync, and SHA-256 MB/s. */
  readonly checksumSync: ChecksumSyncRow | null;
  readonly errors: readonly PhaseError[];
}

/** Medians of the csums phase: times, ratio (checksum ÷ plain), bytes moved, throughputs (MB/s). */
export interface ChecksumSyncRow {
  readonly bytes: number;
  readonly changed: number;
  readonly csumsSeconds: number;
  readonly plainSeconds: number;
  /** csumsSeconds ÷ plainSeconds: below 1, the checksum sync is the faster. */
  readonly ratio: number;
  readonly transferred: number;
  readonly skipped: number;
  /** Bytes compared per second by the checksum sync, and copied per second by the plain one. */
  readonly csumsMBps: number;
  readonly plainMBps: number;
  readonly hashMBps: number;
  readonly samples: readonly ChecksumSyncSample[];
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

function ioRows(r: IoPhaseResult): IoRow[] {
  const rows: IoRow[] = [];
  for (const job of FIO_JOBS) {
    const byTarget = r.samples[job.id];
    if (byTarget === undefined) continue;
    const anchor = medianFigures(byTarget.nbdkit);
    for (const target of IO_TARGETS) {
      const m = medianFigures(byTarget[target]);
      const ratio = m.iops / anchor.iops;
      const g = IO_GOALS[`${job.id}/${target}`];
      rows.push({
        job: job.id,
        title: job.title,
        target,
        ...m,
        ratio,
        goal: g === undefined ? null : goal(g.op, g.value, ratio),
        samples: byTarget[target],
      });
    }
  }
  return rows;
}

const QUORUM_TARGETS = ['quorum', 'fullsync', 'memsync'] as const;

function quorumRows(r: IoPhaseResult): QuorumRow[] {
  const rows: QuorumRow[] = [];
  for (const job of FIO_JOBS) {
    if (!QUORUM_JOB_IDS.includes(job.id)) continue;
    const byTarget = r.samples[job.id];
    if (byTarget === undefined || byTarget.quorum.length === 0) continue;
    const anchor = medianFigures(byTarget.quorum);
    for (const target of QUORUM_TARGETS) {
      const m = medianFigures(byTarget[target]);
      const ratio = m.iops / anchor.iops;
      const p99Ratio = m.p99us / anchor.p99us;
      rows.push({
        job: job.id,
        title: job.title,
        target,
        ...m,
        ratio,
        p99Ratio,
        goal: target === 'quorum' ? null : goal('>=', 1.0, ratio),
        p99Goal: target === 'memsync' ? goal('<=', 1.5, p99Ratio) : null,
      });
    }
  }
  return rows;
}

function deviceRows(r: DevicePhaseResult): DeviceRow[] {
  const rows: DeviceRow[] = [];
  for (const job of DEVICE_JOBS) {
    const byTarget = r.samples[job.id];
    if (byTarget === undefined) continue;
    const fuse = medianFigures(byTarget.nbdfuse);
    const loop = medianFigures(byTarget.loop);
    for (const target of DEVICE_TARGETS) {
      const m = medianFigures(byTarget[target]);
      const ratioNbdfuse = m.iops / fuse.iops;
      rows.push({
        job: job.id,
        title: job.title,
        target,
        ...m,
        ratioNbdfuse,
        ratioLoop: m.iops / loop.iops,
        goal: target === 'hast' ? goal('>=', 0.9, ratioNbdfuse) : null,
        samples: byTarget[target],
      });
    }
  }
  return rows;
}

/** Issue 14's targets, filled in from this run's rows; `notRun` says why a phase has no rows. */
function targetLines(
  quorum: readonly QuorumRow[],
  device: readonly DeviceRow[],
  resync: FullResyncRow | null,
  rss: readonly RssReportRow[],
  notRun: { io: string; device: string; resync: string; rss: string },
): TargetLine[] {
  const lines: TargetLine[] = [];
  const none = (workload: string, target: string, note: string): TargetLine => ({
    workload,
    target,
    actual: null,
    goal: null,
    note,
  });
  for (const mode of ['fullsync', 'memsync'] as const) {
    for (const id of QUORUM_JOB_IDS) {
      const title = FIO_JOBS.find((j) => j.id === id)?.title ?? id;
      const row = quorum.find((q) => q.job === id && q.target === mode);
      const w = `${mode} ÷ qemu-nbd quorum, ${title}`;
      lines.push(
        row === undefined
          ? none(w, '≥ 1.0', notRun.io)
          : { workload: w, target: '≥ 1.0', actual: row.ratio, goal: row.goal, note: null },
      );
    }
  }
  for (const id of QUORUM_JOB_IDS) {
    const title = FIO_JOBS.find((j) => j.id === id)?.title ?? id;
    const row = quorum.find((q) => q.job === id && q.target === 'memsync');
    const w = `memsync p99 ÷ quorum p99, ${title}`;
    lines.push(
      row === undefined
        ? none(w, '≤ 1.5', notRun.io)
        : { workload: w, target: '≤ 1.5', actual: row.p99Ratio, goal: row.p99Goal, note: null },
    );
  }
  for (const job of DEVICE_JOBS) {
    const row = device.find((d) => d.job === job.id && d.target === 'hast');
    const w = `/dev/hast ÷ nbdfuse over nbdkit, ${job.title}`;
    lines.push(
      row === undefined
        ? none(w, '≥ 0.9', notRun.device)
        : { workload: w, target: '≥ 0.9', actual: row.ratioNbdfuse, goal: row.goal, note: null },
    );
  }
  for (const job of DEVICE_JOBS) {
    if (job.rw !== 'write' && job.rw !== 'randwrite') continue;
    const row = device.find((d) => d.job === job.id && d.target === 'hast');
    const w = `/dev/hast ÷ loop on a plain file, ${job.title}`;
    lines.push(
      row === undefined
        ? none(w, 'report', notRun.device)
        : { workload: w, target: 'report', actual: row.ratioLoop, goal: null, note: null },
    );
  }
  lines.push(
    resync === null
      ? none('full resync ÷ nbdcopy', '≥ 0.8', notRun.resync)
      : { workload: 'full resync ÷ nbdcopy', target: '≥ 0.8', actual: resync.ratio, goal: resync.goal, note: null },
  );
  const workers = rss.filter((r) => r.process === 'worker');
  if (workers.length === 0) lines.push(none('peak RSS per worker at QD128 (MiB)', '≤ 256', notRun.rss));
  else {
    const worst = workers.reduce((a, b) => (b.peakMiB > a.peakMiB ? b : a));
    lines.push({
      workload: 'peak RSS per worker at QD128 (MiB)',
      target: '≤ 256',
      actual: worst.peakMiB,
      goal: worst.goal,
      note: null,
    });
  }
  return lines;
}

function fullResyncRow(samples: readonly FullSample[]): FullResyncRow | null {
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

function checksumSyncRow(r: ChecksumSyncPhaseResult): ChecksumSyncRow | null {
  if (r.samples.length === 0) return null;
  // Timed in milliseconds by the worker: a tiny run may take 0.
  const csumsSeconds = Math.max(median(r.samples.map((s) => s.csumsSeconds)), 0.001);
  const plainSeconds = Math.max(median(r.samples.map((s) => s.plainSeconds)), 0.001);
  return {
    bytes: r.bytes,
    changed: r.changed,
    csumsSeconds,
    plainSeconds,
    ratio: csumsSeconds / plainSeconds,
    transferred: median(r.samples.map((s) => s.transferred)),
    skipped: median(r.samples.map((s) => s.skipped)),
    csumsMBps: r.bytes / csumsSeconds / 1e6,
    plainMBps: r.bytes / plainSeconds / 1e6,
    hashMBps: r.hashMBps,
    samples: r.samples,
  };
}

function reconnectRow(samples: readonly ReconnectSample[]): ReconnectRow | null {
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

function rssRows(rows: readonly RssRow[]): RssReportRow[] {
  return rows.map((r) => ({ ...r, goal: r.process === 'worker' ? goal('<=', 256, r.peakMiB) : null }));
}

/** What the phases produced, and why a phase produced nothing (for the targets table). */
export interface PhaseResults {
  readonly io: IoPhaseResult | null;
  readonly device: DevicePhaseResult | null;
  readonly deviceSkipped: string | null;
  readonly resync: ResyncPhaseResult | null;
  readonly rss: readonly RssRow[];
  /** Issue 17: split-brain recovery and verify (null when the phase did not run or failed). */
  readonly recovery: RecoveryPhaseResult | null;
  readonly checksumSync: ChecksumSyncPhaseResult | null;
  readonly notRun: { io: string; device: string; resync: string; rss: string };
}

export function buildReport(meta: BenchReport['meta'], r: PhaseResults, errors: readonly PhaseError[]): BenchReport {
  const quorum = r.io === null ? [] : quorumRows(r.io);
  const device = r.device === null ? [] : deviceRows(r.device);
  const resync = r.resync === null ? null : fullResyncRow(r.resync.full);
  const rss = rssRows(r.rss);
  return {
    meta,
    io: r.io === null ? [] : ioRows(r.io),
    quorum,
    device,
    deviceSkipped: r.deviceSkipped,
    targets: targetLines(quorum, device, resync, rss, r.notRun),
    resync,
    reconnect: r.resync === null ? null : reconnectRow(r.resync.reconnect),
    rss,
    recovery: r.recovery === null ? null : { ...r.recovery, goal: goal('<=', 1.05, r.recovery.ratio) },
    checksumSync: r.checksumSync === null ? null : checksumSyncRow(r.checksumSync),
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
  out.push(
    `hastd benchmark ${rep.meta.date} on ${rep.meta.host} (${rep.meta.cpus} CPUs, node ${rep.meta.node}); median of ${o.reps}; load ${rep.meta.loadAvg.before.toFixed(1)} → ${rep.meta.loadAvg.after.toFixed(1)}`,
  );
  out.push(`backing files: ${rep.meta.backing}`);
  if (o.resourceExtra !== null) out.push(`every hastd resource has the extra hast.conf line: ${o.resourceExtra}`);
  if (rep.io.length > 0) {
    out.push('');
    out.push(
      `fio --ioengine=nbd, ${o.runtime} s per job, exports of ${bytes(rep.meta.exportSize ?? 0)}${o.sparse ? ' (sparse)' : ''}; ratio = IOPS ÷ nbdkit's`,
    );
    const rows: string[][] = [['job', 'target', 'ratio', 'MB/s', 'IOPS', 'p50 µs', 'p99 µs', 'goal']];
    let last = '';
    for (const r of rep.io) {
      rows.push([
        r.title === last ? '' : r.title,
        r.target,
        r.ratio.toFixed(2),
        num(r.mbps),
        num(r.iops),
        num(r.p50us),
        num(r.p99us),
        goalText(r.goal),
      ]);
      last = r.title;
    }
    out.push(...columns(rows, 2));
  }
  if (rep.quorum.length > 0) {
    out.push('');
    out.push(
      "the C replicator: qemu-nbd quorum (local file + NBD to nbdkit file on 127.0.0.2), same fio nbd jobs; ratio = IOPS ÷ quorum's, p99 ratio = p99 ÷ quorum's",
    );
    const rows: string[][] = [
      ['job', 'target', 'ratio', 'MB/s', 'IOPS', 'p50 µs', 'p99 µs', 'p99 ratio', 'goal', 'p99 goal'],
    ];
    let last = '';
    for (const r of rep.quorum) {
      rows.push([
        r.title === last ? '' : r.title,
        r.target,
        r.ratio.toFixed(2),
        num(r.mbps),
        num(r.iops),
        num(r.p50us),
        num(r.p99us),
        r.p99Ratio.toFixed(2),
        goalText(r.goal),
        goalText(r.p99Goal),
      ]);
      last = r.title;
    }
    out.push(...columns(rows, 2));
  }
  if (rep.device.length > 0) {
    out.push('');
    out.push(
      `block devices of ${bytes(rep.meta.deviceSize ?? 0)}, fio --ioengine=libaio --direct=1, ${o.runtime} s per job: loop = loop on a plain file, nbdfuse = nbdfuse + loop over nbdkit file, hast = /dev/hast of a memsync pair (device fuse); ratios = IOPS ÷ nbdfuse's, ÷ loop's`,
    );
    const rows: string[][] = [['job', 'target', '÷ nbdfuse', '÷ loop', 'MB/s', 'IOPS', 'p50 µs', 'p99 µs', 'goal']];
    let last = '';
    for (const r of rep.device) {
      rows.push([
        r.title === last ? '' : r.title,
        r.target,
        r.ratioNbdfuse.toFixed(2),
        r.ratioLoop.toFixed(3),
        num(r.mbps),
        num(r.iops),
        num(r.p50us),
        num(r.p99us),
        goalText(r.goal),
      ]);
      last = r.title;
    }
    out.push(...columns(rows, 2));
  } else if (rep.deviceSkipped !== null) {
    out.push('', `block-device phase NOT RUN: ${rep.deviceSkipped}`);
  }
  if (rep.resync !== null) {
    const s = rep.resync;
    out.push('');
    out.push(`full resync of ${bytes(s.bytes)}; ratio = hastd MB/s ÷ nbdcopy MB/s`);
    out.push(
      ...columns(
        [
          ['copy', 'ratio', 'seconds', 'MB/s', 'goal'],
          [
            'hastd full resync (memsync pair)',
            s.ratio.toFixed(2),
            s.hastd.seconds.toFixed(2),
            num(s.hastd.mbps),
            goalText(s.goal),
          ],
          ['nbdcopy nbdkit → nbdkit', '1.00', s.nbdcopy.seconds.toFixed(2), num(s.nbdcopy.mbps), ''],
        ],
        1,
      ),
    );
  }
  if (rep.reconnect !== null) {
    const c = rep.reconnect;
    out.push('');
    out.push(
      `reconnect resync after ${c.extents} dirty extents of ${bytes(c.extentSize)}; ratio = bytes moved ÷ dirty-extent bytes`,
    );
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
  if (rep.recovery !== null) {
    const c = rep.recovery;
    out.push('');
    out.push(
      `split-brain recovery after ${c.extentsPerSide} extents of ${bytes(c.extentSize)} written on each side; ` +
        'ratio = bytes moved ÷ diverged extents; verify of identical copies',
    );
    out.push(
      ...columns(
        [
          ['ratio', 'diverged', 'moved', 'goal', 'verify MB/s', 'verify bytes'],
          [
            c.ratio.toFixed(3),
            bytes(2 * c.extentsPerSide * c.extentSize),
            bytes(c.moved),
            goalText(c.goal),
            num(c.verifyMBps),
            bytes(c.verifyBytes),
          ],
        ],
        0,
      ),
    );
  }
  if (rep.checksumSync !== null) {
    const c = rep.checksumSync;
    out.push('');
    out.push(
      `checksum-assisted full sync of a re-created secondary with ${bytes(c.changed)} of ${bytes(c.bytes)} changed ` +
        '(checksumsync on at both nodes) beside a plain full sync; ratio = checksum time ÷ plain time',
    );
    out.push(
      ...columns(
        [
          ['ratio', 'checksum s', 'plain s', 'transferred', 'skipped', 'checksum MB/s', 'plain MB/s', 'SHA-256 MB/s'],
          [
            c.ratio.toFixed(3),
            c.csumsSeconds.toFixed(2),
            c.plainSeconds.toFixed(2),
            bytes(c.transferred),
            bytes(c.skipped),
            num(c.csumsMBps),
            num(c.plainMBps),
            num(c.hashMBps),
          ],
        ],
        0,
      ),
    );
  }
  if (rep.rss.length > 0) {
    out.push('');
    out.push(
      `peak RSS (VmHWM) of each hastd process of a memsync pair after the QD128 write jobs (${o.runtime} s each)`,
    );
    const rows: string[][] = [['node', 'role', 'process', 'pid', 'MiB', 'goal']];
    for (const r of rep.rss)
      rows.push([r.node, r.role, r.process, String(r.pid), r.peakMiB.toFixed(1), goalText(r.goal)]);
    out.push(...columns(rows, 3));
  }
  if (rep.targets.length > 0) {
    out.push('');
    out.push('targets of issue 14 (ratios of this run)');
    const rows: string[][] = [['workload', 'target', 'this run', 'verdict']];
    for (const t of rep.targets) {
      const verdict =
        t.actual === null
          ? `not run (${t.note ?? 'phase not chosen'})`
          : t.goal === null
            ? 'reported'
            : t.goal.met
              ? 'met'
              : 'MISSED';
      rows.push([t.workload, t.target, t.actual === null ? '—' : t.actual.toFixed(2), verdict]);
    }
    out.push(...columns(rows, 2));
  }
  for (const e of rep.errors) out.push('', `phase ${e.phase} FAILED: ${e.message}`);
  return `${out.join('\n')}\n`;
}
