// contrib/pacemaker/hast (the OCF agent) against a live pair in the netns hosts: ocf-tester runs every
// action on skunk2 (start, monitor, promote, demote, notify, stop, twice each), then the monitor's exit
// code and promotion score in each state: primary, secondary connected to its primary, secondary
// without a connection, an inconsistent copy (a synchronization cut off), stopped.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { createHosts, type Host, REPO } from '../harness/netns.js';
import { HASTCTL } from '../harness/process.js';
import { requires } from '../harness/tools.js';
import { waitFor } from '../harness/wait.js';
import { bringUp, HAST_HOST_TOOLS, RES, role, waitHostInSync, walkthroughConf, worker } from './fs-helpers.js';

const AGENT = join(REPO, 'contrib', 'pacemaker', 'hast');
const OCF = { OCF_ROOT: '/usr/lib/ocf', OCF_RESKEY_resource: RES };

test('OCF agent contrib/pacemaker/hast: ocf-tester on a live pair; monitor codes and promotion scores per state', {
  timeout: 240_000,
}, async (t) => {
  if (
    !requires(t, {
      root: true,
      tools: [...HAST_HOST_TOOLS, 'ocf-tester', 'xmllint', 'flock'],
    })
  )
    return;
  const hs = await createHosts(t);
  const s1 = hs.get('skunk1');
  const s2 = hs.get('skunk2');
  walkthroughConf(hs);
  const hastctl = `${process.execPath} ${HASTCTL}`;
  const env = {
    ...process.env,
    ...OCF,
    OCF_RESKEY_config: hs.conf,
    OCF_RESKEY_hastctl: hastctl,
    OCF_RESKEY_peer_wait: '3',
    HA_LOGFACILITY: 'none',
  };
  /** One agent action on h: exit code and the score it logged. */
  const agent = async (h: Host, action: string): Promise<{ code: number; score: string; out: string }> => {
    const r = await h.exec(AGENT, [action], { env: { ...env, __OCF_ACTION: action }, timeoutMs: 60_000 });
    const out = r.stdout + r.stderr;
    const m = /promotion score (\S+)/.exec(out);
    return { code: r.code, score: m?.[1] ?? '', out };
  };

  await bringUp(hs, s1, s2);
  // ocf-tester promotes skunk2: skunk1 must not be a connected primary.
  await role(s1, 'secondary');
  const tester = await s2.exec(
    'ocf-tester',
    [
      '-n',
      'hast-test',
      '-o',
      `resource=${RES}`,
      '-o',
      `config=${hs.conf}`,
      '-o',
      `hastctl=${hastctl}`,
      '-o',
      'peer_wait=3',
      AGENT,
    ],
    { env: { ...process.env, OCF_ROOT: '/usr/lib/ocf' }, timeoutMs: 180_000 },
  );
  assert.equal(tester.code, 0, `ocf-tester:\n${tester.stdout}${tester.stderr}`);
  assert.match(tester.stdout, /passed all tests/);
  assert.equal((await s2.status(RES)).role, 'init', 'ocf-tester ends with stop: role init');

  // Meta-data: valid against the OCF DTD, one monitor per role with distinct intervals.
  const meta = await agent(s2, 'meta-data');
  assert.equal(meta.code, 0);
  assert.match(meta.out, /<action name="monitor" timeout="30s" interval="11s" role="Unpromoted"\/>/);
  assert.match(meta.out, /<action name="monitor" timeout="30s" interval="9s" role="Promoted"\/>/);
  // validate-all: an unknown resource is a configuration error (6).
  const bad = await s2.exec(AGENT, ['validate-all'], {
    env: { ...env, OCF_RESKEY_resource: 'nosuch', __OCF_ACTION: 'validate-all' },
    timeoutMs: 30_000,
  });
  assert.equal(bad.code, 6, bad.stderr);

  const scores: Record<string, string> = {};
  // Stopped: 7, no score.
  let m = await agent(s2, 'monitor');
  assert.equal(m.code, 7, m.out);
  scores.stopped = m.score;
  // Started, no primary anywhere (skunk1 secondary): a consistent copy without a connection, 10.
  assert.equal((await agent(s2, 'start')).code, 0);
  m = await agent(s2, 'monitor');
  assert.equal(m.code, 0, m.out);
  scores['secondary, not connected'] = m.score;
  assert.equal(m.score, '10');
  // skunk1 promoted by its own agent: skunk2 connected to it, consistent: 1000; skunk1 primary: 10000 (8).
  assert.equal((await agent(s1, 'promote')).code, 0);
  await waitHostInSync(s1);
  m = await agent(s2, 'monitor');
  assert.equal(m.code, 0, m.out);
  scores['secondary, connected, consistent'] = m.score;
  assert.equal(m.score, '1000');
  m = await agent(s1, 'monitor');
  assert.equal(m.code, 8, m.out);
  scores.primary = m.score;
  assert.equal(m.score, '10000');
  // Promoting skunk2 while skunk1 is a live connected primary: refused (hastd), the agent fails (1)
  // after peer_wait and leaves skunk2 secondary.
  const refused = await agent(s2, 'promote');
  assert.equal(refused.code, 1, refused.out);
  assert.equal((await s2.status(RES)).role, 'secondary');

  // An inconsistent copy: fresh metadata on skunk2 makes skunk1 synchronize everything; cut the HAST
  // link once the sync runs. skunk2's copy is then the target of an unfinished sync: no score.
  assert.equal((await agent(s2, 'stop')).code, 0);
  assert.equal((await s2.hastctl('create', RES)).code, 0);
  assert.equal((await agent(s2, 'start')).code, 0);
  await waitFor(
    'skunk1 synchronizing to skunk2',
    async () => (await worker(s1))?.sync !== undefined && (await worker(s1))?.sync !== null,
    30_000,
    50,
  );
  await hs.partition();
  m = await agent(s2, 'monitor');
  assert.equal(m.code, 0, m.out);
  scores['secondary, inconsistent'] = m.score;
  assert.equal(m.score, 'none', m.out);
  // Stopped and started again while cut off: no worker, the metadata says inconsistent: still none.
  assert.equal((await agent(s2, 'stop')).code, 0);
  assert.equal((await agent(s2, 'start')).code, 0);
  m = await agent(s2, 'monitor');
  assert.equal(m.score, 'none', m.out);
  scores['secondary, inconsistent, not connected'] = m.score;
  await hs.heal();
  await waitHostInSync(s1, 120_000);
  m = await agent(s2, 'monitor');
  assert.equal(m.score, '1000', 'consistent again after the resync');
  // Stop demotes safely: skunk1's stop takes it primary -> secondary -> init.
  assert.equal((await agent(s1, 'stop')).code, 0);
  assert.equal((await s1.status(RES)).role, 'init');
  console.log(`promotion scores: ${JSON.stringify(scores)}`);
});
