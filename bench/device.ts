// Phase "device" (root only): fio libaio with O_DIRECT on three block devices, in one run and with
// identical sizes and contents (issue 14):
//   loop     a loop device on a plain (tmpfs) file: the local disk;
//   nbdfuse  nbdfuse + loop over `nbdkit file`: the device transport alone;
//   hast     /dev/hast/<name> of a memsync pair with `device fuse` (hastd makes nbdfuse + loop).
// Every loop device, FUSE mount and process is ended by the phase's scope, also on failure.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { directIoOf, loopArgs } from '../src/daemon/device/fuse.js';
import { cleanupStaleDevice } from '../src/daemon/device/index.js';
import { dumpOf, hastctl, type HastdProcess, makePair, startRole, waitNodeInSync } from '../test/harness/cluster.js';
import { isRunning, killPid } from '../test/harness/cleanup.js';
import { run } from '../test/harness/process.js';
import { sleep, waitFor } from '../test/harness/wait.js';
import { fillPattern, sparseFile } from './fill.js';
import { DEVICE_JOBS, type FioFigures, runFio } from './fio.js';
import { startNbdkitFile } from './nbdkit.js';
import type { BenchOptions } from './options.js';
import type { Scope } from './scope.js';
import { progress } from './stats.js';

export const DEVICE_TARGETS = ['loop', 'nbdfuse', 'hast'] as const;
export type DeviceTarget = (typeof DEVICE_TARGETS)[number];

/** What the device phase needs besides root (Debian: libnbd-bin, mount, fuse3). */
export const DEVICE_TOOLS = ['nbdfuse', 'losetup', 'fusermount3'] as const;

/**
 * The loop flags of the anchors: those hastd's `device fuse` uses (src/daemon/device/fuse.ts
 * loopArgs: direct I/O on, 512-byte sectors), with direct I/O as the /dev/hast loop device actually
 * got it (hastd falls back to off when the kernel refuses), so the ratios compare like with like.
 */
function loopArgsLike(hastLoop: string): string[] {
  return loopArgs(512, directIoOf(hastLoop) ?? true);
}

export interface DevicePhaseResult {
  /** Size of every device (bytes). */
  readonly deviceSize: number;
  /** /dev/hast/<name> and the loop device it pointed to. */
  readonly hastDevice: string;
  readonly samples: Record<string, Record<DeviceTarget, FioFigures[]>>;
}

/** `losetup -f --show file` with hastd's flags; detached when `scope` closes. */
async function loopOn(scope: Scope, file: string, args: readonly string[]): Promise<string> {
  const r = await run('losetup', [...args, '-f', '--show', file]);
  const dev = r.stdout.trim();
  if (r.code !== 0 || !dev.startsWith('/dev/'))
    throw new Error(`losetup on ${file} failed (${r.code}): ${r.stderr.trim()}`);
  scope.after(async () => {
    const d = await run('losetup', ['-d', dev]);
    if (d.code !== 0 && existsSync(`/sys/block/${dev.slice(5)}/loop/backing_file`))
      throw new Error(`losetup -d ${dev}: ${d.stderr.trim()}`);
  });
  return dev;
}

/** Is `dir` a mount point in this namespace? */
function mounted(dir: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === dir);
}

