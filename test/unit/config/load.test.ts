// Unit tests for loadConfig() on fixture files and for this host's node names (HAST-SPEC §1, §1.5).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, relative } from 'node:path';
import { loadConfig, ConfigError, acceptableNodeNames, isThisNode } from '../../../src/config/index.js';
import { nodeNamesFrom } from '../../../src/config/node-match.js';
import { tmpDir } from '../../harness/tools.js';
import { fixturePath } from './fixture-path.js';

describe('loadConfig()', () => {
  test('the corrected seed file loads on skunk1 and on skunk2', () => {
    const file = fixturePath('seed-mirror.conf');
    for (const [node, remote] of [
      ['skunk1', '198.51.100.2'],
      ['skunk2', '198.51.100.1'],
    ] as const) {
      const cfg = loadConfig(file, { nodeName: node });
      assert.equal(cfg.file, file);
      assert.deepEqual(cfg.resources, [
        {
          name: 'mirror',
          provName: 'mirror',
          localPath: '/dev/da0s2',
          remoteAddr: remote,
          sourceAddr: null,
          replication: 'memsync',
          checksum: 'none',
          compression: 'hole',
          timeout: 20,
          exec: '',
          metaFlush: true,
          exportAddr: 'uds:///var/run/hastd/mirror.sock',
          device: 'auto',
        },
      ]);
      assert.deepEqual(cfg.listen, ['tcp4://0.0.0.0:8457', 'tcp6://[::]:8457']);
    }
  });

  test('the seed file as published (closing braces lost) is a ConfigError naming line 2', () => {
    const file = fixturePath('seed-broken.conf');
    assert.throws(
      () => loadConfig(file, { nodeName: 'skunk1' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.exitCode, 78);
        assert.equal(err.file, file);
        assert.match(err.message, /'on skunk1' block opened at line 2 is not closed/);
        return true;
      },
    );
  });

  test('the man-page-style example loads on both nodes', () => {
    const file = fixturePath('manpage-example.conf');
    const alpha = loadConfig(file, { nodeName: 'alpha' });
    assert.deepEqual(alpha.listen, ['0.0.0.0:8457', 'tcp4://192.0.2.1']);
    assert.equal(alpha.controlPath, '/var/run/hastctl-alpha');
    const [shared, tank] = alpha.resources;
    assert.deepEqual(shared, {
      name: 'shared',
      provName: 'shared',
      localPath: '/dev/sdb',
      remoteAddr: 'tcp4://192.0.2.2',
      sourceAddr: null,
      replication: 'fullsync',
      checksum: 'none',
      compression: 'hole',
      timeout: 20,
      exec: '/usr/local/sbin/hast-hook',
      metaFlush: true,
      exportAddr: 'uds:///var/run/hastd/shared.sock',
      device: 'auto',
    });
    assert.deepEqual(tank, {
      name: 'tank',
      provName: 'tank-a',
      localPath: '/dev/mapper/tanka',
      remoteAddr: 'tcp4://192.0.2.2',
      sourceAddr: 'tcp4://192.0.2.1',
      replication: 'memsync',
      checksum: 'sha256',
      compression: 'lzf',
      timeout: 10,
      exec: '/usr/local/sbin/hast-hook',
      metaFlush: false,
      exportAddr: 'uds:///var/run/hastd/tank-a.sock',
      device: 'auto',
    });
    const beta = loadConfig(file, { nodeName: 'beta' });
    assert.deepEqual(beta.listen, ['0.0.0.0:8457', 'tcp4://192.0.2.2']);
    assert.equal(beta.controlPath, '/var/run/hastctl');
    assert.equal(beta.resources[1]?.provName, 'tank');
    assert.equal(beta.resources[1]?.localPath, '/dev/mapper/tankb');
    assert.equal(beta.resources[1]?.metaFlush, true);
    assert.equal(beta.resources[0]?.remoteAddr, 'tcp4://192.0.2.1');
  });

  test('a missing file is a ConfigError with exit code 72 (EX_OSFILE)', (t) => {
    const dir = tmpDir(t);
    const file = join(dir, 'nope.conf');
    assert.throws(
      () => loadConfig(file),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.exitCode, 72);
        assert.equal(err.line, 0);
        assert.equal(err.message, `${file}: Unable to open configuration file ${file}: No such file or directory.`);
        return true;
      },
    );
  });

  test('a directory is a ConfigError with exit code 72', (t) => {
    const dir = tmpDir(t);
    mkdirSync(join(dir, 'd'));
    assert.throws(
      () => loadConfig(join(dir, 'd')),
      (err: unknown) => err instanceof ConfigError && err.exitCode === 72,
    );
  });

  test('a relative path is made absolute and used in errors', (t) => {
    const dir = tmpDir(t);
    const file = join(dir, 'hast.conf');
    writeFileSync(file, '\n\nresource r {\n  on a {\n    local /x\n  }\n}\n');
    const rel = relative(process.cwd(), file);
    assert.throws(
      () => loadConfig(rel, { nodeName: 'a' }),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.file === file &&
        err.message === `${file}:3: Remote address not configured for resource r.`,
    );
  });

  test('invalid bytes in the file are a ConfigError at their line, not a decoding failure', (t) => {
    const dir = tmpDir(t);
    const file = join(dir, 'hast.conf');
    writeFileSync(file, Buffer.from([0x23, 0xff, 0x0a, 0x74, 0x69, 0x6d, 0x65, 0x6f, 0x75, 0x74, 0x20, 0xc3, 0xa9]));
    assert.throws(
      () => loadConfig(file),
      (err: unknown) =>
        err instanceof ConfigError && err.line === 2 && /near '\\xc3': unexpected character/.test(err.message),
    );
  });
});

