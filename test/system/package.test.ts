// The package as an administrator gets it: `npm pack` from a clean copy of the tree, installed into
// a temporary prefix; the installed hastctl/hastd report their version, `hastctl check` judges the
// shipped example configuration (made local: loopback addresses, file components, device none), and
// two installed daemons started from it replicate a resource, with the installed `hastctl events`
// watching a role change and a sync and the metrics endpoint through `promtool check metrics`.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { freePort, type NodeSpec, startHastd } from '../harness/cluster.js';
import { DIST, run } from '../harness/process.js';
import { hasTool, requires, tmpDir, unmet } from '../harness/tools.js';
import { waitFor, waitInSync } from '../harness/wait.js';
import { registerKill } from '../harness/cleanup.js';
import { NbdClient } from '../../src/nbd/client.js';

const ROOT = dirname(DIST);
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/**
 * The example made runnable on one machine without root: node `hasta`/`hastb` blocks get their own
 * directory (control socket, pidfile, component, export) and loopback addresses, and `device none`.
 */
function localise(sample: string, nodes: Readonly<Record<string, NodeSpec>>): string {
  let current: NodeSpec | undefined;
  const out: string[] = [];
  const addr = (name: string): string => nodes[name]?.addr ?? '';
  const byIp: Record<string, string> = { '192.0.2.1': 'hasta', '192.0.2.2': 'hastb' };
  for (const line of sample.split('\n')) {
    const on = /^\s*on (\S+) \{/.exec(line);
    if (on !== null) current = nodes[on[1] ?? ''];
    if (/^\s*\}/.test(line)) {
      current = undefined;
      out.push(line);
      continue;
    }
    if (current === undefined) {
      out.push(line.replace(/^resource shared \{$/, 'resource shared {\n\tdevice none'));
      continue;
    }
    const d = current.dir;
    out.push(
      line
        .replace(/uds:\/\/\/var\/run\/hastctl/, `uds://${d}/control.sock`)
        .replace(/\/var\/run\/hastd\.pid/, `${d}/hastd.pid`)
        .replace(/listen tcp4:\/\/192\.0\.2\.\d:8457/, `listen tcp4://${current.addr}`)
        .replace(/local \/dev\/vdb/, `local ${d}/shared.img\n\t\texport uds://${d}/shared.sock`)
        .replace(/remote tcp4:\/\/(192\.0\.2\.\d)/, (_m, ip: string) => `remote tcp4://${addr(byIp[ip] ?? '')}`)
        .replace(/source tcp4:\/\/192\.0\.2\.\d/, `source tcp4://${current.addr.split(':')[0] ?? ''}`),
    );
  }
  return out.join('\n');
}

test('npm pack, install into a prefix, check the example, start two nodes from it', { timeout: 300_000 }, async (t) => {
  if (!requires(t, { tools: ['npm', 'tar', 'git'] })) return;
  const tmp = tmpDir(t, 'hastd-pkg-');
  // A clean tree: the tracked files only (as a fresh clone has them), with this tree's node_modules.
  const src = join(tmp, 'src');
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT }).toString().split('\0').filter(Boolean);
  for (const f of files) {
    if (!existsSync(join(ROOT, f))) continue;
    mkdirSync(dirname(join(src, f)), { recursive: true });
    copyFileSync(join(ROOT, f), join(src, f));
  }
  symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
  const pack = await run('npm', ['pack', '--pack-destination', tmp, '--json'], {
    timeoutMs: 180_000,
    env: { ...process.env, npm_config_cache: join(tmp, 'npm-cache') },
  });
  assert.equal(pack.code, 0, pack.stderr);
  const packed = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as {
    filename: string;
    files: { path: string }[];
  }[];
  const info = packed[0];
  assert.ok(info !== undefined);
  const paths = info.files.map((f) => f.path);
  for (const p of [
    'dist/src/cli/hastd.js',
    'dist/src/cli/hastctl.js',
    'contrib/hast.conf.sample',
    'man/hastctl.8',
    'native/hastio.cc',
  ])
    assert.ok(paths.includes(p), `${p} in the package`);
  for (const p of paths) assert.doesNotMatch(p, /^(dist\/(test|bench)|test|bench|\.ci)\//, `${p} must not be packed`);

  const prefix = join(tmp, 'prefix');
  const inst = await run(
    'npm',
    ['install', '--global', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', join(tmp, info.filename)],
    { timeoutMs: 240_000, env: { ...process.env, npm_config_cache: join(tmp, 'npm-cache') } },
  );
  assert.equal(inst.code, 0, inst.stderr);
  const pkg = join(prefix, 'lib', 'node_modules', 'hastd');
  assert.ok(existsSync(join(pkg, 'native', 'build', 'Release', 'hastio.node')), 'the addon was built at install');
  const hastctl = join(prefix, 'bin', 'hastctl');
  const hastd = join(prefix, 'bin', 'hastd');
  assert.deepEqual(await run(hastctl, ['--version']), { code: 0, stdout: `hastctl ${VERSION}\n`, stderr: '' });
  assert.deepEqual(await run(hastd, ['--version']), { code: 0, stdout: `hastd ${VERSION}\n`, stderr: '' });

  // The shipped systemd units, pointed at this prefix, pass systemd-analyze verify (no PID 1 needed);
  // it exits 0 on ignored lines, so its output must be empty too.
  if (hasTool('systemd-analyze') || unmet(t, 'requires systemd-analyze (package systemd)')) {
    const units = join(tmp, 'units');
    mkdirSync(units);
    for (const u of ['hastd.service', 'hastd-secondary@.service']) {
      const text = readFileSync(join(pkg, 'contrib', 'systemd', u), 'utf8').replaceAll(
        '/usr/local/bin',
        join(prefix, 'bin'),
      );
      assert.notEqual(text, readFileSync(join(pkg, 'contrib', 'systemd', u), 'utf8'));
      writeFileSync(join(units, u), text);
    }
    const v = await run('systemd-analyze', [
      'verify',
      '--man=no',
      join(units, 'hastd.service'),
      join(units, 'hastd-secondary@shared.service'),
    ]);
    assert.deepEqual(v, { code: 0, stdout: '', stderr: '' });
  }

  const nodes: Record<string, NodeSpec> = {};
  for (const [name, ip] of [
    ['hasta', '127.0.0.1'],
    ['hastb', '127.0.0.2'],
  ] as const) {
    const dir = join(tmp, name);
    mkdirSync(dir);
    nodes[name] = { name, addr: `${ip}:${await freePort(ip)}`, dir };
  }
  const conf = join(tmp, 'hast.conf');
  writeFileSync(conf, localise(readFileSync(join(pkg, 'contrib', 'hast.conf.sample'), 'latin1'), nodes));
  const ctl = (node: string, args: readonly string[]) =>
    run(hastctl, [args[0] ?? '', '-c', conf, '--node', node, ...args.slice(1)]);

  // Components missing: check says where (file:line of `local`) and what to do.
  const missing = await ctl('hasta', ['check']);
  assert.equal(missing.code, 78, missing.stderr);
  const localLine =
    readFileSync(conf, 'latin1')
      .split('\n')
      .findIndex((l) => l.includes(`${nodes.hasta?.dir}/shared.img`)) + 1;
  assert.match(missing.stderr, new RegExp(`${conf}:${localLine}: \\[shared\\] local component .*shared\\.img: ENOENT`));

  for (const n of Object.values(nodes)) {
    writeFileSync(join(n.dir, 'shared.img'), '');
    truncateSync(join(n.dir, 'shared.img'), 16 << 20);
    const noMd = await ctl(n.name, ['check']);
    assert.equal(noMd.code, 78);
    assert.match(noMd.stderr, /hastctl create shared/);
    const c = await ctl(n.name, ['create', 'shared']);
    assert.equal(c.code, 0, c.stderr);
    const ok = await ctl(n.name, ['check']);
    assert.deepEqual(ok, { code: 0, stdout: `${conf}: OK (1 resource).\n`, stderr: '' });
  }

  const a = nodes.hasta as NodeSpec;
  const b = nodes.hastb as NodeSpec;
  // Metrics on hasta (an `on hasta` block of its own: the sections add up).
  const metricsPort = await freePort('127.0.0.1');
  appendFileSync(conf, `on hasta {\n\tmetrics tcp4://127.0.0.1:${metricsPort}\n}\n`);
  const da = await startHastd(t, conf, a, [], hastd);
  await startHastd(t, conf, b, [], hastd);

  // The installed hastctl events, through a role change and a sync.
  const ev = spawn(hastctl, ['events', '-c', conf, '--node', 'hasta', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  registerKill(t, () => ev.pid);
  let evOut = '';
  ev.stdout.on('data', (d: Buffer) => {
    evOut += d.toString();
  });
  const evExit = new Promise<number | null>((r) => ev.once('exit', (code) => r(code)));
  const events = (): { event: string; [k: string]: unknown }[] =>
    evOut
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { event: string });
  const seen = (kind: string): Promise<unknown> =>
    waitFor(`event ${kind} in ${evOut}`, () => events().find((e) => e.event === kind), 60_000, 50);
  await seen('exists');

  // Primary alone first, writes the secondary will miss, then the secondary: a sync.
  const p = await ctl('hasta', ['role', 'primary', 'shared']);
  assert.equal(p.code, 0, p.stderr);
  await waitFor('export', () => existsSync(join(a.dir, 'shared.sock')));
  const client = await NbdClient.connect({ path: join(a.dir, 'shared.sock') });
  await client.write(0, randomBytes(1 << 20));
  await client.flush();
  await client.disconnect();
  assert.equal((await ctl('hastb', ['role', 'secondary', 'shared'])).code, 0);
  const w = await waitInSync('the installed pair', async () => {
    const s = await ctl('hasta', ['status', '--json', 'shared']);
    return (JSON.parse(s.stdout) as { worker: { status: string; dirty: number; sync: unknown } | null }[])[0]?.worker;
  });
  assert.equal(w.status, 'complete');
  await seen('sync-done');
  const kinds = events().map((e) => e.event);
  for (const k of ['exists', 'role', 'connect', 'sync-start', 'sync-done'])
    assert.ok(kinds.includes(k), `${k} in ${kinds.join(' ')}`);
  assert.ok(events().some((e) => e.event === 'role' && e.old === 'init' && e.new === 'primary'));

  // The installed daemon's metrics, through promtool.
  if (hasTool('promtool') || unmet(t, 'requires promtool (package prometheus)')) {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const check = await run('promtool', ['check', 'metrics'], { input: text });
    assert.deepEqual([check.code, `${check.stdout}${check.stderr}`.trim()], [0, ''], text);
    assert.match(text, /^hastd_resource_role\{resource="shared",role="primary"\} 1$/m);
    assert.match(text, new RegExp(`^hastd_build_info\\{version="${VERSION.replaceAll('.', '\\.')}"\\} 1$`, 'm'));
  }

  assert.equal(await da.stop(), 0);
  assert.equal(await evExit, 0, 'events ends cleanly when hastd stops');
});
