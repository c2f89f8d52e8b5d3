// Unit tests for defaults, inheritance, node matching and validation (HAST-SPEC §1.3–1.5, §1.7).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../../src/config/load.js';
import { ConfigError } from '../../../src/config/errors.js';
import type { HastConfig, ResourceConfig } from '../../../src/config/types.js';

const A = { nodeName: 'a' };
/** A minimal resource valid on node a (remote and local given). */
const RES = 'resource r {\n\ton a {\n\t\tlocal /dev/x\n\t\tremote 10.0.0.2\n\t}\n}\n';

function res(cfg: HastConfig, i = 0): ResourceConfig {
  const r = cfg.resources[i];
  assert.ok(r !== undefined, `resource ${i} missing`);
  return r;
}

function configError(line: number, detail: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.detail, detail);
    assert.equal(err.line, line);
    assert.equal(err.message, `f:${line}: ${detail}`);
    assert.equal(err.exitCode, 78);
    return true;
  };
}

describe('resolveConfig() defaults (HAST-SPEC §1.3)', () => {
  test('a minimal file gets every default', () => {
    const cfg = parseConfig(RES, 'f', A);
    assert.deepEqual(cfg, {
      file: 'f',
      nodeNames: ['a'],
      controlAddr: 'uds:///var/run/hastctl',
      controlPath: '/var/run/hastctl',
      pidFile: '/var/run/hastd.pid',
      listen: ['tcp4://0.0.0.0:8457', 'tcp6://[::]:8457'],
      metrics: null,
      resources: [
        {
          name: 'r',
          provName: 'r',
          localPath: '/dev/x',
          remoteAddr: '10.0.0.2',
          sourceAddr: null,
          replication: 'memsync',
          checksum: 'none',
          compression: 'hole',
          timeout: 20,
          exec: '',
          metaFlush: true,
          exportAddr: 'uds:///var/run/hastd/r.sock',
          device: 'auto',
        },
      ],
    });
  });

  test('an empty file is valid: no resources, defaults only', () => {
    const cfg = parseConfig('# nothing\n', 'f', A);
    assert.deepEqual(cfg.resources, []);
    assert.deepEqual(cfg.listen, ['tcp4://0.0.0.0:8457', 'tcp6://[::]:8457']);
  });
});

