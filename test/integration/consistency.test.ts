// The persistent consistency state (issue 13, finding 3), with two real hastd: a full sync to b is
// cut short by killing the primary; b's own metadata and status say it is inconsistent, `role
// primary` on b is refused (the worker exits WORKER_EXIT.INCONSISTENT, nothing is written) unless
// forced, and when a comes back the sync resumes and b's flag clears.
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, openSync, readFileSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { loadConfig } from '../../src/config/index.js';
import { WORKER_EXIT, type WorkerInit } from '../../src/daemon/worker-ipc.js';
import { readMetadata } from '../../src/metadata/metadata.js';
import { openComponent } from '../../src/component/open.js';
import { FaultProxy } from '../campaign/proxy.js';
import {
  dumpOf,
  hastctl,
  makePair,
  type NodeSpec,
  type Pair,
  startRole,
  statusJson,
  waitNodeInSync,
} from '../harness/cluster.js';
import { dataAreaHash } from '../harness/data-area.js';
import { DIST } from '../harness/process.js';
import { waitFor } from '../harness/wait.js';

const MiB = 1 << 20;

interface Disk {
  consistent: boolean;
  synchronized: number | null;
}
interface View {
  role: string;
  worker: { status: string; dirty: number; disk?: Disk; peerDisk?: Disk | null } | null;
}

async function view(p: Pair, n: NodeSpec): Promise<View> {
  return (await statusJson(p.conf, n.name, p.res)) as unknown as View;
}

async function hashOf(p: Pair, n: NodeSpec): Promise<string> {
  const d = await dumpOf(p.conf, n.name);
  return dataAreaHash(p.img(n), d.localOff, d.dataSize);
}

async function flagOf(path: string): Promise<boolean> {
  const comp = await openComponent(path, { lock: false });
  try {
    return (await readMetadata(comp)).inconsistent === true;
  } finally {
    await comp.close();
  }
}

/**
 * Run a primary worker directly, as the parent would fork it, on a copy of `node`'s component
 * (remote none): its exit code, or 'ready' once it serves. The worker is ended by pid.
 */
async function directPrimary(
  t: TestContext,
  p: Pair,
  node: NodeSpec,
  image: string,
  force: boolean,
): Promise<number | 'ready'> {
  const cfg = loadConfig(p.conf, { nodeName: node.name }).resources.find((r) => r.name === p.res);
  assert.ok(cfg !== undefined);
  const sock = join(node.dir, `direct-${force}.sock`);
  const init: WorkerInit = {
    type: 'init',
    role: 'primary',
    debugLevel: 0,
    foreground: true,
    stateDir: node.dir,
    force,
    resource: { ...cfg, localPath: image, remoteAddr: 'none', sourceAddr: null, exportAddr: `uds://${sock}` },
  };
  const child = fork(join(DIST, 'src', 'cli', 'worker.js'), [p.res, 'primary'], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    serialization: 'json',
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? -1)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  child.send(init);
  const ready = new Promise<'ready'>((r) =>
    child.on('message', (m: { type?: string }) => m.type === 'ready' && r('ready')),
  );
  const result = await Promise.race([ready, exited]);
  t.diagnostic(`direct worker (force=${force}): ${result}\n${out}`);
  if (result === 'ready') {
    child.kill('SIGTERM');
    await exited;
  } else {
    assert.match(out, /Local copy of r0 is inconsistent .*'hastctl role primary --force r0'/);
  }
  return result;
}

