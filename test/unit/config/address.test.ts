// Unit tests for the address forms of HAST-SPEC §1.6 and our export addresses.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  isLoopbackHost,
  parsePeerAddress,
  parseControlAddress,
  parseExportAddress,
} from '../../../src/config/address.js';

describe('parsePeerAddress()', () => {
  const ok: [string, { host: string; port: number; family: 0 | 4 | 6 }][] = [
    ['10.0.0.1', { host: '10.0.0.1', port: 8457, family: 4 }],
    ['10.0.0.1:9000', { host: '10.0.0.1', port: 9000, family: 4 }],
    ['tcp://10.0.0.1', { host: '10.0.0.1', port: 8457, family: 4 }],
    ['tcp4://0.0.0.0:8457', { host: '0.0.0.0', port: 8457, family: 4 }],
    ['tcp6://[::]:8457', { host: '::', port: 8457, family: 6 }],
    ['tcp6://[::1]', { host: '::1', port: 8457, family: 6 }],
    ['[fe80::1]:8457', { host: 'fe80::1', port: 8457, family: 6 }],
    ['2001:db8::1', { host: '2001:db8::1', port: 8457, family: 6 }],
    ['tcp://2001:db8::1', { host: '2001:db8::1', port: 8457, family: 6 }],
    ['hasta', { host: 'hasta', port: 8457, family: 0 }],
    ['hasta.example.org:1', { host: 'hasta.example.org', port: 1, family: 0 }],
    ['tcp4://hastb:65535', { host: 'hastb', port: 65535, family: 4 }],
    ['tcp6://hastb', { host: 'hastb', port: 8457, family: 6 }],
  ];
  for (const [addr, want] of ok) {
    test(`parses ${addr}`, () => assert.deepEqual(parsePeerAddress(addr), want));
  }

  test('uses the given default port (0 for source addresses)', () => {
    assert.deepEqual(parsePeerAddress('10.0.0.1', 0), { host: '10.0.0.1', port: 0, family: 4 });
    assert.deepEqual(parsePeerAddress('10.0.0.1:5', 0), { host: '10.0.0.1', port: 5, family: 4 });
  });

  const bad: [string, RegExp][] = [
    ['', /no host/],
    ['tcp://', /no host/],
    [':8457', /no host/],
    ['10.0.0.1:0', /out of range/],
    ['10.0.0.1:65536', /out of range/],
    ['10.0.0.1:x', /invalid port/],
    ['10.0.0.1:', /invalid port/],
    ['tcp://2001:db8::1/64', /not an IPv6 address/],
    ['[10.0.0.1]:1', /not an IPv6 address/],
    ['[::1', /missing '\]'/],
    ['[::1]x', /unexpected/],
    ['udp://1.2.3.4', /unsupported scheme/],
    ['tcp4://[::1]', /IPv6 address in tcp4/],
    ['tcp6://10.0.0.1', /IPv4 address in tcp6/],
    ['host/x', /invalid host name/],
    ['-bad', /invalid host name/],
  ];
  for (const [addr, re] of bad) {
    test(`rejects '${addr}'`, () => assert.throws(() => parsePeerAddress(addr), re));
  }
});

describe('parseControlAddress()', () => {
  test('uds://, unix:// and absolute paths give the path', () => {
    assert.equal(parseControlAddress('uds:///var/run/hastctl'), '/var/run/hastctl');
    assert.equal(parseControlAddress('unix:///tmp/c.sock'), '/tmp/c.sock');
    assert.equal(parseControlAddress('/tmp/c.sock'), '/tmp/c.sock');
  });
  test('refuses other schemes, relative bare paths and empty paths', () => {
    assert.throws(() => parseControlAddress('tcp://127.0.0.1:1'), /unsupported control address/);
    assert.throws(() => parseControlAddress('run/c.sock'), /not an absolute path/);
    assert.throws(() => parseControlAddress('uds://'), /no socket path/);
  });
});

describe('parseExportAddress()', () => {
  test('unix forms', () => {
    assert.deepEqual(parseExportAddress('uds:///var/run/hastd/r.sock'), {
      kind: 'unix',
      path: '/var/run/hastd/r.sock',
    });
    assert.deepEqual(parseExportAddress('unix:///x.sock'), { kind: 'unix', path: '/x.sock' });
    assert.deepEqual(parseExportAddress('/x.sock'), { kind: 'unix', path: '/x.sock' });
  });
  test('tcp forms, port defaulting to 10809', () => {
    assert.deepEqual(parseExportAddress('tcp://127.0.0.1:10810'), { kind: 'tcp', host: '127.0.0.1', port: 10810 });
    assert.deepEqual(parseExportAddress('tcp://[::1]'), { kind: 'tcp', host: '::1', port: 10809 });
  });
  test('refuses other schemes and relative socket paths', () => {
    assert.throws(() => parseExportAddress('nbd://x'), /unsupported scheme/);
    assert.throws(() => parseExportAddress('uds://x.sock'), /not absolute/);
    assert.throws(() => parseExportAddress('tcp://h:0'), /out of range/);
  });
});

describe('isLoopbackHost()', () => {
  test('127/8, ::1 and localhost are loopback; wildcards and real addresses are not', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1'])
      assert.ok(isLoopbackHost(h), h);
    for (const h of ['0.0.0.0', '::', '192.0.2.1', '198.51.100.7', 'example.org', '128.0.0.1'])
      assert.ok(!isLoopbackHost(h), h);
  });
});
