// Flushes reach both nodes through /dev/hast (device fuse: loop with direct I/O over nbdfuse): a
// fsync of the block device (sync(1) on it), an O_DSYNC write on it, and fsync of a file
// in a file system on it each go loop → fsync of the FUSE file → nbdfuse → NBD_CMD_FLUSH → the
// primary's flush → HIO FLUSH on the secondary, counted in both workers' `flushes`; and the bytes of
// a synchronous write are in both components when it returns. README "Benchmarks", fuse.ts loopArgs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { directIoOf, fusePaths } from '../../src/daemon/device/fuse.js';
import { freePort, hastctl, type NodeSpec, startHastd, writeConfig } from '../harness/cluster.js';
import { parseDump } from '../harness/data-area.js';
import { isMountPoint, killPid, loopsBackedBy, unmountAll } from '../harness/cleanup.js';
import { requires } from '../harness/tools.js';
import { tmpdir } from 'node:os';
import { waitFor } from '../harness/wait.js';

const TOOLS = ['nbdfuse', 'losetup', 'sync', 'dd', 'mkfs.ext4', 'fusermount3', 'mount', 'umount'] as const;
const SIZE = 64 << 20;

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

test('flushes through /dev/hast reach both nodes: fsync of the device, O_DSYNC writes, fsync in a file system', async (t) => {
  if (!requires(t, { root: true, tools: TOOLS })) return;
  const dir = mkdtempSync(join(tmpdir(), 'hastd-flush-'));
  // One after-hook, in dependency order (a failing hook would skip the later ones, and removing the
  // directory under a live FUSE mount fails): fs → orderly demotion → loop → FUSE → nbdfuse → hastd
  // (the harness's own teardown, collected here, last registered first) → link → directory.
  const later: (() => unknown)[] = [];
  const scope = { after: (fn: () => unknown): void => void later.push(fn) };
  const a: NodeSpec = { name: 'node-a', addr: `127.0.0.1:${await freePort('127.0.0.1')}`, dir: join(dir, 'a') };
  const b: NodeSpec = { name: 'node-b', addr: `127.0.0.2:${await freePort('127.0.0.2')}`, dir: join(dir, 'b') };
  const res = `fl${process.pid % 100000}`;
  const dev = `/dev/hast/${res}`;
  const mnt = join(dir, 'mnt');
  const fuse = fusePaths(res, join(a.dir, 'hastd-state'));
  for (const d of [a.dir, b.dir, mnt]) mkdirSync(d);
  const conf = join(dir, 'hast.conf');
  // memsync (the default); node-a (the first section) gets the device.
  writeFileSync(
    conf,
    writeConfig(conf, [a, b], [{ name: res, replication: 'memsync' }]).replace('device none', 'device fuse'),
  );
  for (const n of [a, b]) {
    writeFileSync(join(n.dir, `${res}.img`), '');
    execFileSync('truncate', ['-s', String(SIZE), join(n.dir, `${res}.img`)]);
    const c = await hastctl(conf, n.name, ['create', res]);
    assert.equal(c.code, 0, c.stderr);
  }
  t.after(async () => {
    const quietly = async (fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch {
        // best effort: gone already
      }
    };
    unmountAll(mnt);
    await quietly(() => hastctl(conf, a.name, ['role', 'init', res]));
    for (const loop of loopsBackedBy(fuse.file))
      await quietly(() => execFileSync('losetup', ['-d', loop], { stdio: 'ignore' }));
    unmountAll(fuse.mountDir);
    await quietly(() => killPid(Number(readFileSync(fuse.pidFile, 'utf8').trim())));
    for (const fn of later.reverse()) await quietly(fn);
    await quietly(() => unlinkSync(dev));
    rmSync(dir, { recursive: true, force: true });
  });
  const hb = await startHastd(scope, conf, b);
  const ha = await startHastd(scope, conf, a);
  assert.equal((await hastctl(conf, b.name, ['role', 'secondary', res])).code, 0);
  const up = await hastctl(conf, a.name, ['role', 'primary', res]);
  assert.equal(up.code, 0, up.stderr);
  await waitFor(dev, () => existsSync(dev), 30_000);
  const workerStats = async (n: NodeSpec): Promise<Record<string, number>> => {
    const st = await hastctl(conf, n.name, ['status', '--json', res]);
    const w = (JSON.parse(st.stdout) as { worker?: { stats: Record<string, number> } | null }[])[0]?.worker;
    assert.ok(w !== null && w !== undefined, `${n.name} has a worker`);
    return w.stats;
  };
  const flushes = async (): Promise<[number, number]> => [
    (await workerStats(a)).flushes ?? 0,
    (await workerStats(b)).flushes ?? 0,
  ];
  await waitFor(
    'the pair in sync',
    async () => {
      const st = await hastctl(conf, a.name, ['status', '--json', res]);
      const w = (
        JSON.parse(st.stdout) as { worker?: { dirty?: number; sync?: unknown; remote?: { state?: string } } | null }[]
      )[0]?.worker;
      return w !== null && w !== undefined && w.dirty === 0 && (w.sync === null || w.sync === undefined);
    },
    60_000,
  );

  const loop = realpathSync(dev);
  const dio = directIoOf(loop);
  if (dio !== true) {
    // The kernel refused direct I/O: hastd must have said so, and runs buffered (still correct).
    assert.match(ha.output(), /loop device without direct I\/O/, ha.output());
    t.diagnostic(`${loop}: direct I/O refused by this kernel; flushes checked on the buffered loop`);
  } else {
    assert.doesNotMatch(ha.output(), /loop device without direct I\/O/);
    t.diagnostic(`${loop}: direct I/O on`);
  }

  // 1. fsync of the block device itself (sync(1) on the device: blkdev_fsync, a cache flush).
  //    Not `blockdev --flushbufs`: BLKFLSBUF writes back and drops the device's page cache but
  //    sends no cache flush (measured: the count did not move).
  const f0 = await flushes();
  sh('sync', dev);
  const f1 = await flushes();
  assert.ok(f1[0] > f0[0], `fsync of the device: primary flushes ${f0[0]} → ${f1[0]}`);
  assert.ok(f1[1] > f0[1], `fsync of the device: secondary flushes ${f0[1]} → ${f1[1]}`);

  // 2. A synchronous direct write (O_DIRECT|O_DSYNC: FUA, which the loop device turns into a flush):
  //    flushed on both nodes, and its bytes are in both components when it returns.
  const dump = await hastctl(conf, a.name, ['dump', res]);
  assert.equal(dump.code, 0, dump.stderr);
  const { localOff } = parseDump(dump.stdout);
  const pattern = join(dir, 'pattern');
  const bytes = Buffer.alloc(1 << 20);
  for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE((i * 2654435761) >>> 0, i);
  writeFileSync(pattern, bytes);
  const at = 5 << 20;
  sh(
    'dd',
    `if=${pattern}`,
    `of=${dev}`,
    'bs=1M',
    'count=1',
    `seek=${at >> 20}`,
    'oflag=direct,dsync',
    'conv=notrunc',
    'status=none',
  );
  const f2 = await flushes();
  assert.ok(f2[0] > f1[0], `O_DSYNC write: primary flushes ${f1[0]} → ${f2[0]}`);
  assert.ok(f2[1] > f1[1], `O_DSYNC write: secondary flushes ${f1[1]} → ${f2[1]}`);
  for (const n of [a, b]) {
    const fd = openSync(join(n.dir, `${res}.img`), 'r');
    try {
      const got = Buffer.alloc(bytes.length);
      readSync(fd, got, 0, got.length, localOff + at);
      assert.ok(got.equals(bytes), `${n.name}'s component holds the synchronous write`);
    } finally {
      closeSync(fd);
    }
  }

  // 3. fsync of a file in a file system on /dev/hast (ext4: journal commit with PREFLUSH/FUA).
  sh('mkfs.ext4', '-q', dev);
  sh('mount', dev, mnt);
  try {
    const f3 = await flushes();
    const fd = openSync(join(mnt, 'synced.txt'), 'w');
    try {
      writeSync(fd, 'on both nodes\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const f4 = await flushes();
    assert.ok(f4[0] > f3[0], `fsync in ext4: primary flushes ${f3[0]} → ${f4[0]}`);
    assert.ok(f4[1] > f3[1], `fsync in ext4: secondary flushes ${f3[1]} → ${f4[1]}`);
    const errs = await workerStats(a);
    assert.equal(errs.flushErrors ?? 0, 0, 'no flush failed');
  } finally {
    sh('umount', mnt);
  }

  // Orderly demotion removes the device.
  const down = await hastctl(conf, a.name, ['role', 'init', res]);
  assert.equal(down.code, 0, down.stderr);
  assert.equal(existsSync(dev), false);
  assert.deepEqual(loopsBackedBy(fuse.file), []);
  assert.equal(isMountPoint(fuse.mountDir), false);
  assert.doesNotMatch(ha.output(), /^(\S+ )?\[ERROR\]/m, ha.output());
  assert.equal(await ha.stop(), 0);
  assert.equal(await hb.stop(), 0);
});
