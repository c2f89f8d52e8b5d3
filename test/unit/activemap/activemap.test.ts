// Scenario tests of the activemap (HAST-SPEC §3.3, §4.1–4.4, §8): sizes, bit order, the
// write-ahead rule, the keepdirty LRU, resync sources and the sync cursor.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Activemap, ActivemapInvariantError, KEEPDIRTY_DEFAULT } from '../../../src/activemap/activemap.js';
import { allOnes, testBit } from '../../../src/activemap/bitmap.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const EXT = 2 * MiB;

/** A map of `n` 2 MiB extents with 512-byte sectors. */
function mk(n: number, keepDirty?: number, dataSize = n * EXT): Activemap {
  return new Activemap({
    dataSize,
    extentSize: EXT,
    sectorSize: 512,
    ...(keepDirty !== undefined ? { keepDirty } : {}),
  });
}

/** Extents whose bit is set in an image. */
function bitsOf(image: Uint8Array, n: number): number[] {
  const out: number[] = [];
  for (let e = 0; e < n; e++) if (testBit(image, e)) out.push(e);
  return out;
}

describe('activemap sizes and bit order', () => {
  test('the spec worked example: 10737413120 bytes, 2 MiB extents, 512-byte sectors → 5120 extents, 640 → 1024 bytes', () => {
    const am = new Activemap({ dataSize: 10737413120, extentSize: EXT, keepDirty: 64, sectorSize: 512 });
    assert.equal(am.nExtents, 5120);
    assert.equal(am.mapSize, 640);
    assert.equal(am.diskMapSize, 1024);
    assert.equal(am.bitmap().length, 1024);
  });

  test('nExtents rounds a partial last extent up', () => {
    const am = new Activemap({ dataSize: 3 * EXT + 1, extentSize: EXT, keepDirty: 64, sectorSize: 4096 });
    assert.equal(am.nExtents, 4);
    assert.equal(am.diskMapSize, 4096);
  });

  test('bitmap() puts extent 0 at byte 0 = 0x01 and extent 9 at byte 1 = 0x02', () => {
    const am = mk(16);
    am.writeStart(0, 512);
    am.writeStart(9 * EXT, 512);
    const image = am.bitmap();
    assert.equal(image[0], 0x01);
    assert.equal(image[1], 0x02);
    assert.ok(
      image.subarray(2).every((b) => b === 0),
      'padding is zero',
    );
  });

  test('the constructor rejects an extent size that is not a power of two', () => {
    assert.throws(
      () => new Activemap({ dataSize: 10 * MiB, extentSize: 3 * MiB, keepDirty: 64, sectorSize: 512 }),
      RangeError,
    );
  });

  test('keepdirty defaults to 64', () => {
    assert.equal(KEEPDIRTY_DEFAULT, 64);
    assert.equal(new Activemap({ dataSize: EXT, extentSize: EXT, sectorSize: 512 }).keepDirty, 64);
  });
});

