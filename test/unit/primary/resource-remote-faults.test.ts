// PrimaryResource against a fake remote leg that stalls or fails: the async mode's budget of
// acknowledged-but-unconfirmed writes (count and bytes, and the socket's drain), and a remote flush
// that fails (the extents written since the last good remote flush are marked for resync).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openComponent } from '../../../src/component/open.js';
import type { ResourceConfig } from '../../../src/config/types.js';
import { readBitmap } from '../../../src/metadata/metadata.js';
import { createResource } from '../../../src/metadata/create.js';
import { ASYNC_MAX_BYTES, ASYNC_MAX_WRITES, AsyncBudget } from '../../../src/primary/async-budget.js';
import { PrimaryResource, type RemoteLeg } from '../../../src/primary/resource.js';
import { tmpDir } from '../../harness/tools.js';
import { resourceConfig } from '../../harness/resource-config.js';

const EXTENT = 64 * 1024;
const DATASIZE = 512 * EXTENT;

const CFG: ResourceConfig = resourceConfig({ replication: 'async' });

/** A peer that holds every write until release() and answers flushes with `flushOk`. */
class StalledPeer implements RemoteLeg {
  readonly held: (() => void)[] = [];
  flushOk = true;
  flushUnsupported = false;
  needsDrain = false;
  #drain: (() => void)[] = [];
  write(): { received: Promise<boolean>; done: Promise<boolean> } {
    const done = new Promise<boolean>((r) => this.held.push(() => r(true)));
    return { received: done, done };
  }
  async writeZeroes(): Promise<boolean> {
    return true;
  }
  async flush(): Promise<boolean> {
    return this.flushOk;
  }
  async read(): Promise<Buffer> {
    throw new Error('not used');
  }
  whenWritable(): Promise<void> {
    return this.needsDrain ? new Promise((r) => this.#drain.push(r)) : Promise.resolve();
  }
  drained(): void {
    this.needsDrain = false;
    for (const r of this.#drain.splice(0)) r();
  }
  release(n = Infinity): void {
    for (const f of this.held.splice(0, n)) f();
  }
}

async function rig(
  t: TestContext,
  replication: ResourceConfig['replication'],
): Promise<{ res: PrimaryResource; peer: StalledPeer; path: string }> {
  const path = join(tmpDir(t), 'disk');
  writeFileSync(path, Buffer.alloc(DATASIZE + 1024 * 1024));
  const comp = await openComponent(path, { lock: false });
  t.after(() => comp.close());
  const md = await createResource({ component: comp, resource: 'r0', extentSize: EXTENT, mediaSize: 0 });
  const res = await PrimaryResource.open({ ...CFG, replication, localPath: path }, comp, { ...md, dataSize: DATASIZE });
  const peer = new StalledPeer();
  res.remote = peer;
  return { res, peer, path };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));

/** Wait until `count()` has not changed for 300 ms (at most 10 s); its value then. */
async function quiesce(count: () => number): Promise<number> {
  let last = -1;
  let stableSince = Date.now();
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await settle()) {
    const now = count();
    if (now !== last) {
      last = now;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 300) break;
  }
  return last;
}

/** A write that the peer confirms as soon as it arrives there. */
async function confirmedWrite(
  res: PrimaryResource,
  peer: StalledPeer,
  offset: number,
  fill: number,
  fua = false,
): Promise<void> {
  let done = false;
  const w = res.write(offset, Buffer.alloc(4096, fill), fua).then(() => {
    done = true;
  });
  while (!done) {
    peer.release();
    await new Promise((r) => setTimeout(r, 5));
  }
  await w;
}

test('AsyncBudget: count and bytes bound, first come first served, an oversized request alone', async () => {
  const b = new AsyncBudget(3, 100);
  const order: number[] = [];
  await b.acquire(40);
  await b.acquire(40);
  const third = b.acquire(40).then(() => order.push(3)); // 120 > 100: waits
  const fourth = b.acquire(1).then(() => order.push(4)); // would fit, but waits behind the third
  await settle();
  assert.deepEqual([...order], []);
  assert.equal(b.snapshot().waiting, 2);
  b.release(40);
  await Promise.all([third, fourth]);
  assert.deepEqual([...order], [3, 4]);
  assert.deepEqual([b.writes, b.bytes], [3, 81]);
  const fifth = b.acquire(1).then(() => order.push(5)); // count bound: 3 held
  await settle();
  assert.deepEqual([...order], [3, 4]);
  b.release(40);
  await fifth;
  b.release(40);
  b.release(1);
  b.release(1);
  assert.deepEqual([b.writes, b.bytes], [0, 0]);
  await b.acquire(500); // larger than the whole budget: admitted when nothing else is held
  assert.equal(b.snapshot().peakBytes, 500);
  assert.equal(b.snapshot().peakWrites, 3);
});

