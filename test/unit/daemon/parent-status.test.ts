// The parent's status path while a primary worker starts (regression found by the fault campaign:
// queries sent before the worker's 'ready' were dropped by the worker and each one stalled
// `hastctl status` for the status timeout).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/index.js';
import type { WorkerStatus } from '../../../src/control/messages.js';
import { HastdParent } from '../../../src/daemon/parent.js';

const CONF = `resource r0 {
  on a {
    local /nonexistent/r0.img
    remote none
  }
}
`;

function fakeWorker(): { child: ChildProcess; sent: { type: string; id?: number }[] } {
  const sent: { type: string; id?: number }[] = [];
  const child = Object.assign(new EventEmitter(), {
    pid: 4242,
    connected: true,
    send: (m: { type: string; id?: number }) => {
      sent.push(m);
      return true;
    },
  }) as unknown as ChildProcess;
  return { child, sent };
}

test('a primary worker that has not said ready is not asked for its status; once ready it is', async () => {
  const parent = new HastdParent(parseConfig(CONF, 'test.conf', { hostNames: ['a'] }), {
    debugLevel: 0,
    foreground: true,
    stateDir: '/nonexistent',
    reloadConfig: () => {
      throw new Error('no reload');
    },
    runHook: () => undefined,
  });
  const res = parent.resources.get('r0');
  assert.ok(res !== undefined);
  const { child, sent } = fakeWorker();
  res.role = 'primary';
  res.worker = child;
  res.workerRole = 'primary';
  res.workerReady = false;

  const starting = await parent.handleRequest({ cmd: 'status', resources: ['r0'] });
  assert.equal(sent.length, 0, 'no status query was sent to the starting worker');
  assert.equal(starting.resources[0]?.worker ?? null, null);

  res.workerReady = true;
  const reply = parent.handleRequest({ cmd: 'status', resources: ['r0'] });
  await new Promise((r) => setImmediate(r));
  const query = sent.at(0);
  assert.equal(query?.type, 'status');
  const answer = res.pendingStatus.get(query?.id ?? -1);
  assert.ok(answer !== undefined, 'the query waits for the worker');
  answer({ status: 'degraded', dirty: 0 } as WorkerStatus);
  assert.equal((await reply).resources[0]?.worker?.status, 'degraded');
});
