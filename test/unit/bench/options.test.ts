// The benchmark's flags and environment (bench/options.ts) and its medians (bench/stats.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseOptions, UsageError } from '../../../bench/options.js';
import { median } from '../../../bench/stats.js';

test('defaults follow issue 5: 3 repetitions, 10 s jobs, a 2 GiB resync; every phase (recovery, csums: issue 17)', () => {
  const o = parseOptions([], {});
  assert.ok(o !== 'help');
  assert.equal(o.reps, 3);
  assert.equal(o.runtime, 10);
  assert.equal(o.resyncSize, 2 * 2 ** 30);
  assert.deepEqual(o.phases, ['io', 'device', 'resync', 'reconnect', 'rss', 'recovery', 'csums']);
});

test('flags win over BENCH_* variables, which win over --quick defaults', () => {
  const o = parseOptions(['--quick', '--reps', '5'], { BENCH_REPS: '7', BENCH_SIZE: '32M' });
  assert.ok(o !== 'help');
  assert.equal(o.reps, 5);
  assert.equal(o.size, 32 << 20);
  assert.equal(o.runtime, 2);
});

test('bad values are usage errors that name the flag', () => {
  assert.throws(
    () => parseOptions(['--reps', '0'], {}),
    (e: unknown) => e instanceof UsageError && /--reps/.test(e.message),
  );
  assert.throws(() => parseOptions(['--size', '12Q'], {}), UsageError);
  assert.throws(() => parseOptions(['--phases', 'io,bogus'], {}), /unknown phase "bogus"/);
  assert.throws(() => parseOptions(['--frobnicate'], {}), UsageError);
  assert.throws(() => parseOptions(['--jobs', 'randwrite-4k-qd1,qd7'], {}), /--jobs: unknown job "qd7"/);
});

test('--jobs picks io jobs by id; the default is every job', () => {
  const all = parseOptions([], {});
  assert.ok(all !== 'help');
  assert.equal(all.jobs.length, 5);
  assert.ok(all.jobs.includes('randwrite-4k-qd1'));
  const o = parseOptions(['--jobs', 'randwrite-4k-qd1, randwrite-4k-qd32'], {});
  assert.ok(o !== 'help');
  assert.deepEqual(o.jobs, ['randwrite-4k-qd1', 'randwrite-4k-qd32']);
});

test('median of odd and even counts', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.throws(() => median([]));
});
