// hastctl create semantics (HAST-SPEC §2.2), on an in-memory component.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createResource } from '../../../src/metadata/create.js';
import { MetadataError, readBitmap, readMetadata } from '../../../src/metadata/metadata.js';
import { MemComponent } from './mem-component.js';

const MiB = 1024 * 1024;

test('createResource() uses 2 MiB extents, keepdirty 64 and the whole component by default', async () => {
  const comp = new MemComponent(64 * MiB);
  const md = await createResource({ component: comp, resource: 'r0' });
  // (64 MiB - 4096) / 2 MiB → 32 extents → 4 bytes → one 512-byte sector.
  assert.deepEqual(md, {
    resource: 'r0',
    dataSize: 64 * MiB - 4096 - 512,
    extentSize: 2 * MiB,
    keepDirty: 64,
    localOff: 4608,
    resuid: 0n,
    localCnt: 0n,
    remoteCnt: 0n,
    prevRole: 'init',
  });
  assert.deepEqual(await readMetadata(comp, 'r0'), md);
});

test('createResource() treats 0 as "use the default", like upstream', async () => {
  const md = await createResource({
    component: new MemComponent(8 * MiB),
    resource: 'r0',
    extentSize: 0,
    keepDirty: 0,
    mediaSize: 0,
  });
  assert.equal(md.extentSize, 2 * MiB);
  assert.equal(md.keepDirty, 64);
  assert.equal(md.dataSize, 8 * MiB - 4096 - 512);
});

test('createResource() zeroes the bitmap and leaves user data untouched', async () => {
  const comp = new MemComponent(4 * MiB, { fill: 0x5a });
  const md = await createResource({ component: comp, resource: 'r0', extentSize: 4096, keepDirty: 7 });
  // (4 MiB - 4096) / 4096 = 1023 extents → 128 bytes → 512.
  assert.equal(md.localOff, 4608);
  assert.ok((await readBitmap(comp, md)).every((b) => b === 0));
  assert.ok(
    comp.data.subarray(md.localOff).every((b) => b === 0x5a),
    'user data not zeroed',
  );
  assert.equal(md.keepDirty, 7);
});

test('createResource() refuses a mediasize larger than the provider', async () => {
  const comp = new MemComponent(MiB, { path: '/dev/ada1' });
  await assert.rejects(createResource({ component: comp, resource: 'r0', mediaSize: 2 * MiB }), {
    message: 'Provided mediasize is larger than provider /dev/ada1 size.',
    exitCode: 65,
  });
  assert.equal(comp.writes, 0);
});

test('createResource() refuses a non-power-of-two extent size (upstream bug 14)', async () => {
  const comp = new MemComponent(64 * MiB);
  await assert.rejects(createResource({ component: comp, resource: 'r0', extentSize: 3 * MiB }), (err: unknown) => {
    return err instanceof MetadataError && err.exitCode === 65 && /power of 2/.test(err.message);
  });
  assert.equal(comp.writes, 0);
});

test('createResource() refuses an extent smaller than, or not a multiple of, the sector size', async () => {
  const comp = new MemComponent(64 * MiB, { sectorSize: 4096 });
  await assert.rejects(createResource({ component: comp, resource: 'r0', extentSize: 2048 }), {
    message: 'Extent size (2048) is less than sector size (4096).',
  });
  await assert.rejects(createResource({ component: comp, resource: 'r0', extentSize: 4096 + 512 }), {
    message: 'Extent size (4608) is not multiple of sector size (4096).',
  });
});

test('createResource() refuses a sector size that is not a power of two', async () => {
  const comp = new MemComponent(64 * MiB, { sectorSize: 520, path: '/dev/x' });
  await assert.rejects(createResource({ component: comp, resource: 'r0' }), {
    message: 'Sector size of provider /dev/x is not power of 2 (520).',
  });
});

test('createResource() with a 4K-sector component rounds the bitmap to 4096', async () => {
  const md = await createResource({ component: new MemComponent(64 * MiB, { sectorSize: 4096 }), resource: 'r0' });
  assert.equal(md.localOff, 8192);
});

test('createResource() reports a metadata write failure with exit code 74', async () => {
  const comp = new MemComponent(MiB);
  comp.write = async () => {
    throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
  };
  await assert.rejects(createResource({ component: comp, resource: 'r0', extentSize: 4096 }), { exitCode: 74 });
});
