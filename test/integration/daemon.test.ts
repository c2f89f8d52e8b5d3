// hastd + hastctl on one node: usage errors, config errors, create/dump, roles, status, the NBD export,
// pidfile locking, worker restart, and the write-ahead activemap after SIGKILL of the worker.
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, readSync, writeFileSync, truncateSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import { hastctl, startHastd, statusJson, writeConfig, type NodeSpec } from '../harness/cluster.js';
import { requires, tmpDir } from '../harness/tools.js';
import { DIST, HASTCTL, HASTD, run } from '../harness/process.js';
import { sleep, waitFor } from '../harness/wait.js';

const MiB = 1 << 20;

let nextPort = 20000 + (process.pid % 20000);
function soloNode(t: TestContext, size = 64 * MiB): { conf: string; node: NodeSpec; img: string; sock: string } {
  const dir = tmpDir(t);
  const node: NodeSpec = { name: 'solo', addr: `127.0.0.1:${nextPort++}`, dir };
  const conf = join(dir, 'hast.conf');
  writeConfig(conf, [node], [{ name: 'r0' }]);
  const img = join(dir, 'r0.img');
  writeFileSync(img, '');
  truncateSync(img, size);
  return { conf, node, img, sock: join(dir, 'r0.sock') };
}

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

describe('command line', () => {
  test('hastctl without arguments prints usage and exits 64', async () => {
    const r = await run(process.execPath, [HASTCTL]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /usage: hastctl create/);
  });

  test('hastctl with an unknown sub-command or option exits 64 with usage', async () => {
    const a = await run(process.execPath, [HASTCTL, 'frobnicate']);
    assert.equal(a.code, 64);
    assert.match(a.stderr, /usage:/);
    const b = await run(process.execPath, [HASTCTL, 'status', '--bogus']);
    assert.equal(b.code, 64);
    assert.match(b.stderr, /usage:/);
  });

  test('hastctl role without a resource name exits 64', async (t) => {
    const { conf } = soloNode(t);
    const r = await hastctl(conf, 'solo', ['role', 'primary']);
    assert.equal(r.code, 64);
    // What is wrong comes first, then the usage text.
    assert.match(r.stderr, /^hastctl: role primary: no resource name given \(a name, or all\)\nusage:/);
    const bad = await hastctl(conf, 'solo', ['role', 'master', 'r0']);
    assert.equal(bad.code, 64);
    assert.match(bad.stderr, /^hastctl: role: invalid role master \(expected init, primary or secondary\)\nusage:/);
  });

  test('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(join(DIST, '..', 'package.json'), 'utf8')) as { version: string };
    assert.deepEqual(await run(process.execPath, [HASTCTL, '--version']), {
      code: 0,
      stdout: `hastctl ${version}\n`,
      stderr: '',
    });
    assert.deepEqual(await run(process.execPath, [HASTD, '--version']), {
      code: 0,
      stdout: `hastd ${version}\n`,
      stderr: '',
    });
  });

  test('impossible addresses are refused while parsing, with file:line and keyword', async (t) => {
    const dir = tmpDir(t);
    for (const [stmt, why] of [
      [
        'listen tcp4://127.0.0.1:99999',
        /Invalid listen address tcp4:\/\/127\.0\.0\.1:99999: port 99999 out of range 1\.\.65535/,
      ],
      ['listen 127.0.0.256', /Invalid listen address 127\.0\.0\.256: '127\.0\.0\.256' is not an IPv4 address/],
    ] as const) {
      const conf = join(dir, 'bad.conf');
      writeFileSync(conf, `# a comment\n${stmt}\n`);
      for (const cmd of [['check'], ['status']]) {
        const r = await hastctl(conf, 'x', cmd);
        assert.equal(r.code, 78, r.stderr);
        assert.match(r.stderr, new RegExp(`${conf}:2: `));
        assert.match(r.stderr, why);
      }
      const d = await run(process.execPath, [HASTD, '-n', '-c', conf, '--node', 'x']);
      assert.equal(d.code, 78);
      assert.match(d.stderr, why);
    }
  });

  test('hastd with a stray argument prints usage and exits 64', async () => {
    const r = await run(process.execPath, [HASTD, '-F', 'extra']);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /usage: hastd/);
  });

  test('a configuration error names the file and line and exits 78', async (t) => {
    const dir = tmpDir(t);
    const conf = join(dir, 'bad.conf');
    writeFileSync(conf, 'resource mirror {\non skunk1 {\nlocal /dev/da0s2\non skunk2 {\nlocal /dev/da0s2\n');
    const r = await hastctl(conf, 'skunk1', ['status']);
    assert.equal(r.code, 78);
    assert.ok(r.stderr.includes(`${conf}:`), r.stderr);
    const d = await run(process.execPath, [HASTD, '-F', '-c', conf, '--node', 'skunk1']);
    assert.equal(d.code, 78);
    assert.ok(d.stderr.includes(conf), d.stderr);
  });

  test('a missing configuration file exits 72', async (t) => {
    const dir = tmpDir(t);
    const r = await hastctl(join(dir, 'nope.conf'), 'x', ['status']);
    assert.equal(r.code, 72);
  });

  test('hastctl status without a daemon exits 71', async (t) => {
    const { conf } = soloNode(t);
    const r = await hastctl(conf, 'solo', ['status']);
    assert.equal(r.code, 71);
    assert.match(r.stderr, /Unable to connect to hastd via .*control\.sock: .*: is hastd running\?/);
  });

  test('hastd -n and hastctl check pass a good configuration with created metadata', async (t) => {
    const { conf } = soloNode(t);
    assert.equal((await hastctl(conf, 'solo', ['create', 'r0'])).code, 0);
    const d = await run(process.execPath, [HASTD, '-n', '-c', conf, '--node', 'solo']);
    assert.deepEqual(d, { code: 0, stdout: `${conf}: OK (1 resource).\n`, stderr: '' });
  });

  test('check names file:line for an unusable export/device pair, a shared component and a hook that cannot run', async (t) => {
    const { conf, node, img } = soloNode(t);
    const hook = join(node.dir, 'hook.sh');
    writeFileSync(hook, '#!/bin/sh\n', { mode: 0o644 });
    const text = readFileSync(conf, 'latin1').replace(
      'resource r0 {',
      `resource r1 {\n  exec ${hook}\n  on solo {\n    local ${img}\n    export tcp://127.0.0.1:10809\n    device fuse\n    remote none\n  }\n}\nresource r0 {`,
    );
    writeFileSync(conf, text);
    assert.equal((await hastctl(conf, 'solo', ['create', 'r0'])).code, 0);
    const r = await hastctl(conf, 'solo', ['check']);
    assert.equal(r.code, 78);
    const lines = text.split('\n');
    const at = (needle: string, from = 0): number => lines.findIndex((l, i) => i >= from && l.includes(needle)) + 1;
    assert.ok(r.stderr.includes(`${conf}:${at('device fuse')}: [r1] device fuse needs a unix-socket export`), r.stderr);
    assert.ok(r.stderr.includes(`${conf}:${at(`exec ${hook}`)}: [r1] exec ${hook} is not executable.`), r.stderr);
    assert.ok(
      r.stderr.includes(
        `${conf}:${at(`local ${img}`, at('resource r0'))}: [r0] local component ${img} is also used by resource r1.`,
      ),
      r.stderr,
    );
    // r1's component holds r0's metadata.
    assert.match(r.stderr, /\[r1\] Provider .* is not part of resource r1\. Initialise it with "hastctl create r1"/);
    // Only r0: its own checks pass, the shared component is still reported.
    const only = await hastctl(conf, 'solo', ['check', 'r0']);
    assert.equal(only.code, 78);
    assert.doesNotMatch(only.stderr, /device fuse|not executable/);
    const unknown = await hastctl(conf, 'solo', ['check', 'nosuch']);
    assert.match(unknown.stderr, /Unknown resource nosuch\./);
  });
});

