// The control socket's modes: its directory 0700 under umask 000 (0755 with a controlgroup), the
// socket 0600, or 0660 with the configured group; an unknown group is refused by name.
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { groupId, listenControlSocket } from '../../../src/daemon/control-socket.js';
import { tmpDir } from '../../harness/tools.js';

async function listenUnderUmask000(t: import('node:test').TestContext, path: string, group?: string): Promise<void> {
  const old = process.umask(0);
  try {
    const server = await listenControlSocket(path, group, (s) => s.destroy());
    t.after(() => server.close());
  } finally {
    process.umask(old);
  }
}

test('under umask 000: directory 0700, socket 0600', async (t) => {
  const path = join(tmpDir(t), 'run', 'hastctl');
  await listenUnderUmask000(t, path);
  assert.equal(statSync(join(path, '..')).mode & 0o7777, 0o700);
  const st = statSync(path);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o7777, 0o600);
});

test('with a controlgroup: directory 0755, socket 0660 owned by that group', async (t) => {
  const path = join(tmpDir(t), 'run', 'hastctl');
  const gid = 4242;
  await listenUnderUmask000(t, path, String(gid));
  assert.equal(statSync(join(path, '..')).mode & 0o7777, 0o755);
  const st = statSync(path);
  assert.equal(st.mode & 0o7777, 0o660);
  if (process.getuid?.() === 0) assert.equal(st.gid, gid);
});

test('groupId() reads names from the group file and refuses an unknown one by name', (t) => {
  const file = join(tmpDir(t), 'group');
  writeFileSync(file, 'root:x:0:\nhastops:x:1234:alice,bob\n');
  assert.equal(groupId('hastops', file), 1234);
  assert.equal(groupId('77', file), 77);
  assert.throws(() => groupId('nobody-here', file), /Unknown control group nobody-here/);
});
