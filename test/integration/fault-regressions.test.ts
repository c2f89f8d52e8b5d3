// Regressions found by the fault campaign (test/campaign/campaign.ts), each as a scenario.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import { isRunning } from '../harness/cleanup.js';
import { hastctl, makePair, startHastd, statusJson, waitNodeInSync } from '../harness/cluster.js';
import { waitFor } from '../harness/wait.js';

test('primary parent SIGKILLed while connected: the orphaned worker shuts down without crashing', async (t) => {
  const p = await makePair(t, { replication: 'fullsync', size: 16 << 20 });
  await startHastd(t, p.conf, p.b);
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);
  const a = await startHastd(t, p.conf, p.a);
  assert.equal((await hastctl(p.conf, p.a.name, ['role', 'primary', p.res])).code, 0);
  await waitFor('export socket', () => existsSync(p.sock(p.a)));
  await waitNodeInSync(p.conf, p.a.name);
  const c = await NbdClient.connect({ path: p.sock(p.a) });
  await c.write(0, Buffer.alloc(4096, 1));
  const worker = (await statusJson(p.conf, p.a.name, p.res)).workerpid as number;
  t.after(() => {
    if (isRunning(worker)) process.kill(worker, 'SIGKILL');
  });
  process.kill(a.pid, 'SIGKILL');
  await waitFor('the orphaned worker to exit', () => !isRunning(worker), 20_000, 50);
  c.destroy();
  // The worker shares the parent's stderr: a crash in its shutdown shows there.
  assert.doesNotMatch(a.output(), /ERR_IPC_CHANNEL_CLOSED|Unhandled 'error' event/);
  assert.match(a.output(), /Termination signal received|Disconnected from/);
});
