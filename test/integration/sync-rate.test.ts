// Resync rate control (issue 17): `syncrate` bounds the bytes a resync copies per second, and
// `hastctl sync pause|resume` holds and releases it. Two real hastd processes on loopback.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import { dataHashOf, hastctl, makePair, startRole, statusJson, waitNodeInSync, workerOf } from '../harness/cluster.js';
import { sleep, waitFor } from '../harness/wait.js';

const MiB = 1 << 20;
const RATE = 8 * MiB;

interface SyncView {
  doneBytes: number;
  totalBytes: number;
}

test('syncrate bounds the resync rate; sync pause holds it and resume finishes it', async (t) => {
  const p = await makePair(t, { size: 32 * MiB, extra: 'syncrate 8M', createArgs: ['-e', '1M'] });
  await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  // Written before the secondary exists: the first connection copies the whole data area.
  const client = await NbdClient.connect({ path: p.sock(p.a) });
  t.after(() => client.disconnect().catch(() => undefined));
  for (let off = 0; off < 16 * MiB; off += MiB) await client.write(off, randomBytes(MiB));
  await client.flush();
  const sec = await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  const w = await waitNodeInSync(p.conf, p.a.name, 60_000);
  const last = w.lastSync;
  assert.ok(last !== null && last.bytes >= 16 * MiB, `a sync ran (${JSON.stringify(last)})`);
  const rate = last.bytes / last.seconds;
  // A correctness bound on bytes over time: never above the limit (pacing), and not far below it.
  assert.ok(rate <= RATE * 1.1, `${Math.round(rate)} B/s at syncrate ${RATE}`);
  assert.ok(rate >= RATE * 0.9, `${Math.round(rate)} B/s at syncrate ${RATE}: the limit is not reached`);
  assert.equal(await dataHashOf(p, p.a), await dataHashOf(p, p.b), 'identical after the sync');

  // Status shows the limit; the text status says so too.
  const st = (await statusJson(p.conf, p.a.name, p.res)).worker as { syncControl?: unknown };
  assert.deepEqual(st.syncControl, { paused: false, rate: RATE, minRate: 0, currentRate: RATE });

  // Pause is refused on the secondary's node with the reason and what to do.
  const onB = await hastctl(p.conf, p.b.name, ['sync', 'pause', p.res]);
  assert.equal(onB.code, 75, onB.stderr);
  assert.match(onB.stderr, /is secondary here: .*run 'hastctl sync pause r0' on the primary node/);
  assert.equal(
    (await hastctl(p.conf, p.a.name, ['sync', 'stop', p.res])).code,
    64,
    'an unknown action is a usage error',
  );

  // Paused before the next sync: it starts but copies nothing until resumed.
  assert.equal((await hastctl(p.conf, p.a.name, ['sync', 'pause', p.res])).code, 0);
  await sec.kill();
  await waitFor('degraded', async () => (await workerOf(p.conf, p.a.name))?.status === 'degraded');
  for (let e = 20; e < 28; e++) await client.write(e * MiB, randomBytes(MiB));
  await client.flush();
  await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  await waitFor('the sync started', async () => (await workerOf(p.conf, p.a.name))?.sync ?? null, 30_000);
  const text = await hastctl(p.conf, p.a.name, ['status', p.res]);
  assert.match(text.stdout, /syncrate: 8\.0?MB\/s, paused/);
  await sleep(1500);
  const held = (await workerOf(p.conf, p.a.name))?.sync as SyncView | null;
  assert.ok(held !== null, 'the sync is still running');
  assert.equal(held.doneBytes, 0, 'nothing is copied while paused');
  assert.equal(held.totalBytes, 8 * MiB, 'the 8 dirty extents wait');

  assert.equal((await hastctl(p.conf, p.a.name, ['sync', 'resume', p.res])).code, 0);
  const done = await waitNodeInSync(p.conf, p.a.name, 30_000);
  assert.equal(done.lastSync?.bytes, 8 * MiB, 'the dirty extents, and only them, were copied');
  assert.equal(await dataHashOf(p, p.a), await dataHashOf(p, p.b), 'identical after the resumed sync');
});
