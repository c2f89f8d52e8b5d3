// `hastctl role` and `hastctl create` against real hastd processes (issue 13): role primary tells
// the truth about its worker, refuses to make a second primary, create refuses an active or locked
// resource, and an ordinary switchover logs nothing at ERROR.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import {
  hastctl,
  makePair,
  startHastd,
  startRole,
  statusJson,
  waitNodeInSync,
  workerOf,
  writeConfig,
  type NodeSpec,
} from '../harness/cluster.js';
import { requires, tmpDir } from '../harness/tools.js';
import { registerKill } from '../harness/cleanup.js';
import { waitFor } from '../harness/wait.js';

const MiB = 1 << 20;
let nextPort = 30000 + (process.pid % 20000);

function soloNode(t: TestContext, size = 16 * MiB): { conf: string; node: NodeSpec; img: string; sock: string } {
  const dir = tmpDir(t);
  const node: NodeSpec = { name: 'solo', addr: `127.0.0.1:${nextPort++}`, dir };
  const conf = join(dir, 'hast.conf');
  writeConfig(conf, [node], [{ name: 'r0' }]);
  const img = join(dir, 'r0.img');
  writeFileSync(img, '');
  truncateSync(img, size);
  return { conf, node, img, sock: join(dir, 'r0.sock') };
}

describe('hastctl role primary tells the truth', () => {
  test('no metadata: exit 66 with the reason, role init, status and --json show lasterror', async (t) => {
    const { conf, node } = soloNode(t);
    await startHastd(t, conf, node);
    const r = await hastctl(conf, 'solo', ['role', 'primary', 'r0']);
    assert.equal(r.code, 66, r.stderr);
    assert.match(
      r.stderr,
      /^hastctl: \[r0\] Unable to become primary: Unable to read metadata from .*r0\.img: .*The role fell back to init\.\n$/,
    );
    const st = await statusJson(conf, 'solo', 'r0');
    assert.equal(st.role, 'init');
    assert.match(String(st.lasterror), /Unable to read metadata/);
    const text = await hastctl(conf, 'solo', ['list', 'r0']);
    assert.match(text.stdout, /^ {2}role: init\n {2}lasterror: Unable to read metadata/m);
  });

  test('missing component: exit 66; after create the same command succeeds silently and lasterror is gone', async (t) => {
    const { conf, node, img, sock } = soloNode(t);
    const { rmSync } = await import('node:fs');
    rmSync(img);
    await startHastd(t, conf, node);
    const r = await hastctl(conf, 'solo', ['role', 'primary', 'r0']);
    assert.equal(r.code, 66, r.stderr);
    assert.match(r.stderr, /Unable to open .*r0\.img/);
    writeFileSync(img, '');
    truncateSync(img, 16 * MiB);
    assert.equal((await hastctl(conf, 'solo', ['create', 'r0'])).code, 0);
    const ok = await hastctl(conf, 'solo', ['role', 'primary', 'r0']);
    assert.deepEqual([ok.code, ok.stdout, ok.stderr], [0, '', '']);
    const { existsSync } = await import('node:fs');
    assert.ok(existsSync(sock), 'the export exists when role primary returns');
    const st = await statusJson(conf, 'solo', 'r0');
    assert.equal(st.role, 'primary');
    assert.equal(st.lasterror, null);
    const text = await hastctl(conf, 'solo', ['list', 'r0']);
    assert.doesNotMatch(text.stdout, /lasterror/, 'FreeBSD format in the success case');
  });
});

