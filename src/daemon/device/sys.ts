// System helpers for the device layer: finding tools, running them, reading /proc/mounts and
// loop-device state. DESIGN.md "The device on Linux".
import { execFile } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';

/** The Debian package that ships each tool we run, for "install X" error messages. */
export const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  nbdfuse: 'libnbd-bin',
  losetup: 'mount',
  umount: 'mount',
  fusermount3: 'fuse3',
  'nbd-client': 'nbd-client',
  modprobe: 'kmod',
};

/** A missing tool, a failed command or a refused operation on the device. */
export class DeviceError extends Error {
  /** The refusal of a teardown because something uses the device (nothing was removed). */
  readonly busy: boolean;
  constructor(message: string, options?: { cause?: unknown; busy?: boolean }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'DeviceError';
    this.busy = options?.busy === true;
  }
}

// losetup and friends live in /sbin, which a non-login PATH may lack.
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Absolute path of an executable tool, or null. */
export function findTool(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':').filter((d) => d.startsWith('/')), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return null;
}

/** Like {@link findTool} but throws a DeviceError naming the tool and its Debian package. */
export function requireTool(name: string, purpose: string): string {
  const p = findTool(name);
  if (p !== null) return p;
  const pkg = TOOL_PACKAGES[name];
  throw new DeviceError(`${name} not found (needed for ${purpose}); install the Debian package ${pkg ?? name}`);
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Run a tool without a shell; rejects with a DeviceError carrying its stderr. */
export function run(file: string, args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null) {
        const detail = stderr.trim() !== '' ? stderr.trim() : err.message;
        reject(new DeviceError(`${[file, ...args].join(' ')}: ${detail}`, { cause: err }));
        return;
      }
      resolve({ stdout, stderr });
    });
  });
}

export interface MountEntry {
  readonly source: string;
  readonly target: string;
  readonly fstype: string;
}

/** /proc/mounts fields use octal escapes for space, tab, newline and backslash. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parse /proc/mounts (or /proc/self/mountinfo-less fstab format) text; bad lines are skipped. */
export function parseMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const [source, target, fstype] = f;
    if (source === undefined || target === undefined || fstype === undefined || fstype === '') continue;
    out.push({ source: unescapeMount(source), target: unescapeMount(target), fstype });
  }
  return out;
}

function readMounts(): MountEntry[] {
  try {
    return parseMounts(readFileSync('/proc/mounts', 'utf8'));
  } catch {
    return [];
  }
}

/** Mount points whose source is `dev` (by name or by resolved path). */
export function mountsOfDevice(dev: string, mounts: readonly MountEntry[] = readMounts()): string[] {
  const names = new Set([dev]);
  try {
    names.add(realpathSync(dev));
  } catch {
    // device gone: match by name only
  }
  return mounts.filter((m) => names.has(m.source) || names.has(safeRealpath(m.source))).map((m) => m.target);
}

/** True when `dir` is a FUSE mount point. */
export function isFuseMount(dir: string, mounts: readonly MountEntry[] = readMounts()): boolean {
  return mounts.some((m) => m.target === dir && (m.fstype === 'fuse' || m.fstype.startsWith('fuse.')));
}

/** "major:minor" of a block device and of each of its partitions (from sysfs). */
function devNumbers(dev: string): { name: string; numbers: Map<string, string> } {
  const name = safeRealpath(dev).replace(/^\/dev\//, '');
  const numbers = new Map<string, string>();
  const add = (part: string): void => {
    try {
      numbers.set(readFileSync(`/sys/class/block/${part}/dev`, 'utf8').trim(), part);
    } catch {
      // not a block device (any more)
    }
  };
  add(name);
  try {
    for (const entry of readdirSync(`/sys/class/block/${name}`))
      if (entry.startsWith(name) && entry !== name) add(entry);
  } catch {
    // no sysfs entry
  }
  return { name, numbers };
}

/**
 * Why `dev` (a /dev/loopN or /dev/nbdN) must not be removed now, or null when nothing uses it:
 * a file system mounted on it or one of its partitions (/proc/self/mountinfo, by major:minor, so
 * any path to the device counts), a kernel holder (device-mapper, md: /sys/block/…/holders), or a
 * process holding it open (/proc/<pid>/fd). This process is not counted.
 */
export function busyReason(dev: string): string | null {
  const { numbers } = devNumbers(dev);
  if (numbers.size === 0) return null;
  const mounted: string[] = [];
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const f = line.split(' ');
      if (f[2] !== undefined && numbers.has(f[2]) && f[4] !== undefined) mounted.push(unescapeMount(f[4]));
    }
  } catch {
    // no /proc: fall back to /proc/mounts by name
  }
  if (mounted.length === 0) mounted.push(...mountsOfDevice(dev));
  if (mounted.length > 0) return `is mounted on ${[...new Set(mounted)].join(', ')}`;
  const holders: string[] = [];
  for (const part of numbers.values()) {
    try {
      holders.push(...readdirSync(`/sys/class/block/${part}/holders`));
    } catch {
      // none
    }
  }
  if (holders.length > 0) return `is in use by ${holders.join(', ')}`;
  const openers = openersOf(new Set(numbers.keys()));
  if (openers.length > 0) return `is held open by ${openers.slice(0, 5).join(', ')}${openers.length > 5 ? ', …' : ''}`;
  // What the lists above cannot see: a file system unmounted lazily (umount -l) while files on it
  // are still open keeps its device claimed, out of every mount table. O_EXCL on a block device
  // fails with EBUSY while a file system or another exclusive user has claimed it.
  for (const part of numbers.values()) {
    try {
      closeSync(openSync(`/dev/${part}`, fsConstants.O_RDONLY | fsConstants.O_EXCL));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EBUSY')
        return `is still in use (claimed by a file system that is not in the mount table, e.g. unmounted lazily with files open)`;
    }
  }
  return null;
}

/** Processes ("comm[pid]") with an open descriptor on a block device whose major:minor is in `numbers`. */
function openersOf(numbers: ReadonlySet<string>): string[] {
  const out: string[] = [];
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  } catch {
    return out;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      const link = `/proc/${pid}/fd/${fd}`;
      try {
        if (!readlinkSync(link).startsWith('/dev/')) continue;
        const st = statSync(link);
        if (!st.isBlockDevice()) continue;
        const mm = `${Math.floor(st.rdev / 256) & 0xfff}:${(st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)}`;
        if (!numbers.has(mm)) continue;
      } catch {
        continue;
      }
      let comm = '?';
      try {
        comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      } catch {
        // exited meanwhile
      }
      out.push(`${comm}[${pid}]`);
      break;
    }
  }
  return out;
}

function safeRealpath(p: string): string {
  if (!p.startsWith('/')) return p;
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** Is `pid` alive (a zombie counts as alive until reaped)? */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The process's argv from /proc, or null when it does not exist. */
export function cmdlineOf(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((a) => a !== '');
  } catch {
    return null;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Send SIGTERM, wait up to `graceMs` for the process to go, then SIGKILL. `exited` (when we are
 * its parent) resolves on its exit event; otherwise we poll kill(pid, 0). Never throws.
 */
export async function terminate(pid: number, graceMs: number, exited?: Promise<void>): Promise<boolean> {
  const gone = async (ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    if (exited !== undefined) {
      let done = false;
      void exited.then(() => {
        done = true;
      });
      while (!done && Date.now() < deadline) await sleep(20);
      return done;
    }
    while (isAlive(pid) && Date.now() < deadline) await sleep(20);
    return !isAlive(pid);
  };
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return true;
  }
  if (await gone(graceMs)) return true;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return true;
  }
  return gone(2_000);
}
