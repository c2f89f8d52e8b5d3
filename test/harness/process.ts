// Running a program to completion from a test, the harness or the benchmark: one place for the
// bound on its run time, the size of its output and how its exit is reported.
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The build's root (dist/): the compiled daemon and control tool the tests run. */
export const DIST = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
export const HASTD = join(DIST, 'src', 'cli', 'hastd.js');
export const HASTCTL = join(DIST, 'src', 'cli', 'hastctl.js');

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Bound on the run time (default 60 s); on expiry the program gets SIGKILL and code is 124. */
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  /** Written to the program's stdin, which is then closed. */
  readonly input?: string;
}

/**
 * Run a program to completion and collect its output. Never rejects: the exit status is `code`
 * (124 when the bound expired as timeout(1) reports it, 1 when it could not start or died by a signal).
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((done) => {
    const child = execFile(
      cmd,
      [...args],
      { timeout: opts.timeoutMs ?? 60_000, killSignal: 'SIGKILL', maxBuffer: 64 << 20, env: opts.env ?? process.env },
      (err, stdout, stderr) => {
        let code = 0;
        if (err !== null) {
          const e = err as { code?: unknown; killed?: boolean };
          code = typeof e.code === 'number' ? e.code : e.killed === true ? 124 : 1;
        }
        done({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}
