// The parent's role changes against real (stub) worker processes: `role primary` reports the
// worker's start-up failure with its reason and falls back to init (lasterror in status); a worker
// that ignores SIGTERM is killed after the stop bound and does not wedge the queue; a promotion
// while a primary is connected is refused unless forced; a demotion refused by a busy device
// keeps the role. Issue 13, findings 4, 6, 7 (the parent's part), 2 (the parent's part).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parseConfig } from '../../../src/config/index.js';
import { HastdParent, type ParentOptions, probePeer } from '../../../src/daemon/parent.js';
import type { ResourceState } from '../../../src/daemon/resource-state.js';
import { tmpDir } from '../../harness/tools.js';

const CONF = `resource r0 {
  on a {
    local /nonexistent/r0.img
    remote none
  }
}
`;

/** A worker stub: `body` runs after the parent's init message (`init`, `send` in scope). */
function stub(t: TestContext, body: string): string {
  const path = join(tmpDir(t), 'stub-worker.cjs');
  writeFileSync(
    path,
    `const send = (m) => new Promise((r) => process.send(m, undefined, {}, () => r()));
process.on('disconnect', () => process.exit(0));
process.once('message', async (init) => {
  if (init.type !== 'init') return;
  ${body}
});
`,
  );
  return path;
}

