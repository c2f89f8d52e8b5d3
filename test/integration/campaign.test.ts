// The short fault campaign for CI: 10 seeded cycles, every (fault, mode) pair at least once
// (round-robin), each verified on the surviving copy and on both copies after resync.
// The long version: `npm run campaign` (100 random cycles; see test/campaign/campaign.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { campaignOk, formatSummary, runCampaign } from '../campaign/campaign.js';
import { formatReport } from '../../src/tools/verify-workload.js';

const SEED = Number(process.env.HASTD_CAMPAIGN_SEED ?? 20261125);

test('fault campaign (10 cycles): no acknowledged write lost, no crash, copies identical after resync', async (t) => {
  const s = await runCampaign({ cycles: 10, seed: SEED, roundRobin: true, log: (l) => t.diagnostic(l.split('\n')[0] ?? '') });
  for (const line of formatSummary(s).split('\n')) t.diagnostic(line);
  for (const r of s.results) {
    const where = `cycle ${r.cycle} (seed ${r.seed}, ${r.mode}, ${r.fault}/${r.recovery})`;
    assert.equal(r.failure, null, `${where} did not complete`);
    assert.deepEqual(r.crashes, [], `${where}: crashes`);
    assert.ok(r.survivor !== null);
    assert.equal(r.survivor.lost.length + r.survivor.foreign.length + r.survivor.torn.length, 0, `${where} surviving copy:\n${formatReport(r.survivor)}`);
    for (const rep of r.afterResync) assert.equal(rep.lost.length + rep.foreign.length + rep.torn.length, 0, `${where} after resync:\n${formatReport(rep)}`);
    assert.equal(r.identical, true, `${where}: data areas differ after resync`);
  }
  assert.equal(s.lost, 0);
  assert.ok(s.writesVerified > 0, 'the workload had writes acknowledged before the faults');
  assert.equal(Object.keys(s.perMode).length, 3);
  assert.ok(campaignOk(s));
});
