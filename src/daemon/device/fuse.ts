// The FUSE + loop device: nbdfuse exposes the NBD export as a file, losetup turns that file into
// a block device. Used when the kernel has no nbd module. DESIGN.md "The device on Linux", NBD.md.
import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmdirSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { log } from '../../log/log.js';
import { makeDirs, PRIVATE_DIR_MODE } from '../../util/dirs.js';
import {
  DeviceError,
  cmdlineOf,
  findTool,
  busyReason,
  isAlive,
  isFuseMount,
  requireTool,
  run,
  sleep,
  terminate,
} from './sys.js';

/** How long nbdfuse may take to connect and show its file. */
const FUSE_READY_TIMEOUT_MS = 15_000;
/** How long nbdfuse gets to exit after its unmount (then SIGTERM, then SIGKILL). */
const FUSE_EXIT_GRACE_MS = 5_000;
/**
 * How long nbdfuse gets to exit by itself after the unmount. It has nothing left to serve then (the
 * loop device was detached and the FUSE mount flushed), but it sometimes lingers on its NBD
 * shutdown; waiting the full grace made every demotion 5 s slower.
 */
const NBDFUSE_EXIT_WAIT_MS = 1_000;

/** Where the FUSE state of one provider lives under the worker's state directory. */
export function fusePaths(
  provName: string,
  stateDir: string,
): { mountDir: string; file: string; pidFile: string; logFile: string } {
  const mountDir = join(stateDir, `fuse-${provName}`);
  return {
    mountDir,
    file: join(mountDir, 'nbd'), // nbdfuse's default file name inside MOUNTPOINT
    pidFile: join(stateDir, `fuse-${provName}.pid`),
    logFile: join(stateDir, `fuse-${provName}.log`),
  };
}

export interface FuseAttachOptions {
  readonly provName: string;
  readonly socketPath: string;
  readonly stateDir: string;
  /** Logical sector size of the loop device (HAST-SPEC §5.5: the component's sector size). */
  readonly sectorSize: number;
  /** When known, the file must reach exactly this size before we call it ready. */
  readonly expectedSize?: number;
  readonly readyTimeoutMs?: number;
}

export interface FuseDevice {
  readonly blockDevice: string;
  readonly mountDir: string;
  readonly pid: number;
  /** Tear down loop, FUSE mount and nbdfuse. `force` skips the busy check (stale cleanup). */
  detach(force: boolean, label: string): Promise<void>;
}

/**
 * Start nbdfuse on `socketPath`, wait until its file is there with a size, and bind a loop device
 * to it. On any failure everything started so far is torn down before the error is thrown.
 */
export async function attachFuse(opts: FuseAttachOptions): Promise<FuseDevice> {
  const nbdfuse = requireTool('nbdfuse', 'device fuse');
  const losetup = requireTool('losetup', 'device fuse');
  const paths = fusePaths(opts.provName, opts.stateDir);
  makeDirs(opts.stateDir, PRIVATE_DIR_MODE);
  if (isFuseMount(paths.mountDir) || loopsOnOurFuse(paths.file, paths.mountDir).length > 0) {
    await cleanupStaleFuse(opts.provName, opts.stateDir);
  }
  makeDirs(paths.mountDir, PRIVATE_DIR_MODE);
  removeQuietly(paths.pidFile);

  const logFd = openSync(paths.logFile, 'w', 0o600);
  let child;
  try {
    // Detached: its own session, so a terminal's ^C reaches us (who tear down in order), not it.
    child = spawn(nbdfuse, ['-P', paths.pidFile, paths.mountDir, '--unix', opts.socketPath], {
      shell: false,
      detached: true,
      stdio: ['ignore', logFd, logFd],
    });
  } finally {
    closeSync(logFd);
  }
  let exitInfo: string | null = null;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = signal !== null ? `killed by ${signal}` : `exit code ${code ?? -1}`;
      resolve();
    });
    child.once('error', (err) => {
      exitInfo = err.message;
      resolve();
    });
  });
  // The worker must be free to exit even if nbdfuse is still running.
  child.unref();
  const pid = child.pid ?? -1;

  const fail = async (why: string, cause?: unknown): Promise<never> => {
    await teardown({ paths, blockDevice: null, pid, exited, force: true, label: `/dev/hast/${opts.provName}` });
    const out = readLog(paths.logFile);
    throw new DeviceError(`nbdfuse ${why}${out !== '' ? `: ${out}` : ''}`, { cause });
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? FUSE_READY_TIMEOUT_MS);
  for (;;) {
    if (exitInfo !== null) return fail(`exited during start-up (${exitInfo})`);
    const size = readySize(paths.pidFile, paths.file);
    if (size !== null && size > 0 && (opts.expectedSize === undefined || size === opts.expectedSize)) break;
    if (Date.now() > deadline)
      return fail(`did not present ${paths.file} within ${opts.readyTimeoutMs ?? FUSE_READY_TIMEOUT_MS} ms`);
    await sleep(25);
  }

  let blockDevice: string;
  try {
    blockDevice = await loopWithDirectIo(losetup, paths.file, opts.sectorSize, `/dev/hast/${opts.provName}`);
  } catch (err) {
    return fail('started, but losetup failed', err);
  }

  let detached = false;
  return {
    blockDevice,
    mountDir: paths.mountDir,
    pid,
    async detach(force: boolean, label: string): Promise<void> {
      if (detached) {
        log.debug(1, `${label} already detached.`);
        return;
      }
      await teardown({ paths, blockDevice, pid, exited, force, label });
      detached = true;
    },
  };
}

