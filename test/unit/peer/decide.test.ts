// The split-brain decision table (HAST-SPEC §7.2), every row, including upstream's comment table
// from secondary.c (secondary local=3 remote=3 against nine primary combinations).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decideSync } from '../../../src/peer/decide.js';

const S = (localCnt: bigint, remoteCnt: bigint, resuid = 42n) => ({ resuid, localCnt, remoteCnt });
const P = (localCnt: bigint, remoteCnt: bigint, virgin = false, resuid = 42n) => ({
  resuid,
  localCnt,
  remoteCnt,
  virgin,
});

describe('decideSync()', () => {
  test('rule 1: a never-paired secondary adopts a virgin primary without a bitmap', () => {
    assert.deepEqual(decideSync(S(0n, 0n, 0n), P(0n, 0n, true, 7n)), {
      kind: 'adopt',
      sendBitmap: 'none',
      syncSrc: 'primary',
    });
  });

  test('rule 1: a never-paired secondary asks a used primary for a full sync (all-ones bitmap)', () => {
    assert.deepEqual(decideSync(S(0n, 0n, 0n), P(5n, 3n, false, 7n)), {
      kind: 'adopt',
      sendBitmap: 'all-ones',
      syncSrc: 'primary',
    });
  });

  test('rule 2: different resuids are refused with upstream text (primary first)', () => {
    assert.deepEqual(decideSync(S(1n, 1n, 1234n), P(1n, 1n, false, 18446744073709551615n)), {
      kind: 'refuse',
      errmsg: 'Resource unique ID mismatch (primary=18446744073709551615, secondary=1234).',
    });
  });

  test('rule 2 applies even when the primary is virgin', () => {
    assert.equal(decideSync(S(0n, 0n, 9n), P(0n, 0n, true, 8n)).kind, 'refuse');
  });

  // Upstream's table: secondary local=3 remote=3, primary as listed.
  const rows: Array<[bigint, bigint, string]> = [
    [2n, 2n, 'full from secondary'],
    [2n, 3n, 'full from primary'],
    [2n, 4n, 'full from primary'],
    [3n, 2n, 'regular from secondary'],
    [3n, 3n, 'regular from primary'],
    [3n, 4n, 'full from primary'],
    [4n, 2n, 'split-brain'],
    [4n, 3n, 'regular from primary'],
    [4n, 4n, 'full from primary'],
  ];
  for (const [pl, pr, expected] of rows) {
    test(`secondary(3,3) vs primary(local=${pl}, remote=${pr}) → ${expected}`, () => {
      const d = decideSync(S(3n, 3n), P(pl, pr));
      if (expected === 'split-brain') {
        assert.deepEqual(d, { kind: 'split-brain', errmsg: 'Split-brain condition!' });
        return;
      }
      assert.equal(d.kind, 'sync');
      if (d.kind !== 'sync') return;
      const [mode, , src] = expected.split(' ');
      assert.equal(d.syncSrc, src);
      assert.equal(d.bitmap, mode === 'full' ? 'all-ones' : 'own');
      if (mode === 'full') {
        assert.equal(
          d.warning,
          `This should never happen, asking for full synchronization (primary(local=${pl}, remote=${pr}), secondary(local=3, remote=3)).`,
        );
      } else {
        assert.equal(d.warning, undefined);
      }
    });
  }

  test('rule 3: primary out of date → own bitmap, syncsrc secondary', () => {
    assert.deepEqual(decideSync(S(5n, 1n), P(1n, 2n)), { kind: 'sync', syncSrc: 'secondary', bitmap: 'own' });
  });

  test('rule 5: secondary out of date → own bitmap, syncsrc primary', () => {
    assert.deepEqual(decideSync(S(0n, 0n), P(1n, 0n)), { kind: 'sync', syncSrc: 'primary', bitmap: 'own' });
  });

  test('rule 6: both moved while apart → split-brain', () => {
    assert.equal(decideSync(S(2n, 0n), P(1n, 0n)).kind, 'split-brain');
  });

  test("rule 7 warning names both nodes' counters exactly", () => {
    const d = decideSync(S(1n, 5n), P(2n, 9n));
    assert.deepEqual(d, {
      kind: 'sync',
      syncSrc: 'primary',
      bitmap: 'all-ones',
      warning:
        'This should never happen, asking for full synchronization (primary(local=2, remote=9), secondary(local=1, remote=5)).',
    });
  });

  test('the table is total and agrees with a direct reading of the rules', () => {
    const cnt = fc.bigInt({ min: 0n, max: 6n });
    fc.assert(
      fc.property(cnt, cnt, cnt, cnt, fc.boolean(), (sl, sr, pl, pr, virgin) => {
        const d = decideSync(S(sl, sr), P(pl, pr, virgin));
        if (sl > pr && sr === pl) assert.deepEqual(d, { kind: 'sync', syncSrc: 'secondary', bitmap: 'own' });
        else if (sl === pr && sr === pl) assert.deepEqual(d, { kind: 'sync', syncSrc: 'primary', bitmap: 'own' });
        else if (sl === pr && sr < pl) assert.deepEqual(d, { kind: 'sync', syncSrc: 'primary', bitmap: 'own' });
        else if (sl > pr && pl > sr) assert.equal(d.kind, 'split-brain');
        else {
          assert.equal(d.kind, 'sync');
          if (d.kind === 'sync') {
            assert.equal(d.bitmap, 'all-ones');
            assert.equal(d.syncSrc, sl > pr ? 'secondary' : 'primary');
            assert.ok(d.warning?.startsWith('This should never happen'));
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});
