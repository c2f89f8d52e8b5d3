// Smoke test of the benchmark harness (bench/, `npm run bench`): a tiny run must report every row
// with numeric figures and leave nothing behind. Timing is never asserted (CI is correctness-only).
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FIO_JOBS } from '../../bench/fio.js';
import { IO_TARGETS } from '../../bench/io.js';
import { REQUIRED_TOOLS } from '../../bench/prerequisites.js';
import type { BenchReport } from '../../bench/report.js';
import { requires, tmpDir } from '../harness/tools.js';
import { run } from '../harness/process.js';

const RUN_JS = resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'bench', 'run.js');

function assertFigures(what: string, obj: object, keys: readonly string[]): void {
  for (const k of keys) {
    const v = (obj as Record<string, unknown>)[k];
    assert.ok(typeof v === 'number' && Number.isFinite(v) && v > 0, `${what}: ${k} is ${JSON.stringify(v)}, not a positive number`);
  }
}

test('npm run bench on a tiny size reports every row with numbers and cleans up', { timeout: 240_000 }, async (t) => {
  if (!requires(t, { tools: REQUIRED_TOOLS })) return;
  const dir = tmpDir(t, 'hastd-bench-smoke-');
  const work = join(dir, 'tmp');
  mkdirSync(work);
  const json = join(dir, 'result.json');
  const args = ['--size', '4M', '--resync-size', '4M', '--runtime', '0.2', '--reps', '1', '--dirty', '1', '--json', json];
  const r = await run(process.execPath, [RUN_JS, ...args], { timeoutMs: 220_000, env: { ...process.env, TMPDIR: work } });
  assert.equal(r.code, 0, `bench exited ${r.code}:\n${r.stderr}`);
  assert.match(r.stdout, /ratio = IOPS ÷ nbdkit's/);
  const rep = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;

  for (const job of FIO_JOBS) {
    for (const target of IO_TARGETS) {
      const row = rep.io.find((x) => x.job === job.id && x.target === target);
      assert.ok(row !== undefined, `no row for ${job.id} on ${target}`);
      assertFigures(`${job.id}/${target}`, row, ['mbps', 'iops', 'p50us', 'p99us', 'ratio']);
    }
  }
  assert.equal(rep.io.length, FIO_JOBS.length * IO_TARGETS.length);

  assert.ok(rep.resync !== null, 'no full-resync row');
  assertFigures('resync', rep.resync, ['bytes', 'ratio']);
  assertFigures('resync hastd', rep.resync.hastd, ['seconds', 'mbps']);
  assertFigures('resync nbdcopy', rep.resync.nbdcopy, ['seconds', 'mbps']);

  assert.ok(rep.reconnect !== null, 'no reconnect-resync row');
  assertFigures('reconnect', rep.reconnect, ['extents', 'extentSize', 'dirtyBytes', 'movedBytes', 'ratio']);

  const procs = rep.rss.map((x) => `${x.node}/${x.process}`).sort();
  assert.deepEqual(procs, ['node-a/parent', 'node-a/worker', 'node-b/parent', 'node-b/worker']);
  for (const row of rep.rss) assertFigures(`rss ${row.node}/${row.process}`, row, ['pid', 'peakMiB']);

  assert.deepEqual(rep.errors, [], 'no phase failed');
  assert.deepEqual(readdirSync(work), [], 'the benchmark left temporary files behind');
});
