// The anchor: `nbdkit file` serving a backing file on a unix socket, started and ended by pid.
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { connect, type NetConnectOpts } from 'node:net';
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

/** Does a unix socket (a path) or a TCP address accept a connection? */
export function accepts(to: string | NetConnectOpts): Promise<boolean> {
  return new Promise((done) => {
    const s = connect(typeof to === 'string' ? { path: to } : to, () => {
      s.destroy();
      done(true);
    });
    s.on('error', () => done(false));
  });
}

/** Start `nbdkit -U sock -f file file=<file>` and wait until it accepts connections. */
export async function startNbdkitFile(scope: Scope, sock: string, file: string): Promise<NbdkitServer> {
  rmSync(sock, { force: true });
  const proc = spawn('nbdkit', ['-U', sock, '-f', '--exit-with-parent', 'file', `file=${file}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
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

/**
 * Start `nbdkit -f -i host -p port file <file>` (the C replicator's second copy, on TCP) and wait
 * until it accepts connections.
 */
export async function startNbdkitTcp(
  scope: Scope,
  host: string,
  port: number,
  file: string,
): Promise<{ pid: number; stop(): Promise<void> }> {
  const proc = spawn('nbdkit', ['-f', '--exit-with-parent', '-i', host, '-p', String(port), 'file', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const pid = proc.pid;
  if (pid === undefined) throw new Error('nbdkit did not start');
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const stop = (): Promise<void> => killPid(pid);
  scope.after(stop);
  const deadline = Date.now() + 10_000;
  while (!(await accepts({ host, port }))) {
    if (proc.exitCode !== null)
      throw new Error(`nbdkit on ${host}:${port} exited with ${proc.exitCode}: ${stderr.trim()}`);
    if (Date.now() > deadline)
      throw new Error(`nbdkit did not listen on ${host}:${port} within 10 s: ${stderr.trim()}`);
    await sleep(50);
  }
  return { pid, stop };
}
