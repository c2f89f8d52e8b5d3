// hastctl dump text and humanize_number() rounding (HAST-SPEC §2.3; lib/libutil/humanize_number.c).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatDump, humanizeNumber } from '../../../src/metadata/dump.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

test('humanizeNumber() gives the spec examples', () => {
  assert.equal(humanizeNumber(2097152), '2.0M');
  assert.equal(humanizeNumber(0), '0');
  assert.equal(humanizeNumber(512), '512');
  assert.equal(humanizeNumber(1073741824), '1.0G');
});

// Each expected value is worked through by hand from the algorithm (len 5, divisor 1024,
// divisordeccut 973, rounding (r*10 + 512) / 1024).
const CASES: [number, string][] = [
  [1, '1'],
  [999, '999'],
  [1000, '1.0K'], // 1000 ≥ max 1000 → 0 rem 1000 → tenths (10000+512)/1024 = 10 → 1.0
  [1023, '1.0K'],
  [1024, '1.0K'],
  [1536, '1.5K'],
  [1587, '1.5K'], // rem 563: (5630+512)/1024 = 5.99 → 5
  [1588, '1.6K'], // rem 564: (5640+512)/1024 = 6.007 → 6
  [9 * KiB + 972, '9.9K'], // q 9, rem 972 < 973 → decimal, tenths 9
  [9 * KiB + 973, '10K'], // rem 973 ≥ divisordeccut → integer 9 + 1
  [10 * KiB, '10K'],
  [10 * KiB + 511, '10K'],
  [10 * KiB + 512, '11K'], // (512+512)/1024 = 1
  [999 * KiB, '999K'],
  [999 * KiB + 511, '999K'],
  [999 * KiB + 512, '1.0M'], // q = max-1 with rem ≥ 512 → one more division
  [1000 * KiB, '1.0M'],
  [MiB - 1, '1.0M'],
  [10 * MiB - 4096 - 512, '10M'], // 9.9946 MiB: q 9 rem 1018 → integer
  [10737413120, '10G'], // the worked example's datasize
  [100 * GiB, '100G'],
  [1024 * GiB, '1.0T'],
  [Number.MAX_SAFE_INTEGER, '8.0P'],
];

for (const [n, s] of CASES) {
  test(`humanizeNumber(${n}) is ${s}`, () => {
    assert.equal(humanizeNumber(n), s);
  });
}

test('humanizeNumber() never produces more than four characters for non-negative sizes', () => {
  for (let e = 0; e < 53; e++) {
    for (const n of [2 ** e - 1, 2 ** e, 2 ** e + 1, Math.floor(2 ** e * 0.999), Math.floor(2 ** e * 9.97)]) {
      if (n < 0 || n > Number.MAX_SAFE_INTEGER) continue;
      assert.ok(humanizeNumber(n).length <= 4, `${n} → ${humanizeNumber(n)}`);
    }
  }
});

test('formatDump() prints the upstream layout with four-space indentation', () => {
  const text = formatDump({
    resource: 'shared',
    dataSize: 10737413120,
    extentSize: 2097152,
    keepDirty: 64,
    localOff: 5120,
    resuid: 18446744073709551615n,
    localCnt: 7n,
    remoteCnt: 0n,
    prevRole: 'secondary',
  });
  assert.equal(
    text,
    'resource: shared\n' +
      '    datasize: 10737413120 (10GB)\n' +
      '    extentsize: 2097152 (2.0MB)\n' +
      '    keepdirty: 64\n' +
      '    localoff: 5120\n' +
      '    resuid: 18446744073709551615\n' +
      '    localcnt: 7\n' +
      '    remotecnt: 0\n' +
      '    prevrole: secondary\n',
  );
});

test('formatDump() adds an inconsistent line only for an unfinished sync target (ours)', () => {
  const md = {
    resource: 'r0',
    dataSize: 1048576,
    extentSize: 2097152,
    keepDirty: 64,
    localOff: 5120,
    resuid: 1n,
    localCnt: 1n,
    remoteCnt: 0n,
    prevRole: 'secondary' as const,
  };
  assert.equal(formatDump(md).includes('inconsistent'), false);
  assert.ok(
    formatDump({ ...md, inconsistent: true }).endsWith(
      '    prevrole: secondary\n    inconsistent: yes (unfinished synchronization)\n',
    ),
  );
});
