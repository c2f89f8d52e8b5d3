// System-test hosts: the seed's two machines (skunk1, skunk2) as network + UTS + mount namespaces, with a
// public and a private (crossover) veth link, their own hastd, and guaranteed cleanup (HAST-SPEC §5, §9).
//
// A host is one long-lived "anchor" process (`sleep infinity`) that owns the host's UTS namespace (its
// hostname, so `on skunk1 {}` matches by host name as on FreeBSD) and its private mount namespace (a
// tmpfs on /run = /var/run and on /dev/hast, so control socket, pidfile, NBD export, FUSE mounts and the
// device symlink are per host). Every command "on the host" runs through `nsenter` into the anchor.
// Network namespaces are created with `ip netns add` and survive "power off"; the anchor does not.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { DIST, HASTCTL, HASTD, run, type RunOptions, type RunResult } from './process.js';
import { sleep, waitFor } from './wait.js';

/** The repository root (for contrib/ scripts, which are not compiled). */
export const REPO = existsSync(join(DIST, '..', 'contrib', 'ucarp')) ? resolve(DIST, '..') : process.cwd();

function nsInode(pid: number, kind: 'net' | 'uts' | 'mnt'): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return null;
  }
}

/** Every pid whose namespace of `kind` is the one named by `inode`. */
function pidsIn(kind: 'net' | 'uts' | 'mnt', inode: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    if (nsInode(pid, kind) === inode) out.push(pid);
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A background process started on a host. */
export interface HostProcess {
  readonly pid: number;
  readonly proc: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or null when killed by a signal). */
  readonly exited: Promise<number | null>;
}

export interface HostSpec {
  readonly name: string;
  /** Public address (CARP and the service address live on this link). */
  readonly publicAddr: string;
  /** Private crossover address, reserved for HAST. */
  readonly privateAddr: string;
}

/** The seed's two machines. */
const SKUNKS: readonly HostSpec[] = [
  { name: 'skunk1', publicAddr: '192.0.2.11', privateAddr: '198.51.100.1' },
  { name: 'skunk2', publicAddr: '192.0.2.12', privateAddr: '198.51.100.2' },
];

/** The skunks and a third host on the public network only (a quorum witness); no HAST link. */
export const WITH_WITNESS: readonly HostSpec[] = [
  ...SKUNKS,
  { name: 'witness', publicAddr: '192.0.2.13', privateAddr: '' },
];

/** Interface names inside every host (like em0/em1 on the seed's machines). */
export const PUBLIC_IF = 'pub0';
/** The private (crossover) interface, reserved for HAST. */
export const PRIVATE_IF = 'priv0';

export class Host {
  readonly name: string;
  readonly netns: string;
  readonly publicAddr: string;
  readonly privateAddr: string;
  /** Per-host directory on the real file system (component image, logs). */
  readonly dir: string;
  /** The shared hast.conf (identical on both hosts). */
  conf: string;
  private anchorPid = 0;
  private readonly procs = new Set<HostProcess>();
  private hastd: HostProcess | null = null;
  /** Loop devices this host attached (seen through /dev/hast or FUSE-backed), detached on power off. */
  private readonly loops = new Set<string>();

  constructor(spec: HostSpec, netns: string, dir: string, conf: string) {
    this.name = spec.name;
    this.netns = netns;
    this.publicAddr = spec.publicAddr;
    this.privateAddr = spec.privateAddr;
    this.dir = dir;
    this.conf = conf;
  }

  /** True while the host is "powered on" (its anchor runs). */
  get running(): boolean {
    return this.anchorPid !== 0 && alive(this.anchorPid);
  }

  /** The anchor's pid (namespaces are entered through it). */
  get pid(): number {
    return this.anchorPid;
  }

