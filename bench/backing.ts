// Where every backing file of the benchmark lives: on tmpfs, so that the writeback of one target's
// dirty pages never slows the target measured after it (issue 14). As root the bench mounts its own
// tmpfs under $TMPDIR; otherwise it uses /dev/shm when that is a tmpfs, else $TMPDIR as it is (and
// says so). TMPDIR is pointed there for the whole run, so every phase and the harness follow.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isRoot } from '../test/harness/tools.js';
import type { Scope } from './scope.js';

export interface Backing {
  readonly dir: string;
  /** 'tmpfs-mount' (ours), 'dev-shm', or 'tmpdir' (whatever $TMPDIR is on). */
  readonly kind: 'tmpfs-mount' | 'dev-shm' | 'tmpdir';
  /** What the report prints. */
  readonly description: string;
}

/** Mount points (as /proc/self/mountinfo shows them, octal escapes decoded) with their fs type. */
function mounts(): { at: string; fstype: string }[] {
  const out: { at: string; fstype: string }[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (f.length < 5 || sep < 0) continue;
    const at = (f[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    out.push({ at, fstype: f[sep + 1] ?? '' });
  }
  return out;
}

function isTmpfs(dir: string): boolean {
  return mounts().some((m) => m.at === dir && m.fstype === 'tmpfs');
}

function quiet(cmd: string, args: readonly string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Release whatever still sits on `dir` after the phases' own cleanups (a safety net for a failed
 * cleanup or a signal mid-start): loop devices whose backing file is under it, then every mount
 * below it, deepest first (FUSE mounts lazily), so that the tmpfs itself can go.
 */
function sweep(dir: string): void {
  const prefix = `${dir}/`;
  let loops: string[] = [];
  try {
    loops = readdirSync('/sys/block').filter((n) => /^loop\d+$/.test(n));
  } catch {
    // no sysfs
  }
  for (const n of loops) {
    let back = '';
    try {
      back = readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim();
    } catch {
      continue; // not bound
    }
    if (back.startsWith(prefix)) {
      process.stderr.write(`bench: detaching leftover /dev/${n} (${back})\n`);
      quiet('losetup', ['-d', `/dev/${n}`]);
    }
  }
  const below = mounts()
    .filter((m) => m.at.startsWith(prefix))
    .sort((a, b) => b.at.length - a.at.length);
  for (const m of below) {
    process.stderr.write(`bench: unmounting leftover ${m.at} (${m.fstype})\n`);
    if (!(m.fstype.startsWith('fuse') && quiet('fusermount3', ['-u', '-z', m.at]))) quiet('umount', ['-l', m.at]);
  }
}

/**
 * Choose (as root: mount) the backing directory, point TMPDIR at it and register its removal with
 * `scope` (sweep, unmount, remove), which runs after every phase's cleanup.
 */
export function setupBacking(scope: Scope): Backing {
  const base = tmpdir();
  const before = process.env.TMPDIR;
  scope.after(() => {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
  });
  let b: Backing;
  if (isRoot()) {
    const dir = mkdtempSync(join(base, 'hastd-bench-'));
    scope.after(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700', 'hastd-bench', dir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    scope.after(() => {
      sweep(dir);
      if (!quiet('umount', [dir])) quiet('umount', ['-l', dir]);
    });
    b = { dir, kind: 'tmpfs-mount', description: `a tmpfs mounted by the bench at ${dir}` };
  } else if (isTmpfs('/dev/shm')) {
    const dir = mkdtempSync(join('/dev/shm', 'hastd-bench-'));
    scope.after(() => rmSync(dir, { recursive: true, force: true }));
    b = { dir, kind: 'dev-shm', description: `${dir} (tmpfs)` };
  } else {
    const dir = mkdtempSync(join(base, 'hastd-bench-'));
    scope.after(() => rmSync(dir, { recursive: true, force: true }));
    b = { dir, kind: 'tmpdir', description: `${dir} (NOT tmpfs: writeback of one target may slow the next)` };
  }
  process.env.TMPDIR = b.dir;
  return b;
}
