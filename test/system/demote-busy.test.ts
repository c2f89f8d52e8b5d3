// Demotion never orphans a device (issue 13, finding 4): with a file system mounted on
// /dev/hast/<provname> (device fuse: nbdfuse + loop), or the device held open by a process,
// `hastctl role secondary|init` is refused with exit 75, the role stays primary and the device
// keeps serving; once it is free the demotion removes the link, the loop and the FUSE mount.
// SIGTERM to hastd while mounted: hastd keeps serving and finishes its shutdown after the unmount.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fusePaths } from '../../src/daemon/device/fuse.js';
import { hastctl, startHastd, statusJson, type NodeSpec } from '../harness/cluster.js';
import { isMountPoint, killPid, loopsBackedBy, registerKill, unmountAll } from '../harness/cleanup.js';
import { requires, tmpDir } from '../harness/tools.js';
import { sleep, waitFor } from '../harness/wait.js';

const TOOLS = ['nbdfuse', 'losetup', 'mkfs.ext4', 'fusermount3', 'mount', 'umount'] as const;

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function linkExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

test('demotion is refused while /dev/hast is mounted or open, and leaves nothing behind once it is free; SIGTERM waits for the unmount', async (t) => {
  if (!requires(t, { root: true, tools: TOOLS })) return;
  const dir = tmpDir(t, 'hastd-demote-');
  const res = `dm${process.pid % 100000}`;
  const node: NodeSpec = { name: 'solo', addr: '127.0.0.1:1', dir };
  const img = join(dir, `${res}.img`);
  const mnt = join(dir, 'mnt');
  const dev = `/dev/hast/${res}`;
  const fuse = fusePaths(res, join(dir, 'hastd-state'));
  mkdirSync(mnt);
  writeFileSync(img, '');
  truncateSync(img, 64 << 20);
  const conf = join(dir, 'hast.conf');
  writeFileSync(
    conf,
    `on solo {\n  control uds://${dir}/control.sock\n  pidfile ${dir}/hastd.pid\n  listen tcp4://127.0.0.1:${20000 + (process.pid % 20000)}\n}\n` +
      `resource ${res} {\n  on solo {\n    local ${img}\n    export uds://${dir}/${res}.sock\n    device fuse\n    remote none\n  }\n}\n`,
  );
  // Registered before hastd starts, so it runs before hastd is killed: fs, loops, FUSE, nbdfuse, link.
  t.after(async () => {
    unmountAll(mnt);
    for (const loop of loopsBackedBy(fuse.file)) {
      try {
        execFileSync('losetup', ['-d', loop], { stdio: 'ignore' });
      } catch {
        // gone
      }
    }
    unmountAll(fuse.mountDir);
    try {
      await killPid(Number(readFileSync(fuse.pidFile, 'utf8').trim()));
    } catch {
      // no nbdfuse
    }
    try {
      unlinkSync(dev);
    } catch {
      // gone
    }
  });
  assert.equal((await hastctl(conf, 'solo', ['create', res])).code, 0);
  const d = await startHastd(t, conf, node);
  const up = await hastctl(conf, 'solo', ['role', 'primary', res]);
  assert.equal(up.code, 0, up.stderr);
  assert.ok(existsSync(dev), 'role primary returned after the device was attached');
  sh('mkfs.ext4', '-q', dev);
  sh('mount', dev, mnt);
  writeFileSync(join(mnt, 'a.txt'), 'before\n');

  // Mounted: refused, nothing torn down, still serving.
  for (const role of ['secondary', 'init']) {
    const r = await hastctl(conf, 'solo', ['role', role, res]);
    assert.equal(r.code, 75, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `Refusing to change the role from primary to ${role}: device busy: ${dev} is mounted on ${mnt}; unmount it first.*--force`,
      ),
    );
  }
  assert.equal((await statusJson(conf, 'solo', res)).role, 'primary');
  writeFileSync(join(mnt, 'b.txt'), 'after the refusal\n');
  sh('sync');
  assert.equal(readFileSync(join(mnt, 'a.txt'), 'utf8'), 'before\n');

  // Unmounted lazily while a file on it is open (what vip-down.sh does when umount hangs): the
  // mount tables no longer show it, but the file system still uses the device.
  const user = spawn('sh', ['-c', `exec 3<${join(mnt, 'a.txt')}; exec sleep 60`], { stdio: 'ignore' });
  registerKill(t, user.pid ?? -1);
  await sleep(300);
  sh('umount', '-l', mnt);
  const lazy = await hastctl(conf, 'solo', ['role', 'secondary', res]);
  assert.equal(lazy.code, 75, lazy.stderr);
  assert.match(lazy.stderr, /device busy: .* is still in use/);
  await killPid(user.pid);
  await sleep(200); // the last reference is dropped, the superblock goes
  sh('mount', dev, mnt);
  assert.equal(readFileSync(join(mnt, 'b.txt'), 'utf8'), 'after the refusal\n');
  sh('umount', mnt);

  // Held open by a process (no mount): refused too.
  const holder = spawn('sh', ['-c', `exec 3<${dev}; exec sleep 60`], { stdio: 'ignore' });
  registerKill(t, holder.pid ?? -1);
  await sleep(300);
  const open = await hastctl(conf, 'solo', ['role', 'secondary', res]);
  assert.equal(open.code, 75, open.stderr);
  assert.match(open.stderr, /device busy: .* is held open by sleep\[\d+\]/);
  await killPid(holder.pid);

  // Free: the demotion removes everything.
  const down = await hastctl(conf, 'solo', ['role', 'secondary', res]);
  assert.equal(down.code, 0, down.stderr);
  assert.equal(linkExists(dev), false, 'no stale /dev/hast link');
  assert.deepEqual(loopsBackedBy(fuse.file), [], 'no loop device');
  assert.equal(isMountPoint(fuse.mountDir), false, 'no FUSE mount');

  // SIGTERM while mounted: hastd keeps serving until the unmount, then exits 0 and cleans up.
  assert.equal((await hastctl(conf, 'solo', ['role', 'primary', res])).code, 0);
  sh('mount', dev, mnt);
  assert.equal(
    readFileSync(join(mnt, 'b.txt'), 'utf8'),
    'after the refusal\n',
    'the write after the refusal reached the disk',
  );
  d.proc.kill('SIGTERM');
  await waitFor('the busy warning', () => /Shutdown waits: device busy/.test(d.output()), 10_000);
  await sleep(1500);
  assert.equal(d.proc.exitCode, null, 'hastd still runs while the device is mounted');
  writeFileSync(join(mnt, 'c.txt'), 'during the shutdown\n');
  sh('umount', mnt);
  // No second signal: hastd notices the unmount by itself.
  await waitFor('hastd to finish its shutdown', () => d.proc.exitCode !== null, 15_000);
  const code = await d.stop();
  assert.equal(code, 0, d.output());
  assert.equal(linkExists(dev), false);
  assert.deepEqual(loopsBackedBy(fuse.file), []);
  assert.equal(isMountPoint(fuse.mountDir), false);
  assert.doesNotMatch(d.output(), /^(\S+ )?\[ERROR\]/m, d.output());
});