test('async: with the peer holding every write, at most the budget is acknowledged (count bound)', async (t) => {
  const { res, peer } = await rig(t, 'async');
  let acked = 0;
  const all: Promise<void>[] = [];
  for (let i = 0; i < 600; i++)
    all.push(res.write((i % 512) * EXTENT, Buffer.alloc(4096, i & 0xff), false).then(() => void acked++));
  assert.equal(await quiesce(() => acked), ASYNC_MAX_WRITES);
  assert.ok(res.asyncBudget.writes <= ASYNC_MAX_WRITES);
  assert.equal(res.asyncBudget.snapshot().peakWrites, ASYNC_MAX_WRITES);
  // Overlapping writes wait for the range lock, which the held ones keep: release in rounds.
  while (acked < 600) {
    peer.release();
    await settle();
    assert.ok(res.asyncBudget.snapshot().peakWrites <= ASYNC_MAX_WRITES);
  }
  await Promise.all(all);
  peer.release();
  await settle();
  assert.equal(res.asyncBudget.writes, 0);
});

test('async: the byte bound holds for large writes', async (t) => {
  const { res, peer } = await rig(t, 'async');
  let acked = 0;
  const size = 1024 * 1024;
  const all: Promise<void>[] = [];
  for (let i = 0; i < 64; i++)
    all.push(res.write((i * size) % DATASIZE, Buffer.alloc(size, 1), false).then(() => void acked++));
  assert.equal(await quiesce(() => acked), ASYNC_MAX_BYTES / size);
  assert.ok(res.asyncBudget.snapshot().peakBytes <= ASYNC_MAX_BYTES);
  while (acked < 64) {
    peer.release();
    await settle();
  }
  await Promise.all(all);
  assert.ok(res.asyncBudget.snapshot().peakBytes <= ASYNC_MAX_BYTES);
  peer.release();
});

test('async: a socket that needs drain holds new acknowledgements until it drains', async (t) => {
  const { res, peer } = await rig(t, 'async');
  peer.needsDrain = true;
  let acked = false;
  const w = res.write(0, Buffer.alloc(4096, 7), false).then(() => {
    acked = true;
  });
  await settle();
  assert.equal(acked, false, 'acknowledged while the socket needed drain');
  peer.drained();
  await w;
  peer.release();
});

for (const mode of ['fullsync', 'memsync'] as const) {
  test(`${mode}: a failed remote FLUSH marks every extent written since the last good remote flush for resync`, async (t) => {
    const { res, peer, path } = await rig(t, mode);
    await confirmedWrite(res, peer, 0, 1);
    await res.flush(); // a good remote flush: extent 0 is durable on both
    for (const e of [3, 7]) await confirmedWrite(res, peer, e * EXTENT, e);
    await settle();
    assert.equal(res.amap.syncPendingBytes, 0);
    peer.flushOk = false;
    await res.flush(); // the local flush succeeded: the FLUSH succeeds, degraded
    assert.equal(res.amap.syncPendingBytes, 2 * EXTENT);
    assert.deepEqual([res.amap.nextSyncExtent(0), res.amap.nextSyncExtent(4), res.amap.nextSyncExtent(8)], [3, 7, -1]);
    // On disk before the FLUSH was acknowledged.
    const comp = await openComponent(path, { lock: false });
    try {
      const map = await readBitmap(comp, res.md);
      assert.equal((map[0] ?? 0) & 0x88, 0x88); // extent 0 may stay dirty on disk (keepdirty)
    } finally {
      await comp.close();
    }
  });

  test(`${mode}: FUA whose remote flush fails marks its extent (and the unflushed ones) for resync`, async (t) => {
    const { res, peer } = await rig(t, mode);
    peer.flushOk = false;
    await confirmedWrite(res, peer, 2 * EXTENT, 2);
    await confirmedWrite(res, peer, 5 * EXTENT, 5, true);
    await settle();
    assert.deepEqual([res.amap.nextSyncExtent(0), res.amap.nextSyncExtent(3), res.amap.nextSyncExtent(6)], [2, 5, -1]);
  });
}

test('a peer that cannot flush (EOPNOTSUPP) marks nothing', async (t) => {
  const { res, peer } = await rig(t, 'fullsync');
  peer.flushOk = false;
  peer.flushUnsupported = true;
  await confirmedWrite(res, peer, 0, 1);
  await res.flush();
  await settle();
  assert.equal(res.amap.syncPendingBytes, 0);
});