describe('resolveConfig() inheritance (HAST-SPEC §1.4)', () => {
  test('control and pidfile: this node wins over global, whatever the order; other nodes ignored', () => {
    const text =
      'on a {\ncontrol /run/a.sock\npidfile /run/a.pid\n}\non b {\ncontrol /run/b.sock\npidfile /run/b.pid\n}\n' +
      'control uds:///run/g.sock\npidfile /run/g.pid\n';
    const onA = parseConfig(text, 'f', A);
    assert.equal(onA.controlAddr, '/run/a.sock');
    assert.equal(onA.controlPath, '/run/a.sock');
    assert.equal(onA.pidFile, '/run/a.pid');
    const onC = parseConfig(text, 'f', { nodeName: 'c' });
    assert.equal(onC.controlAddr, 'uds:///run/g.sock');
    assert.equal(onC.controlPath, '/run/g.sock');
    assert.equal(onC.pidFile, '/run/g.pid');
  });

  test('a later global statement wins over an earlier one', () => {
    const cfg = parseConfig(`pidfile /p1\npidfile /p2\nreplication async\nreplication fullsync\n${RES}`, 'f', A);
    assert.equal(cfg.pidFile, '/p2');
    assert.equal(res(cfg).replication, 'fullsync');
  });

  test("listen: global and this node's addresses are merged in file order; defaults only if none", () => {
    const text =
      'listen 10.0.0.1\non a {\nlisten tcp6://[::1]:9000\nlisten 127.0.0.1\n}\non b {\nlisten 10.9.9.9\n}\nlisten 10.0.0.3:1\n';
    assert.deepEqual(parseConfig(text, 'f', A).listen, ['10.0.0.1', 'tcp6://[::1]:9000', '127.0.0.1', '10.0.0.3:1']);
    assert.deepEqual(parseConfig(text, 'f', { nodeName: 'b' }).listen, ['10.0.0.1', '10.9.9.9', '10.0.0.3:1']);
    assert.deepEqual(parseConfig('on a {\nlisten 1.2.3.4\n}', 'f', A).listen, ['1.2.3.4']);
    assert.deepEqual(parseConfig('on b {\nlisten 1.2.3.4\n}', 'f', A).listen, [
      'tcp4://0.0.0.0:8457',
      'tcp6://[::]:8457',
    ]);
  });

  test('replication, checksum, compression, timeout, exec: resource, else global, else default', () => {
    const global = 'replication fullsync\nchecksum crc32\ncompression lzf\ntimeout 7\nexec /g\n';
    const r1 =
      'resource r1 {\nreplication async\nchecksum sha256\ncompression none\ntimeout 9\nexec /r\non a {\nlocal /x\nremote none\n}\n}\n';
    const r2 = 'resource r2 {\non a {\nlocal /x\nremote none\n}\n}\n';
    const cfg = parseConfig(global + r1 + r2, 'f', A);
    const pick = (r: ResourceConfig) => [r.replication, r.checksum, r.compression, r.timeout, r.exec];
    assert.deepEqual(pick(res(cfg, 0)), ['async', 'sha256', 'none', 9, '/r']);
    assert.deepEqual(pick(res(cfg, 1)), ['fullsync', 'crc32', 'lzf', 7, '/g']);
    const noGlobal = parseConfig(r2, 'f', A);
    assert.deepEqual(pick(res(noGlobal)), ['memsync', 'none', 'hole', 20, '']);
  });

  test('global settings apply even when written after the resource', () => {
    const cfg = parseConfig(`${RES}replication async\nmetaflush off\ndevice none\n`, 'f', A);
    assert.equal(res(cfg).replication, 'async');
    assert.equal(res(cfg).metaFlush, false);
    assert.equal(res(cfg).device, 'none');
  });

  test('name and local: this node, else resource level; name falls back to the resource name', () => {
    const text =
      'resource r {\nname rp\nlocal /dev/rl\non a {\nremote none\n}\non b {\nname bp\nlocal /dev/bl\nremote none\n}\n}\n';
    const onA = res(parseConfig(text, 'f', A));
    assert.equal(onA.provName, 'rp');
    assert.equal(onA.localPath, '/dev/rl');
    const onB = res(parseConfig(text, 'f', { nodeName: 'b' }));
    assert.equal(onB.provName, 'bp');
    assert.equal(onB.localPath, '/dev/bl');
    assert.equal(res(parseConfig(RES, 'f', A)).provName, 'r');
    // The resource-level value also applies when written after the on block.
    const late = res(parseConfig('resource r {\non a {\nremote none\n}\nlocal /late\nname late\n}', 'f', A));
    assert.deepEqual([late.localPath, late.provName], ['/late', 'late']);
  });

  test('metaflush: this node, else resource, else global, else on', () => {
    const mk = (g: string, r: string, n: string) =>
      res(parseConfig(`${g}resource r {\n${r}on a {\nlocal /x\nremote none\n${n}}\n}\n`, 'f', A)).metaFlush;
    assert.equal(mk('', '', ''), true);
    assert.equal(mk('metaflush off\n', '', ''), false);
    assert.equal(mk('metaflush off\n', 'metaflush on\n', ''), true);
    assert.equal(mk('metaflush on\n', 'metaflush off\n', ''), false);
    assert.equal(mk('metaflush off\n', 'metaflush off\n', 'metaflush on\n'), true);
    assert.equal(mk('', 'metaflush on\n', 'metaflush off\n'), false);
  });

  test("remote and source come only from this node's block; source is null when absent", () => {
    const text =
      'resource r {\nlocal /x\non a {\nremote tcp://[2001:db8::2]:9000\nsource 10.0.0.1\n}\non b {\nremote 10.0.0.1\n}\n}\n';
    const onA = res(parseConfig(text, 'f', A));
    assert.equal(onA.remoteAddr, 'tcp://[2001:db8::2]:9000');
    assert.equal(onA.sourceAddr, '10.0.0.1');
    const onB = res(parseConfig(text, 'f', { nodeName: 'b' }));
    assert.equal(onB.remoteAddr, '10.0.0.1');
    assert.equal(onB.sourceAddr, null);
  });

  test('remote none stays the string none', () => {
    const r = res(parseConfig('resource r {\non a {\nlocal /x\nremote none\n}\n}', 'f', A));
    assert.equal(r.remoteAddr, 'none');
  });

  test('several matching on blocks apply in order, later wins', () => {
    const text = 'resource r {\non a {\nlocal /one\nremote 10.0.0.1\n}\non a {\nlocal /two\n}\n}';
    const r = res(parseConfig(text, 'f', A));
    assert.deepEqual([r.localPath, r.remoteAddr], ['/two', '10.0.0.1']);
  });

  test('export: node wins over resource; default from the provider name', () => {
    const text =
      'resource r {\nexport tcp://127.0.0.1:10809\non a {\nlocal /x\nremote none\nexport uds:///run/a.sock\n}\n' +
      'on b {\nlocal /x\nremote none\n}\n}\nresource s {\non a {\nlocal /y\nremote none\n}\n' +
      'on b {\nname sp\nlocal /y\nremote none\n}\n}\n';
    const onA = parseConfig(text, 'f', A);
    assert.equal(res(onA, 0).exportAddr, 'uds:///run/a.sock');
    assert.equal(res(onA, 1).exportAddr, 'uds:///var/run/hastd/s.sock');
    const onB = parseConfig(text, 'f', { nodeName: 'b' });
    assert.equal(res(onB, 0).exportAddr, 'tcp://127.0.0.1:10809');
    assert.equal(res(onB, 1).exportAddr, 'uds:///var/run/hastd/sp.sock');
  });

  test('device: node > resource > global > auto', () => {
    const mk = (g: string, r: string, n: string) =>
      res(parseConfig(`${g}resource r {\n${r}on a {\nlocal /x\nremote none\n${n}}\n}\n`, 'f', A)).device;
    assert.equal(mk('', '', ''), 'auto');
    assert.equal(mk('device nbd\n', '', ''), 'nbd');
    assert.equal(mk('device nbd\n', 'device fuse\n', ''), 'fuse');
    assert.equal(mk('device nbd\n', 'device fuse\n', 'device none\n'), 'none');
    assert.equal(mk('', '', 'device auto\n'), 'auto');
  });

  test('resources keep file order', () => {
    const text = ['z', 'a', 'm'].map((n) => `resource ${n} {\non a {\nlocal /${n}\nremote none\n}\n}\n`).join('');
    assert.deepEqual(
      parseConfig(text, 'f', A).resources.map((r) => r.name),
      ['z', 'a', 'm'],
    );
  });
});