describe('hastctl create refuses a live resource', () => {
  test('refused (75) while primary; the recipe role init; create; role secondary works', async (t) => {
    const { conf, node, sock } = soloNode(t);
    assert.equal((await hastctl(conf, 'solo', ['create', 'r0'])).code, 0, 'no daemon running: fine');
    await startRole(t, conf, node, 'r0', 'primary', sock);
    const before = await hastctl(conf, 'solo', ['dump', 'r0']);
    const r = await hastctl(conf, 'solo', ['create', '-e', '1M', 'r0']);
    assert.equal(r.code, 75, r.stderr);
    assert.match(r.stderr, /Refusing to create metadata: hastd runs the resource as primary.*hastctl role init r0/);
    assert.equal((await hastctl(conf, 'solo', ['dump', 'r0'])).stdout, before.stdout, 'metadata untouched');
    assert.equal((await hastctl(conf, 'solo', ['role', 'init', 'r0'])).code, 0);
    const c = await hastctl(conf, 'solo', ['create', '-e', '1M', 'r0']);
    assert.equal(c.code, 0, c.stderr);
    assert.match((await hastctl(conf, 'solo', ['dump', 'r0'])).stdout, /extentsize: 1048576/);
    const s = await hastctl(conf, 'solo', ['role', 'secondary', 'r0']);
    assert.equal(s.code, 0, s.stderr);
    const refused = await hastctl(conf, 'solo', ['create', 'r0']);
    assert.equal(refused.code, 75, 'secondary is not init either');
  });

  test('refused (75) while another process holds the component lock', async (t) => {
    if (!requires(t, { tools: ['flock'], native: true })) return;
    const { conf, img } = soloNode(t);
    const holder = spawn('flock', ['-x', img, 'sleep', '60'], { stdio: 'ignore' });
    registerKill(t, holder.pid ?? -1);
    const { execFileSync } = await import('node:child_process');
    await waitFor('flock to hold the lock', () => {
      try {
        execFileSync('flock', ['-n', '-x', img, 'true'], { stdio: 'ignore' });
        return false;
      } catch {
        return true;
      }
    });
    const r = await hastctl(conf, 'solo', ['create', 'r0']);
    assert.equal(r.code, 75, r.stderr);
    assert.match(r.stderr, /is locked by another process/);
  });
});

describe('one primary at a time', () => {
  test('role primary on a connected secondary is refused (75) unless --force', async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
    await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
    await waitNodeInSync(p.conf, p.a.name);
    await waitFor('the secondary worker', async () => (await workerOf(p.conf, p.b.name)) !== null);
    const r = await hastctl(p.conf, p.b.name, ['role', 'primary', p.res]);
    assert.equal(r.code, 75, r.stderr);
    assert.match(r.stderr, /Refusing to change the role from secondary to primary: a primary is connected.*--force/);
    assert.equal((await statusJson(p.conf, p.b.name, p.res)).role, 'secondary');
    assert.notEqual(await workerOf(p.conf, p.b.name), null, 'still replicating');
    // The administrator's override: a's replication connection is dropped.
    const f = await hastctl(p.conf, p.b.name, ['role', 'primary', '--force', p.res]);
    assert.equal(f.code, 0, f.stderr);
    assert.equal((await statusJson(p.conf, p.b.name, p.res)).role, 'primary');
  });

  test('--force is an option of role only', async (t) => {
    const { conf } = soloNode(t);
    const r = await hastctl(conf, 'solo', ['status', '--force']);
    assert.equal(r.code, 64);
  });
});

describe('planned switchover', () => {
  // Issue 13 finding 10: an alert on ERROR must not page on every switchover. Before, the
  // secondary logged ERROR "Unable to receive request header: Connection closed by …" on every
  // demotion of its primary, and the listener ERROR "Unable to receive header from …" for
  // contrib/ucarp's TCP probe.
  test('primary → secondary and back, and a ucarp peer probe, log nothing at ERROR on either node', async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    const b = await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
    const a = await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
    await waitNodeInSync(p.conf, p.a.name);
    // The switchover as vip-down.sh / vip-up.sh do it: demote a, then promote b.
    assert.equal((await hastctl(p.conf, p.a.name, ['role', 'secondary', p.res])).code, 0);
    await waitFor('b to lose its secondary worker', async () => (await workerOf(p.conf, p.b.name)) === null);
    assert.equal((await hastctl(p.conf, p.b.name, ['role', 'primary', p.res])).code, 0);
    await waitNodeInSync(p.conf, p.b.name);
    assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);
    await waitFor('a to lose its secondary worker', async () => (await workerOf(p.conf, p.a.name)) === null);
    assert.equal((await hastctl(p.conf, p.a.name, ['role', 'primary', p.res])).code, 0);
    await waitNodeInSync(p.conf, p.a.name);
    // contrib/ucarp's peer_alive: connect to the peer's listen address and close at once.
    const { connect } = await import('node:net');
    const [host, port] = p.b.addr.split(':');
    await new Promise<void>((resolve) => {
      const s = connect({ host: host ?? '', port: Number(port) }, () => s.end());
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 500));
    for (const [name, d] of [
      ['a', a],
      ['b', b],
    ] as const) {
      const errors = d
        .output()
        .split('\n')
        .filter((l) => /^(\S+ )?\[ERROR\]/.test(l));
      assert.deepEqual(errors, [], `node ${name} logged at ERROR:\n${d.output()}`);
    }
  });
});
