// Model test of split-brain detection (issue 13, "One primary at a time"): every sequence of up to
// DEPTH steps (role changes, link down/up, writes, a write lost in flight, worker crash, daemon
// restart, sync progress) on two modelled nodes driven by the daemon's own counter code
// (src/primary/counters.ts) and decision table (src/peer/decide.ts), each settled by the ordinary
// recovery with either node as the survivor. Invariant: the copies converge and no acknowledged
// write was discarded, or the connection is refused (split-brain, or resuid mismatch) on both nodes.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LEGACY } from './legacy-counters.js';
import { CURRENT, enumerate, run, settle, type Step } from './two-nodes.js';

/** 6 steps: ~1.5 M sequences, about 25 s on one core. HASTD_MODEL_DEPTH=7 runs ~10× longer. */
const DEPTH = Number(process.env.HASTD_MODEL_DEPTH ?? 6);

/**
 * Issue 13's starting point, reached the ordinary way: a's first sync to a fresh b is interrupted,
 * b is promoted and resynchronised from a (rule 3). Afterwards a = 1/0, b = 0/1, in sync.
 */
const ASYMMETRIC: Step[] = [
  'a:primary',
  'a:write0',
  'b:secondary',
  'a:init',
  'b:primary',
  'a:secondary',
  'sync',
  'sync',
];

const show = (f: { steps: Step[]; survivor: string; why: string }): string =>
  `[${f.steps.join(', ')}] then ${f.survivor} survives: ${f.why}`;

describe('split-brain model', () => {
  test('the starting point of finding 1 has the asymmetric counters', () => {
    const w = run(CURRENT, ASYMMETRIC);
    const [a, b] = w.nodes;
    assert.deepEqual(
      [a.disk.md.localCnt, a.disk.md.remoteCnt, b.disk.md.localCnt, b.disk.md.remoteCnt],
      [1n, 0n, 0n, 1n],
    );
    assert.equal(b.role, 'primary');
    assert.notEqual(w.session, null);
  });

  test('finding 1 (forced): both primaries written, a demoted → split-brain on both, 0x44 kept', () => {
    for (const survivor of ['a', 'b'] as const) {
      const w = run(CURRENT, [...ASYMMETRIC, 'a:primary!', 'a:write0', 'b:write0', 'a:secondary']);
      assert.deepEqual(settle(w, survivor), { kind: 'split-brain' });
      assert.ok(w.nodes[0].splitBrain > 0 && w.nodes[1].splitBrain > 0);
      // Nothing was copied: each node still holds its own acknowledged write (ids 2 and 3).
      assert.equal(w.nodes[0].disk.data[0]?.at(-1), 2);
      assert.equal(w.nodes[1].disk.data[0]?.at(-1), 3);
    }
  });

  test('finding 1 (not forced): role primary on a while b is primary is refused, a back to init', () => {
    const w = run(CURRENT, [...ASYMMETRIC, 'a:primary']);
    assert.equal(w.nodes[0].role, 'init');
    assert.equal(w.nodes[0].refused, 1);
    assert.equal(w.nodes[1].role, 'primary');
  });

  test('finding 1 on the old counter logic: the model finds the lost write', () => {
    const w = run(LEGACY, [...ASYMMETRIC, 'a:primary', 'a:write0', 'b:write0', 'a:secondary']);
    const o = settle(w, 'b');
    assert.equal(o.kind, 'violation');
    assert.match(o.kind === 'violation' ? o.why : '', /discarded acknowledged write/);
  });

  for (const [name, prefix] of [
    ['from two fresh components', []],
    ['from the asymmetric pair of finding 1', ASYMMETRIC],
  ] as const) {
    test(`every sequence of up to ${DEPTH} steps ${name} keeps the invariant`, () => {
      const started = Date.now();
      const r = enumerate(CURRENT, prefix, DEPTH);
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      console.log(
        `# model ${name}: depth ${DEPTH}, ${r.cases} sequences (${2 * r.cases} settled), ${secs}s, ${JSON.stringify(r.outcomes)}, rule 7: ${r.rule7}`,
      );
      assert.deepEqual(r.failures.map(show), []);
      assert.ok(r.outcomes['split-brain'] > 0, 'the model reaches split-brain at all');
    });
  }

  test("the model is sensitive: the old counter logic fails within 2 steps of finding 1's pair", () => {
    const r = enumerate(LEGACY, ASYMMETRIC, 2);
    const shortest = r.failures[0];
    assert.ok(shortest !== undefined, 'the model must find the old bug');
    console.log(`# old logic, shortest failures: ${r.failures.map(show).join(' | ')}`);
    assert.ok(shortest.steps.length <= 2);
  });
});
