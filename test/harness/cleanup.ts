// Cleanup helpers for tests that start processes, mounts and loop devices: registered with t.after
// so they run even when the test fails. Every helper tolerates "already gone".
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { sleep } from './wait.js';

/** Is `pid` still running (zombies excluded)? */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return !/^\S+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** SIGTERM `pid`, then SIGKILL after `graceMs` if it is still there. Never throws. */
export async function killPid(pid: number | undefined, graceMs = 2_000): Promise<void> {
  if (pid === undefined || pid <= 0) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (isRunning(pid) && Date.now() < deadline) await sleep(20);
  try {
    if (isRunning(pid)) process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

/** Kill `pid` (a function, when the pid is only known later) when the test ends. */
export function registerKill(t: TestContext, pid: number | (() => number | undefined)): void {
  t.after(() => killPid(typeof pid === 'function' ? pid() : pid));
}

function quiet(file: string, args: readonly string[]): boolean {
  try {
    execFileSync(file, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Is `dir` a mount point now? */
export function isMountPoint(dir: string): boolean {
  try {
    return readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1]?.replace(/\\040/g, ' ') === dir);
  } catch {
    return false;
  }
}

/** Lazily unmount `dir` (file system or FUSE) while anything is mounted there. Never throws. */
export function unmountAll(dir: string): void {
  for (let i = 0; i < 5 && isMountPoint(dir); i++) {
    if (!quiet('umount', ['-l', dir])) quiet('fusermount3', ['-u', '-z', dir]);
  }
}

/** Loop devices whose backing file is `file` (sysfs; what `losetup -j` shows). */
export function loopsBackedBy(file: string): string[] {
  let names: string[];
  try {
    names = readdirSync('/sys/block').filter((n) => /^loop\d+$/.test(n));
  } catch {
    return [];
  }
  return names
    .filter((n) => {
      try {
        return (
          readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8')
            .trim()
            .replace(/ \(deleted\)$/, '') === file
        );
      } catch {
        return false;
      }
    })
    .map((n) => `/dev/${n}`);
}
