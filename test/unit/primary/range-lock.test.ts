// Unit tests of the primary's range lock (HAST-SPEC §4.2 step 1, §4.4): overlap ordering,
// regular/sync exclusion, FIFO fairness, concurrency of disjoint ranges.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type LockHandle, type LockKind, RangeLock } from '../../../src/primary/range-lock.js';

/** Acquire and record the grant order in `log` under `name`. */
function take(
  lock: RangeLock,
  log: string[],
  name: string,
  kind: LockKind,
  offset: number,
  length: number,
): LockHandle {
  return lock.acquire(kind, offset, length, () => log.push(name));
}

describe('RangeLock', () => {
  test('acquire() grants a free range synchronously', () => {
    const lock = new RangeLock();
    const log: string[] = [];
    const h = take(lock, log, 'a', 'regular', 0, 4096);
    assert.deepEqual(log, ['a']);
    assert.equal(lock.isGranted(h), true);
    assert.equal(lock.held, 1);
  });

  test('tryAcquire() grants a free range at once and queues nothing when it is not free', () => {
    const lock = new RangeLock();
    const log: string[] = [];
    const a = lock.tryAcquire('regular', 0, 4096);
    assert.ok(a !== null);
    assert.equal(lock.isGranted(a), true);
    // Overlapping a holder: refused, not queued (a later waiter is not blocked by it).
    assert.equal(lock.tryAcquire('regular', 2048, 4096), null);
    assert.equal(lock.held + lock.waiting, 1);
    const w = take(lock, log, 'w', 'sync', 0, 8192);
    assert.deepEqual(log, []);
    // Free of holders but overlapping an earlier waiter: refused too (FIFO, as acquire()).
    assert.equal(lock.tryAcquire('regular', 6000, 100), null);
    assert.ok(lock.tryAcquire('regular', 8192, 4096) !== null);
    lock.release(a);
    assert.deepEqual(log, ['w']);
    assert.equal(lock.isGranted(w), true);
    assert.throws(() => lock.tryAcquire('regular', -1, 1), RangeError);
  });

  test('non-overlapping regular writes proceed concurrently', () => {
    const lock = new RangeLock();
    const log: string[] = [];
    take(lock, log, 'a', 'regular', 0, 4096);
    take(lock, log, 'b', 'regular', 4096, 4096);
    take(lock, log, 'c', 'regular', 1 << 20, 512);
    assert.deepEqual(log, ['a', 'b', 'c']);
    assert.equal(lock.held, 3);
    assert.equal(lock.waiting, 0);
  });

  test('overlapping regular writes are granted in arrival order', () => {
    const lock = new RangeLock();
    const log: string[] = [];
    const a = take(lock, log, 'a', 'regular', 0, 8192);
    const b = take(lock, log, 'b', 'regular', 4096, 8192);
    const c = take(lock, log, 'c', 'regular', 6000, 512);
    assert.deepEqual(log, ['a']);
    lock.release(a);
    assert.deepEqual(log, ['a', 'b'], 'c overlaps b, which arrived first');
    lock.release(b);
    assert.deepEqual(log, ['a', 'b', 'c']);
    lock.release(c);
    assert.equal(lock.held + lock.waiting, 0);
  });

  test('a sync chunk waits for an overlapping regular write and vice versa', () => {
    const lock = new RangeLock();
    const log: string[] = [];
    const w = take(lock, log, 'write', 'regular', 1 << 20, 4096);
    const s = take(lock, log, 'sync', 'sync', 1 << 20, 1 << 20);
    assert.deepEqual(log, ['write']);
    lock.release(w);
    assert.deepEqual(log, ['write', 'sync']);
    const w2 = take(lock, log, 'write2', 'regular', (1 << 20) + 8192, 4096);
    assert.deepEqual(log, ['write', 'sync'], 'a write into a chunk being synced waits');
    lock.release(s);
    assert.deepEqual(log, ['write', 'sync', 'write2']);
    lock.release(w2);
  });

  test('a sync chunk is not starved by a stream of overlapping writes (FIFO)', () => {
    const lock = new RangeLock();
    const log: string[] = [];
    const r1 = take(lock, log, 'r1', 'regular', 0, 10);
    const s = take(lock, log, 's', 'sync', 5, 10);
    // r2 does not overlap r1 but overlaps the waiting sync chunk: it queues behind it.
    const r2 = take(lock, log, 'r2', 'regular', 12, 2);
    assert.deepEqual(log, ['r1']);
    lock.release(r1);
    assert.deepEqual(log, ['r1', 's']);
    lock.release(s);
    assert.deepEqual(log, ['r1', 's', 'r2']);
    lock.release(r2);
  });

  test('a waiter behind a non-overlapping waiter is granted as soon as its own range is free', () => {
    const lock = new RangeLock();
    const log: string[] = [];
    const a = take(lock, log, 'a', 'regular', 0, 10);
    const b = take(lock, log, 'b', 'regular', 100, 10);
    take(lock, log, 'a2', 'regular', 0, 10);
    take(lock, log, 'b2', 'sync', 100, 10);
    lock.release(b);
    assert.deepEqual(log, ['a', 'b', 'b2']);
    lock.release(a);
    assert.deepEqual(log, ['a', 'b', 'b2', 'a2']);
  });

  test('adjacent ranges do not conflict; empty ranges conflict with nothing', () => {
    const lock = new RangeLock();
    const log: string[] = [];
    take(lock, log, 'a', 'regular', 0, 4096);
    take(lock, log, 'b', 'sync', 4096, 4096);
    take(lock, log, 'c', 'regular', 100, 0);
    assert.deepEqual(log, ['a', 'b', 'c']);
  });

  test('releasing a waiting request cancels it without ever calling back', () => {
    const lock = new RangeLock();
    const log: string[] = [];
    const a = take(lock, log, 'a', 'regular', 0, 10);
    const b = take(lock, log, 'b', 'regular', 0, 10);
    take(lock, log, 'c', 'regular', 0, 10);
    lock.release(b);
    lock.release(a);
    assert.deepEqual(log, ['a', 'c']);
  });

  test('release() of a handle twice throws', () => {
    const lock = new RangeLock();
    const h = lock.acquire('regular', 0, 1, () => undefined);
    lock.release(h);
    assert.throws(() => lock.release(h), /released twice/);
  });

  test('acquire() refuses a negative range', () => {
    assert.throws(() => new RangeLock().acquire('regular', -1, 10, () => undefined), RangeError);
  });

  test('a grant callback may release and acquire again', () => {
    const lock = new RangeLock();
    const log: string[] = [];
    const a = take(lock, log, 'a', 'regular', 0, 10);
    const b: LockHandle = lock.acquire('regular', 0, 10, () => {
      log.push('b');
      lock.release(b);
      take(lock, log, 'd', 'regular', 0, 10);
    });
    take(lock, log, 'c', 'regular', 0, 10);
    lock.release(a);
    assert.deepEqual(log, ['a', 'b', 'c'], 'd queues behind c');
  });

  test('lock() resolves when the range is granted', async () => {
    const lock = new RangeLock();
    const a = await lock.lock('regular', 0, 10);
    let granted = false;
    const pending = lock.lock('sync', 5, 10).then((h) => {
      granted = true;
      return h;
    });
    await Promise.resolve();
    assert.equal(granted, false);
    lock.release(a);
    const s = await pending;
    assert.equal(granted, true);
    assert.equal(lock.isGranted(s), true);
    lock.release(s);
    assert.equal(lock.held, 0);
  });

  test('property: conflicting holders never coexist, grants follow arrival order, and nothing waits without cause', () => {
    type Op = { t: 'acq'; kind: LockKind; off: number; len: number } | { t: 'rel'; pick: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({
        t: fc.constant('acq' as const),
        kind: fc.constantFrom<LockKind>('regular', 'sync'),
        off: fc.nat(60),
        len: fc.nat(20),
      }),
      fc.record({ t: fc.constant('rel' as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const lock = new RangeLock();
        type Req = { id: number; off: number; len: number; h: LockHandle; granted: boolean };
        const live: Req[] = []; // arrival order
        const grants: number[] = [];
        let nextId = 0;
        const overlap = (a: Req, b: Req): boolean =>
          a.len > 0 && b.len > 0 && a.off < b.off + b.len && b.off < a.off + a.len;
        const check = (): void => {
          for (let i = 0; i < live.length; i++) {
            const a = live[i];
            if (a === undefined) continue;
            assert.equal(lock.isGranted(a.h), a.granted);
            const blocked = live.slice(0, i).some((b) => overlap(a, b));
            // Granted exactly when nothing earlier overlaps: FIFO among conflicts, no needless wait.
            assert.equal(a.granted, !blocked, `request ${a.id} granted=${a.granted} blocked=${blocked}`);
            for (const b of live) {
              if (b !== a && a.granted && b.granted) assert.ok(!overlap(a, b), `holders ${a.id} and ${b.id} overlap`);
            }
          }
        };
        for (const o of ops) {
          if (o.t === 'acq') {
            const id = nextId++;
            const req: Req = { id, off: o.off, len: o.len, h: null as unknown as LockHandle, granted: false };
            live.push(req);
            req.h = lock.acquire(o.kind, o.off, o.len, () => {
              req.granted = true;
              grants.push(id);
            });
          } else if (live.length > 0) {
            const [r] = live.splice(o.pick % live.length, 1);
            if (r !== undefined) lock.release(r.h);
          }
          check();
        }
        // Drain everything: every request still waiting is eventually granted.
        while (live.length > 0) {
          const i = live.findIndex((r) => r.granted);
          assert.ok(i >= 0, 'some request holds the lock while others wait');
          const [r] = live.splice(i, 1);
          if (r !== undefined) lock.release(r.h);
          check();
        }
        assert.equal(lock.held + lock.waiting, 0);
        assert.equal(new Set(grants).size, grants.length, 'each request granted once');
      }),
      { numRuns: 300 },
    );
  });
});
