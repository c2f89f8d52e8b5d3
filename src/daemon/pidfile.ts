// The hastd pidfile: one running hastd per pidfile, stale files taken over. HAST-SPEC §10.1.
// Upstream uses pidfile_open(3) (an flock); Node has no flock, so exclusivity comes from atomic
// link(2)/rename(2) and a check-and-retry loop instead.
import {
  closeSync,
  constants as fsConstants,
  fchmodSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname } from 'node:path';
import { makeDirs, SHARED_DIR_MODE } from '../util/dirs.js';

/** Another live hastd holds the pidfile; the caller exits with EX_TEMPFAIL (75). */
export class PidfileError extends Error {
  readonly path: string;
  readonly pid: number;
  readonly exitCode = 75;
  constructor(path: string, pid: number) {
    super(`Another hastd is already running, pidfile: ${path}, pid: ${pid}.`);
    this.name = 'PidfileError';
    this.path = path;
    this.pid = pid;
  }
}

/** A pidfile we own. */
export interface Pidfile {
  readonly path: string;
  /** Remove the pidfile if it still names us; idempotent, never throws. */
  release(): void;
}

const MAX_ATTEMPTS = 20;

/**
 * Create `path` (parent directories too) holding our pid, mode 0600.
 *
 * - Free path: our file appears atomically with its content (written to a private temporary file
 *   created with O_EXCL, then link(2)ed into place, which fails with EEXIST if anyone was first),
 *   so a reader never sees a half-written pidfile.
 * - Existing file naming a live process that looks like hastd: throws {@link PidfileError}.
 * - Stale file (dead pid, a pid reused by something else, garbage): taken over. The stale file is
 *   first renamed away to a name private to us; if what we moved turns out to be a live hastd's
 *   (another starter won meanwhile), it is put back and we lose. So two racing starts cannot both
 *   win.
 *
 * Other failures (permissions, read-only fs) throw the underlying errno error.
 */
export function acquirePidfile(path: string): Pidfile {
  makeDirs(dirname(path), SHARED_DIR_MODE);
  const me = process.pid;
  const tmp = `${path}.${me}.tmp`;
  const aside = `${path}.${me}.stale`;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (tryCreate(path, tmp, me)) return makeHandle(path, me);
    // EEXIST: look at who holds it.
    const holder = readPid(path);
    if (holder === 'missing') continue;
    if (holder !== null && holder !== me && looksLikeRunningHastd(holder)) throw new PidfileError(path, holder);
    // Stale. Move it aside atomically; only then can we judge what we actually moved.
    try {
      renameSync(path, aside);
    } catch (err) {
      if (isCode(err, 'ENOENT')) continue;
      throw err;
    }
    const moved = readPid(aside);
    if (typeof moved === 'number' && moved !== me && looksLikeRunningHastd(moved)) {
      // A racing hastd created its pidfile between our read and our rename: give it back.
      try {
        linkSync(aside, path);
      } catch {
        // Someone else (a third starter) is already there; the winner's file stays.
      }
      safeUnlink(aside);
      throw new PidfileError(path, moved);
    }
    safeUnlink(aside);
  }
  throw new Error(`Unable to acquire pidfile ${path}: too much contention.`);
}

/** True when our file is now at `path`; false on EEXIST. */
function tryCreate(path: string, tmp: string, pid: number): boolean {
  safeUnlink(tmp);
  const fd = openSync(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    fchmodSync(fd, 0o600); // umask must not widen or narrow what upstream creates
    writeSync(fd, `${pid}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if (isCode(err, 'EEXIST')) return false;
    throw err;
  } finally {
    safeUnlink(tmp);
  }
}

function makeHandle(path: string, pid: number): Pidfile {
  let released = false;
  return {
    path,
    release(): void {
      if (released) return;
      released = true;
      // Never remove a successor's pidfile.
      if (readPid(path) === pid) safeUnlink(path);
    },
  };
}

/** The pid stored in a pidfile, null for unparsable content, 'missing' when there is no file. */
function readPid(path: string): number | null | 'missing' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (isCode(err, 'ENOENT')) return 'missing';
    return null;
  }
  const m = /^\s*(\d{1,10})\s*$/.exec(text);
  if (m === null) return null;
  const pid = Number(m[1]);
  return pid > 0 ? pid : null;
}

/**
 * A process is running and its command line looks like hastd: argv[0], or a script argument
 * (`node …/hastd.js`), is named hastd, or the process title is upstream's `hastd: …`. A pid reused
 * by an unrelated process after a crash is therefore not mistaken for a running hastd.
 */
export function looksLikeRunningHastd(pid: number): boolean {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return false; // no such process (or no /proc: cannot tell, treat as stale)
  }
  const argv = raw.split('\0').filter((a) => a !== '');
  if (argv.length === 0) return false; // zombie or kernel thread
  if (argv[0]?.startsWith('hastd:') === true || argv[0]?.startsWith('hastd ') === true) return true;
  return argv.slice(0, 3).some((a) => /^hastd(\.[cm]?js)?$/.test(basename(a)));
}

function safeUnlink(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function isCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}