describe('node matching (HAST-SPEC §1.5)', () => {
  const on = (node: string) => `resource r {\non ${node} {\nlocal /x\nremote none\n}\n}\n`;
  const HOST = ['skunk1', 'skunk1.example.org', '3d1219c7c4c5404aaa1f6d2a48adfda4', 'hostid305419896'];

  test('matches the full hostname, the short hostname, the machine id and hostid<N>', () => {
    for (const name of HOST) {
      assert.equal(res(parseConfig(on(name), 'f', { hostNames: HOST })).localPath, '/x', name);
    }
  });

  test('the machine id matches case-insensitively, host names do not', () => {
    assert.ok(parseConfig(on('3D1219C7C4C5404AAA1F6D2A48ADFDA4'), 'f', { hostNames: HOST }));
    assert.throws(() => parseConfig(on('SKUNK1'), 'f', { hostNames: HOST }), ConfigError);
    assert.throws(() => parseConfig(on('skunk1.example'), 'f', { hostNames: HOST }), ConfigError);
  });

  test('nodeName replaces every other name', () => {
    assert.ok(parseConfig(on('other'), 'f', { nodeName: 'other', hostNames: HOST }));
    assert.throws(
      () => parseConfig(on('skunk1'), 'f', { nodeName: 'other', hostNames: HOST }),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.detail === 'No resource r configuration for this node (acceptable node names: other).',
    );
    assert.deepEqual(parseConfig('', 'f', { nodeName: 'other' }).nodeNames, ['other']);
  });

  test('global on blocks use the same matching', () => {
    const cfg = parseConfig('on 3D1219C7C4C5404AAA1F6D2A48ADFDA4 {\npidfile /m.pid\n}', 'f', { hostNames: HOST });
    assert.equal(cfg.pidFile, '/m.pid');
  });
});