describe('activemap write path', () => {
  test('the first write to an extent needs a bitmap write, rewrites of a hot extent do not', () => {
    const am = mk(8);
    assert.equal(am.writeStart(0, 4096), true);
    assert.equal(am.writeStart(8192, 4096), false, 'extent already dirty');
    assert.equal(am.writeComplete(0, 4096), false);
    assert.equal(am.writeComplete(8192, 4096), false, 'extent stays in the keepdirty list: no bitmap write');
    assert.equal(am.writeStart(0, 4096), false, 'hot extent in keepdirty list');
    assert.equal(am.writeComplete(0, 4096), false);
  });

  test('completion clears memmap but keeps the keepdirty extents in the disk image', () => {
    const am = mk(8);
    am.writeStart(3 * EXT, 4096);
    assert.equal(am.nDirty, 1);
    assert.equal(am.dirtyBytes, EXT);
    am.writeComplete(3 * EXT, 4096);
    assert.equal(am.nDirty, 0);
    assert.equal(am.dirtyBytes, 0);
    assert.equal(am.isDirty(3), false);
    assert.deepEqual(bitsOf(am.bitmap(), 8), [3]);
  });

  test('the 65th distinct extent evicts the least recently used one', () => {
    const am = mk(100, 64);
    for (let e = 0; e < 64; e++) {
      assert.equal(am.writeStart(e * EXT, 512), true, `first write to extent ${e}`);
      am.writeComplete(e * EXT, 512);
    }
    // Touch extent 0 again: it becomes the most recent, so extent 1 is now the tail.
    assert.equal(am.writeStart(0, 512), false);
    am.writeComplete(0, 512);
    assert.equal(am.writeStart(64 * EXT, 512), true);
    am.writeComplete(64 * EXT, 512);
    assert.equal(am.inKeepDirty(1), false, 'extent 1 was the least recently used');
    assert.equal(am.keepDirtyExtents().length, 64);
    assert.deepEqual(am.keepDirtyExtents().slice(0, 2), [64, 0]);
    const bits = bitsOf(am.bitmap(), 100);
    assert.equal(bits.includes(1), false, 'evicted extent is cleared in the next image');
    assert.equal(bits.length, 64);
    assert.equal(am.writeStart(EXT, 512), true, 'the evicted extent needs a bitmap write again');
  });

  test('an extent evicted while a write is in flight stays in the image until the write completes', () => {
    const am = mk(10, 1);
    am.writeStart(0, 512);
    assert.equal(am.writeStart(EXT, 512), true);
    assert.equal(am.inKeepDirty(0), false);
    assert.deepEqual(bitsOf(am.bitmap(), 10), [0, 1]);
    assert.equal(am.writeComplete(0, 512), true, 'extent 0 becomes clean on disk');
    assert.deepEqual(bitsOf(am.bitmap(), 10), [1]);
  });

  test('a write spanning two extents dirties both', () => {
    const am = mk(4);
    assert.equal(am.writeStart(EXT - 4096, 8192), true);
    assert.equal(am.extentOps(0), 1);
    assert.equal(am.extentOps(1), 1);
    assert.deepEqual(bitsOf(am.bitmap(), 4), [0, 1]);
    am.writeComplete(EXT - 4096, 8192);
    assert.equal(am.nDirty, 0);
  });

  test('a large TRIM spanning many extents is tracked on every one of them', () => {
    const am = mk(200, 4);
    assert.equal(am.writeStart(10 * EXT + 512, 100 * EXT), true);
    assert.equal(am.nDirty, 101);
    assert.deepEqual(
      bitsOf(am.bitmap(), 200),
      Array.from({ length: 101 }, (_, i) => 10 + i),
    );
    assert.deepEqual(am.keepDirtyExtents(), [110, 109, 108, 107]);
    assert.equal(am.writeComplete(10 * EXT + 512, 100 * EXT), true);
    assert.deepEqual(bitsOf(am.bitmap(), 200), [107, 108, 109, 110]);
  });

  test('keepdirty 0 writes the bitmap on every first write and every last completion', () => {
    const am = mk(4, 0);
    assert.equal(am.writeStart(0, 512), true);
    assert.equal(am.writeStart(512, 512), false);
    assert.equal(am.writeComplete(0, 512), false);
    assert.equal(am.writeComplete(512, 512), true);
    assert.deepEqual(bitsOf(am.bitmap(), 4), []);
  });

  test('writeComplete() without a matching writeStart() is an invariant violation and changes nothing', () => {
    const am = mk(4);
    am.writeStart(0, 512);
    assert.throws(() => am.writeComplete(0, EXT + 512), ActivemapInvariantError);
    assert.equal(am.extentOps(0), 1, 'extent 0 untouched by the failed call');
    assert.equal(am.writeComplete(0, 512), false);
  });

  test('ranges outside the data area are refused with RangeError', () => {
    const am = mk(4);
    assert.throws(() => am.writeStart(4 * EXT, 1), RangeError);
    assert.throws(() => am.writeStart(-1, 1), RangeError);
    assert.throws(() => am.markForSync(4 * EXT - 1, 2), RangeError);
    assert.equal(am.writeStart(4 * EXT, 0), false, 'an empty range touches nothing');
  });
});