describe('create and dump', () => {
  test('create writes metadata that dump prints in the upstream format', async (t) => {
    const { conf } = soloNode(t, 10 * MiB);
    const c = await hastctl(conf, 'solo', ['create', '-e', '1M', '-k', '32', 'r0']);
    assert.equal(c.code, 0, c.stderr);
    const d = await hastctl(conf, 'solo', ['dump', 'r0']);
    assert.equal(d.code, 0, d.stderr);
    // 10 MiB - 4096 → 10 extents of 1 MiB → 2 bytes of map → 512 bytes (one sector).
    assert.equal(
      d.stdout,
      [
        'resource: r0',
        `    datasize: ${10 * MiB - 4096 - 512} (10MB)`,
        '    extentsize: 1048576 (1.0MB)',
        '    keepdirty: 32',
        '    localoff: 4608',
        '    resuid: 0',
        '    localcnt: 0',
        '    remotecnt: 0',
        '    prevrole: init',
        '',
      ].join('\n'),
    );
  });

  test('create refuses an extent size that is not a power of two', async (t) => {
    const { conf } = soloNode(t);
    const r = await hastctl(conf, 'solo', ['create', '-e', '3M', 'r0']);
    assert.notEqual(r.code, 0);
  });

  test('create refuses a garbage size with exit 64', async (t) => {
    const { conf } = soloNode(t);
    const r = await hastctl(conf, 'solo', ['create', '-e', '12Q', 'r0']);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /^hastctl: Invalid extentsize "12Q"\. Accepted: .* 2MiB, 1G/);
  });

  test('create takes sizes as administrators write them (2MiB, 1G)', async (t) => {
    const { conf } = soloNode(t);
    const r = await hastctl(conf, 'solo', ['create', '-e', '2MiB', '-k', '64', 'r0']);
    assert.equal(r.code, 0, r.stderr);
    assert.match((await hastctl(conf, 'solo', ['dump', 'r0'])).stdout, /extentsize: 2097152/);
  });

  test('create of an unknown resource exits 65', async (t) => {
    const { conf } = soloNode(t);
    const r = await hastctl(conf, 'solo', ['create', 'nosuch']);
    assert.equal(r.code, 65);
  });
});

