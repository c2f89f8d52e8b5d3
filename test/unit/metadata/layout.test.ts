// Layout arithmetic of HAST-SPEC §3.3, including the spec's worked example.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MetadataError } from '../../../src/metadata/errors.js';
import { METADATA_SIZE, computeLayout, mapSizeFor } from '../../../src/metadata/layout.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

test('computeLayout() matches the worked example: 10 GiB, 512-byte sectors, 2 MiB extents', () => {
  const l = computeLayout({ mediaSize: 10 * GiB, sectorSize: 512, extentSize: 2 * MiB });
  assert.deepEqual(l, { nExtents: 5120, mapSize: 1024, dataSize: 10737413120, localOff: 5120 });
  // At run time the primary sizes the same bitmap from datasize.
  assert.equal(mapSizeFor(l.dataSize, 2 * MiB, 512), 1024);
});

test('computeLayout() rounds a 2-byte bitmap up to one sector', () => {
  const l = computeLayout({ mediaSize: 10 * MiB, sectorSize: 512, extentSize: MiB });
  assert.deepEqual(l, { nExtents: 10, mapSize: 512, dataSize: 10 * MiB - 4096 - 512, localOff: 4608 });
  assert.equal(computeLayout({ mediaSize: 10 * MiB, sectorSize: 4096, extentSize: MiB }).mapSize, 4096);
});

test('computeLayout() counts a partial last extent', () => {
  // 4096 + 2 MiB + 1 byte of payload space → 2 extents.
  const l = computeLayout({ mediaSize: METADATA_SIZE + 2 * MiB + 1, sectorSize: 512, extentSize: 2 * MiB });
  assert.equal(l.nExtents, 2);
  assert.equal(l.dataSize, 2 * MiB + 1 - 512);
});

test('mapSizeFor() at run time can be smaller than what create reserved', () => {
  // 8 extents need 1 byte; 9 extents need 2; both round to a sector.
  assert.equal(mapSizeFor(8 * 4096, 4096, 1), 1);
  assert.equal(mapSizeFor(8 * 4096 + 1, 4096, 1), 2);
  assert.equal(mapSizeFor(4096 * 8 * 512 + 1, 4096, 512), 1024);
  assert.equal(mapSizeFor(0, 4096, 512), 0);
});

test('computeLayout() refuses a medium with no room for data', () => {
  assert.throws(() => computeLayout({ mediaSize: 4096, sectorSize: 512, extentSize: 4096 }), MetadataError);
  assert.throws(() => computeLayout({ mediaSize: 4096 + 512, sectorSize: 512, extentSize: 4096 }), MetadataError);
});
