// parseSize(): expand_number(3) syntax for hastctl create -e/-k/-m (HAST-SPEC §2.1).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SizeError, parseSize } from '../../../src/metadata/size.js';

test('parseSize() accepts plain bytes and k/m/g/t/p/e suffixes in either case', () => {
  assert.equal(parseSize('1048576'), 1048576);
  assert.equal(parseSize('0'), 0);
  assert.equal(parseSize('512b'), 512);
  assert.equal(parseSize('4k'), 4096);
  assert.equal(parseSize('4K'), 4096);
  assert.equal(parseSize('2M'), 2097152);
  assert.equal(parseSize('2m'), 2097152);
  assert.equal(parseSize('1g'), 2 ** 30);
  assert.equal(parseSize('3T'), 3 * 2 ** 40);
  assert.equal(parseSize('7p'), 7 * 2 ** 50);
  assert.equal(parseSize('4KB'), 4096);
});

test('parseSize() follows strtoimax base 0 (hex, octal)', () => {
  assert.equal(parseSize('0x10'), 16);
  assert.equal(parseSize('0x1k'), 1024);
  assert.equal(parseSize('010'), 8);
});

test('parseSize() refuses garbage, units it does not know, negatives and fractions', () => {
  for (const s of ['', 'abc', '12Q', '-1', '1.5M', '2MX', '08', 'k', '1 M', '1bb']) {
    assert.throws(() => parseSize(s), SizeError, s);
  }
});

test('parseSize() refuses values beyond 2^53 - 1', () => {
  assert.throws(() => parseSize('1e'), /too large/);
  assert.throws(() => parseSize('8P'), /too large/);
  assert.throws(() => parseSize('99999999999999999999'), /too large/);
});