test('an interrupted sync leaves the target inconsistent, refused as primary until the sync resumed and completed', async (t) => {
  const p = await makePair(t, { size: 24 * MiB, createArgs: ['-e', '1M'], extra: 'compression none' });
  // a's peer connections go through a rate-limited proxy, so that the full sync lasts.
  const proxy = new FaultProxy(
    // Port 0: the kernel picks a port while listening (a port probed free can be taken meanwhile).
    { host: '127.0.0.2', port: 0 },
    { host: '127.0.0.2', port: Number(p.b.addr.split(':')[1]) },
    '127.0.0.1',
  );
  await proxy.start();
  t.after(() => proxy.close());
  writeFileSync(
    p.conf,
    readFileSync(p.conf, 'utf8').replace(`remote tcp4://${p.b.addr}`, `remote tcp4://${proxy.address}`),
  );
  // a's data: random bytes, so that a half-copied b differs from a.
  const layout = await dumpOf(p.conf, p.a.name);
  const fd = openSync(p.img(p.a), 'r+');
  writeSync(fd, randomBytes(layout.dataSize), 0, layout.dataSize, layout.localOff);
  closeSync(fd);

  // Pair them (both virgin: nothing to copy), then re-create b, the documented recovery recipe.
  let a = await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  const b = await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  await waitNodeInSync(p.conf, p.a.name);
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'init', p.res])).code, 0);
  assert.equal((await hastctl(p.conf, p.b.name, ['create', '-e', '1M', p.res])).code, 0);
  proxy.setRate(2 * MiB);
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);

  // Mid-sync: both nodes say b is inconsistent, and b no longer claims `complete, dirty: 0`.
  const mid = await waitFor(
    'b inconsistent, a past 15%',
    async () => {
      const va = await view(p, p.a);
      const vb = await view(p, p.b);
      const pd = va.worker?.peerDisk;
      return pd && !pd.consistent && (pd.synchronized ?? 0) >= 15 && vb.worker?.disk?.consistent === false
        ? { va, vb }
        : null;
    },
    60_000,
  );
  assert.equal(mid.va.worker?.disk?.consistent, true, "the source's own copy is consistent");
  assert.notEqual(mid.vb.worker?.status, 'complete');
  const text = await hastctl(p.conf, p.b.name, ['status', p.res]);
  assert.match(text.stdout, /\n {2}disk: inconsistent/);
  assert.match(
    (await hastctl(p.conf, p.a.name, ['status', p.res])).stdout,
    /\n {2}remote disk: inconsistent, \d+% synchronized/,
  );
  assert.equal(await flagOf(p.img(p.b)), true, "b's own metadata says so");

  // The primary dies mid-sync (SIGKILL of its hastd and worker).
  await a.kill();
  await waitFor('b without a session', async () => (await view(p, p.b)).worker === null);
  assert.match((await hastctl(p.conf, p.b.name, ['dump', p.res])).stdout, /inconsistent: yes/);
  assert.notEqual(await hashOf(p, p.b), await hashOf(p, p.a), 'b really is half-copied');

  // Promotion is refused: the worker exits, the role falls back to init, nothing is written.
  const before = await hashOf(p, p.b);
  const mdBefore = readFileSync(p.img(p.b)).subarray(0, 4096);
  const refused = await hastctl(p.conf, p.b.name, ['role', 'primary', p.res]);
  assert.equal(refused.code, WORKER_EXIT.INCONSISTENT, 'hastctl exits EX_NOPERM');
  assert.match(refused.stderr, /Local copy of r0 is inconsistent \(an interrupted synchronization from the peer\)/);
  assert.equal((await view(p, p.b)).role, 'init');
  assert.match(b.output(), /Local copy of r0 is inconsistent/);
  assert.equal(await hashOf(p, p.b), before, 'the refused promotion wrote no data');
  assert.deepEqual(readFileSync(p.img(p.b)).subarray(0, 4096), mdBefore, 'nor metadata');

  // Forced (a worker init with force, on a copy of b's disk): it serves, and the flag is cleared.
  const copy = join(p.b.dir, 'copy.img');
  copyFileSync(p.img(p.b), copy);
  assert.equal(await directPrimary(t, p, p.b, copy, false), WORKER_EXIT.INCONSISTENT);
  assert.equal(await directPrimary(t, p, p.b, copy, true), 'ready');
  assert.equal(await flagOf(copy), false, 'forced: declared the copy to keep');

  // a comes back: the sync resumes from a's stored map, completes, and b's flag clears.
  proxy.setRate(0);
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);
  a = await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  await waitNodeInSync(p.conf, p.a.name, 120_000);
  const done = await waitFor('b consistent', async () => {
    const vb = await view(p, p.b);
    return vb.worker?.disk?.consistent === true ? vb : null;
  });
  assert.equal(done.worker?.status, 'complete');
  assert.deepEqual((await view(p, p.a)).worker?.peerDisk, { consistent: true, synchronized: null });
  assert.equal(await flagOf(p.img(p.b)), false);
  assert.doesNotMatch((await hastctl(p.conf, p.b.name, ['dump', p.res])).stdout, /inconsistent/);
  assert.equal(await hashOf(p, p.b), await hashOf(p, p.a), 'the copies converged');

  // And now b may be promoted (after a stepped down).
  assert.equal((await hastctl(p.conf, p.a.name, ['role', 'init', p.res])).code, 0);
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'primary', p.res])).code, 0);
  const vb = await waitFor('b primary with a worker', async () => {
    const v = await view(p, p.b);
    return v.role === 'primary' && v.worker !== null ? v : null;
  });
  assert.deepEqual(vb.worker?.disk, { consistent: true, synchronized: null });
});
