// The divergence record on the primary's data path (issue 17): which extents a FLUSH covers
// (FlushCover), what the record holds when the copies diverge (the keepdirty extents durable on both
// sides, nothing in flight or unflushed), a write taking its extent out of the record on disk before
// it lands, a restart keeping it, a recovery leaving it out of the sync and a completed sync dropping
// it, and verify --mark taking a differing extent out. A real file component; the peer is a stand-in that applies nothing and answers at once.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openComponent } from '../../../src/component/open.js';
import type { Component } from '../../../src/component/component.js';
import type { ResourceConfig } from '../../../src/config/types.js';
import { createResource } from '../../../src/metadata/create.js';
import { readBitmap, readMetadata } from '../../../src/metadata/metadata.js';
import { FlushCover } from '../../../src/primary/flush-cover.js';
import { PrimaryResource, type RemoteLeg } from '../../../src/primary/resource.js';
import { tmpDir } from '../../harness/tools.js';
import { resourceConfig } from '../../harness/resource-config.js';

const EXTENT = 64 * 1024;
const DATASIZE = 64 * EXTENT;

const CFG: ResourceConfig = resourceConfig();

/** A peer that confirms every write at once; its FLUSH answers `flushOk`, after `flushGate` if set. */
class Peer implements RemoteLeg {
  flushOk = true;
  flushGate: Promise<void> | null = null;
  write(): { received: Promise<boolean>; done: Promise<boolean> } {
    const done = Promise.resolve(true);
    return { received: done, done };
  }
  async writeZeroes(): Promise<boolean> {
    return true;
  }
  async flush(): Promise<boolean> {
    if (this.flushGate !== null) await this.flushGate;
    return this.flushOk;
  }
  async read(): Promise<Buffer> {
    throw new Error('not used');
  }
}

async function rig(
  t: TestContext,
  replication: ResourceConfig['replication'] = 'fullsync',
  keepDirty = 0,
): Promise<{ res: PrimaryResource; comp: Component; cfg: ResourceConfig; peer: Peer }> {
  const path = join(tmpDir(t), 'disk');
  writeFileSync(path, Buffer.alloc(DATASIZE + 1024 * 1024));
  const comp = await openComponent(path, { lock: false });
  t.after(() => comp.close());
  const md = await createResource({ component: comp, resource: 'r0', extentSize: EXTENT, mediaSize: 0, keepDirty });
  const cfg = { ...CFG, replication, localPath: path };
  const res = await PrimaryResource.open(cfg, comp, { ...md, dataSize: DATASIZE });
  const peer = new Peer();
  res.remote = peer;
  return { res, comp, cfg, peer };
}

const write = (res: PrimaryResource, e: number, fua = false): Promise<void> =>
  res.write(e * EXTENT, Buffer.alloc(4096, e + 1), fua);

async function recordOnDisk(comp: Component): Promise<readonly number[] | undefined> {
  return (await readMetadata(comp, 'r0')).agreed?.extents;
}

test('FlushCover: a FLUSH covers what was noted before it began, not what came during it', () => {
  const c = new FlushCover();
  c.note(1, 2);
  const f1 = c.begin();
  c.note(3, 3);
  assert.deepEqual(
    [1, 2, 3].map((e) => c.pending(e)),
    [true, true, true],
  );
  c.done(f1);
  assert.deepEqual(
    [1, 2, 3].map((e) => c.pending(e)),
    [false, false, true],
    'the write during the flush is not covered',
  );
  const f2 = c.begin();
  c.note(4, 4);
  const lost = c.failed(f2);
  assert.deepEqual([...lost].sort(), [3, 4], 'a failure gives back every extent not durable');
  assert.equal(c.pending(3), false, 'forgotten once given back (the caller marks them for resync)');
});

