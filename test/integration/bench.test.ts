// Smoke test of the benchmark harness (bench/, `npm run bench`): a tiny run must report every row
// with numeric figures and leave nothing behind. Timing is never asserted (CI is correctness-only).
// As root (always under CI) it runs the block-device phase too; otherwise that phase must say it
// was skipped for want of root and the report must mark it not run.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEVICE_TARGETS, DEVICE_TOOLS } from '../../bench/device.js';
import { DEVICE_JOBS, FIO_JOBS, QUORUM_JOB_IDS } from '../../bench/fio.js';
import { IO_TARGETS } from '../../bench/io.js';
import { REQUIRED_TOOLS } from '../../bench/prerequisites.js';
import type { BenchReport } from '../../bench/report.js';
import { IN_CI, isRoot, requires, tmpDir } from '../harness/tools.js';
import { run } from '../harness/process.js';

const RUN_JS = resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'bench', 'run.js');

function assertFigures(what: string, obj: object, keys: readonly string[]): void {
  for (const k of keys) {
    const v = (obj as Record<string, unknown>)[k];
    assert.ok(
      typeof v === 'number' && Number.isFinite(v) && v > 0,
      `${what}: ${k} is ${JSON.stringify(v)}, not a positive number`,
    );
  }
}

/** Loop devices whose backing file lies under `dir`, and mounts below it: what the bench must not leave. */
function leftovers(dir: string): string[] {
  const found: string[] = [];
  for (const n of readdirSync('/sys/block').filter((x) => /^loop\d+$/.test(x))) {
    try {
      const back = readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim();
      if (back.startsWith(`${dir}/`)) found.push(`/dev/${n} on ${back}`);
    } catch {
      // not bound
    }
  }
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const at = line.split(' ')[1] ?? '';
    if (at.startsWith(`${dir}/`)) found.push(`mount ${at}`);
  }
  return found;
}