  /** Start the anchor: own hostname, private mounts, tmpfs on /run and /dev/hast. */
  async startAnchor(): Promise<void> {
    mkdirSync('/dev/hast', { recursive: true });
    const script = [
      'set -e',
      `hostname ${this.name}`,
      'mount -t tmpfs -o mode=0755 tmpfs /run',
      'mkdir -p /run/lock',
      'mount -t tmpfs -o mode=0755 tmpfs /dev/hast',
      // Mountpoints for the file systems on /dev/hast (/mnt/failover), private per host.
      'mount -t tmpfs -o mode=0755 tmpfs /mnt',
      'echo ready',
      'exec sleep infinity',
    ].join('\n');
    const proc = spawn(
      'ip',
      ['netns', 'exec', this.netns, 'unshare', '--uts', '--mount', '--propagation', 'private', 'sh', '-c', script],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    if (proc.pid === undefined) throw new Error(`${this.name}: anchor did not start`);
    this.anchorPid = proc.pid;
    await waitFor(`${this.name} anchor`, () => out.includes('ready') || proc.exitCode !== null, 10_000, 20);
    if (proc.exitCode !== null) throw new Error(`${this.name}: anchor failed: ${out}`);
    // The pid is `sleep` once its UTS namespace differs from ours.
    await waitFor(
      `${this.name} namespaces`,
      () => nsInode(this.anchorPid, 'uts') !== nsInode(process.pid, 'uts'),
      5_000,
      20,
    );
  }

  private nsenterArgs(cmd: string, args: readonly string[]): string[] {
    if (!this.running) throw new Error(`${this.name} is powered off`);
    return ['-t', String(this.anchorPid), '-n', '-u', '-m', '--', cmd, ...args];
  }

  /** Run a command on the host to completion. */
  exec(cmd: string, args: readonly string[] = [], opts: RunOptions = {}): Promise<RunResult> {
    return run('nsenter', this.nsenterArgs(cmd, args), opts);
  }

  /** `sh -c script` on the host. */
  sh(script: string, opts: RunOptions = {}): Promise<RunResult> {
    return this.exec('sh', ['-c', script], opts);
  }

  /** `hastctl <sub> -c <conf> args...` on the host (no --node: the host name selects the `on` block). */
  hastctl(sub: string, ...args: string[]): Promise<RunResult> {
    return this.exec(process.execPath, [HASTCTL, sub, '-c', this.conf, ...args], { timeoutMs: 30_000 });
  }

  /** Start a background process on the host; it is killed (by pid) on power off and at cleanup. */
  spawn(
    cmd: string,
    args: readonly string[] = [],
    opts: { logFile?: string; env?: NodeJS.ProcessEnv } = {},
  ): HostProcess {
    const proc = spawn('nsenter', this.nsenterArgs(cmd, args), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    });
    if (proc.pid === undefined) throw new Error(`${this.name}: ${cmd} did not start`);
    let out = '';
    const fd = opts.logFile !== undefined ? openSync(opts.logFile, 'a') : null;
    const sink = (d: Buffer): void => {
      out += d.toString();
      if (out.length > 4 << 20) out = out.slice(-(2 << 20));
      if (fd !== null) writeFileSync(fd, d);
    };
    proc.stdout?.on('data', sink);
    proc.stderr?.on('data', sink);
    // Output can still arrive after 'exit' (children that inherited the pipes): close the log on 'close'.
    if (fd !== null) proc.once('close', () => closeSync(fd));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    const hp: HostProcess = { pid: proc.pid, proc, output: () => out, exited };
    this.procs.add(hp);
    void exited.then(() => this.procs.delete(hp));
    return hp;
  }