/** nbdfuse on the export at `sock`, mounted at `mnt`; its file is `mnt/nbd`. Unmounted and ended by pid with `scope`. */
async function nbdfuseOn(scope: Scope, sock: string, mnt: string, size: number): Promise<string> {
  mkdirSync(mnt, { recursive: true });
  const pidFile = `${mnt}.pid`;
  // Its own session, as hastd starts it: a terminal's ^C reaches the bench, which tears down in order.
  const proc = spawn('nbdfuse', ['-P', pidFile, mnt, '--unix', sock], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  const pid = proc.pid;
  if (pid === undefined) throw new Error('nbdfuse did not start');
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  proc.unref();
  scope.after(async () => {
    // The loop device on it is gone by now (registered later, so detached first).
    for (let i = 0; i < 50 && mounted(mnt); i++) {
      if ((await run('fusermount3', ['-u', mnt])).code === 0) break;
      await sleep(100);
    }
    if (mounted(mnt)) await run('fusermount3', ['-u', '-z', mnt]);
    // nbdfuse may linger on its NBD shutdown after the unmount (see src/daemon/device/fuse.ts).
    for (let i = 0; i < 20 && isRunning(pid); i++) await sleep(50);
    await killPid(pid);
  });
  const file = join(mnt, 'nbd');
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nbdfuse exited with ${proc.exitCode}: ${stderr.trim()}`);
    if (existsSync(pidFile) && statSync(file, { throwIfNoEntry: false })?.size === size) break;
    if (Date.now() > deadline) throw new Error(`nbdfuse did not present ${file} within 15 s: ${stderr.trim()}`);
    await sleep(25);
  }
  return file;
}

/**
 * A memsync pair (primary 127.0.0.1, secondary 127.0.0.2) whose primary has `device fuse` and the
 * provider name `prov`; in sync, with /dev/hast/<prov> present, on return. The primary is demoted
 * (its worker removes the device) before its hastd is killed; whatever a crash left is removed
 * the way a new worker would (cleanupStaleDevice).
 */
async function startHastDevice(
  scope: Scope,
  size: number,
  fill: boolean,
  prov: string,
  extra: string | null,
): Promise<{ device: string; dataSize: number; output: () => string }> {
  const lines = [`name ${prov}`, ...(extra !== null ? [extra] : [])].join('\n  ');
  const pair = await makePair(scope, { size, replication: 'memsync', extra: lines });
  // writeConfig gives every node `device none`; the primary's (node-a, the first section) gets fuse.
  const conf = readFileSync(pair.conf, 'utf8');
  writeFileSync(pair.conf, conf.replace('device none', 'device fuse'));
  const l = await dumpOf(pair.conf, pair.a.name);
  if (fill) {
    fillPattern(pair.img(pair.a), l.localOff, l.dataSize);
    fillPattern(pair.img(pair.b), l.localOff, l.dataSize);
  }
  const stateDir = join(pair.a.dir, 'hastd-state');
  // LIFO: this runs after the hastd processes are killed, and removes what they left behind.
  scope.after(() => cleanupStaleDevice(prov, stateDir));
  const daemons: HastdProcess[] = [];
  daemons.push(await startRole(scope, pair.conf, pair.b, pair.res, 'secondary', pair.sock(pair.b)));
  daemons.push(await startRole(scope, pair.conf, pair.a, pair.res, 'primary', pair.sock(pair.a)));
  // Runs first: an orderly demotion detaches loop, FUSE mount and nbdfuse.
  scope.after(async () => {
    const r = await hastctl(pair.conf, pair.a.name, ['role', 'init', pair.res]);
    if (r.code !== 0)
      process.stderr.write(`bench: hastctl role init on ${pair.a.name} exited ${r.code}: ${r.stderr.trim()}\n`);
  });
  const device = `/dev/hast/${prov}`;
  await waitFor(`${device}`, () => existsSync(device), 30_000);
  await waitNodeInSync(pair.conf, pair.a.name);
  const output = (): string =>
    daemons
      .map((d, i) => `${i === 0 ? pair.b.name : pair.a.name}:\n${d.output().trim().split('\n').slice(-15).join('\n')}`)
      .join('\n');
  return { device, dataSize: l.dataSize, output };
}

export async function devicePhase(parent: Scope, opts: BenchOptions): Promise<DevicePhaseResult> {
  const scope = parent.child();
  try {
    const dir = join(tmpdir(), `device-${process.pid}`);
    mkdirSync(dir);
    scope.after(() => rmSync(dir, { recursive: true, force: true }));
    const fill = !opts.sparse;
    progress(
      `device: starting /dev/hast (memsync, device fuse), nbdfuse over nbdkit and a loop device (${opts.size} byte components)`,
    );
    const hast = await startHastDevice(scope, opts.size, fill, `hastbench${process.pid}`, opts.resourceExtra);
    const size = hast.dataSize;
    const plain = join(dir, 'plain.img');
    sparseFile(plain, size);
    if (fill) fillPattern(plain, 0, size);
    const args = loopArgsLike(realpathSync(hast.device));
    progress(`device: /dev/hast is ${realpathSync(hast.device)}; anchors' loop devices: losetup ${args.join(' ')}`);
    const loop = await loopOn(scope, plain, args);
    const kfile = join(dir, 'nbdkit.img');
    sparseFile(kfile, size);
    if (fill) fillPattern(kfile, 0, size);
    const nbdkit = await startNbdkitFile(scope, join(dir, 'nbdkit.sock'), kfile);
    const fuseFile = await nbdfuseOn(scope, nbdkit.sock, join(dir, 'fuse'), size);
    const fuseLoop = await loopOn(scope, fuseFile, args);
    const devices: Record<DeviceTarget, string> = { loop, nbdfuse: fuseLoop, hast: hast.device };
    const samples: DevicePhaseResult['samples'] = {};
    for (const job of DEVICE_JOBS) samples[job.id] = { loop: [], nbdfuse: [], hast: [] };
    const out = join(dir, 'fio.json');
    for (let rep = 1; rep <= opts.reps; rep++) {
      for (const job of DEVICE_JOBS) {
        for (const target of DEVICE_TARGETS) {
          progress(`device: rep ${rep}/${opts.reps} ${job.title} → ${target} (${devices[target]})`);
          try {
            samples[job.id]![target].push(await runFio({ device: devices[target] }, job, opts.runtime, out));
          } catch (err) {
            // What the pair said last (a worker restart replaces the device under fio, for one).
            if (target === 'hast')
              throw new Error(`${(err as Error).message}\nlast hastd output:\n${hast.output()}`, { cause: err });
            throw err;
          }
        }
      }
    }
    return { deviceSize: size, hastDevice: hast.device, samples };
  } finally {
    await scope.close();
  }
}
