// The primary's data path over a real file with guard bytes (HAST-SPEC §3.3, §4.2): writes, zeroes,
// trims and reads at both ends of the data area land at localoff + offset, the metadata block holds
// only what the metadata code wrote, the bitmap only what the activemap put there, and the rest of
// the reserved bitmap area and the tail past the data area are untouched.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openComponent } from '../../../src/component/open.js';
import { encodeMetadata, type Metadata, writeMetadata } from '../../../src/metadata/metadata.js';
import { PrimaryResource } from '../../../src/primary/resource.js';
import { resourceConfig } from '../../harness/resource-config.js';
import { tmpDir } from '../../harness/tools.js';

const EXTENT = 64 * 1024;
const DATASIZE = 64 * EXTENT;
/** 64 extents need 8 bitmap bytes, one 512-byte sector at run time; 4096 are reserved (a disk
 * created with a larger sector size, say), so the reserved area has bytes the activemap never writes. */
const MAPSIZE = 512;
const LOCALOFF = 4096 + 4096;
const TAIL = 4096;
const FILESIZE = LOCALOFF + DATASIZE + TAIL;

const CFG = resourceConfig({ remoteAddr: 'none', replication: 'memsync', metaFlush: true });

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 131 + seed) & 0xff;
  return b;
}

test('primary writes, zeroes and trims at both ends of the data area touch neither the metadata nor the bitmap area', async (t) => {
  const path = join(tmpDir(t), 'disk.img');
  const image = pattern(FILESIZE, 9);
  // The run-time bitmap starts clean; the guard pattern stays in the rest of the reserved area.
  image.fill(0, 4096, 4096 + MAPSIZE);
  writeFileSync(path, image);
  const comp = await openComponent(path, { lock: false });
  t.after(() => comp.close());
  const md: Metadata = {
    resource: 'r0',
    dataSize: DATASIZE,
    extentSize: EXTENT,
    keepDirty: 4,
    localOff: LOCALOFF,
    resuid: 42n,
    localCnt: 0n,
    remoteCnt: 0n,
    prevRole: 'init',
  };
  await writeMetadata(comp, md);
  encodeMetadata(md).copy(image, 0);
  const res = await PrimaryResource.open({ ...CFG, localPath: path }, comp, md);
  const model = Buffer.from(image.subarray(LOCALOFF, LOCALOFF + DATASIZE));
  const last = DATASIZE - EXTENT;

  // Not connected: every write leaves its extent dirty, so the bitmap is written as it goes.
  await res.write(0, pattern(EXTENT, 1), false);
  pattern(EXTENT, 1).copy(model, 0);
  await res.write(last, pattern(EXTENT, 2), true);
  pattern(EXTENT, 2).copy(model, last);
  // Byte-granular at both edges: a read-modify-write of the first and last sectors.
  await res.write(0, Buffer.from([0x11, 0x22, 0x33]), false);
  model.set([0x11, 0x22, 0x33], 0);
  await res.write(DATASIZE - 3, Buffer.from([0x44, 0x55, 0x66]), true);
  model.set([0x44, 0x55, 0x66], DATASIZE - 3);
  await res.writeZeroes(512, 4096, false);
  model.fill(0, 512, 4608);
  await res.writeZeroes(DATASIZE - 4096 - 512, 4096, true);
  model.fill(0, DATASIZE - 4096 - 512, DATASIZE - 512);
  // A trim is a hint (the bytes may read back as zeroes or as before); aligned, so it is passed on.
  await res.trim(EXTENT, 8192, false);
  await res.trim(last - 8192, 8192, false);
  await res.flush();

  for (const [at, len] of [
    [0, EXTENT],
    [last, EXTENT],
    [DATASIZE - 512, 512],
  ] as const) {
    const got = await res.read(at, len);
    assert.ok(got.equals(model.subarray(at, at + len)), `read(${at}, ${len}) returns what was written`);
  }
  await res.close();

  const disk = readFileSync(path);
  for (const [a, b] of [
    [EXTENT, EXTENT + 8192],
    [last - 8192, last],
  ] as const)
    disk.copy(model, a, LOCALOFF + a, LOCALOFF + b);
  assert.equal(disk.length, FILESIZE);
  assert.ok(
    disk.subarray(0, 4096).equals(encodeMetadata(res.md)),
    'the metadata block is exactly the encoded metadata',
  );
  assert.equal(
    res.md.localCnt,
    1n,
    'the first degraded write bumped localcnt (so the block above is not the one the test wrote)',
  );
  const bitmap = Buffer.from(res.amap.bitmap());
  assert.equal(bitmap.length, MAPSIZE);
  assert.ok(disk.subarray(4096, 4096 + MAPSIZE).equals(bitmap), 'the bitmap is the activemap image');
  assert.equal(bitmap[0], 0b11, 'extents 0 and 1 (the trim) are dirty');
  assert.equal(bitmap[7], 0b1100_0000, 'extents 62 (the trim) and 63 are dirty');
  assert.ok(
    disk.subarray(4096 + MAPSIZE, LOCALOFF).equals(image.subarray(4096 + MAPSIZE, LOCALOFF)),
    'the reserved bitmap area past the map is untouched',
  );
  assert.ok(
    disk.subarray(LOCALOFF, LOCALOFF + DATASIZE).equals(model),
    'the data area holds the writes at localoff + offset',
  );
  assert.ok(
    disk.subarray(LOCALOFF + DATASIZE).equals(image.subarray(LOCALOFF + DATASIZE)),
    'the tail past the data area is untouched',
  );
});