describe('acceptableNodeNames()', () => {
  test('lists the short name (if any), the full hostname, then the machine id', () => {
    const names = acceptableNodeNames();
    const full = hostname();
    const dot = full.indexOf('.');
    const expectStart = dot > 0 ? [full.slice(0, dot), full] : [full];
    assert.deepEqual(names.slice(0, expectStart.length), expectStart);
    for (const n of names.slice(expectStart.length)) assert.match(n, /^([0-9a-f]{32}|hostid[0-9]+)$/i);
  });
});

describe('nodeNamesFrom()', () => {
  test('short name only when the hostname has a dot; machine id trimmed; hostid little-endian', () => {
    assert.deepEqual(
      nodeNamesFrom(
        'skunk1.example.org',
        Buffer.from('3d1219c7c4c5404aaa1f6d2a48adfda4\n'),
        Buffer.from([0x78, 0x56, 0x34, 0x12]),
      ),
      ['skunk1', 'skunk1.example.org', '3d1219c7c4c5404aaa1f6d2a48adfda4', 'hostid305419896'],
    );
    assert.deepEqual(nodeNamesFrom('skunk1', null, null), ['skunk1']);
    assert.deepEqual(nodeNamesFrom('skunk1', Buffer.from('\n'), Buffer.from([1, 2])), ['skunk1']);
    assert.deepEqual(nodeNamesFrom('h', null, Buffer.from([0xff, 0xff, 0xff, 0xff])), ['h', 'hostid4294967295']);
  });

  test('the resulting names drive matching, the machine id case-insensitively', () => {
    const names = nodeNamesFrom('n1.lan', Buffer.from('ABCDEF0123456789abcdef0123456789'), Buffer.from([1, 0, 0, 0]));
    for (const node of ['n1', 'n1.lan', 'abcdef0123456789ABCDEF0123456789', 'hostid1']) {
      assert.equal(isThisNode(node, names), true, node);
    }
    for (const node of ['N1', 'n1.la', 'hostid01', 'lan']) assert.equal(isThisNode(node, names), false, node);
  });
});

describe('loadConfig({ checkFiles }) (hastd start and reload)', () => {
  test('a group- or world-readable authkey is refused at its file:line; 0600 loads', (t) => {
    const dir = tmpDir(t);
    const key = join(dir, 'hast.key');
    writeFileSync(key, '0123456789abcdef0123456789abcdef\n', { mode: 0o640 });
    const conf = join(dir, 'hast.conf');
    writeFileSync(conf, `resource r0 {\n  authkey ${key}\n  on a {\n    local /dev/x\n    remote 10.0.0.2\n  }\n}\n`);
    assert.throws(
      () => loadConfig(conf, { nodeName: 'a', checkFiles: true }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.line === 2 &&
        e.keyword === 'authkey' &&
        e.message.startsWith(`${conf}:2: Secret file ${key} is accessible by group or others (mode 0640)`),
    );
    // hastctl does not read secrets: the same file still loads without checkFiles.
    assert.equal(loadConfig(conf, { nodeName: 'a' }).resources[0]?.authKey, key);
    chmodSync(key, 0o600);
    assert.equal(loadConfig(conf, { nodeName: 'a', checkFiles: true }).resources[0]?.authKey, key);
  });
});

describe('TLS keywords', () => {
  const conf = (dir: string, lines: string): string => {
    const f = join(dir, 'hast.conf');
    writeFileSync(f, `resource r0 {\n${lines}\n  on a {\n    local /dev/x\n    remote 10.0.0.2\n  }\n}\n`);
    return f;
  };
  test('tlscert and tlskey go together, with tlsca or tlspeer; a fingerprint is normalised', (t) => {
    const dir = tmpDir(t);
    assert.throws(() => loadConfig(conf(dir, '  tlscert /c.pem'), { nodeName: 'a' }), /needs both tlscert and tlskey/);
    assert.throws(
      () => loadConfig(conf(dir, '  tlscert /c.pem\n  tlskey /k.pem'), { nodeName: 'a' }),
      /needs tlsca or tlspeer/,
    );
    assert.throws(() => loadConfig(conf(dir, '  tlspeer abc'), { nodeName: 'a' }), /:2: Invalid tlspeer abc/);
    const r = loadConfig(conf(dir, `  tlscert /c.pem\n  tlskey /k.pem\n  tlspeer ${'ab'.repeat(32)}`), {
      nodeName: 'a',
    }).resources[0];
    assert.equal(r?.tlsPeer, Array(32).fill('AB').join(':'));
  });
  test('hastd refuses a group-readable tlskey at its line', (t) => {
    const dir = tmpDir(t);
    const key = join(dir, 'k.pem');
    writeFileSync(key, 'x', { mode: 0o644 });
    chmodSync(key, 0o644);
    const f = conf(dir, `  tlscert /c.pem\n  tlskey ${key}\n  tlsca /ca.pem`);
    assert.throws(
      () => loadConfig(f, { nodeName: 'a', checkFiles: true }),
      (e: unknown) => e instanceof ConfigError && e.line === 3 && /Private key file .* \(mode 0644\)/.test(e.message),
    );
  });
});