test('npm run bench on a tiny size reports every row with numbers and cleans up', { timeout: 420_000 }, async (t) => {
  // Under CI (root, tools from .ci/run) the device phase must run: its tools are required then.
  const device = isRoot() || IN_CI;
  if (!requires(t, { tools: [...REQUIRED_TOOLS, ...(device ? DEVICE_TOOLS : [])], ...(IN_CI ? { root: true } : {}) }))
    return;
  const dir = tmpDir(t, 'hastd-bench-smoke-');
  const work = join(dir, 'tmp');
  mkdirSync(work);
  const json = join(dir, 'result.json');
  const args = [
    '--size',
    '4M',
    '--resync-size',
    '4M',
    '--runtime',
    '0.2',
    '--reps',
    '1',
    '--dirty',
    '1',
    '--json',
    json,
  ];
  const r = await run(process.execPath, [RUN_JS, ...args], {
    timeoutMs: 400_000,
    env: { ...process.env, TMPDIR: work },
  });
  assert.equal(r.code, 0, `bench exited ${r.code}:\n${r.stderr}`);
  assert.match(r.stdout, /ratio = IOPS ÷ nbdkit's/);
  assert.match(r.stdout, /ratio = IOPS ÷ quorum's/);
  assert.match(r.stdout, /targets of issue 14/);
  const rep = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;

  for (const job of FIO_JOBS) {
    for (const target of IO_TARGETS) {
      const row = rep.io.find((x) => x.job === job.id && x.target === target);
      assert.ok(row !== undefined, `no row for ${job.id} on ${target}`);
      assertFigures(`${job.id}/${target}`, row, ['mbps', 'iops', 'p50us', 'p99us', 'ratio']);
    }
  }
  assert.equal(rep.io.length, FIO_JOBS.length * IO_TARGETS.length);

  // The C replicator beside fullsync and memsync, for the three write jobs.
  for (const id of QUORUM_JOB_IDS) {
    for (const target of ['quorum', 'fullsync', 'memsync']) {
      const row = rep.quorum.find((x) => x.job === id && x.target === target);
      assert.ok(row !== undefined, `no quorum-anchor row for ${id} on ${target}`);
      assertFigures(`quorum ${id}/${target}`, row, ['mbps', 'iops', 'p50us', 'p99us', 'ratio', 'p99Ratio']);
      assert.equal(row.goal === null, target === 'quorum', `${id}/${target}: a goal only for hastd`);
    }
  }

  if (device) {
    assert.equal(rep.deviceSkipped, null);
    for (const job of DEVICE_JOBS) {
      for (const target of DEVICE_TARGETS) {
        const row = rep.device.find((x) => x.job === job.id && x.target === target);
        assert.ok(row !== undefined, `no device row for ${job.id} on ${target}`);
        assertFigures(`device ${job.id}/${target}`, row, [
          'mbps',
          'iops',
          'p50us',
          'p99us',
          'ratioNbdfuse',
          'ratioLoop',
        ]);
      }
    }
    assert.equal(rep.device.length, DEVICE_JOBS.length * DEVICE_TARGETS.length);
    assert.match(r.stdout, /fio --ioengine=libaio --direct=1/);
    assert.ok(
      rep.meta.hastDevice !== null && !existsSync(rep.meta.hastDevice),
      `${rep.meta.hastDevice} is left behind`,
    );
  } else {
    assert.match(rep.deviceSkipped ?? '', /root/);
    assert.deepEqual(rep.device, []);
    assert.match(r.stdout, /block-device phase NOT RUN: .*root/);
    assert.match(r.stderr, /skipping the block-device phase/);
  }
  // Every target of the issue has a line; those of phases that ran have a figure.
  assert.equal(rep.targets.length, 3 * 3 + DEVICE_JOBS.length + 3 + 2);
  for (const line of rep.targets) {
    const ran = !line.workload.startsWith('/dev/hast') || device;
    assert.equal(line.actual !== null, ran, `targets: ${line.workload} ${JSON.stringify(line)}`);
  }

  assert.ok(rep.resync !== null, 'no full-resync row');
  assertFigures('resync', rep.resync, ['bytes', 'ratio']);
  assertFigures('resync hastd', rep.resync.hastd, ['seconds', 'mbps']);
  assertFigures('resync nbdcopy', rep.resync.nbdcopy, ['seconds', 'mbps']);

  assert.ok(rep.reconnect !== null, 'no reconnect-resync row');
  assertFigures('reconnect', rep.reconnect, ['extents', 'extentSize', 'dirtyBytes', 'movedBytes', 'ratio']);

  // Issue 17: split-brain recovery and verify.
  assert.ok(rep.recovery !== null, 'no split-brain recovery row');
  assertFigures('recovery', rep.recovery, [
    'extentsPerSide',
    'extentSize',
    'moved',
    'ratio',
    'verifyBytes',
    'verifyMBps',
  ]);
  assert.match(r.stdout, /split-brain recovery after \d+ extents/);

  // Issue 17: checksum-assisted full sync beside a plain one, and the hashing throughput.
  assert.ok(rep.checksumSync !== null, 'no checksum-sync row');
  assertFigures('checksum sync', rep.checksumSync, [
    'bytes',
    'changed',
    'csumsSeconds',
    'plainSeconds',
    'ratio',
    'transferred',
    'skipped',
    'hashMBps',
  ]);
  assert.ok(rep.checksumSync.transferred < rep.checksumSync.bytes, 'the checksum sync skipped the unchanged chunks');
  assert.match(r.stdout, /checksum-assisted full sync of a re-created secondary/);

  const procs = rep.rss.map((x) => `${x.node}/${x.process}`).sort();
  assert.deepEqual(procs, ['node-a/parent', 'node-a/worker', 'node-b/parent', 'node-b/worker']);
  for (const row of rep.rss) assertFigures(`rss ${row.node}/${row.process}`, row, ['pid', 'peakMiB']);

  assert.deepEqual(rep.errors, [], 'no phase failed');
  assert.deepEqual(leftovers(work), [], 'the benchmark left loop devices or mounts behind');
  assert.deepEqual(readdirSync(work), [], 'the benchmark left temporary files behind');
});
