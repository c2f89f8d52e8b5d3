// Small requests of a component batched into one thread-pool task each turn (src/component/batch.ts,
// native ioBatch): the bytes land in order, errors and short transfers are finished the ordinary
// way, and close() waits for the pool. Real files and the real addon; only the NOWAIT path is
// left out (so that every small request needs the pool) or, for short transfers, scripted.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { HastIo } from '../../../src/component/native.js';
import { openComponent } from '../../../src/component/open.js';
import { nativeAddon, tmpDir } from '../../harness/tools.js';

const KiB = 1024;

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

/** The real addon without its NOWAIT path (every small request needs the pool), ioBatch replaced. */
function poolOnly(real: HastIo, ioBatch: NonNullable<HastIo['ioBatch']>): HastIo {
  const { flock, punchHole, blkDiscard, blkZeroOut, blkGetSize64, blkSszGet } = real;
  return { flock, punchHole, blkDiscard, blkZeroOut, blkGetSize64, blkSszGet, ioBatch };
}

/** poolOnly, counting pool tasks and the requests in each. */
function counted(real: HastIo): { native: HastIo; tasks: number[] } {
  const tasks: number[] = [];
  const ioBatch = real.ioBatch;
  assert.equal(typeof ioBatch, 'function', 'the addon has ioBatch');
  const native = poolOnly(real, (ops, buffers, done) => {
    tasks.push(buffers.length);
    ioBatch?.call(real, ops, buffers, done);
  });
  return { native, tasks };
}

function fileOf(t: TestContext, content: Buffer): string {
  const path = join(tmpDir(t), 'disk.img');
  writeFileSync(path, content);
  return path;
}