test('the record holds the keepdirty extents durable on both sides at the divergence, nothing else', async (t) => {
  const { res, comp, peer } = await rig(t);
  for (const e of [0, 1, 2]) await write(res, e);
  await res.flush(); // 0–2: flushed on both sides
  await write(res, 3); // 3: not flushed anywhere
  let open: () => void = () => undefined;
  peer.flushGate = new Promise((r) => {
    open = r;
  });
  await write(res, 4);
  const flushing = res.flush(); // 4: covered by a FLUSH still on its way
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(await recordOnDisk(comp), undefined, 'no record while the copies agree');
  // The peer goes away; the next write diverges (localcnt bump) and writes the record with it.
  res.remote = null;
  await write(res, 9);
  assert.deepEqual(await recordOnDisk(comp), [0, 1, 2]);
  assert.deepEqual(res.changedExtents(), { count: 1, by: 'record' }, 'status: extent 9 waits for sync');
  open();
  await flushing;

  // A write to an extent of the record takes it out on disk (write-ahead: before the write is done).
  await write(res, 1);
  assert.deepEqual(await recordOnDisk(comp), [0, 2]);
  await res.close();
});

test('async: a FUA write flushed only locally, or a remote FLUSH that failed, keeps its extent out of the record', async (t) => {
  const { res, comp, peer } = await rig(t, 'async');
  await write(res, 0);
  await res.flush();
  await write(res, 1, true); // FUA: a's disk flushed, b's not (async)
  peer.flushOk = false;
  await write(res, 2);
  await res.flush().catch(() => undefined); // fails on b: 2 is marked for resync
  res.remote = null;
  await write(res, 9);
  assert.deepEqual(await recordOnDisk(comp), [0]);
  await res.close();
});

test('a restart keeps the record; a split-brain recovery leaves it out of the sync; a completed sync drops it', async (t) => {
  const { res, comp, cfg } = await rig(t);
  for (const e of [0, 1, 2]) await write(res, e);
  await res.flush();
  res.remote = null;
  await write(res, 9);
  await res.close();
  const md = await readMetadata(comp, 'r0');
  assert.deepEqual(md.agreed?.extents, [0, 1, 2]);
  // After the restart the on-disk map marks 0–2 and 9 for sync; the record counts 9 only.
  const again = await PrimaryResource.open(cfg, comp, md);
  assert.equal(again.amap.syncPendingExtents, 4);
  assert.deepEqual(again.changedExtents(), { count: 1, by: 'record' });
  assert.equal(again.forgetAgreed(), 3);
  assert.equal(again.amap.syncPendingExtents, 1, 'only extent 9 is left to sync');
  assert.equal(again.amap.needsSync(9), true);
  // verify --mark found extent 1 different after all: it leaves the record.
  await again.disagree([1]);
  assert.deepEqual(await recordOnDisk(comp), [0, 2]);
  await again.copiesAgree();
  assert.equal(await recordOnDisk(comp), undefined, 'dropped once the copies agree');
  assert.deepEqual(again.changedExtents(), { count: 1, by: 'activemap' });
  await again.close();
});

test('the peer going away marks what it acknowledged since its last FLUSH, also extents that left the keepdirty LRU', async (t) => {
  const { res, comp } = await rig(t, 'fullsync', 2);
  await write(res, 0);
  await res.flush(); // 0: durable on both sides
  for (const e of [1, 2, 3, 4]) await write(res, e); // acknowledged, never flushed; 1 and 2 leave the LRU of 2
  assert.deepEqual(res.amap.keepDirtyExtents(), [4, 3]);
  assert.equal(res.amap.syncPendingExtents, 0);
  res.remote = null;
  res.peerLost(); // the replication layer's disconnect (a secondary's power failure looks like this)
  assert.deepEqual(
    [0, 1, 2, 3, 4].map((e) => res.amap.needsSync(e)),
    [false, true, true, true, true],
    'everything written since the last remote FLUSH resyncs; the flushed extent does not',
  );
  await res.bitmapWriter.drain();
  const map = await readBitmap(comp, res.md);
  assert.equal((map[0] ?? 0) & 0x1e, 0x1e, 'on disk: a primary restart still resyncs them');
  res.peerLost();
  assert.equal(res.amap.syncPendingExtents, 4, 'a second call finds nothing new');
  await res.close();
});
