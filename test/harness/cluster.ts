// Integration harness: real hastd processes on loopback with file-backed components. Everything
// started here is registered for cleanup the moment it exists, and processes are ended by pid.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlRequest } from '../../src/control/client.js';
import { type DumpLayout, dataAreaHash, parseDump } from './data-area.js';
import { HASTCTL, HASTD, run, type RunResult } from './process.js';
import { sleep, waitFor, waitInSync } from './wait.js';

/**
 * Where teardown is registered: a node:test `TestContext`, or the benchmark's own scope (bench/), so
 * both tear down what they started the same way.
 */
export interface Teardown {
  after(fn: () => unknown): void;
}

/** The same registry under the campaign's name. */
export type Scope = Teardown;

export function hastctl(conf: string, node: string, args: readonly string[]): Promise<RunResult> {
  const [sub, ...rest] = args;
  return run(process.execPath, [HASTCTL, sub ?? '', '-c', conf, '--node', node, ...rest]);
}

export interface NodeSpec {
  readonly name: string;
  /** Listen/remote address, e.g. 127.0.0.1:34567. */
  readonly addr: string;
  readonly dir: string;
}

export interface ResourceSpec {
  readonly name: string;
  readonly replication?: string;
  readonly extra?: string;
  /** Per-node component paths (default <dir>/<name>.img). */
}

/** A hast.conf for two (or one) nodes sharing one file, each with its own control socket. */
export function writeConfig(
  path: string,
  nodes: readonly NodeSpec[],
  resources: readonly ResourceSpec[],
  global = '',
): string {
  let text = `${global}\n`;
  for (const n of nodes) {
    text += `on ${n.name} {\n  control uds://${n.dir}/control.sock\n  pidfile ${n.dir}/hastd.pid\n  listen tcp4://${n.addr}\n}\n`;
  }
  for (const r of resources) {
    text += `resource ${r.name} {\n`;
    if (r.replication !== undefined) text += `  replication ${r.replication}\n`;
    if (r.extra !== undefined) text += `  ${r.extra}\n`;
    for (const n of nodes) {
      const other = nodes.find((o) => o !== n);
      text += `  on ${n.name} {\n    local ${n.dir}/${r.name}.img\n    export uds://${n.dir}/${r.name}.sock\n    device none\n`;
      text += `    remote ${other === undefined ? 'none' : `tcp4://${other.addr}`}\n`;
      // Bind outgoing connections to this node's own loopback address, as a real host would use its own.
      if (other !== undefined) text += `    source tcp4://${n.addr.split(':')[0]}\n`;
      text += '  }\n';
    }
    text += '}\n';
  }
  writeFileSync(path, text);
  return text;
}

export interface HastdProcess {
  readonly proc: ChildProcess;
  readonly pid: number;
  output(): string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
  /** SIGKILL the parent and every process in its group (workers too). */
  kill(): Promise<void>;
}

/** Start `hastd -F` for a node and wait until its control socket answers. */
export async function startHastd(
  t: Teardown,
  conf: string,
  node: NodeSpec,
  extra: readonly string[] = [],
  /** The hastd to run (default: this build's); the package test runs the installed one. */
  hastd: string = HASTD,
): Promise<HastdProcess> {
  const proc = spawn(
    process.execPath,
    ['--enable-source-maps', hastd, '-F', '-c', conf, '--node', node.name, ...extra],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const pid = proc.pid;
  if (pid === undefined) throw new Error('hastd did not start');
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const killGroup = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-pid, sig);
    } catch {
      // Already gone.
    }
  };
  t.after(async () => {
    if (process.env.HASTD_TEST_LOG) {
      const { appendFileSync } = await import('node:fs');
      appendFileSync(process.env.HASTD_TEST_LOG, `==== ${node.name} pid ${pid}\n${out}\n`);
    }
    if (proc.exitCode === null && proc.signalCode === null) {
      killGroup('SIGKILL');
      await exited;
    } else {
      killGroup('SIGKILL');
    }
  });
  const handle: HastdProcess = {
    proc,
    pid,
    output: () => out,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      killGroup('SIGKILL');
      if (proc.exitCode === null && proc.signalCode === null) await exited;
    },
  };
  const sock = join(node.dir, 'control.sock');
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`hastd exited with ${proc.exitCode}:\n${out}`);
    // Ask the control socket directly: a hastctl process per poll costs a second on a busy machine.
    if (
      existsSync(sock) &&
      (await controlRequest(sock, { cmd: 'status', resources: ['all'] }).then(
        () => true,
        () => false,
      ))
    )
      break;
    if (Date.now() > deadline) throw new Error(`hastd did not come up:\n${out}`);
    await sleep(50);
  }
  return handle;
}

/**
 * Start hastd for `node`, give resource `res` the role, and for a primary wait until its NBD export
 * socket `sock` exists.
 */