describe('activemap resync sources', () => {
  test('a write whose remote leg failed stays dirty after its completion until synced', () => {
    const am = mk(8);
    am.writeStart(2 * EXT, 4096);
    assert.equal(am.markForSync(2 * EXT, 4096), false, 'already in the image: no extra bitmap write');
    assert.equal(am.writeComplete(2 * EXT, 4096), false);
    assert.equal(am.isDirty(2), true);
    assert.equal(am.needsSync(2), true);
    assert.equal(am.nextSyncExtent(), 2);
    am.syncExtentRange(2);
    assert.equal(am.syncExtentDone(2), false, 'still in the keepdirty list');
    assert.equal(am.isDirty(2), false);
    assert.equal(am.nDirty, 0);
  });

  test('marking a clean extent for sync needs a bitmap write', () => {
    const am = mk(8);
    assert.equal(am.markForSync(5 * EXT, 1), true);
    assert.deepEqual(bitsOf(am.bitmap(), 8), [5]);
    assert.equal(am.markExtentsForSync(5), false, 'already marked');
  });

  test('loadFromDisk() makes every set extent dirty until it is synced', () => {
    const am = mk(16);
    const disk = Buffer.alloc(am.diskMapSize);
    disk[0] = 0x01; // extent 0
    disk[1] = 0x02; // extent 9
    am.loadFromDisk(disk);
    assert.equal(am.nDirty, 2);
    assert.equal(am.syncPendingExtents, 2);
    assert.equal(am.syncPendingBytes, 2 * EXT);
    assert.deepEqual(bitsOf(am.bitmap(), 16), [0, 9]);
    // A write to a loaded extent completes without cleaning it.
    assert.equal(am.writeStart(0, 512), false, 'bit already on disk');
    am.writeComplete(0, 512);
    assert.equal(am.isDirty(0), true);
    assert.equal(am.nextSyncExtent(0), 0);
    assert.equal(am.nextSyncExtent(1), 9);
    assert.equal(am.nextSyncExtent(10), -1);
    assert.deepEqual(am.syncExtentRange(9), { offset: 9 * EXT, length: EXT });
    assert.equal(am.syncExtentDone(9), true, 'extent 9 is clean on disk now');
    assert.deepEqual(bitsOf(am.bitmap(), 16), [0]);
    am.syncExtentRange(0);
    am.syncExtentDone(0);
    assert.equal(am.nDirty, 0);
    assert.equal(am.syncPendingExtents, 0);
  });

  test('loadFromDisk() ignores bits past the last extent', () => {
    const am = mk(10);
    const disk = Buffer.alloc(am.diskMapSize, 0xff);
    am.loadFromDisk(disk);
    assert.equal(am.nDirty, 10);
    assert.deepEqual([...am.bitmap().subarray(0, 3)], [0xff, 0x03, 0x00]);
  });

  test('mergeRemote() ORs the peer map in and reports whether anything changed', () => {
    const am = mk(16);
    am.markExtentsForSync(1);
    assert.equal(am.mergeRemote(Buffer.from([0x02])), false, 'extent 1 already marked');
    assert.equal(am.mergeRemote(Buffer.from([0x06, 0x80])), true);
    assert.deepEqual(bitsOf(am.bitmap(), 16), [1, 2, 15]);
    assert.equal(am.syncPendingExtents, 3);
    assert.equal(am.nDirty, 3);
  });

  test('mergeRemote() of an all-ones map marks everything (full sync)', () => {
    const am = mk(13);
    assert.equal(am.mergeRemote(allOnes(am.nExtents, am.diskMapSize)), true);
    assert.equal(am.syncPendingExtents, 13);
    assert.equal(am.dirtyBytes, 13 * EXT);
  });

  test('markAllForSync() marks every extent and syncPendingBytes clips the last one', () => {
    const am = mk(3, 64, 2 * EXT + 4096);
    am.markAllForSync();
    assert.equal(am.syncPendingExtents, 3);
    assert.equal(am.syncPendingBytes, 2 * EXT + 4096);
    assert.deepEqual(am.syncExtentRange(2), { offset: 2 * EXT, length: 4096 });
  });
});

