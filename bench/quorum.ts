// The C replicator anchor: QEMU's quorum block driver served by qemu-nbd, writing every request to
// a local file and, over NBD, to `nbdkit file` on 127.0.0.2: synchronous two-copy replication in C
// (issue 14). A quorum write completes when both children have completed it.
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../test/harness/cluster.js';
import { killPid } from '../test/harness/cleanup.js';
import { sleep } from '../test/harness/wait.js';
import { fillPattern, sparseFile } from './fill.js';
import { nbdUri } from './fio.js';
import { accepts, startNbdkitTcp } from './nbdkit.js';
import type { Scope } from './scope.js';

/** Where the second copy is served, as the hastd secondaries are. */
const REMOTE_HOST = '127.0.0.2';

export interface QuorumServer {
  /** qemu-nbd's pid (the process a profile of the anchor looks at). */
  readonly pid: number;
  readonly nbdkitPid: number;
  readonly uri: string;
}

/** The qemu block-layer options of the quorum: child 0 a raw local file, child 1 raw over NBD. */
function quorumImageOpts(local: string, host: string, port: number): string {
  return [
    'driver=quorum,vote-threshold=1,read-pattern=fifo',
    `children.0.driver=raw,children.0.file.driver=file,children.0.file.filename=${local}`,
    `children.1.driver=raw,children.1.file.driver=nbd,children.1.file.server.type=inet,children.1.file.server.host=${host},children.1.file.server.port=${port}`,
  ].join(',');
}

/**
 * Two backing files of `size` bytes under `dir` (filled like every other target's unless `fill`
 * is false), nbdkit serving the second on 127.0.0.2, qemu-nbd serving the quorum on a unix socket.
 * Both processes are ended by pid when `scope` closes.
 */
export async function startQuorum(scope: Scope, dir: string, size: number, fill: boolean): Promise<QuorumServer> {
  const local = join(dir, 'quorum-local.img');
  const remote = join(dir, 'quorum-remote.img');
  for (const f of [local, remote]) {
    sparseFile(f, size);
    if (fill) fillPattern(f, 0, size);
  }
  const port = await freePort(REMOTE_HOST);
  const nbdkit = await startNbdkitTcp(scope, REMOTE_HOST, port, remote);
  const sock = join(dir, 'quorum.sock');
  rmSync(sock, { force: true });
  const args = [
    '--image-opts',
    '-k',
    sock,
    '--cache=writeback',
    '--aio=threads',
    '-t',
    '-e',
    '4',
    quorumImageOpts(local, REMOTE_HOST, port),
  ];
  const proc = spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const pid = proc.pid;
  if (pid === undefined) throw new Error('qemu-nbd did not start');
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  scope.after(async () => {
    await killPid(pid);
    rmSync(sock, { force: true });
  });
  const deadline = Date.now() + 15_000;
  while (!(existsSync(sock) && (await accepts(sock)))) {
    if (proc.exitCode !== null) throw new Error(`qemu-nbd (quorum) exited with ${proc.exitCode}: ${stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`qemu-nbd did not open ${sock} within 15 s: ${stderr.trim()}`);
    await sleep(50);
  }
  return { pid, nbdkitPid: nbdkit.pid, uri: nbdUri(sock) };
}