/**
 * `losetup` flags of the loop device on nbdfuse's file, direct I/O on (README "Benchmarks"). With
 * `--direct-io=off` the loop device writes through the FUSE file's page cache, one synchronous
 * request at a time (a worker thread per loop device doing vfs_iter_write), so the device ran at
 * one request's latency whatever the queue depth. With direct I/O it submits every request as
 * asynchronous O_DIRECT I/O to FUSE, which passes them on to nbdfuse's threads and connections in
 * parallel, and the FUSE file keeps no page cache of its own (no double caching; the file system
 * above has its cache). Flushes are unchanged: REQ_PREFLUSH / FUA on the loop device → fsync of the
 * FUSE file → nbdfuse's fsync → NBD_CMD_FLUSH → hastd's flush (test/system/device-attach.test.ts).
 */
export function loopArgs(sectorSize: number, directIo: boolean): string[] {
  return [`--direct-io=${directIo ? 'on' : 'off'}`, '--sector-size', String(sectorSize)];
}

/**
 * Bind a loop device to `file` with direct I/O, falling back to buffered I/O (logged) when the
 * kernel refuses it: losetup fails, or binds the device but leaves direct I/O off (util-linux
 * warns and carries on). Returns the device.
 */
async function loopWithDirectIo(losetup: string, file: string, sectorSize: number, label: string): Promise<string> {
  let dev: string | null = null;
  let refused = '';
  try {
    dev = deviceOf((await run(losetup, [...loopArgs(sectorSize, true), '-f', '--show', file])).stdout);
  } catch (err) {
    refused = err instanceof Error ? err.message : String(err);
  }
  if (dev !== null) {
    if (directIoOf(dev) !== false) return dev;
    refused = 'the kernel left direct I/O off';
  } else {
    // Never leave a half-bound device behind before binding another to the same file.
    for (const loop of loopsOnOurFuse(file, dirname(file))) await detachLoop(loop, true);
  }
  log.notice(
    `${label}: loop device without direct I/O (${refused.split('\n')[0]}); every request then goes through the FUSE file's page cache one at a time (slow).`,
  );
  if (dev !== null) return dev;
  const again = deviceOf((await run(losetup, [...loopArgs(sectorSize, false), '-f', '--show', file])).stdout);
  if (again === null) throw new DeviceError(`losetup printed no device for ${file}`);
  return again;
}

function deviceOf(stdout: string): string | null {
  const dev = stdout.trim();
  return dev.startsWith('/dev/') ? dev : null;
}

/** Whether the loop device does direct I/O (sysfs `loop/dio`), or null when unknown. */
export function directIoOf(loop: string): boolean | null {
  try {
    return readFileSync(`/sys/block/${basename(loop)}/loop/dio`, 'utf8').trim() === '1';
  } catch {
    return null;
  }
}

/** The file's size once nbdfuse says it is ready (pidfile written), else null. */
function readySize(pidFile: string, file: string): number | null {
  if (!existsSync(pidFile)) return null;
  try {
    return statSync(file).size;
  } catch {
    return null;
  }
}

