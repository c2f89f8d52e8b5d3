// /dev/hast/<provname> on Linux: a symlink to an nbd or FUSE+loop block device fed by the
// worker's NBD export. HAST-SPEC §5.5, DESIGN.md "The device on Linux".
import { lstatSync, readlinkSync, renameSync, rmdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { DeviceMode } from '../../config/types.js';
import { log } from '../../log/log.js';
import { makeDirs, SHARED_DIR_MODE } from '../../util/dirs.js';
import { attachFuse, cleanupStaleFuse } from './fuse.js';
import { attachNbd, nbdModuleUsable } from './nbd.js';
import { DeviceError, findTool, run } from './sys.js';

export { DeviceError } from './sys.js';

/** Where the provider symlinks live (FreeBSD: GEOM Gate's /dev/hast/). */
const DEV_HAST_DIR = '/dev/hast';

export interface AttachOptions {
  readonly provName: string;
  /** The worker's NBD export (unix socket). */
  readonly socketPath: string;
  readonly mode: DeviceMode;
  /** Per-daemon state directory: FUSE mount points, nbdfuse pidfiles and logs. */
  readonly stateDir: string;
  /** Logical sector size of the block device; default 512. */
  readonly sectorSize?: number;
  /** The export size in bytes when known: start-up waits until the device shows it. */
  readonly size?: number;
}

export interface AttachedDevice {
  /** `/dev/hast/<provname>`. */
  readonly devicePath: string;
  /** What the symlink points to: `/dev/loopN` (fuse) or `/dev/nbdN` (nbd). */
  readonly blockDevice: string;
  readonly mode: 'nbd' | 'fuse';
  /**
   * Remove the symlink and the block device. Refuses with a DeviceError ("device busy: … is
   * mounted on …; unmount it first") while a file system is mounted on it, leaving everything in
   * place; upstream destroys its gate device regardless, we do not pull a device from under a
   * mounted file system on an orderly detach. Also refused while a process holds it open or a
   * kernel holder sits on it. `force` (hastctl role --force, a second SIGTERM) removes it anyway.
   * A failed teardown step throws and keeps the symlink. Idempotent; "already gone" is logged.
   */
  detach(force?: boolean): Promise<void>;
}

/** 'auto' → nbd when the kernel module and nbd-client are there, else fuse. */
export function resolveMode(mode: DeviceMode): 'nbd' | 'fuse' | 'none' {
  if (mode !== 'auto') return mode;
  return nbdModuleUsable() && findTool('nbd-client') !== null ? 'nbd' : 'fuse';
}

/** `/dev/hast/<provname>`; throws a DeviceError for names that would escape /dev/hast. */
export function devicePathOf(provName: string): string {
  if (provName === '' || provName === '.' || provName === '..' || provName.includes('/') || provName.includes('\0')) {
    throw new DeviceError(`invalid provider name ${JSON.stringify(provName)} for ${DEV_HAST_DIR}`);
  }
  return join(DEV_HAST_DIR, provName);
}

/**
 * Create `/dev/hast/<provname>` for the export on `socketPath`. Mode 'none' → null (NBD socket only,
 * no root needed). Needs root otherwise. Throws a DeviceError naming a missing tool and its Debian
 * package, or the failing command and its message; nothing is left behind on failure.
 */
export async function attachDevice(opts: AttachOptions): Promise<AttachedDevice | null> {
  const mode = resolveMode(opts.mode);
  if (mode === 'none') return null;
  const devicePath = devicePathOf(opts.provName);
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new DeviceError(`creating ${devicePath} requires root (device ${mode})`);
  }
  const dev =
    mode === 'nbd'
      ? await attachNbd({ socketPath: opts.socketPath, blockSize: opts.sectorSize ?? 4096 })
      : await attachFuse({
          provName: opts.provName,
          socketPath: opts.socketPath,
          stateDir: opts.stateDir,
          sectorSize: opts.sectorSize ?? 512,
          ...(opts.size !== undefined ? { expectedSize: opts.size } : {}),
        });
  try {
    linkDevice(devicePath, dev.blockDevice);
  } catch (err) {
    await dev.detach(true, devicePath).catch(() => undefined);
    throw new DeviceError(`Unable to create ${devicePath}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  let gone = false;
  return {
    devicePath,
    blockDevice: dev.blockDevice,
    mode,
    async detach(force = false): Promise<void> {
      if (gone) {
        log.debug(1, `${devicePath} already removed.`);
        return;
      }
      // Busy check first (inside dev.detach) so a refused detach leaves the symlink in place.
      await dev.detach(force, devicePath);
      unlinkDevice(devicePath, dev.blockDevice);
      gone = true;
    },
  };
}

/**
 * Remove what a crashed worker of this provider left behind: the /dev/hast symlink, its loop or nbd
 * device, the FUSE mount and nbdfuse. Call at worker start, before {@link attachDevice}. Devices
 * still mounted are detached lazily (the file system above loses its device, as upstream's forced
 * destroy). Never throws; problems are logged.
 */
export async function cleanupStaleDevice(provName: string, stateDir: string): Promise<void> {
  let devicePath: string;
  try {
    devicePath = devicePathOf(provName);
  } catch (err) {
    log.warning('Skipping stale device cleanup', err);
    return;
  }
  let target: string | null = null;
  try {
    if (lstatSync(devicePath).isSymbolicLink()) target = readlinkSync(devicePath);
  } catch {
    // no symlink
  }
  if (target !== null && /^\/dev\/nbd\d+$/.test(target)) {
    const client = findTool('nbd-client');
    if (client !== null) {
      log.warning(`Disconnecting stale ${target} of ${devicePath}.`);
      await run(client, ['-d', target]).catch((err: unknown) => log.warning(`Unable to disconnect ${target}`, err));
    }
  }
  await cleanupStaleFuse(provName, stateDir);
  if (target !== null) unlinkDevice(devicePath, null);
}

/** Point /dev/hast/<provname> at `blockDevice`, replacing any old link atomically. */
function linkDevice(devicePath: string, blockDevice: string): void {
  makeDirs(DEV_HAST_DIR, SHARED_DIR_MODE);
  const tmp = `${devicePath}.${process.pid}.tmp`;
  try {
    unlinkSync(tmp);
  } catch {
    // not there
  }
  try {
    symlinkSync(blockDevice, tmp);
  } catch (err) {
    // Another provider's detach may have removed an empty /dev/hast between our mkdir and here.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    makeDirs(DEV_HAST_DIR, SHARED_DIR_MODE);
    symlinkSync(blockDevice, tmp);
  }
  renameSync(tmp, devicePath);
}

/** Remove the symlink (only if it still points at `blockDevice`, when given) and an empty /dev/hast. */
function unlinkDevice(devicePath: string, blockDevice: string | null): void {
  try {
    const target = readlinkSync(devicePath);
    if (blockDevice !== null && target !== blockDevice) {
      log.warning(`${devicePath} now points to ${target}, not ${blockDevice}; leaving it.`);
    } else {
      unlinkSync(devicePath);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') log.debug(1, `${devicePath} already removed.`);
    else log.warning(`Unable to remove ${devicePath}`, err);
  }
  try {
    rmdirSync(DEV_HAST_DIR);
  } catch {
    // not empty (other providers) or already gone
  }
}
