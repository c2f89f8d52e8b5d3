// Unit tests of the bitstring helpers (HAST-SPEC §3.3 bit numbering).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  allOnes,
  bitmapBytes,
  clearBit,
  findFirstSet,
  orInto,
  popcount,
  roundUp,
  setBit,
  testBit,
} from '../../../src/activemap/bitmap.js';

describe('bitmap', () => {
  test('setBit() numbers bits LSB first within byte n >> 3 (golden bytes from the spec)', () => {
    const m = new Uint8Array(2);
    setBit(m, 0);
    assert.deepEqual([...m], [0x01, 0x00]);
    setBit(m, 9);
    assert.deepEqual([...m], [0x01, 0x02]);
    setBit(m, 7);
    setBit(m, 15);
    assert.deepEqual([...m], [0x81, 0x82]);
  });

  test('setBit()/clearBit() report whether the bit changed', () => {
    const m = new Uint8Array(1);
    assert.equal(setBit(m, 3), true);
    assert.equal(setBit(m, 3), false);
    assert.equal(testBit(m, 3), true);
    assert.equal(clearBit(m, 3), true);
    assert.equal(clearBit(m, 3), false);
    assert.equal(testBit(m, 3), false);
  });

  test('testBit() reads bits past the end as clear', () => {
    assert.equal(testBit(new Uint8Array([0xff]), 8), false);
  });

  test('allOnes() sets exactly nbits bits and zero-pads to the size', () => {
    assert.deepEqual([...allOnes(10, 4)], [0xff, 0x03, 0x00, 0x00]);
    assert.deepEqual([...allOnes(16)], [0xff, 0xff]);
    assert.equal(allOnes(5120, 1024).length, 1024);
    assert.equal(popcount(allOnes(5120, 1024)), 5120);
  });

  test('popcount() counts only the first nbits bits', () => {
    assert.equal(popcount(new Uint8Array([0xff, 0xff]), 12), 12);
    assert.equal(popcount(new Uint8Array([0x0f, 0xf0])), 8);
  });

  test('orInto() ORs byte by byte', () => {
    const d = new Uint8Array([0x01, 0x10]);
    orInto(d, new Uint8Array([0x02, 0x01]));
    assert.deepEqual([...d], [0x03, 0x11]);
  });

  test('bitmapBytes() and roundUp() give the spec worked example (5120 extents → 640 → 1024)', () => {
    assert.equal(bitmapBytes(5120), 640);
    assert.equal(roundUp(640, 512), 1024);
    assert.equal(bitmapBytes(9), 2);
    assert.equal(bitmapBytes(0), 0);
  });

  test('findFirstSet() agrees with a linear scan', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), fc.nat(100), fc.nat(100), (bytes, nbitsRaw, from) => {
        const nbits = Math.min(nbitsRaw, bytes.length * 8);
        let expected = -1;
        for (let i = from; i < nbits; i++) {
          if (testBit(bytes, i)) {
            expected = i;
            break;
          }
        }
        assert.equal(findFirstSet(bytes, nbits, from), expected);
      }),
    );
  });
});
