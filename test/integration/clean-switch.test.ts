// No needless resync (issue 17): a clean role switch — demote the primary, then promote the other
// side — copies nothing when nothing was written in between. Before, every switch resynchronised
// the keepdirty extents the demoted primary left in its on-disk map. Two real hastd processes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import { dataHashOf, hastctl, makePair, startRole, waitNodeInSync, workerOf } from '../harness/cluster.js';
import { waitFor } from '../harness/wait.js';
import { waitInSync } from '../harness/wait.js';

const MiB = 1 << 20;

test('a clean switchover and back copies nothing; the copies stay identical', async (t) => {
  const p = await makePair(t, { size: 32 * MiB, createArgs: ['-e', '1M'] });
  const b = await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  const a = await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  await waitNodeInSync(p.conf, p.a.name);
  // Writes to 8 extents (all in the keepdirty LRU), replicated while connected.
  const ca = await NbdClient.connect({ path: p.sock(p.a) });
  for (let e = 0; e < 8; e++) await ca.write(e * MiB + 512, randomBytes(64 * 1024));
  await ca.flush();
  await ca.disconnect();
  await waitNodeInSync(p.conf, p.a.name);

  const switchTo = async (from: typeof p.a, to: typeof p.b): Promise<void> => {
    assert.equal((await hastctl(p.conf, from.name, ['role', 'secondary', p.res])).code, 0);
    await waitFor(`${to.name} to lose its secondary worker`, async () => (await workerOf(p.conf, to.name)) === null);
    assert.equal((await hastctl(p.conf, to.name, ['role', 'primary', p.res])).code, 0);
    // Calm polls: a worker that just connected may report clean before it merged the peer's map.
    const w = await waitInSync(to.name, () => workerOf(p.conf, to.name), { calmPolls: 3 });
    assert.equal(w.lastSync, null, `${to.name} synchronised ${JSON.stringify(w.lastSync)} after a clean switch`);
  };
  await switchTo(p.a, p.b);
  await switchTo(p.b, p.a);
  for (const [name, d] of [
    ['a', a],
    ['b', b],
  ] as const) {
    assert.doesNotMatch(d.output(), /Synchronization started/, `node ${name} started a synchronization`);
  }
  assert.equal(await dataHashOf(p, p.a), await dataHashOf(p, p.b), 'identical copies');
});