  /** Everything hastd has logged on this host since the test began (all boots). */
  hastdLog(): string {
    try {
      return readFileSync(join(this.dir, 'hastd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** Start `hastd -F` on the host (as the rc script would) and wait until it answers `hastctl status`. */
  async startHastd(extra: readonly string[] = []): Promise<HostProcess> {
    if (this.hastd !== null && this.hastd.proc.exitCode === null && this.hastd.proc.signalCode === null)
      return this.hastd;
    const p = this.spawn(
      process.execPath,
      ['--enable-source-maps', HASTD, '-F', '-c', this.conf, '-P', '/var/run/hastd.pid', ...extra],
      {
        logFile: join(this.dir, 'hastd.log'),
      },
    );
    this.hastd = p;
    await waitFor(
      `${this.name}: hastd answering`,
      async () => {
        if (p.proc.exitCode !== null)
          throw new Error(`${this.name}: hastd exited with ${p.proc.exitCode}:\n${p.output()}`);
        return (await this.hastctl('status')).code === 0;
      },
      20_000,
      150,
    );
    return p;
  }

  /** SIGTERM hastd and wait (bounded) for it; SIGKILL if it does not exit. */
  async stopHastd(timeoutMs = 15_000): Promise<void> {
    const p = this.hastd;
    this.hastd = null;
    if (p === null || p.proc.exitCode !== null || p.proc.signalCode !== null) return;
    process.kill(p.pid, 'SIGTERM');
    const t = await Promise.race([p.exited.then(() => true), sleep(timeoutMs).then(() => false)]);
    if (!t) {
      for (const pid of this.hostPids()) if (pid !== this.anchorPid) killQuietly(pid);
      await p.exited;
    }
  }

  /** Pids of every process inside this host (by its UTS namespace), the anchor included. */
  hostPids(): number[] {
    if (this.anchorPid === 0) return [];
    const uts = nsInode(this.anchorPid, 'uts');
    if (uts === null) return [];
    return pidsIn('uts', uts);
  }

  /** Record the loop devices this host uses, so they can be detached even after its mounts are gone. */
  private async collectLoops(): Promise<void> {
    if (!this.running) return;
    const r = await this.sh(
      'for l in /dev/hast/*; do [ -e "$l" ] && readlink -f "$l"; done; ' +
        // By the FUSE mount's device number, not the backing-file path: the other host's FUSE file
        // has the same path (as in src/daemon/device/fuse.ts loopsOnOurFuse).
        'for m in $(awk \'$3 ~ /^fuse/ {print $2}\' /proc/self/mounts); do d=$(mountpoint -d "$m" 2>/dev/null) || continue; ' +
        'losetup -l -n -O NAME,BACK-MAJ:MIN | awk -v d="$d" \'$2 == d {print $1}\'; done',
      { timeoutMs: 10_000 },
    );
    for (const line of r.stdout.split('\n')) {
      const dev = line.trim();
      if (/^\/dev\/loop\d+$/.test(dev)) this.loops.add(dev);
    }
  }

  /**
   * Yank the power: the links go down first (no FIN reaches the peer), then every process in the host
   * gets SIGKILL, then the host's kernel state (mounts, FUSE, loop devices) is torn down.
   */
  async powerOff(): Promise<void> {
    await run('ip', ['-n', this.netns, 'link', 'set', PUBLIC_IF, 'down']);
    await run('ip', ['-n', this.netns, 'link', 'set', PRIVATE_IF, 'down']);
    await this.collectLoops().catch(() => undefined);
    const anchor = this.anchorPid;
    // Everything but the anchor first: its mount namespace stays reachable for the teardown below.
    for (let i = 0; i < 5; i++) {
      const pids = this.hostPids().filter((p) => p !== anchor);
      if (pids.length === 0) break;
      for (const pid of pids) killQuietly(pid);
      await sleep(100);
    }
    for (const hp of this.procs) killQuietly(hp.pid);
    this.hastd = null;
    if (this.running) {
      await this.sh(
        // Lazy: a dead FUSE server must not block us. File systems first, then FUSE, then loops.
        'awk \'$1 ~ /^\\/dev\\/(loop|hast)/ {print $2}\' /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done; ' +
          'awk \'$3 ~ /^fuse/ {print $2}\' /proc/self/mounts | while read -r m; do fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"; done; true',
        { timeoutMs: 20_000 },
      ).catch(() => undefined);
    }
    for (const dev of this.loops) await run('losetup', ['-d', dev], { timeoutMs: 10_000 });
    this.loops.clear();
    if (anchor !== 0) killQuietly(anchor);
    await waitFor(
      `${this.name}: all processes gone`,
      () => this.hostPids().length === 0 || !alive(anchor),
      10_000,
      50,
    ).catch(() => undefined);
    this.anchorPid = 0;
  }

  /** Power on: fresh hostname and tmpfs state, links up, hastd started (roles are `init`, as after any boot). */
  async boot(opts: { hastd?: boolean } = {}): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running`);
    await this.startAnchor();
    await run('ip', ['-n', this.netns, 'link', 'set', PUBLIC_IF, 'up']);
    await run('ip', ['-n', this.netns, 'link', 'set', PRIVATE_IF, 'up']);
    if (opts.hastd !== false) await this.startHastd();
  }

  /** `hastctl status --json <res>` parsed (first resource). */
  async status(res: string): Promise<StatusView> {
    const r = await this.hastctl('status', '--json', res);
    if (r.code !== 0) throw new Error(`${this.name}: hastctl status failed (${r.code}): ${r.stderr}${r.stdout}`);
    const list = JSON.parse(r.stdout) as StatusView[];
    const first = list[0];
    if (first === undefined) throw new Error(`${this.name}: empty status`);
    return first;
  }

  /** Final teardown (idempotent). */
  async destroy(): Promise<void> {
    await this.powerOff().catch(() => undefined);
    for (const hp of this.procs) killQuietly(hp.pid);
  }
}

/** The parts of `hastctl status --json` the system tests look at. */
export interface StatusView {
  readonly name: string;
  readonly role?: string;
  readonly provname?: string;
  readonly localpath?: string;
  readonly workerpid?: number;
  readonly worker?: {
    readonly status: string;
    readonly dirty: number;
    readonly sync: unknown;
    readonly device?: string | null;
    readonly lastSync?: { readonly bytes: number; readonly seconds: number } | null;
    readonly stats?: Record<string, number>;
  } | null;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

export interface Hosts {
  readonly hosts: readonly Host[];
  readonly root: string;
  /** The shared hast.conf path (write it with writeConf). */
  readonly conf: string;
  get(name: string): Host;
  /** Write the identical hast.conf both hosts use. */
  writeConf(text: string): void;
  /** A sparse component image for host (size in bytes); returns its path. */
  makeImage(host: Host, file: string, size: number): string;
  /** Private (HAST) link down / up: a network partition that leaves the public link alone. */
  partition(): Promise<void>;
  heal(): Promise<void>;
  /**
   * Cut host off the public network only (its switch port stops forwarding; the carrier stays up, as
   * when a switch or cable further away fails): VRRP/CARP lose each other, the HAST link stays.
   */
  partitionPublic(host: Host): Promise<void>;
  healPublic(host: Host): Promise<void>;
}

let seq = 0;

/**
 * Build the hosts (default: skunk1 and skunk2) and their links. Cleanup is registered on `t` before
 * anything is created, so a failure half-way still tears everything down.
 */
export async function createHosts(t: TestContext, specs: readonly HostSpec[] = SKUNKS): Promise<Hosts> {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const root = mkdtempSync(join(tmpdir(), 'hastd-sys-'));
  const tag = `h${process.pid % 100000}x${seq++}`;
  const hosts: Host[] = [];
  const nsNames: string[] = [];
  t.after(async () => {
    for (const h of hosts) await h.destroy();
    for (const ns of nsNames) await run('ip', ['netns', 'del', ns]);
    // Loop devices whose backing file lives under our directory (components, if a test looped them).
    const l = await run('losetup', ['-l', '-n', '-O', 'NAME,BACK-FILE']);
    for (const line of l.stdout.split('\n')) {
      const [dev, file] = line.trim().split(/\s+/);
      if (dev && file?.startsWith(root)) await run('losetup', ['-d', dev]);
    }
    // HASTD_TEST_LOG=file keeps every host's logs (hastd, ucarp and scripts) past the cleanup.
    const keep = process.env.HASTD_TEST_LOG;
    if (keep !== undefined && keep !== '') {
      for (const h of hosts) {
        for (const f of readdirSync(h.dir)
          .filter((n) => n.endsWith('.log'))
          .sort()) {
          appendFileSync(keep, `==== ${t.name} ${h.name} ${f}\n${readFileSync(join(h.dir, f), 'utf8')}\n`);
        }
      }
    }
    rmSync(root, { recursive: true, force: true });
  });
  const conf = join(root, 'hast.conf');
  writeFileSync(conf, '');
  for (const s of specs) {
    const ns = `${tag}-${s.name}`;
    const r = await run('ip', ['netns', 'add', ns]);
    if (r.code !== 0) throw new Error(`ip netns add ${ns}: ${r.stderr}`);
    nsNames.push(ns);
    const dir = join(root, s.name);
    mkdirSync(dir);
    hosts.push(new Host(s, ns, dir, conf));
  }
  const ip = async (...args: string[]): Promise<void> => {
    const r = await run('ip', args);
    if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  };
  const [a, b] = hosts;
  if (a === undefined || b === undefined) throw new Error('createHosts needs two hosts');
  // The public network goes through a switch (a bridge in its own namespace), so a host that loses
  // power does not take the other host's carrier down with it (ucarp ignores a link without carrier).
  // The private link is a crossover cable: a direct veth pair. Both ends of every pair are created
  // directly inside their namespaces, so no stray interface is left in ours.
  const sw = `${tag}-switch`;
  const r = await run('ip', ['netns', 'add', sw]);
  if (r.code !== 0) throw new Error(`ip netns add ${sw}: ${r.stderr}`);
  nsNames.push(sw);
  await ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge');
  await ip('-n', sw, 'link', 'set', 'br0', 'up');
  for (const h of hosts) {
    await ip('link', 'add', PUBLIC_IF, 'netns', h.netns, 'type', 'veth', 'peer', 'name', `port-${h.name}`, 'netns', sw);
    await ip('-n', sw, 'link', 'set', `port-${h.name}`, 'master', 'br0');
    await ip('-n', sw, 'link', 'set', `port-${h.name}`, 'up');
  }
  await ip('link', 'add', PRIVATE_IF, 'netns', a.netns, 'type', 'veth', 'peer', 'name', PRIVATE_IF, 'netns', b.netns);
  for (const h of hosts) {
    await ip('-n', h.netns, 'link', 'set', 'lo', 'up');
    await ip('-n', h.netns, 'addr', 'add', `${h.publicAddr}/24`, 'dev', PUBLIC_IF);
    await ip('-n', h.netns, 'link', 'set', PUBLIC_IF, 'up');
    // Only the first two hosts have the crossover link (a witness has privateAddr '').
    if (h === a || h === b) {
      await ip('-n', h.netns, 'addr', 'add', `${h.privateAddr}/24`, 'dev', PRIVATE_IF);
      await ip('-n', h.netns, 'link', 'set', PRIVATE_IF, 'up');
    }
    await h.startAnchor();
  }
  const setPrivate = async (state: 'up' | 'down'): Promise<void> => {
    for (const h of [a, b]) await ip('-n', h.netns, 'link', 'set', PRIVATE_IF, state);
  };
  return {
    hosts,
    root,
    conf,
    get: (name) => {
      const h = hosts.find((x) => x.name === name);
      if (h === undefined) throw new Error(`no host ${name}`);
      return h;
    },
    writeConf: (text) => writeFileSync(conf, text),
    makeImage: (host, file, size) => {
      const p = join(host.dir, file);
      writeFileSync(p, '');
      truncateSync(p, size);
      return p;
    },
    partition: () => setPrivate('down'),
    heal: () => setPrivate('up'),
    // The switch port leaves the bridge: no frame in or out, the host's link and carrier untouched (a
    // disabled bridge port would take the carrier down, which keepalived and ucarp see).
    partitionPublic: (h) => ip('-n', sw, 'link', 'set', `port-${h.name}`, 'nomaster'),
    healPublic: (h) => ip('-n', sw, 'link', 'set', `port-${h.name}`, 'master', 'br0'),
  };
}
