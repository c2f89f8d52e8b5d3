// /dev/hast/<provname> through nbdfuse + loop against a real NBD server (nbdkit): size, a file
// system on top, detach/re-attach, refusal while mounted, crash cleanup. HAST-SPEC §5.5.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import {
  DeviceError,
  attachDevice,
  cleanupStaleDevice,
  devicePathOf,
  resolveMode,
} from '../../src/daemon/device/index.js';
import { directIoOf, fusePaths } from '../../src/daemon/device/fuse.js';
import { TOOL_PACKAGES, mountsOfDevice, parseMounts, requireTool } from '../../src/daemon/device/sys.js';
import { isMountPoint, isRunning, killPid, loopsBackedBy, unmountAll } from '../harness/cleanup.js';
import { requires } from '../harness/tools.js';
import { waitFor } from '../harness/wait.js';

const SIZE = 64 << 20;
const TOOLS = ['nbdkit', 'nbdfuse', 'losetup', 'mkfs.ext4', 'blockdev', 'fusermount3', 'mount', 'umount'] as const;

interface Rig {
  readonly dir: string;
  readonly sock: string;
  readonly stateDir: string;
  readonly mnt: string;
  readonly prov: string;
  readonly fuse: ReturnType<typeof fusePaths>;
  nbdkitPid: number | undefined;
  /** nbdfuse pids seen during the test, killed at the end if still there. */
  readonly nbdfusePids: Set<number>;
}

/**
 * A 64 MiB sparse image served by nbdkit on a unix socket, and one t.after that tears everything
 * down in dependency order (fs mount → loop → FUSE → nbdfuse → symlink → nbdkit → files), even
 * when the test failed half-way.
 */
async function rig(t: TestContext, withServer = true): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'hastd-dev-'));
  const prov = `hastdtest-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  const r: Rig = {
    dir,
    sock: join(dir, 'nbd.sock'),
    stateDir: join(dir, 'state'),
    mnt: join(dir, 'mnt'),
    prov,
    fuse: fusePaths(prov, join(dir, 'state')),
    nbdkitPid: undefined,
    nbdfusePids: new Set(),
  };
  mkdirSync(r.mnt);
  t.after(async () => {
    try {
      r.nbdfusePids.add(nbdfusePid(r));
    } catch {
      // not running
    }
    unmountAll(r.mnt);
    for (const dev of loopsBackedBy(r.fuse.file)) {
      try {
        execFileSync('losetup', ['-d', dev], { stdio: 'ignore' });
      } catch {
        // gone
      }
    }
    unmountAll(r.fuse.mountDir);
    for (const pid of r.nbdfusePids) await killPid(pid);
    try {
      unlinkSync(`/dev/hast/${prov}`);
    } catch {
      // gone
    }
    await killPid(r.nbdkitPid);
    rmSync(dir, { recursive: true, force: true });
  });
  if (withServer) {
    const img = join(dir, 'disk.img');
    writeFileSync(img, '');
    truncateSync(img, SIZE);
    const nbdkit = spawn('nbdkit', ['-U', r.sock, '--foreground', 'file', img], { stdio: 'ignore' });
    r.nbdkitPid = nbdkit.pid;
    await waitFor('nbdkit to create its socket', () => existsSync(r.sock), 5_000, 20);
  }
  return r;
}

function nbdfusePid(r: Rig): number {
  const pid = Number(readFileSync(r.fuse.pidFile, 'utf8').trim());
  r.nbdfusePids.add(pid);
  return pid;
}

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function waitGone(pid: number, what: string): Promise<boolean> {
  return waitFor(what, () => !isRunning(pid), 5_000, 20);
}

describe('device helpers', () => {
  test('parseMounts() decodes octal escapes and skips malformed lines', () => {
    const m = parseMounts('/dev/loop3 /mnt/my\\040disk ext4 rw,relatime 0 0\nbad\n/dev/fuse /x fuse rw 0 0\n');
    assert.deepEqual(m, [
      { source: '/dev/loop3', target: '/mnt/my disk', fstype: 'ext4' },
      { source: '/dev/fuse', target: '/x', fstype: 'fuse' },
    ]);
    assert.deepEqual(mountsOfDevice('/dev/loop3', m), ['/mnt/my disk']);
  });

  test("mode 'none' attaches nothing and needs no root", async () => {
    assert.equal(resolveMode('none'), 'none');
    assert.equal(
      await attachDevice({ provName: 'x', socketPath: '/nonexistent', mode: 'none', stateDir: '/nonexistent' }),
      null,
    );
  });

  test("mode 'auto' picks fuse when the kernel has no nbd module", (t) => {
    if (existsSync('/sys/module/nbd') || existsSync('/dev/nbd0')) {
      t.skip('nbd module present on this host');
      return;
    }
    assert.equal(resolveMode('auto'), 'fuse');
  });

  test('a missing tool is named with its Debian package', () => {
    assert.equal(TOOL_PACKAGES.nbdfuse, 'libnbd-bin');
    assert.equal(TOOL_PACKAGES.losetup, 'mount');
    assert.equal(TOOL_PACKAGES['nbd-client'], 'nbd-client');
    assert.throws(
      () => requireTool('hastd-no-such-tool', 'device fuse'),
      (err: unknown) =>
        err instanceof DeviceError &&
        err.message ===
          'hastd-no-such-tool not found (needed for device fuse); install the Debian package hastd-no-such-tool',
    );
  });

  test('devicePathOf() refuses names that would leave /dev/hast', () => {
    assert.equal(devicePathOf('shared'), '/dev/hast/shared');
    for (const bad of ['', '.', '..', 'a/b', '../etc']) assert.throws(() => devicePathOf(bad), DeviceError);
  });
});

describe('device fuse: /dev/hast/<provname> over nbdfuse + loop', () => {
  test('attach as a non-root user fails with a clear message', async (t) => {
    if (!requires(t, { root: true })) return;
    const index = new URL('../../src/daemon/device/index.js', import.meta.url).pathname;
    const code = `import { attachDevice } from ${JSON.stringify(index)};