describe('daemon and roles', () => {
  test('resources start in init; role primary serves the data area over NBD; role init removes it', async (t) => {
    if (!requires(t, { tools: ['nbdinfo', 'qemu-io'] })) return;
    const { conf, node, img, sock } = soloNode(t);
    assert.equal((await hastctl(conf, 'solo', ['create', 'r0'])).code, 0);
    const d = await startHastd(t, conf, node);
    const st0 = await statusJson(conf, 'solo', 'r0');
    assert.equal(st0.role, 'init');
    assert.equal(st0.workerpid, 0);
    assert.equal(existsSync(sock), false);

    const r = await hastctl(conf, 'solo', ['role', 'primary', 'r0']);
    assert.equal(r.code, 0, r.stderr);
    await waitFor('export socket', () => existsSync(sock));
    const st1 = await statusJson(conf, 'solo', 'r0');
    assert.equal(st1.role, 'primary');
    assert.ok((st1.workerpid as number) > 0);
    assert.equal((st1.worker as { status: string }).status, 'degraded');

    const text = await hastctl(conf, 'solo', ['status', 'r0']);
    assert.match(
      text.stdout,
      /^r0:\n {2}role: primary\n {2}provname: r0\n {2}localpath: .*r0\.img\n {2}extentsize: 2097152 \(2\.0MB\)\n {2}keepdirty: 64\n {2}remoteaddr: none\n {2}replication: memsync\n {2}status: degraded\n {2}workerpid: \d+\n {2}dirty: \d+ \(.*B\)\n {2}disk: consistent\n {2}statistics:\n/,
    );

    const info = await run('nbdinfo', ['--json', `nbd+unix:///?socket=${sock}`]);
    assert.equal(info.code, 0, info.stderr);
    const dump = await hastctl(conf, 'solo', ['dump', 'r0']);
    const dataSize = Number(/datasize: (\d+)/.exec(dump.stdout)?.[1]);
    const localOff = Number(/localoff: (\d+)/.exec(dump.stdout)?.[1]);
    const exp = (JSON.parse(info.stdout) as { exports: { 'export-size': number }[] }).exports[0];
    assert.equal(exp?.['export-size'], dataSize);

    const q = await run('qemu-io', [
      '-f',
      'raw',
      '-c',
      'write -P 0x5a 65536 131072',
      '-c',
      'flush',
      `nbd+unix:///?socket=${sock}`,
    ]);
    assert.equal(q.code, 0, q.stderr + q.stdout);
    // The write landed at localoff + offset on the component, nowhere else.
    assert.ok(readAt(img, localOff + 65536, 131072).every((b) => b === 0x5a));
    assert.ok(readAt(img, localOff + 65536 - 512, 512).every((b) => b === 0));
    const st2 = await statusJson(conf, 'solo', 'r0');
    const stats = (st2.worker as { stats: { writes: number; flushes: number } }).stats;
    assert.ok(stats.writes >= 1);
    assert.ok(stats.flushes >= 1);
    // remote none: the written extent stays dirty.
    assert.equal((st2.worker as { dirty: number }).dirty, 2 * MiB);

    assert.equal((await hastctl(conf, 'solo', ['role', 'init', 'r0'])).code, 0);
    assert.equal(existsSync(sock), false);
    const st3 = await statusJson(conf, 'solo', 'r0');
    assert.equal(st3.workerpid, 0);
    assert.match((await hastctl(conf, 'solo', ['dump', 'r0'])).stdout, /prevrole: primary/);
    assert.equal(await d.stop(), 0);
    // -F outside the journal: every line led by its time.
    assert.match(
      d.output(),
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[INFO\] Started successfully, running protocol version 2\./m,
    );
  });

  test('an unknown resource in role/status gives error 1', async (t) => {
    const { conf, node } = soloNode(t);
    await startHastd(t, conf, node);
    const r = await hastctl(conf, 'solo', ['role', 'primary', 'nosuch']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Unknown resource nosuch \(not in hastd's configuration\)\./);
    const s = await hastctl(conf, 'solo', ['status', 'nosuch']);
    assert.equal(s.code, 1);
    assert.match(s.stdout, /nosuch:\n {2}error: 1/);
    assert.match(s.stderr, /Unknown resource nosuch/);
  });

  test('a second hastd with the same pidfile refuses to start (exit 75)', async (t) => {
    const { conf, node } = soloNode(t);
    const pid = join(node.dir, 'p.pid');
    await startHastd(t, conf, node, ['-P', pid]);
    const r = await run(process.execPath, [HASTD, '-F', '-c', conf, '--node', 'solo', '-P', pid]);
    assert.equal(r.code, 75);
    assert.match(r.stderr, /Another hastd is already running, pidfile: .*, pid: \d+\./);
  });

  test('a killed primary worker is restarted and the role stays primary', async (t) => {
    const { conf, node, sock } = soloNode(t);
    assert.equal((await hastctl(conf, 'solo', ['create', 'r0'])).code, 0);
    await startHastd(t, conf, node);
    assert.equal((await hastctl(conf, 'solo', ['role', 'primary', 'r0'])).code, 0);
    await waitFor('export socket', () => existsSync(sock));
    const pid1 = (await statusJson(conf, 'solo', 'r0')).workerpid as number;
    process.kill(pid1, 'SIGKILL');
    const pid2 = await waitFor('a new worker', async () => {
      const st = await statusJson(conf, 'solo', 'r0');
      const p = st.workerpid as number;
      return p > 0 && p !== pid1 ? p : 0;
    });
    assert.notEqual(pid2, pid1);
    assert.equal((await statusJson(conf, 'solo', 'r0')).role, 'primary');
  });
});

describe('reload (SIGHUP)', () => {
  /**
   * True when something listens on addr ("host:port"): the connection is accepted, or accepted and
   * reset at once (hastd resets a connection from an address it does not know, and the reset can
   * reach the client before its connect event); false when it is refused.
   */
  function connects(addr: string): Promise<boolean> {
    const [host, port] = addr.split(':');
    return new Promise((resolve) => {
      const s = connect({ host, port: Number(port) });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNRESET'));
    });
  }

  test('a new listen address is opened and the removed one closed; an added resource appears; a broken file changes nothing', async (t) => {
    const { conf, node } = soloNode(t);
    const d = await startHastd(t, conf, node);
    assert.equal(await connects(node.addr), true);
    const moved: NodeSpec = { ...node, addr: `127.0.0.1:${nextPort++}` };
    writeConfig(conf, [moved], [{ name: 'r0' }, { name: 'r1' }]);
    process.kill(d.pid, 'SIGHUP');
    await waitFor('reload', () => /Resource r1 added\./.test(d.output()));
    await waitFor('reload logged', () => /\[INFO\] Configuration reloaded\./.test(d.output()));
    assert.match(d.output(), new RegExp(`Listening on new address tcp4://${moved.addr}\\.`));
    assert.match(d.output(), new RegExp(`No longer listening on address tcp4://${node.addr}\\.`));
    assert.equal(await connects(moved.addr), true);
    assert.equal(await connects(node.addr), false);
    assert.equal((await statusJson(conf, 'solo', 'r1')).role, 'init');

    writeFileSync(conf, 'resource r0 {\n');
    process.kill(d.pid, 'SIGHUP');
    await waitFor('refusal', () => /Configuration not reloaded/.test(d.output()));
    assert.equal(await connects(moved.addr), true);
    writeConfig(conf, [moved], [{ name: 'r0' }, { name: 'r1' }]);
    assert.equal((await statusJson(conf, 'solo', 'r1')).role, 'init');
  });
});

describe('activemap', () => {
  test('after SIGKILL of the primary worker during writes, the on-disk bitmap covers every extent with a write in flight', async (t) => {
    const { conf, node, img, sock } = soloNode(t, 128 * MiB);
    // Small extents so the load touches many of them; keepdirty small so the LRU churns.
    assert.equal((await hastctl(conf, 'solo', ['create', '-e', '256k', '-k', '4', 'r0'])).code, 0);
    await startHastd(t, conf, node);
    assert.equal((await hastctl(conf, 'solo', ['role', 'primary', 'r0'])).code, 0);
    await waitFor('export socket', () => existsSync(sock));
    const dump = (await hastctl(conf, 'solo', ['dump', 'r0'])).stdout;
    const dataSize = Number(/datasize: (\d+)/.exec(dump)?.[1]);
    const extentSize = 256 * 1024;
    const workerPid = (await statusJson(conf, 'solo', 'r0')).workerpid as number;

    const client = await NbdClient.connect({ path: sock });
    const inflight = new Set<number>();
    let stop = false;
    const issued: number[] = [];
    const lanes = Array.from({ length: 16 }, async (_, lane) => {
      let i = 0;
      while (!stop) {
        const extent = (lane * 7919 + i * 104729) % Math.floor(dataSize / extentSize);
        i++;
        const off = extent * extentSize;
        inflight.add(off);
        issued.push(extent);
        try {
          await client.write(off, Buffer.alloc(65536, lane + 1));
        } catch {
          return; // connection died with the worker
        }
        inflight.delete(off);
      }
    });
    await sleep(400);
    const inFlightAtKill = [...inflight];
    process.kill(workerPid, 'SIGKILL');
    stop = true;
    await Promise.allSettled(lanes);
    client.destroy?.();
    assert.ok(issued.length > 16, 'the load ran');
    // Bitmap at 4096, bit n = byte n>>3, bit n&7. The write-ahead invariant: any extent whose data
    // reached the component has its bit on disk (writes queued but not yet issued touched nothing).
    const bitmap = readAt(img, 4096, Math.ceil(dataSize / extentSize / 8));
    const localOff = Number(/localoff: (\d+)/.exec(dump)?.[1]);
    let touched = 0;
    for (let e = 0; e < Math.floor(dataSize / extentSize); e++) {
      const head = readAt(img, localOff + e * extentSize, 65536);
      if (head.every((b) => b === 0)) continue;
      touched++;
      assert.ok((bitmap[e >> 3]! & (1 << (e & 7))) !== 0, `extent ${e} holds written data but its bit is clear`);
    }
    assert.ok(touched > 0, 'some extents were written');
    assert.ok(inFlightAtKill.length >= 0);
  });
});
