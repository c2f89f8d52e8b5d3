// Unit tests for the range of `hastctl verify` (src/primary/verify.ts): clipped to the data area,
// widened to whole 4 KiB blocks, never inverted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifyBounds } from '../../../src/primary/verify.js';

const SIZE = 10 * 4096 + 512;

test('the whole data area by default', () => {
  assert.deepEqual(verifyBounds(SIZE, 0, null), { start: 0, stop: SIZE });
});

test('widened to 4 KiB blocks and clipped to the data area', () => {
  assert.deepEqual(verifyBounds(SIZE, 4097, 8193), { start: 4096, stop: 12288 });
  assert.deepEqual(verifyBounds(SIZE, 0, 10 * 4096 + 1), { start: 0, stop: SIZE });
  assert.deepEqual(verifyBounds(SIZE, 0, 2 ** 40), { start: 0, stop: SIZE });
});

test('a start past the end is an empty range at the end', () => {
  assert.deepEqual(verifyBounds(SIZE, 2 ** 30, null), { start: SIZE, stop: SIZE });
  assert.deepEqual(verifyBounds(SIZE, 8192, 8192), { start: 8192, stop: 8192 });
});