attachDevice({ provName: 'shared', socketPath: '/nonexistent.sock', mode: 'fuse', stateDir: '/nonexistent' })
  .then(() => console.log('ATTACHED'), (err) => console.log(err.name + ': ' + err.message));`;
    const out = await new Promise<string>((resolve) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
        uid: 65534,
        gid: 65534,
        cwd: '/',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.once('exit', () => resolve(text.trim()));
    });
    assert.equal(out, 'DeviceError: creating /dev/hast/shared requires root (device fuse)');
  });

  test('attach, file system round trip, refuse while mounted, detach, re-attach', async (t) => {
    if (!requires(t, { root: true, tools: TOOLS })) return;
    const r = await rig(t);
    const opts = { provName: r.prov, socketPath: r.sock, mode: 'fuse', stateDir: r.stateDir } as const;

    const dev = await attachDevice(opts);
    assert.ok(dev !== null);
    const pid1 = nbdfusePid(r);
    assert.equal(dev.devicePath, `/dev/hast/${r.prov}`);
    assert.ok(lstatSync(dev.devicePath).isSymbolicLink());
    assert.equal(readlinkSync(dev.devicePath), dev.blockDevice);
    assert.match(dev.blockDevice, /^\/dev\/loop\d+$/);
    assert.ok(statSync(dev.devicePath).isBlockDevice());
    assert.equal(Number(sh('blockdev', '--getsize64', dev.devicePath).trim()), SIZE);
    // Direct I/O on the FUSE file (fuse.ts loopArgs), 512-byte logical sectors.
    assert.equal(directIoOf(dev.blockDevice), true, 'loop device with direct I/O');
    assert.equal(Number(sh('blockdev', '--getss', dev.devicePath).trim()), 512);

    sh('mkfs.ext4', '-q', dev.devicePath);
    sh('mount', dev.devicePath, r.mnt);
    writeFileSync(join(r.mnt, 'hello.txt'), 'replicated bytes\n');

    // Refused while mounted, and nothing is torn down by the refusal.
    await assert.rejects(dev.detach(), (err: unknown) => {
      assert.ok(err instanceof DeviceError);
      assert.equal(err.message, `device busy: ${dev.devicePath} is mounted on ${r.mnt}; unmount it first`);
      return true;
    });
    assert.equal(readlinkSync(dev.devicePath), dev.blockDevice);
    assert.ok(isMountPoint(r.mnt));

    sh('umount', r.mnt);
    await dev.detach();
    assert.equal(existsSync(dev.devicePath), false, 'symlink removed');
    assert.deepEqual(loopsBackedBy(r.fuse.file), [], 'loop device detached');
    assert.equal(isMountPoint(r.fuse.mountDir), false, 'FUSE unmounted');
    await waitGone(pid1, 'nbdfuse to exit');
    await dev.detach(); // idempotent

    const dev2 = await attachDevice(opts);
    assert.ok(dev2 !== null);
    sh('mount', dev2.devicePath, r.mnt);
    assert.equal(readFileSync(join(r.mnt, 'hello.txt'), 'utf8'), 'replicated bytes\n');
    sh('umount', r.mnt);
    await dev2.detach();
    assert.equal(existsSync(dev2.devicePath), false);
  });

  test('cleanupStaleDevice() removes what a crashed worker left behind', async (t) => {
    if (!requires(t, { root: true, tools: TOOLS })) return;
    const r = await rig(t);
    const dev = await attachDevice({ provName: r.prov, socketPath: r.sock, mode: 'fuse', stateDir: r.stateDir });
    assert.ok(dev !== null);
    const pid = nbdfusePid(r);
    // The worker "crashes": nobody calls detach(). A new worker starts and cleans up.
    await cleanupStaleDevice(r.prov, r.stateDir);
    assert.equal(existsSync(dev.devicePath), false);
    assert.deepEqual(loopsBackedBy(r.fuse.file), []);
    assert.equal(isMountPoint(r.fuse.mountDir), false);
    await waitGone(pid, `pid ${pid} to exit`);
    // And a fresh attach works afterwards.
    const again = await attachDevice({ provName: r.prov, socketPath: r.sock, mode: 'fuse', stateDir: r.stateDir });
    assert.ok(again !== null);
    assert.equal(Number(sh('blockdev', '--getsize64', again.devicePath).trim()), SIZE);
    await again.detach();
  });

  test('attach fails with the nbdfuse error and leaves nothing behind when no server listens', async (t) => {
    if (!requires(t, { root: true, tools: TOOLS })) return;
    const r = await rig(t, false);
    await assert.rejects(
      attachDevice({ provName: r.prov, socketPath: r.sock, mode: 'fuse', stateDir: r.stateDir }),
      (err: unknown) => err instanceof DeviceError && /nbdfuse exited during start-up/.test(err.message),
    );
    assert.equal(existsSync(`/dev/hast/${r.prov}`), false);
    assert.equal(isMountPoint(r.fuse.mountDir), false);
    assert.deepEqual(loopsBackedBy(r.fuse.file), []);
  });
});