export async function startRole(
  t: Teardown,
  conf: string,
  node: NodeSpec,
  res: string,
  role: 'primary' | 'secondary',
  sock: string,
): Promise<HastdProcess> {
  const d = await startHastd(t, conf, node);
  const r = await hastctl(conf, node.name, ['role', role, res]);
  if (r.code !== 0) throw new Error(`hastctl role ${role} ${res} on ${node.name} failed (${r.code}): ${r.stderr}`);
  if (role === 'primary') await waitFor(`export socket ${sock}`, () => existsSync(sock));
  return d;
}

/** `hastctl status --json` for one resource. */
export async function statusJson(conf: string, node: string, resource: string): Promise<Record<string, unknown>> {
  const r = await hastctl(conf, node, ['status', '--json', resource]);
  if (r.code !== 0) throw new Error(`hastctl status failed (${r.code}): ${r.stderr}`);
  const list = JSON.parse(r.stdout) as Record<string, unknown>[];
  const first = list[0];
  if (first === undefined) throw new Error('empty status');
  return first;
}

/** A free TCP port on host (bound and released; good enough for tests on loopback). */
export async function freePort(host: string): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, host, () => {
      const a = s.address();
      s.close(() => done(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

export interface Pair {
  readonly conf: string;
  readonly a: NodeSpec;
  readonly b: NodeSpec;
  readonly res: string;
  img(n: NodeSpec): string;
  sock(n: NodeSpec): string;
}

/** Two nodes on 127.0.0.1 and 127.0.0.2 sharing one hast.conf, components created with `hastctl create`. */
export async function makePair(
  t: Teardown,
  opts: { size?: number; replication?: string; extra?: string; createArgs?: readonly string[]; global?: string } = {},
): Promise<Pair> {
  const { mkdtempSync, rmSync, mkdirSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const root = mkdtempSync(join(tmpdir(), 'hastd-pair-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const a: NodeSpec = { name: 'node-a', addr: `127.0.0.1:${await freePort('127.0.0.1')}`, dir: join(root, 'a') };
  const b: NodeSpec = { name: 'node-b', addr: `127.0.0.2:${await freePort('127.0.0.2')}`, dir: join(root, 'b') };
  mkdirSync(a.dir);
  mkdirSync(b.dir);
  const conf = join(root, 'hast.conf');
  const spec: ResourceSpec = {
    name: 'r0',
    ...(opts.replication !== undefined ? { replication: opts.replication } : {}),
    ...(opts.extra !== undefined ? { extra: opts.extra } : {}),
  };
  writeConfig(conf, [a, b], [spec], opts.global ?? '');
  const size = opts.size ?? 64 << 20;
  for (const n of [a, b]) {
    const img = join(n.dir, 'r0.img');
    writeFileSync(img, '');
    const { truncateSync } = await import('node:fs');
    truncateSync(img, size);
    const r = await hastctl(conf, n.name, ['create', ...(opts.createArgs ?? []), 'r0']);
    if (r.code !== 0) throw new Error(`hastctl create failed: ${r.stderr}`);
  }
  return {
    conf,
    a,
    b,
    res: 'r0',
    img: (n) => join(n.dir, 'r0.img'),
    sock: (n) => join(n.dir, 'r0.sock'),
  };
}

/** Add statements to each node's `on` block of the pair's resource (undefined: nothing). */
export function addNodeLines(p: Pair, lines: { readonly a?: string; readonly b?: string }): void {
  let text = readFileSync(p.conf, 'utf8');
  for (const [node, add] of [
    [p.a, lines.a],
    [p.b, lines.b],
  ] as const) {
    if (add === undefined) continue;
    text = text.replace(`  on ${node.name} {\n    local`, `  on ${node.name} {\n    ${add}\n    local`);
  }
  writeFileSync(p.conf, text);
}

/** Layout of a component as `hastctl dump` reports it. */
export async function dumpOf(conf: string, node: string): Promise<DumpLayout> {
  const r = await hastctl(conf, node, ['dump', 'r0']);
  if (r.code !== 0) throw new Error(`hastctl dump failed: ${r.stderr}`);
  return parseDump(r.stdout);
}

interface WorkerView {
  status: string;
  dirty: number;
  lastSync: { bytes: number; seconds: number } | null;
  sync: unknown;
  stats: Record<string, number>;
}

/** The worker part of `hastctl status --json`, or null when no worker runs. */
export async function workerOf(conf: string, node: string): Promise<WorkerView | null> {
  const st = await statusJson(conf, node, 'r0');
  return (st.worker as WorkerView | null | undefined) ?? null;
}

/** Wait until the primary `node` reports complete, nothing dirty and no sync running. */
export function waitNodeInSync(conf: string, node: string, timeoutMs = 60_000): Promise<WorkerView> {
  return waitInSync(node, () => workerOf(conf, node), { timeoutMs });
}

/** The hash of node `n`'s data area (as `hastctl dump` places it): equal on both nodes = identical copies. */
export async function dataHashOf(p: Pair, n: NodeSpec): Promise<string> {
  const d = await dumpOf(p.conf, n.name);
  return dataAreaHash(p.img(n), d.localOff, d.dataSize);
}