describe('batched component I/O', () => {
  test('writes asked for in one turn share pool tasks (at most 32 each) and land in order', async (t) => {
    const real = nativeAddon(t);
    if (real === null) return;
    const { native, tasks } = counted(real);
    const path = fileOf(t, Buffer.alloc(512 * KiB));
    const comp = await openComponent(path, { lock: false, native, inlineIo: false });
    t.after(() => comp.close());
    const want = Buffer.alloc(512 * KiB);
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 70; i++) {
      const b = pattern(4 * KiB, i);
      writes.push(comp.write([b], i * 4 * KiB + 100));
      b.copy(want, i * 4 * KiB + 100);
    }
    // Two writes of one place in the same turn: the later one is the one that stays.
    const last = pattern(4 * KiB, 200);
    writes.push(comp.write([pattern(4 * KiB, 199)], 300 * KiB), comp.write([last], 300 * KiB));
    last.copy(want, 300 * KiB);
    await Promise.all(writes);
    assert.deepEqual(tasks, [32, 32, 8]);
    assert.deepEqual(readFileSync(path), want);
  });

  test('reads share pool tasks, a task carries at most 256 KiB, and each read gets its own bytes', async (t) => {
    const real = nativeAddon(t);
    if (real === null) return;
    const { native, tasks } = counted(real);
    const content = pattern(1024 * KiB, 5);
    const comp = await openComponent(fileOf(t, content), { lock: false, native, inlineIo: false });
    t.after(() => comp.close());
    const bufs = Array.from({ length: 6 }, () => Buffer.alloc(64 * KiB));
    await Promise.all(bufs.map((b, i) => comp.read(b, i * 100 * KiB + 7)));
    assert.deepEqual(tasks, [4, 2]);
    for (const [i, b] of bufs.entries())
      assert.deepEqual(b, content.subarray(i * 100 * KiB + 7, i * 100 * KiB + 7 + b.length));
  });

  test('a write the pool task fails is retried the ordinary way and reports its error', async (t) => {
    const real = nativeAddon(t);
    if (real === null) return;
    const { native, tasks } = counted(real);
    const path = fileOf(t, Buffer.alloc(64 * KiB));
    const comp = await openComponent(path, { lock: false, readOnly: true, native, inlineIo: false });
    t.after(() => comp.close());
    await assert.rejects(comp.write([pattern(4 * KiB, 1)], 0), { code: 'EBADF' });
    assert.deepEqual(tasks, [1]);
    assert.deepEqual(readFileSync(path), Buffer.alloc(64 * KiB));
  });

  test('a short transfer of the pool task is completed the ordinary way', async (t) => {
    const real = nativeAddon(t);
    if (real === null) return;
    const path = fileOf(t, pattern(64 * KiB, 9));
    // The task does each request's first 1000 bytes only, as a short pwrite/pread would.
    const native = poolOnly(real, (ops, buffers, done) =>
      real.ioBatch?.(
        ops,
        buffers.map((b) => b.subarray(0, 1000)),
        done,
      ),
    );
    const comp = await openComponent(path, { lock: false, native, inlineIo: false });
    t.after(() => comp.close());
    const w = pattern(4 * KiB, 33);
    await comp.write([w], 8 * KiB);
    const back = Buffer.alloc(4 * KiB);
    await comp.read(back, 8 * KiB);
    assert.deepEqual(back, w);
    const want = pattern(64 * KiB, 9);
    w.copy(want, 8 * KiB);
    assert.deepEqual(readFileSync(path), want);
  });

  test('close() waits for requests still in the pool', async (t) => {
    const real = nativeAddon(t);
    if (real === null) return;
    const { native, tasks } = counted(real);
    const path = fileOf(t, Buffer.alloc(64 * KiB));
    const comp = await openComponent(path, { lock: false, native, inlineIo: false });
    const w = pattern(8 * KiB, 3);
    const written = comp.write([w], 4 * KiB);
    await comp.close();
    await written;
    assert.deepEqual(tasks, [1]);
    assert.deepEqual(readFileSync(path).subarray(4 * KiB, 12 * KiB), w);
  });

  test('a request after close() fails the ordinary way (EBADF), not with an uncaught exception', async (t) => {
    const real = nativeAddon(t);
    if (real === null) return;
    const { native, tasks } = counted(real);
    const comp = await openComponent(fileOf(t, Buffer.alloc(64 * KiB)), { lock: false, native, inlineIo: false });
    await comp.close();
    await assert.rejects(comp.write([pattern(4 * KiB, 1)], 0), { code: 'EBADF' });
    await assert.rejects(comp.read(Buffer.alloc(4 * KiB), 0), { code: 'EBADF' });
    assert.deepEqual(tasks, []);
  });

  test('a request the kernel says would need the disk (NOWAIT: EAGAIN) goes alone; "unsupported" ones are batched', async (t) => {
    const real = nativeAddon(t);
    if (real === null) return;
    const content = pattern(256 * KiB, 21);
    for (const [answer, batched] of [
      [-1, false],
      [-2, true],
    ] as const) {
      const tasks: number[] = [];
      const native: HastIo = {
        ...poolOnly(real, (ops, buffers, done) => {
          tasks.push(buffers.length);
          real.ioBatch?.(ops, buffers, done);
        }),
        preadNoWait: () => answer,
        pwriteNoWait: () => answer,
      };
      const path = fileOf(t, content);
      const comp = await openComponent(path, { lock: false, native, inlineIo: false });
      t.after(() => comp.close());
      const bufs = Array.from({ length: 4 }, () => Buffer.alloc(4 * KiB));
      await Promise.all(bufs.map((b, i) => comp.read(b, i * 8 * KiB)));
      for (const [i, b] of bufs.entries()) assert.deepEqual(b, content.subarray(i * 8 * KiB, i * 8 * KiB + 4 * KiB));
      const w = pattern(4 * KiB, 22);
      await Promise.all([comp.write([w], 100 * KiB), comp.write([w], 200 * KiB)]);
      const want = Buffer.from(content);
      w.copy(want, 100 * KiB);
      w.copy(want, 200 * KiB);
      assert.deepEqual(readFileSync(path), want);
      // -1: every request alone; -2: the reads in one task, then the writes in one task.
      assert.deepEqual(tasks, batched ? [4, 2] : [], `NOWAIT answer ${answer}`);
    }
  });
});
