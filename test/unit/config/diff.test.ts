// Unit tests for the reload decision of HAST-SPEC §10.3 on pairs of configs.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, diffConfig, reloadAction } from '../../../src/config/index.js';

const cfg = (text: string) => parseConfig(text, 'f', { nodeName: 'a' });
const res = (name: string, body = '', node = '') =>
  `resource ${name} {\n${body}on a {\nlocal /dev/${name}\nremote 10.0.0.2\n${node}}\n}\n`;

describe('diffConfig()', () => {
  test('identical configs: nothing changed, every listen kept', () => {
    const c = cfg(`listen 10.0.0.1\n${res('r')}`);
    const d = diffConfig(c, cfg(`listen 10.0.0.1\n${res('r')}`));
    assert.equal(d.controlChanged, false);
    assert.equal(d.pidFileChanged, false);
    assert.equal(d.listenChanged, false);
    assert.deepEqual([...d.resources], [['r', { kind: 'unchanged', restartAlways: false, changed: [] }]]);
  });

  test('control, pidfile and listen changes', () => {
    const d = diffConfig(
      cfg('listen 10.0.0.1\nlisten 10.0.0.2\n'),
      cfg('control /run/new.sock\npidfile /run/new.pid\nlisten 10.0.0.2\nlisten 10.0.0.3\n'),
    );
    assert.equal(d.controlChanged, true);
    assert.equal(d.pidFileChanged, true);
    assert.equal(d.listenChanged, true);
  });

  test('the control socket is compared by path: another spelling of the same path is no change', () => {
    const d = diffConfig(cfg('control /run/hastctl\n'), cfg('control uds:///run/hastctl\n'));
    assert.equal(d.controlChanged, false);
    assert.equal(diffConfig(cfg('control /run/hastctl\n'), cfg('control unix:///run/other\n')).controlChanged, true);
  });

  test('listen lists are compared as configured: a new order is a change (the listeners keep every socket)', () => {
    const two = 'listen 10.0.0.1\nlisten 10.0.0.2\n';
    assert.equal(diffConfig(cfg(two), cfg(two)).listenChanged, false);
    assert.equal(diffConfig(cfg(two), cfg('listen 10.0.0.2\nlisten 10.0.0.1\n')).listenChanged, true);
    assert.equal(diffConfig(cfg(two), cfg('listen 10.0.0.1\n')).listenChanged, true);
    assert.equal(diffConfig(cfg('listen 10.0.0.1\n'), cfg(two)).listenChanged, true);
  });

  test('added and removed resources', () => {
    const d = diffConfig(cfg(res('old') + res('kept')), cfg(res('kept') + res('new')));
    assert.deepEqual(
      [...d.resources.entries()].map(([n, c]) => [n, c.kind]),
      [
        ['old', 'removed'],
        ['kept', 'unchanged'],
        ['new', 'added'],
      ],
    );
    assert.equal(reloadAction(d.resources.get('old') ?? assert.fail(), 'primary'), 'remove');
    assert.equal(reloadAction(d.resources.get('new') ?? assert.fail(), 'init'), 'add');
    assert.equal(reloadAction(d.resources.get('kept') ?? assert.fail(), 'secondary'), 'none');
  });

  for (const [what, before, after, field] of [
    ['name', res('r'), res('r', '', 'name other\n'), 'provName'],
    ['local', res('r'), res('r', 'local /dev/y\n').replace('local /dev/r\n', ''), 'localPath'],
    ['export', res('r'), res('r', 'export uds:///run/x.sock\n'), 'exportAddr'],
    ['device', res('r'), res('r', 'device none\n'), 'device'],
  ] as const) {
    test(`a changed ${what} restarts the resource in every role`, () => {
      const change = diffConfig(cfg(before), cfg(after)).resources.get('r');
      assert.ok(change !== undefined);
      assert.equal(change.kind, 'changed');
      assert.equal(change.restartAlways, true);
      assert.ok(change.changed.includes(field), change.changed.join());
      for (const role of ['init', 'primary', 'secondary'] as const) assert.equal(reloadAction(change, role), 'restart');
    });
  }

  for (const [what, before, after, field] of [
    ['remote', res('r'), res('r').replace('remote 10.0.0.2', 'remote 10.0.0.9'), 'remoteAddr'],
    ['source', res('r'), res('r', '', 'source 10.0.0.1\n'), 'sourceAddr'],
    ['replication', res('r'), res('r', 'replication async\n'), 'replication'],
    ['checksum', res('r'), res('r', 'checksum crc32\n'), 'checksum'],
    ['compression', res('r'), `compression lzf\n${res('r')}`, 'compression'],
    ['timeout', res('r'), res('r', 'timeout 5\n'), 'timeout'],
    ['exec', res('r'), `exec /hook\n${res('r')}`, 'exec'],
    ['metaflush', res('r'), res('r', '', 'metaflush off\n'), 'metaFlush'],
    ['checksumsync', res('r'), res('r', 'checksumsync on\n'), 'checksumSync'],
  ] as const) {
    test(`a changed ${what} is reloaded live on a primary and restarts init/secondary`, () => {
      const change = diffConfig(cfg(before), cfg(after)).resources.get('r');
      assert.ok(change !== undefined);
      assert.deepEqual(change, { kind: 'changed', restartAlways: false, changed: [field] });
      assert.equal(reloadAction(change, 'primary'), 'reload');
      assert.equal(reloadAction(change, 'secondary'), 'restart');
      assert.equal(reloadAction(change, 'init'), 'restart');
    });
  }

  test('a default made explicit is not a change', () => {
    const d = diffConfig(
      cfg(res('r')),
      cfg(`replication memsync\ntimeout 20\nchecksumsync off\n${res('r', 'metaflush on\n')}`),
    );
    assert.equal(d.resources.get('r')?.kind, 'unchanged');
  });

  test('restart and reload fields together still restart a primary', () => {
    const change = diffConfig(cfg(res('r')), cfg(res('r', 'timeout 5\n', 'name p2\n'))).resources.get('r');
    assert.ok(change !== undefined);
    assert.deepEqual(change.changed, ['provName', 'exportAddr', 'timeout']);
    assert.equal(reloadAction(change, 'primary'), 'restart');
  });
});
