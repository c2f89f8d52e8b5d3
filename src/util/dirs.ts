// Directories hastd creates for its sockets, pidfile and state: made with an exact mode whatever
// the umask (mkdir(2) applies the umask, so `mode` alone gives 0777 under umask 000 when omitted
// and may narrow it otherwise). Directories that already exist are left as they are: they belong
// to whoever made them (/var/run, a test's temporary directory).
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/** Mode for a directory only root uses (control socket, NBD export sockets, worker state). */
export const PRIVATE_DIR_MODE = 0o700;
/** Mode for a directory other users must traverse (pidfile, /dev/hast, a group's control socket). */
export const SHARED_DIR_MODE = 0o755;

/**
 * `mkdir -p` with every directory it creates chmod'ed to exactly `mode`.
 * @returns the directories created, outermost first (empty when `path` existed)
 * @throws the mkdir/chmod error (EACCES, ENOTDIR...)
 */
export function makeDirs(path: string, mode: number): string[] {
  const first = mkdirSync(path, { recursive: true, mode });
  if (first === undefined) return [];
  const created: string[] = [];
  for (let d = path; ; d = dirname(d)) {
    created.unshift(d);
    if (d === first || dirname(d) === d) break;
  }
  for (const d of created) chmodSync(d, mode);
  return created;
}