interface TeardownState {
  readonly paths: ReturnType<typeof fusePaths>;
  readonly blockDevice: string | null;
  readonly pid: number;
  readonly exited: Promise<void> | undefined;
  readonly force: boolean;
  readonly label: string;
}

/**
 * Order matters: the loop device holds the FUSE file open, and the FUSE mount keeps nbdfuse
 * serving. So: loop first, then the mount (nbdfuse exits by itself on unmount), then the process.
 */
async function teardown(s: TeardownState): Promise<void> {
  const loops = s.blockDevice !== null && backingFileOf(s.blockDevice) !== null ? [s.blockDevice] : [];
  for (const loop of new Set([...loops, ...loopsOnOurFuse(s.paths.file, s.paths.mountDir)])) {
    assertNotBusy(loop, s.label, s.force);
    await detachLoop(loop, s.force);
  }
  await unmountFuse(s.paths.mountDir);
  if (s.pid > 0 && isNbdfuse(s.pid)) {
    const deadline = Date.now() + NBDFUSE_EXIT_WAIT_MS;
    while (isNbdfuse(s.pid) && Date.now() < deadline) {
      if (s.exited !== undefined) {
        let done = false;
        void s.exited.then(() => (done = true));
        await sleep(20);
        if (done) break;
      } else await sleep(20);
    }
    if (isNbdfuse(s.pid)) {
      log.debug(1, `nbdfuse (pid=${s.pid}) did not exit after unmount; terminating it.`);
      await terminate(s.pid, FUSE_EXIT_GRACE_MS, s.exited);
    }
  }
  removeQuietly(s.paths.pidFile);
  try {
    rmdirSync(s.paths.mountDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      log.debug(1, `Unable to remove ${s.paths.mountDir}: ${String(err)}`);
  }
}

/**
 * Refuse to pull a device from under a mounted file system (or device-mapper/md on top). Upstream
 * destroys its gate device with force; we stop short of that on an orderly detach, because the
 * file system would lose its device and every later I/O on it fails. `force` is for crash cleanup.
 */
export function assertNotBusy(blockDevice: string, label: string, force: boolean): void {
  const what = busyReason(blockDevice);
  if (what === null) return;
  if (!force) throw new DeviceError(`device busy: ${label} ${what}; unmount it first`, { busy: true });
  log.warning(`Device ${label} (${blockDevice}) ${what}; removing it anyway (lazy detach).`);
}

/**
 * Detach a loop device. A failure (the loop still bound afterwards) throws unless `force`: the
 * caller then keeps everything above it (the FUSE mount, the symlink, the role) instead of leaving
 * half a device behind.
 */
async function detachLoop(loop: string, force = true): Promise<void> {
  const losetup = findTool('losetup');
  if (losetup === null) {
    log.warning(`losetup not found; ${loop} left attached.`);
    return;
  }
  try {
    await run(losetup, ['-d', loop]);
  } catch (err) {
    // "No such device or address": already detached.
    if (backingFileOf(loop) === null) log.debug(1, `${loop} already detached.`);
    else if (!force)
      throw new DeviceError(`Unable to detach ${loop}: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    else log.warning(`Unable to detach ${loop}`, err);
  }
}

/**
 * Unmount the FUSE mount point. The loop device may release the file a moment after `losetup -d`
 * returns, so EBUSY is retried for a while before falling back to a lazy unmount.
 */
async function unmountFuse(dir: string): Promise<void> {
  if (!isFuseMount(dir)) return;
  const fusermount = findTool('fusermount3') ?? findTool('fusermount');
  const umount = findTool('umount');
  const deadline = Date.now() + 5_000;
  let lastErr: unknown = null;
  while (isFuseMount(dir) && Date.now() < deadline) {
    try {
      if (fusermount !== null) await run(fusermount, ['-u', dir]);
      else if (umount !== null) await run(umount, [dir]);
      else throw new DeviceError('neither fusermount3 (Debian package fuse3) nor umount (mount) found');
    } catch (err) {
      lastErr = err;
      await sleep(100);
    }
  }
  if (!isFuseMount(dir)) return;
  log.warning(`Unable to unmount ${dir}; unmounting lazily`, lastErr);
  try {
    if (umount !== null) await run(umount, ['-l', dir]);
    else if (fusermount !== null) await run(fusermount, ['-u', '-z', dir]);
  } catch (err) {
    log.error(`Unable to unmount ${dir}`, err);
  }
}

/**
 * Remove what a crashed worker left for this provider: loop devices on our FUSE file, the FUSE
 * mount, the nbdfuse process (found through its pidfile and checked by its command line).
 * Never throws.
 */
export async function cleanupStaleFuse(provName: string, stateDir: string): Promise<void> {
  const paths = fusePaths(provName, stateDir);
  let pid = -1;
  try {
    const n = Number(readFileSync(paths.pidFile, 'utf8').trim());
    if (Number.isInteger(n) && n > 0) pid = n;
  } catch {
    // no pidfile
  }
  const stale =
    isFuseMount(paths.mountDir) || loopsOnOurFuse(paths.file, paths.mountDir).length > 0 || (pid > 0 && isNbdfuse(pid));
  if (!stale) {
    removeQuietly(paths.pidFile);
    return;
  }
  log.warning(`Removing stale device state of ${provName} (${paths.mountDir}).`);
  try {
    await teardown({ paths, blockDevice: null, pid, exited: undefined, force: true, label: `/dev/hast/${provName}` });
  } catch (err) {
    log.error(`Unable to clean up stale device state of ${provName}`, err);
  }
}

/**
 * Loop devices bound to the FUSE file `file` mounted at `mountDir`. The backing-file path in sysfs
 * (what `losetup -j` compares) is not enough: another hastd in another mount namespace on the same
 * kernel (containers, the namespace test hosts) has the same path, and detaching its loop device
 * pulls the disk from under its file system. So a loop must also sit on the file system mounted at
 * our `mountDir` in our namespace (same device number); with our mount gone, nothing matches.
 */
function loopsOnOurFuse(file: string, mountDir: string): string[] {
  const candidates = loopsBackedBy(file);
  if (candidates.length === 0) return [];
  const dev = mountDevice(mountDir);
  const losetup = findTool('losetup');
  if (dev === null || losetup === null) return [];
  return candidates.filter((loop) => {
    try {
      return (
        execFileSync(losetup, ['-n', '-O', 'BACK-MAJ:MIN', '-l', loop], {
          encoding: 'utf8',
          timeout: 10_000,
        }).trim() === dev
      );
    } catch {
      return false;
    }
  });
}

/** "major:minor" of the file system mounted at dir in this mount namespace, or null. */
function mountDevice(dir: string): string | null {
  let want = dir;
  try {
    // Not realpath(dir) itself: on a dead FUSE mount that fails with ENOTCONN.
    want = join(realpathSync(dirname(dir)), basename(dir));
  } catch {
    // compare the literal path
  }
  let info: string;
  try {
    info = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return null;
  }
  let dev: string | null = null;
  for (const line of info.split('\n')) {
    const f = line.split(' ');
    const at = (f[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    if (at === want || at === dir) dev = f[2] ?? null; // the last one wins: it is the visible mount
  }
  return dev;
}

/** Loop devices whose backing file is `file` by name (what `losetup -j file` lists), from sysfs. */
function loopsBackedBy(file: string): string[] {
  let want = file;
  try {
    want = realpathSync(file);
  } catch {
    // The FUSE mount may be gone (or dead: ENOTCONN); compare the literal path.
  }
  let names: string[];
  try {
    names = readdirSync('/sys/block').filter((n) => /^loop\d+$/.test(n));
  } catch {
    return [];
  }
  return names
    .map((n) => `/dev/${n}`)
    .filter((dev) => {
      const b = backingFileOf(dev);
      return b !== null && (b === want || b === file);
    });
}

/** The backing file of a loop device, or null when it is not bound. */
function backingFileOf(loop: string): string | null {
  const name = loop.replace(/^\/dev\//, '');
  try {
    return readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8')
      .trim()
      .replace(/ \(deleted\)$/, '');
  } catch {
    return null;
  }
}

function isNbdfuse(pid: number): boolean {
  if (!isAlive(pid)) return false;
  const argv = cmdlineOf(pid);
  return argv?.some((a) => a === 'nbdfuse' || a.endsWith('/nbdfuse')) === true;
}

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-5).join(' ');
  } catch {
    return '';
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}