describe('validation messages (HAST-SPEC §1.7)', () => {
  test('Resource X configured more than once. (line of the second resource)', () => {
    assert.throws(() => parseConfig(`${RES}\n${RES}`, 'f', A), configError(8, 'Resource r configured more than once.'));
  });

  test('No resource X configuration for this node lists the acceptable names', () => {
    const text = '\n# lead\nresource r {\non b {\nlocal /x\nremote none\n}\n}\n';
    assert.throws(
      () =>
        parseConfig(text, 'f', { hostNames: ['h', 'h.example.org', '0123456789abcdef0123456789abcdef', 'hostid7'] }),
      configError(
        3,
        'No resource r configuration for this node (acceptable node names: h, h.example.org, 0123456789abcdef0123456789abcdef, hostid7).',
      ),
    );
    assert.throws(
      () => parseConfig('resource r {\n}', 'f', A),
      configError(1, 'No resource r configuration for this node (acceptable node names: a).'),
    );
  });

  test('Remote address not configured for resource X. (checked before local)', () => {
    assert.throws(
      () => parseConfig('resource r {\non a {\nlocal /x\n}\non b {\nremote 1.2.3.4\n}\n}', 'f', A),
      configError(1, 'Remote address not configured for resource r.'),
    );
    assert.throws(
      () => parseConfig('resource r {\non a {\n}\n}', 'f', A),
      configError(1, 'Remote address not configured for resource r.'),
    );
  });

  test('Path to local component not configured for resource X.', () => {
    assert.throws(
      () => parseConfig('# c\n\nresource r {\non a {\nremote none\n}\non b {\nlocal /x\n}\n}', 'f', A),
      configError(3, 'Path to local component not configured for resource r.'),
    );
  });

  test('Negative or zero timeout. at the line of the statement', () => {
    assert.throws(
      () => parseConfig(`resource r {\n\ttimeout 0\n}`, 'f', A),
      configError(2, 'Negative or zero timeout.'),
    );
  });

  test('a control address that is not a unix socket is refused at its line', () => {
    assert.throws(
      () => parseConfig('\ncontrol tcp://127.0.0.1:1', 'f', A),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.line === 2 &&
        err.keyword === 'control' &&
        err.detail.startsWith('Invalid control address tcp://127.0.0.1:1: '),
    );
    assert.throws(() => parseConfig('control relative', 'f', A), /is not an absolute path/);
  });

  test('errors come in file order: the first bad resource is reported', () => {
    const text = 'resource r1 {\non b {\n}\n}\nresource r2 {\non a {\n}\n}\n';
    assert.throws(
      () => parseConfig(text, 'f', A),
      configError(1, 'No resource r1 configuration for this node (acceptable node names: a).'),
    );
  });
});
