// Unit tests for the resync's rate control (src/primary/sync-rate.ts): pacing bound, pause, and the
// slow-down to syncminrate while the application does I/O. Real timers; the bounds are wide.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SyncThrottle } from '../../../src/primary/sync-rate.js';

const MiB = 1 << 20;

/** Eight lanes (as the sync's window) admitting `chunks` chunks of `size`; returns bytes/s. */
async function paced(th: SyncThrottle, chunks: number, size: number): Promise<number> {
  let left = chunks;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (left > 0) {
        left--;
        assert.equal(await th.admit(size, () => false), true);
      }
    }),
  );
  return (chunks * size) / ((performance.now() - start) / 1000);
}

test('the admitted bytes never exceed the rate, whatever the lanes in flight', async () => {
  const rate = 16 * MiB;
  const th = new SyncThrottle({ syncRate: rate }, () => 0);
  const got = await paced(th, 32, 256 * 1024);
  assert.ok(got <= rate * 1.001, `${got} B/s admitted at a limit of ${rate}`);
  assert.ok(got >= rate * 0.5, `${got} B/s: far below the limit of ${rate}`);
});

test('unlimited admits at once', async () => {
  const th = new SyncThrottle({}, () => 0);
  const start = performance.now();
  for (let i = 0; i < 1000; i++) assert.equal(await th.admit(MiB, () => false), true);
  assert.ok(performance.now() - start < 1000, 'no pacing without a rate');
  assert.equal(th.currentRate(), 0);
});

test('paused: nothing is admitted until resumed; a gone connection cancels the wait', async () => {
  const th = new SyncThrottle({}, () => 0);
  assert.equal(th.pause(), true);
  assert.equal(th.pause(), false, 'pausing twice changes nothing');
  let admitted = false;
  const p = th
    .admit(4096, () => false)
    .then((ok) => {
      admitted = ok;
    });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(admitted, false, 'held while paused');
  assert.equal(th.resume(), true);
  await p;
  assert.equal(admitted, true, 'admitted after the resume');

  th.pause();
  let gone = false;
  const q = th.admit(4096, () => gone);
  gone = true;
  assert.equal(await q, false, 'not admitted once the connection is gone');
});

test('syncminrate is the rate while the application is busy, syncrate when idle', async () => {
  let ops = 0;
  const th = new SyncThrottle({ syncRate: 8 * MiB, syncMinRate: MiB }, () => ops);
  assert.equal(th.currentRate(), 8 * MiB, 'idle: the full rate');
  ops++;
  assert.equal(th.currentRate(), MiB, 'an application request: slowed down to the minimum');
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(th.currentRate(), 8 * MiB, 'idle again');
  th.setRates({ syncMinRate: 2 * MiB });
  ops++;
  assert.equal(th.currentRate(), 2 * MiB, 'unlimited sync: the minimum while busy');
});
