// Peer authentication primitives (src/peer/auth.ts): the secret file's checks, what the MAC is
// bound to, and the strict reading of the new nv fields.
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { NvList } from '../../../src/nv/codec.js';
import {
  AUTH_NONCE_SIZE,
  addAuthMac,
  addAuthNonce,
  authMac,
  macMatches,
  newNonce,
  readAuthMac,
  readAuthNonce,
  readSecret,
} from '../../../src/peer/auth.js';
import { PeerProtocolError } from '../../../src/peer/errors.js';
import { tmpDir } from '../../harness/tools.js';

function secretFile(dir: string, text: string, mode: number): string {
  const p = join(dir, `k${mode.toString(8)}${text.length}`);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
}

test('readSecret() takes a 0600/0400 file, drops one trailing newline, refuses the rest by name', (t) => {
  const dir = tmpDir(t);
  assert.equal(readSecret(secretFile(dir, '0123456789abcdef0123\n', 0o600)).toString(), '0123456789abcdef0123');
  assert.equal(readSecret(secretFile(dir, '0123456789abcdef', 0o400)).length, 16);
  assert.throws(
    () => readSecret(secretFile(dir, '0123456789abcdef', 0o640)),
    /accessible by group or others \(mode 0640\)/,
  );
  assert.throws(() => readSecret(secretFile(dir, '0123456789abcdef', 0o604)), /mode 0604/);
  assert.throws(() => readSecret(secretFile(dir, 'short\n', 0o600)), /too short \(5 bytes, at least 16\)/);
  assert.throws(() => readSecret(join(dir, 'missing')), /Unable to open secret file .*missing: ENOENT/);
  assert.throws(() => readSecret(dir), /not a regular file|accessible/);
});

test('the MAC binds the secret, the prover, the resource, both nonces and the token', () => {
  const secret = Buffer.from('s'.repeat(32));
  const ctx = { resource: 'r0', primaryNonce: newNonce(), secondaryNonce: newNonce(), token: Buffer.alloc(16, 7) };
  const mac = authMac(secret, 'primary', ctx);
  assert.equal(mac.length, 32);
  assert.ok(macMatches(mac, authMac(secret, 'primary', { ...ctx })));
  const variants = [
    authMac(Buffer.from('t'.repeat(32)), 'primary', ctx),
    authMac(secret, 'secondary', ctx),
    authMac(secret, 'primary', { ...ctx, resource: 'r1' }),
    authMac(secret, 'primary', { ...ctx, primaryNonce: newNonce() }),
    authMac(secret, 'primary', { ...ctx, secondaryNonce: newNonce() }),
    authMac(secret, 'primary', { ...ctx, token: Buffer.alloc(16, 8) }),
  ];
  for (const v of variants) assert.ok(!macMatches(mac, v));
  assert.ok(!macMatches(mac, mac.subarray(0, 31)), 'a truncated MAC never matches');
});

test('authnonce/authmac: absent reads undefined, a wrong size or type is a protocol error', () => {
  const nonce = newNonce();
  assert.equal(nonce.length, AUTH_NONCE_SIZE);
  assert.deepEqual(readAuthNonce(addAuthNonce(new NvList(), nonce), 'x'), nonce);
  assert.equal(readAuthNonce(new NvList(), 'x'), undefined);
  assert.equal(readAuthMac(new NvList(), 'x'), undefined);
  const bad = (nv: NvList, fn: (nv: NvList, from: string) => unknown, re: RegExp): void =>
    assert.throws(
      () => fn(nv, 'tcp://192.0.2.1:1'),
      (e: unknown) => e instanceof PeerProtocolError && re.test(e.message),
    );
  bad(addAuthNonce(new NvList(), Buffer.alloc(31)), readAuthNonce, /'authnonce' of invalid size \(31, expected 32\)/);
  bad(addAuthMac(new NvList(), Buffer.alloc(16)), readAuthMac, /'authmac' of invalid size \(16, expected 32\)/);
  bad(new NvList().addString('authmac', 'x'), readAuthMac, /'authmac' of invalid type/);
});
