// The anchor: `nbdkit file` serving a backing file on a unix socket, started and ended by pid.
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { killPid } from '../test/harness/cleanup.js';
import { nbdUri } from './fio.js';
import type { Scope } from './scope.js';
import { sleep } from '../test/harness/wait.js';

export interface NbdkitServer {
  readonly pid: number;
  readonly sock: string;
  readonly uri: string;
  /** End this server now (it is also ended when its scope closes). */
  stop(): Promise<void>;
}

/** Does a unix socket accept a connection? */
function accepts(sock: string): Promise<boolean> {
  return new Promise((done) => {
    const s = connect({ path: sock }, () => {
      s.destroy();
      done(true);
    });
    s.on('error', () => done(false));
  });
}

/** Start `nbdkit -U sock -f file file=<file>` and wait until it accepts connections. */
export async function startNbdkitFile(scope: Scope, sock: string, file: string): Promise<NbdkitServer> {
  rmSync(sock, { force: true });
  const proc = spawn('nbdkit', ['-U', sock, '-f', '--exit-with-parent', 'file', `file=${file}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const pid = proc.pid;
  if (pid === undefined) throw new Error('nbdkit did not start');
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const stop = async (): Promise<void> => {
    await killPid(pid);
    rmSync(sock, { force: true });
  };
  scope.after(stop);
  const deadline = Date.now() + 10_000;
  while (!(existsSync(sock) && (await accepts(sock)))) {
    if (proc.exitCode !== null) throw new Error(`nbdkit file=${file} exited with ${proc.exitCode}: ${stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`nbdkit did not open ${sock} within 10 s: ${stderr.trim()}`);
    await sleep(50);
  }
  return { pid, sock, uri: nbdUri(sock), stop };
}
