// When the primary's counters move (src/primary/counters.ts, HAST-SPEC §7.1 and our detection rule),
// and that the data path makes the bump durable before it acknowledges an unreplicated write.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openComponent } from '../../../src/component/open.js';
import { decodeMetadata, type Metadata, writeMetadata } from '../../../src/metadata/metadata.js';
import { PrimaryCounters } from '../../../src/primary/counters.js';
import { PrimaryResource, type RemoteLeg } from '../../../src/primary/resource.js';
import { resourceConfig } from '../../harness/resource-config.js';
import { tmpDir } from '../../harness/tools.js';

test('the first unreplicated write of a worker bumps once, whatever the last handshake said', () => {
  const md = { resuid: 7n, localCnt: 1n, remoteCnt: 0n };
  const c = new PrimaryCounters(md);
  // A worker that never connected: upstream compared 1 with 0 and did not bump.
  assert.equal(c.onUnreplicatedWrite(), 'durable');
  assert.equal(md.localCnt, 2n);
  assert.equal(c.onUnreplicatedWrite(), 'none');
  assert.equal(md.localCnt, 2n);
});

test('a finished sync equalises and re-arms the bump', () => {
  const md = { resuid: 7n, localCnt: 0n, remoteCnt: 1n };
  const c = new PrimaryCounters(md);
  assert.equal(c.onSyncReply({ localCnt: 1n, remoteCnt: 0n, virgin: false }), 'none');
  assert.equal(c.onSyncComplete(), 'write');
  assert.deepEqual(md, { resuid: 7n, localCnt: 0n, remoteCnt: 1n });
  assert.equal(c.onUnreplicatedWrite(), 'durable');
  assert.equal(md.localCnt, 1n);
});

test('a never-paired primary gets its resuid with its first write, and then sends no virgin', () => {
  const md = { resuid: 0n, localCnt: 0n, remoteCnt: 0n };
  const c = new PrimaryCounters(md, () => 99n);
  assert.equal(c.onUnreplicatedWrite(), 'durable');
  assert.deepEqual(md, { resuid: 99n, localCnt: 1n, remoteCnt: 0n });
  assert.deepEqual(c.beforeHandshake(), { virgin: false, persist: 'none' });
  const fresh = { resuid: 0n, localCnt: 0n, remoteCnt: 0n };
  assert.deepEqual(new PrimaryCounters(fresh, () => 5n).beforeHandshake(), { virgin: true, persist: 'write' });
  assert.equal(fresh.resuid, 5n);
});

const CFG = resourceConfig({ remoteAddr: 'none', metaFlush: true });

test('a write whose remote leg fails is acknowledged only after the bump is in the metadata block', async (t) => {
  const path = join(tmpDir(t), 'disk.img');
  writeFileSync(path, Buffer.alloc(8192 + 16 * 65536));
  const comp = await openComponent(path, { lock: false });
  t.after(() => comp.close());
  const md: Metadata = {
    resource: 'r0',
    dataSize: 16 * 65536,
    extentSize: 65536,
    keepDirty: 4,
    localOff: 8192,
    resuid: 42n,
    localCnt: 1n,
    remoteCnt: 0n,
    prevRole: 'init',
  };
  await writeMetadata(comp, md);
  const res = await PrimaryResource.open({ ...CFG, localPath: path }, comp, md);
  const failing: RemoteLeg = {
    write: () => ({ received: Promise.resolve(false), done: Promise.resolve(false) }),
    writeZeroes: () => Promise.resolve(false),
    flush: () => Promise.resolve(false),
    read: () => Promise.reject(new Error('gone')),
  };
  res.remote = failing;
  await Promise.all([res.write(0, Buffer.alloc(4096, 1), false), res.write(65536, Buffer.alloc(4096, 2), false)]);
  // Both acknowledged: the block on disk already says localcnt 2 (one bump for both).
  assert.equal(decodeMetadata(readFileSync(path).subarray(0, 4096)).localCnt, 2n);
  assert.equal(res.amap.nextSyncExtent(0), 0, 'the extent is marked for resync');
  await res.close();
});
