// Text renderers for `hastctl status` / `hastctl list` (HAST-SPEC §2.5 layout, FreeBSD 10+ `list`).
import type { DiskState, ResourceStatus, VerifyReport, WorkerStatus } from '../control/messages.js';
import { humanizeNumber } from '../metadata/dump.js';

function sized(n: number): string {
  return `${n} (${humanizeNumber(n)}B)`;
}

function duration(seconds: number): string {
  if (seconds < 0 || !Number.isFinite(seconds)) return 'unknown';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`;
}

/** `consistent`, `inconsistent` or `inconsistent, 37% synchronized`. */
export function diskText(d: DiskState): string {
  if (d.consistent) return 'consistent';
  return d.synchronized === null ? 'inconsistent' : `inconsistent, ${d.synchronized}% synchronized`;
}

/** One line: the outcome of a verify and what it covered. */
function verifySummary(r: VerifyReport): string {
  const what =
    r.outcome === 'identical'
      ? 'identical'
      : r.outcome === 'differ'
        ? `differ: ${r.differing.length} range(s), ${humanizeNumber(r.differingBytes)}B`
        : `interrupted (${r.reason ?? 'unknown reason'})`;
  const skipped =
    r.skippedBytes > 0 ? `, ${humanizeNumber(r.skippedBytes)}B skipped (waiting for resynchronization)` : '';
  const marked = r.markedExtents > 0 ? `, ${r.markedExtents} extent(s) marked for resynchronization` : '';
  return `${what} in ${r.start}-${r.stop} (${humanizeNumber(r.comparedBytes)}B compared${skipped}${marked})`;
}

/** `hastctl verify` output: the summary, then one line per differing range (offset and length in bytes). */
export function formatVerify(name: string, r: VerifyReport): string {
  const lines = [`${name}: ${verifySummary(r)}`];
  for (const d of r.differing) lines.push(`  offset ${d.offset} length ${d.length}`);
  return `${lines.join('\n')}\n`;
}

/** The verbose per-resource block. */
export function formatResource(r: ResourceStatus): string {
  const lines = [`${r.name}:`];
  if (r.error !== undefined) {
    lines.push(`  error: ${r.error}`);
    return `${lines.join('\n')}\n`;
  }
  const w = r.worker ?? null;
  lines.push(`  role: ${r.role ?? 'init'}`);
  // Ours, only when set: why the resource is not where it was put (FreeBSD's lines otherwise).
  if (r.lasterror !== undefined && r.lasterror !== null) lines.push(`  lasterror: ${r.lasterror}`);
  lines.push(`  provname: ${r.provname ?? ''}`);
  lines.push(`  localpath: ${r.localpath ?? ''}`);
  lines.push(`  extentsize: ${sized(w?.extentSize ?? 0)}`);
  lines.push(`  keepdirty: ${w?.keepDirty ?? 0}`);
  lines.push(`  remoteaddr: ${r.remoteaddr ?? 'none'}`);
  if (r.sourceaddr !== undefined && r.sourceaddr !== null) lines.push(`  sourceaddr: ${r.sourceaddr}`);
  lines.push(`  replication: ${r.replication ?? ''}`);
  if (w !== null) {
    lines.push(`  status: ${w.status}`);
    lines.push(`  workerpid: ${r.workerpid ?? 0}`);
  }
  lines.push(`  dirty: ${sized(w?.dirty ?? 0)}`);
  if (w?.sync) {
    const s = w.sync;
    const pct = s.totalBytes > 0 ? Math.floor((s.doneBytes * 100) / s.totalBytes) : 100;
    lines.push(
      `  synchronization: ${humanizeNumber(s.leftBytes)}B left of ${humanizeNumber(s.totalBytes)}B, ${pct}% done, ` +
        `${humanizeNumber(Math.round(s.rate))}B/s, ETA ${duration(s.eta)} (from ${s.direction})`,
    );
  }
  // Ours: the resync's rate control (issue 17), only when set or paused.
  const sc = w?.syncControl;
  if (sc !== undefined && (sc.paused || sc.rate > 0 || sc.minRate > 0)) {
    const rate = (n: number): string => (n > 0 ? `${humanizeNumber(n)}B/s` : 'unlimited');
    lines.push(
      `  syncrate: ${rate(sc.rate)}${sc.minRate > 0 ? `, ${rate(sc.minRate)} while the application is busy` : ''}` +
        `${sc.paused ? ', paused' : ''}`,
    );
  }
  // Ours (issue 17), only when some: what a split-brain recovery would resync from this node's side,
  // and whether a divergence record counted (else the activemap alone, keepdirty extents included).
  if (r.changedExtents !== undefined && r.changedExtents > 0) {
    const es = w?.extentSize ?? 0;
    const by = r.changedExtentsBy === 'record' ? 'divergence record' : 'activemap';
    lines.push(
      `  changed extents: ${r.changedExtents} (${es > 0 ? `${humanizeNumber(r.changedExtents * es)}B, ` : ''}${by})`,
    );
  }
  // Ours: the running verify and the last one's outcome (issue 17).
  const v = w?.verify;
  if (v?.running) {
    const run = v.running;
    const size = run.stop - run.start;
    const pct = size > 0 ? Math.floor((run.doneBytes * 100) / size) : 100;
    lines.push(
      `  verify: running, ${pct}% of ${run.start}-${run.stop}, ${humanizeNumber(Math.round(run.rate))}B/s, ` +
        `${humanizeNumber(run.differingBytes)}B differing so far`,
    );
  } else if (v?.last) {
    lines.push(`  verify: last ${verifySummary(v.last)}`);
  }
  // Ours: the consistency state of each copy (issue 13); FreeBSD's lines are unchanged.
  if (w?.disk !== undefined) lines.push(`  disk: ${diskText(w.disk)}`);
  if (w?.peerDisk !== undefined && w.peerDisk !== null) lines.push(`  remote disk: ${diskText(w.peerDisk)}`);
  if (w?.device) lines.push(`  device: ${w.device}`);
  const st = w?.stats;
  lines.push('  statistics:');
  lines.push(`    reads: ${st?.reads ?? 0}`);
  lines.push(`    writes: ${st?.writes ?? 0}`);
  lines.push(`    deletes: ${st?.deletes ?? 0}`);
  lines.push(`    flushes: ${st?.flushes ?? 0}`);
  lines.push(`    activemap updates: ${st?.activemapUpdates ?? 0}`);
  lines.push(
    `    local errors: read: ${st?.readErrors ?? 0}, write: ${st?.writeErrors ?? 0}, delete: ${st?.deleteErrors ?? 0}, flush: ${st?.flushErrors ?? 0}`,
  );
  lines.push(
    `    queues: local: ${st?.localQueue ?? 0}, send: ${st?.sendQueue ?? 0}, recv: ${st?.recvQueue ?? 0}, done: ${st?.doneQueue ?? 0}, idle: ${st?.idleQueue ?? 0}`,
  );
  lines.push(...peerLines(w));
  return `${lines.join('\n')}\n`;
}

/** (ours, after FreeBSD's lines) The primary's peer link and its async backlog. */
function peerLines(w: WorkerStatus | null): string[] {
  const lines: string[] = [];
  const p = w?.peer;
  if (p !== undefined) {
    lines.push(
      `  peer: ${p.reason === null ? (w?.status === 'complete' ? 'connected' : 'not yet connected') : `${p.reason}${p.message !== null ? ` (${p.message})` : ''}`}`,
    );
    lines.push(`  peerrole: ${p.role ?? 'unknown'}`);
    lines.push(`  lastconnect: ${p.lastConnect ?? 'never'}`);
    lines.push(
      `  lastdisconnect: ${p.lastDisconnect === null ? 'never' : `${p.lastDisconnect} (${p.disconnectCause ?? 'unknown'})`}`,
    );
  }
  const a = w?.asyncBacklog;
  if (a !== undefined) {
    lines.push(
      `  async unconfirmed: ${a.writes} writes, ${humanizeNumber(a.bytes)}B (max ${a.maxWrites}, ${humanizeNumber(a.maxBytes)}B; peak ${a.peakWrites}, ${humanizeNumber(a.peakBytes)}B; waiting ${a.waiting})`,
    );
  }
  return lines;
}

/** The terse FreeBSD 10+ `status` table (offered as `hastctl status -t`). */
export function formatTable(rs: readonly ResourceStatus[]): string {
  let out = 'Name\tStatus\t Role\t\tComponents\n';
  for (const r of rs) {
    if (r.error !== undefined) {
      out += `${r.name}\tERR${r.error}\n`;
      continue;
    }
    const status = r.worker?.status ?? '-';
    out += `${r.name}\t${status.padEnd(9)}${(r.role ?? 'init').padEnd(15)}${r.localpath ?? ''}\t${r.remoteaddr ?? ''}\n`;
  }
  return out;
}