describe('activemap sync cursor', () => {
  test('an extent marked again while its sync is under way is kept for another pass', () => {
    const am = mk(4);
    am.markExtentsForSync(1);
    am.syncExtentRange(1);
    am.markForSync(EXT, 512);
    assert.equal(am.syncExtentDone(1), false);
    assert.equal(am.needsSync(1), true);
    assert.equal(am.nextSyncExtent(), 1);
    am.syncExtentRange(1);
    assert.equal(am.syncExtentDone(1), true);
    assert.equal(am.needsSync(1), false);
  });

  test('a mark before the sync pass begins is covered by that pass', () => {
    const am = mk(4);
    am.markExtentsForSync(1);
    am.markForSync(EXT, 512);
    am.syncExtentRange(1);
    assert.equal(am.syncExtentDone(1), true);
    assert.equal(am.nDirty, 0);
  });

  test('syncExtentDone() keeps an extent dirty while a regular write is in flight on it', () => {
    const am = mk(4, 0);
    am.markExtentsForSync(0);
    am.writeStart(0, 512);
    am.syncExtentRange(0);
    assert.equal(am.syncExtentDone(0), false);
    assert.equal(am.isDirty(0), true);
    assert.equal(am.writeComplete(0, 512), true);
    assert.equal(am.nDirty, 0);
  });

  test('syncExtentDone() for an extent not in the syncmap does nothing', () => {
    const am = mk(4);
    am.writeStart(0, 512);
    assert.equal(am.syncExtentDone(0), false);
    assert.equal(am.extentOps(0), 1);
    assert.equal(am.isDirty(0), true);
  });

  test('clearSync() empties the syncmap', () => {
    const am = mk(8, 0);
    am.markAllForSync();
    assert.equal(am.clearSync(), true);
    assert.equal(am.syncPendingExtents, 0);
    assert.equal(am.nDirty, 0);
    assert.equal(am.nextSyncExtent(), -1);
  });

  test('extentOf() maps byte offsets to extents', () => {
    const am = mk(4);
    assert.equal(am.extentOf(0), 0);
    assert.equal(am.extentOf(EXT - 1), 0);
    assert.equal(am.extentOf(EXT), 1);
  });
});

describe('forgetKeepDirty (issue 17: clean stop while in sync)', () => {
  test('drops the LRU from the image; extents in flight or waiting for sync stay', () => {
    const am = new Activemap({ dataSize: 16 * EXT, extentSize: EXT, keepDirty: 8, sectorSize: 512 });
    for (let e = 0; e < 4; e++) {
      am.writeStart(e * EXT, 4096);
      am.writeComplete(e * EXT, 4096);
    }
    am.writeStart(5 * EXT, 4096); // still in flight
    am.markForSync(6 * EXT, 4096); // waiting for sync
    assert.deepEqual(am.keepDirtyExtents(), [5, 3, 2, 1, 0]);
    assert.equal(am.forgetKeepDirty(), true, 'the image lost bits');
    assert.deepEqual(am.keepDirtyExtents(), []);
    const image = am.bitmap();
    for (let e = 0; e < 4; e++) assert.equal(testBit(image, e), false, `extent ${e} is clean on disk`);
    assert.equal(testBit(image, 5), true, 'the write in flight keeps its extent');
    assert.equal(testBit(image, 6), true, 'the extent to sync keeps its bit');
    assert.equal(am.forgetKeepDirty(), false, 'nothing left to drop');
    // The LRU works again afterwards.
    am.writeComplete(5 * EXT, 4096);
    am.writeStart(9 * EXT, 4096);
    am.writeComplete(9 * EXT, 4096);
    assert.deepEqual(am.keepDirtyExtents(), [9]);
  });
});
