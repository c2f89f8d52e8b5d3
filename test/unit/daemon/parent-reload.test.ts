// The parent's SIGHUP reload acting on config/diff.ts (HAST-SPEC §10.3), with fake workers: which
// resources are restarted, reloaded live, added, removed or left alone, and which hooks run.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/index.js';
import type { HastConfig } from '../../../src/config/types.js';
import type { Role } from '../../../src/control/messages.js';
import { HastdParent } from '../../../src/daemon/parent.js';
import type { ResourceState } from '../../../src/daemon/resource-state.js';

interface FakeWorker {
  readonly child: ChildProcess;
  readonly sent: { type: string }[];
  readonly kills: string[];
}

function fakeWorker(): FakeWorker {
  const sent: { type: string }[] = [];
  const kills: string[] = [];
  const child: ChildProcess = Object.assign(new EventEmitter(), {
    pid: 4242,
    connected: true,
    exitCode: null,
    signalCode: null,
    send: (m: { type: string }) => sent.push(m) > 0,
    kill: (signal: NodeJS.Signals) => {
      kills.push(signal);
      // As a real child: the exit is recorded, so stopping it again does not signal it again.
      Object.assign(child, { signalCode: signal });
      setImmediate(() => child.emit('exit', null, signal));
      return true;
    },
  }) as unknown as ChildProcess;
  return { child, sent, kills };
}

const res = (name: string, node = '', body = '') =>
  `resource ${name} {\n${body}on a {\nlocal /dev/${name}\nremote 10.0.0.2\n${node}}\n}\n`;
const conf = (text: string): HastConfig => parseConfig(`exec /hook\n${text}`, 'hast.conf', { hostNames: ['a'] });

function rig(before: string): {
  parent: HastdParent;
  hooks: string[][];
  started: string[];
  pidfiles: string[];
  load: (text: string) => void;
} {
  let next: HastConfig | null = null;
  const hooks: string[][] = [];
  const started: string[] = [];
  const pidfiles: string[] = [];
  const parent = new HastdParent(conf(before), {
    debugLevel: 0,
    foreground: true,
    stateDir: '/nonexistent',
    reloadConfig: () => next ?? assert.fail('no config to reload'),
    runHook: (_exec, args) => hooks.push([...args]),
    pidfileChanged: (path) => pidfiles.push(path),
  });
  // A primary is forked by setRole(); a fake stands in so no process starts.
  parent.startWorker = (r: ResourceState, role: 'primary' | 'secondary'): ChildProcess => {
    started.push(`${r.cfg.name}:${role}`);
    const w = fakeWorker();
    r.worker = w.child;
    r.workerRole = role;
    return w.child;
  };
  return { parent, hooks, started, pidfiles, load: (text) => (next = conf(text)) };
}

function running(parent: HastdParent, name: string, role: Role): FakeWorker {
  const r = parent.resources.get(name) ?? assert.fail(`no resource ${name}`);
  r.role = role;
  const w = fakeWorker();
  if (role !== 'init') {
    r.worker = w.child;
    r.workerRole = role;
  }
  return w;
}

test('reload: a changed primary is reloaded live, a changed secondary restarted, a changed init resource takes the config', async () => {
  const before = res('p') + res('s') + res('i') + res('same');
  const { parent, hooks, started, load } = rig(before);
  const p = running(parent, 'p', 'primary');
  const s = running(parent, 's', 'secondary');
  running(parent, 'i', 'init');
  const same = running(parent, 'same', 'secondary');
  load(res('p', '', 'timeout 5\n') + res('s', '', 'timeout 5\n') + res('i', '', 'timeout 5\n') + res('same'));
  await parent.reload();

  assert.deepEqual(
    p.sent.map((m) => m.type),
    ['reload'],
    'the primary worker got the new config',
  );
  assert.deepEqual(p.kills, [], 'and kept running');
  assert.deepEqual(s.kills, ['SIGINT'], 'the secondary worker was stopped');
  assert.deepEqual(same.kills, [], 'an unchanged resource is left alone');
  assert.deepEqual(hooks, [
    ['role', 's', 'secondary', 'init'],
    ['role', 's', 'init', 'secondary'],
  ]);
  assert.deepEqual(started, [], 'a secondary waits for its primary to connect');
  for (const name of ['p', 's', 'i'])
    assert.equal(parent.resources.get(name)?.cfg.timeout, 5, `${name} has the new config`);
  assert.equal(parent.resources.get('s')?.role, 'secondary');
  assert.equal(parent.cfg.resources.find((r) => r.name === 'i')?.timeout, 5, 'the new config is the running one');
});

test('reload: a changed local path restarts even a primary (init, then primary again)', async () => {
  const { parent, hooks, started, load } = rig(res('p'));
  const p = running(parent, 'p', 'primary');
  load(res('p').replace('local /dev/p', 'local /dev/q'));
  await parent.reload();
  assert.deepEqual(p.sent, [], 'no live reload');
  assert.deepEqual(p.kills, ['SIGTERM']);
  assert.deepEqual(started, ['p:primary']);
  assert.deepEqual(hooks, [
    ['role', 'p', 'primary', 'init'],
    ['role', 'p', 'init', 'primary'],
  ]);
  assert.equal(parent.resources.get('p')?.cfg.localPath, '/dev/q');
});

test('reload: removed resources go to init and are dropped, new ones are added in init, a new pidfile is reported', async () => {
  const { parent, hooks, pidfiles, load } = rig(res('gone') + res('kept'));
  const gone = running(parent, 'gone', 'secondary');
  load(`pidfile /run/other.pid\n${res('kept')}${res('new')}`);
  await parent.reload();
  assert.deepEqual(gone.kills, ['SIGINT']);
  assert.deepEqual(hooks, [['role', 'gone', 'secondary', 'init']]);
  assert.deepEqual([...parent.resources.keys()], ['kept', 'new']);
  assert.equal(parent.resources.get('new')?.role, 'init');
  assert.deepEqual(pidfiles, ['/run/other.pid']);
});

test('reload: an unchanged file changes nothing and reports no pidfile', async () => {
  const { parent, hooks, pidfiles, load } = rig(res('p'));
  const p = running(parent, 'p', 'primary');
  load(res('p'));
  await parent.reload();
  assert.deepEqual([p.sent, p.kills, hooks, pidfiles], [[], [], [], []]);
});