function rig(
  t: TestContext,
  script: string,
  opts: Partial<ParentOptions> = {},
): { parent: HastdParent; res: ResourceState; hooks: string[][] } {
  const hooks: string[][] = [];
  const parent = new HastdParent(parseConfig(`exec /hook\n${CONF}`, 'test.conf', { hostNames: ['a'] }), {
    debugLevel: 0,
    foreground: true,
    stateDir: '/nonexistent',
    reloadConfig: () => {
      throw new Error('no reload');
    },
    runHook: (_exec, args) => hooks.push([...args]),
    workerScript: script,
    ...opts,
  });
  const res = parent.resources.get('r0');
  assert.ok(res !== undefined);
  t.after(async () => {
    await parent.shutdown();
    // End only the stub we started, by pid.
    const pid = res.worker?.pid;
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  return { parent, res, hooks };
}

test('role primary: a worker that fails at start-up is reported with its reason, the role falls back to init, status says why', async (t) => {
  const script = stub(
    t,
    `await send({ type: 'failed', reason: 'Unable to open /nonexistent/r0.img: ENOENT: no such file or directory', code: 66 });
  process.exit(66);`,
  );
  const { parent, res, hooks } = rig(t, script);
  const reply = await parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'] });
  const r = reply.resources[0];
  assert.equal(r?.error, 66, 'EX_NOINPUT, the worker exit code');
  assert.match(
    r?.message ?? '',
    /^Unable to become primary: Unable to open \/nonexistent\/r0\.img: ENOENT.*The role fell back to init\.$/,
  );
  assert.equal(res.role, 'init');
  const st = await parent.handleRequest({ cmd: 'status', resources: ['r0'] });
  assert.equal(st.resources[0]?.role, 'init');
  assert.match(st.resources[0]?.lasterror ?? '', /Unable to open \/nonexistent\/r0\.img/);
  assert.deepEqual(hooks, [], 'init → (primary failed) → init: no role hook');
  assert.equal(res.restartTimer, null, 'no restart of a worker that never started');
});

test('role primary: a worker that exits at once without a word, or never reports, is a failure too', async (t) => {
  const silent = rig(t, stub(t, 'process.exit(75);'));
  const a = await silent.parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'] });
  assert.equal(a.resources[0]?.error, 70);
  assert.match(a.resources[0]?.message ?? '', /exitcode=75/);
  assert.equal(silent.res.role, 'init');
  assert.equal(silent.res.restartTimer, null, 'EX_TEMPFAIL at start-up is not restarted in a loop');

  const mute = rig(t, stub(t, 'setInterval(() => undefined, 1000);'), { startTimeoutMs: 300, stopTimeoutMs: 300 });
  const b = await mute.parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'] });
  assert.equal(b.resources[0]?.error, 70);
  assert.match(b.resources[0]?.message ?? '', /did not report ready within 0.3 s/);
  assert.equal(mute.res.role, 'init');
  assert.equal(mute.res.worker, null, 'the silent worker was stopped');
});

test('role primary succeeds only after ready; the hook runs then', async (t) => {
  const { parent, res, hooks } = rig(
    t,
    stub(
      t,
      `setTimeout(() => send({ type: 'ready' }), 200); setInterval(() => undefined, 1000);
  process.on('SIGTERM', () => process.exit(0));
  // Answer the parent's release at shutdown (no device here), or shutdown waits for its 60 s bound.
  process.on('message', (m) => { if (m.type === 'release') send({ type: 'release-reply', id: m.id, ok: true }); });`,
    ),
  );
  const started = Date.now();
  const reply = await parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'] });
  assert.ok(Date.now() - started >= 150, 'waited for ready');
  assert.deepEqual(reply.resources[0], { name: 'r0', previousRole: 'init', role: 'primary' });
  assert.equal(res.workerReady, true);
  assert.deepEqual(hooks, [['role', 'r0', 'init', 'primary']]);
});

test('a worker that ignores SIGTERM is killed after the stop bound, and the queue goes on', async (t) => {
  const script = stub(
    t,
    `process.on('SIGTERM', () => undefined);
  process.on('message', (m) => { if (m.type === 'release') send({ type: 'release-reply', id: m.id, ok: true }); });
  await send({ type: 'ready' });
  setInterval(() => undefined, 1000);`,
  );
  const { parent, res } = rig(t, script, { stopTimeoutMs: 500 });
  const up = await parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'] });
  assert.equal(up.resources[0]?.error, undefined);
  const child = res.worker;
  assert.ok(child !== null);
  const started = Date.now();
  // Two requests behind each other: the second waits for the first, which waits for the stop.
  const [down, again] = await Promise.all([
    parent.handleRequest({ cmd: 'role', role: 'init', resources: ['r0'] }),
    parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'] }),
  ]);
  assert.equal(down.resources[0]?.error, undefined);
  assert.equal(child.signalCode, 'SIGKILL', 'escalated to SIGKILL');
  assert.ok(Date.now() - started < 10_000, 'bounded');
  assert.equal(again.resources[0]?.error, undefined, 'the next role change was not wedged');
  assert.equal(res.role, 'primary');
  await parent.shutdown();
  assert.equal(res.worker, null);
});

const BOTH_ROLES = `process.on('SIGINT', () => process.exit(0)); process.on('SIGTERM', () => process.exit(0));
  if (init.role === 'primary') await send({ type: 'ready' });
  process.on('message', (m) => { if (m.type === 'release') send({ type: 'release-reply', id: m.id, ok: true }); });
  setInterval(() => undefined, 1000);`;

test('role primary on a secondary with a connected primary is refused unless --force', async (t) => {
  const probes: string[] = [];
  const probePeer = async (addr: string): Promise<boolean> => {
    probes.push(addr);
    return true;
  };
  const { parent, res } = rig(t, stub(t, BOTH_ROLES), { probePeer });
  await parent.handleRequest({ cmd: 'role', role: 'secondary', resources: ['r0'] });
  // What the peer listener does when a primary connects: a secondary worker.
  const secondary = parent.startWorker(res, 'secondary');
  const refused = await parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'] });
  assert.equal(refused.resources[0]?.error, 75, 'EX_TEMPFAIL');
  assert.match(refused.resources[0]?.message ?? '', /a primary is connected to this node.*--force/);
  assert.equal(res.role, 'secondary');
  assert.equal(res.worker, secondary, 'the secondary worker keeps serving the primary');
  assert.deepEqual(probes, [res.cfg.remoteAddr], 'the peer was asked whether it still answers');

  const forced = await parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'], force: true });
  assert.equal(forced.resources[0]?.error, undefined);
  assert.equal(res.role, 'primary');
  assert.equal(secondary.exitCode !== null || secondary.signalCode !== null, true, 'the secondary worker was stopped');
  await parent.shutdown();
});

test('a connected primary that no longer answers on the HAST link (its node lost power) does not block the failover', async (t) => {
  const { parent, res } = rig(t, stub(t, BOTH_ROLES), { probePeer: async () => false });
  await parent.handleRequest({ cmd: 'role', role: 'secondary', resources: ['r0'] });
  const secondary = parent.startWorker(res, 'secondary');
  const promoted = await parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'] });
  assert.equal(promoted.resources[0]?.error, undefined, promoted.resources[0]?.message);
  assert.equal(res.role, 'primary');
  assert.equal(
    secondary.exitCode !== null || secondary.signalCode !== null,
    true,
    'the stale secondary worker was stopped',
  );
});

test('probePeer: a listening address answers, a closed port does not', async (t) => {
  const { createServer } = await import('node:net');
  const srv = createServer((s) => s.destroy());
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.after(() => srv.close());
  const port = (srv.address() as { port: number }).port;
  assert.equal(await probePeer(`tcp://127.0.0.1:${port}`, null), true);
  srv.close();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(await probePeer(`tcp://127.0.0.1:${port}`, null), false);
});

test('a demotion refused by the worker (device busy) keeps the role and the worker; --force demotes', async (t) => {
  const script = stub(
    t,
    `process.on('SIGTERM', () => process.exit(0));
  process.on('message', (m) => {
    if (m.type !== 'release') return;
    if (m.force) send({ type: 'release-reply', id: m.id, ok: true });
    else send({ type: 'release-reply', id: m.id, ok: false, busy: true, reason: 'device busy: /dev/hast/r0 is mounted on /mnt; unmount it first' });
  });
  await send({ type: 'ready' });
  setInterval(() => undefined, 1000);`,
  );
  const { parent, res, hooks } = rig(t, script);
  await parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'] });
  const worker = res.worker;
  const refused = await parent.handleRequest({ cmd: 'role', role: 'secondary', resources: ['r0'] });
  assert.equal(refused.resources[0]?.error, 75);
  assert.match(
    refused.resources[0]?.message ?? '',
    /device busy: \/dev\/hast\/r0 is mounted on \/mnt.*--force removes the device anyway/,
  );
  assert.equal(res.role, 'primary');
  assert.equal(res.worker, worker);
  assert.equal(worker?.exitCode, null, 'still serving');
  const forced = await parent.handleRequest({ cmd: 'role', role: 'secondary', resources: ['r0'], force: true });
  assert.equal(forced.resources[0]?.error, undefined);
  assert.equal(res.role, 'secondary');
  assert.equal(res.worker, null);
  assert.deepEqual(hooks, [
    ['role', 'r0', 'init', 'primary'],
    ['role', 'r0', 'primary', 'secondary'],
  ]);
});

test('shutdown waits while the device is busy and a second signal forces it', async (t) => {
  const script = stub(
    t,
    `process.on('SIGTERM', () => process.exit(0));
  process.on('message', (m) => {
    if (m.type !== 'release') return;
    if (m.force) send({ type: 'release-reply', id: m.id, ok: true });
    else send({ type: 'release-reply', id: m.id, ok: false, busy: true, reason: 'device busy: /dev/hast/r0 is mounted on /mnt; unmount it first' });
  });
  await send({ type: 'ready' });
  setInterval(() => undefined, 1000);`,
  );
  const { parent, res } = rig(t, script, { busyPollMs: 50 });
  await parent.handleRequest({ cmd: 'role', role: 'primary', resources: ['r0'] });
  let done = false;
  const first = parent.shutdown().then(() => (done = true));
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(done, false, 'still serving the busy device');
  assert.notEqual(res.worker, null);
  const refused = await parent.handleRequest({ cmd: 'role', role: 'init', resources: ['r0'] });
  assert.equal(refused.resources[0]?.error, 75, 'role changes are refused during the shutdown');
  await parent.shutdown();
  await first;
  assert.equal(res.worker, null);
});
