// Fault campaign: seeded cycles of two real hastd on loopback, the verifying workload on the
// primary, a fault at a random moment (SIGKILL of the primary worker, the primary's hastd or the
// secondary worker; a network cut, partition or stall; repeated kills during resync), the
// recovery an administrator would do, then verification of the surviving copy against the log and
// of both copies after resync (byte-identical data areas).
//
//   node dist/test/campaign/campaign.js --cycles 100 [--seed N] [--verbose]
//
// What each mode must keep after each fault (the verifier's requirement, see verify-workload.ts):
//   secondary killed            every mode: all acknowledged writes on the primary ('acked'),
//                               and on both copies after resync.
//   primary worker killed,      every mode: hastd restarts the worker after 1 s; the primary's own
//   restarted in place          disk has every acknowledged write ('acked').
//   primary killed, failover    fullsync: acknowledged = on the secondary's disk ('acked');
//   (worker or parent)          memsync: acknowledged = in the secondary's memory, and the secondary
//                               lives on, so it reaches its disk ('acked');
//                               async: acknowledged = on the primary's disk only; writes still on
//                               the wire are lost ('none': every block must hold zero or a
//                               generation that was issued; the missing tail is counted).
//   network cut, partition,     every mode: the primary never dies, so every acknowledged write is
//   stall (through FaultProxy)  on it ('acked'), and on both after the heal and resync.
//   resync-restart              the secondary dies, then each resync is interrupted by killing a
//                               worker of either side: 'acked' on the primary; the copies must
//                               converge to byte-identical data areas (no extent skipped).
// The administrator's mistakes and a hostile link (issue 13), each recording the exit codes seen:
//   promote-during-resync       the secondary is kept away while the primary writes, then the
//                               primary (hastd and worker) is killed in the middle of the resync;
//                               `role primary` on the half-synchronised secondary must be refused
//                               (77) with its data area unchanged; recovery: the old primary back,
//                               the resync completes: 'acked' on the primary, identical copies.
//   second-primary              `role primary` on the connected secondary while the workload runs:
//                               refused (75, or 69), role unchanged, the workload unharmed, 'acked'.
//   corrupt-replies             `checksum crc32`, `timeout 5`: the proxy corrupts the secondary's
//                               replies (version byte, nv length, a random nv bit) or a WRITE's
//                               payload: the link is dropped with a logged reason, no request fails
//                               (the local disk is fine), 'acked', identical after the resync.
//   failing-flush               the proxy answers a FLUSH with EIO in the secondary's place: the
//                               primary must fail the FLUSH or drop the link and resync (it may not
//                               ignore it); 'acked', identical after the resync.
//   demote-busy                 (root, nbdfuse, losetup, fusermount3; else skipped) a's device is
//                               `device fuse`, /dev/hast/<name> held open by a process: `role
//                               secondary` refused (75), the device keeps serving; once closed the
//                               demotion succeeds with no link, loop or FUSE mount left; failover
//                               to b: 'acked' (async: 'none').
// A refusal that succeeds is a failure; if it made two primaries that both wrote (a split-brain
// situation), the 'split-brain' hook must fire on both nodes, else it counts as undetected.
// Torn or foreign blocks are failures in every case.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlRequest } from '../../src/control/client.js';
import type { ResourceStatus } from '../../src/control/messages.js';
import { NbdClient } from '../../src/nbd/client.js';
import {
  formatReport,
  prng,
  type Requirement,
  reportOk,
  startWorkload,
  verifyComponent,
  type VerifyReport,
} from '../../src/tools/verify-workload.js';
import {
  dumpOf,
  hastctl,
  type HastdProcess,
  freePort,
  type Pair,
  type NodeSpec,
  type Scope,
  startHastd,
} from '../harness/cluster.js';
import { isMountPoint, isRunning, killPid, loopsBackedBy, unmountAll } from '../harness/cleanup.js';
import { hasTool, isRoot } from '../harness/tools.js';
import { fusePaths } from '../../src/daemon/device/fuse.js';
import { CORRUPT_KINDS, type CorruptKind, FaultProxy } from './proxy.js';
import { dataAreaHash } from '../harness/data-area.js';
import { sleep, waitFor, waitInSync } from '../harness/wait.js';

export const MODES = ['fullsync', 'memsync', 'async'] as const;
export const FAULTS = [
  'primary-worker',
  'primary-parent',
  'secondary-worker',
  'net-cut',
  'net-partition',
  'net-stall',
  'resync-restart',
  'promote-during-resync',
  'second-primary',
  'corrupt-replies',
  'failing-flush',
  'demote-busy',
] as const;
export type Mode = (typeof MODES)[number];
export type Fault = (typeof FAULTS)[number];

export interface CycleResult {
  readonly cycle: number;
  readonly seed: number;
  readonly mode: Mode;
  readonly fault: Fault;
  readonly recovery: 'restart' | 'failover' | 'reconnect' | 'heal' | 'resync' | 'none' | 'switchover';
  /** resync-restart: which worker was killed during each interrupted resync. */
  readonly interruptions?: readonly string[];
  /** Network faults: also cut while the resync after the heal was running. */
  readonly cutDuringResync?: boolean;
  readonly killAfterMs: number;
  readonly issued: number;
  readonly acked: number;
  readonly durable: number;
  readonly requirement: Requirement;
  /** Verification of the surviving copy, then of both copies after resync. */
  readonly survivor: VerifyReport | null;
  readonly afterResync: VerifyReport[];
  readonly identical: boolean;
  /** Daemon output lines that show a crash we did not cause. */
  readonly crashes: string[];
  /** Anything that stopped the cycle (a timeout, a refused command). */
  readonly failure: string | null;
  /** Commands that must be refused, with the exit status seen (0: wrongly succeeded). */
  readonly refusals?: readonly Refusal[];
  /** Nodes whose 'split-brain' hook fired; `situation`: a refusal let both nodes write as primary. */
  readonly splitBrain?: { readonly situation: boolean; readonly hooked: readonly string[] };
  /** corrupt-replies: what the proxy corrupted, and the primary's logged reason for the disconnect. */
  readonly corruption?: {
    readonly kind: CorruptKind;
    readonly injected: readonly string[];
    readonly detected: string | null;
  };
  /** failing-flush: FLUSH replies replaced with EIO, and how the primary handled it (null: ignored). */
  readonly flushFailure?: { readonly injected: number; readonly handled: string | null };
  /** The cycle could not run here (demote-busy without root or its tools). */
  readonly skipped?: string;
}

export interface Refusal {
  readonly action: string;
  readonly code: number;
  readonly expected: readonly number[];
}

/** Cleanup registered while a cycle runs; run in reverse order, errors ignored. */
class CycleScope implements Scope {
  readonly #fns: (() => unknown)[] = [];
  after(fn: () => unknown): void {
    this.#fns.push(fn);
  }
  async run(): Promise<void> {
    for (const fn of this.#fns.reverse()) {
      try {
        await fn();
      } catch {
        // cleanup is best effort; the next cycle has a fresh directory and ports
      }
    }
  }
}

const CRASH = /exited ungracefully|Uncaught|TypeError|ReferenceError|RangeError|unhandled/i;

async function role(p: Pair, n: NodeSpec, r: 'init' | 'primary' | 'secondary'): Promise<void> {
  const res = await hastctl(p.conf, n.name, ['role', r, p.res]);
  if (res.code !== 0) throw new Error(`hastctl role ${r} on ${n.name} failed (${res.code}): ${res.stderr}`);
}

/** Status straight from the control socket (what `hastctl status --json` prints, without a process spawn per poll). */
async function statusOf(p: Pair, n: NodeSpec): Promise<ResourceStatus> {
  const r = (await controlRequest(join(n.dir, 'control.sock'), { cmd: 'status', resources: [p.res] })).resources[0];
  if (r === undefined) throw new Error(`no status for ${p.res} on ${n.name}`);
  return r;
}

/**
 * Wait until `n` is primary with status complete, nothing dirty and no sync running, on 5 polls in
 * a row (a worker that has just connected may not have merged the peer's bitmap yet).
 */
async function waitSynced(p: Pair, n: NodeSpec, ms: number): Promise<void> {
  await waitInSync(n.name, async () => (await statusOf(p, n)).worker, { timeoutMs: ms, everyMs: 100, calmPolls: 5 });
}

async function workerPid(p: Pair, n: NodeSpec): Promise<number> {
  const pid = (await statusOf(p, n)).workerpid;
  if (typeof pid !== 'number' || pid <= 0) throw new Error(`no worker pid on ${n.name}`);
  return pid;
}

async function waitGone(pid: number, what: string, ms = 20_000): Promise<void> {
  await waitFor(what, () => !isRunning(pid), ms, 50);
}

async function bounded<T>(pr: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      pr,
      new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`timed out: ${what}`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The running cycle's cleanup, for an interrupted campaign (SIGINT/SIGTERM). */
let currentScope: CycleScope | null = null;

/** Thrown to leave a cycle's body early once it is complete. */
const DONE = Symbol('done');

async function sameDataAreas(p: Pair, x: NodeSpec, y: NodeSpec): Promise<boolean> {
  const dx = await dumpOf(p.conf, x.name);
  const dy = await dumpOf(p.conf, y.name);
  return (
    dx.dataSize === dy.dataSize &&
    (await dataAreaHash(p.img(x), dx.localOff, dx.dataSize)) ===
      (await dataAreaHash(p.img(y), dy.localOff, dy.dataSize))
  );
}

/**
 * Two nodes whose peer connections pass through a FaultProxy each way. Each proxy listens on the
 * IP of the node it leads to and binds its outgoing side to the other node's IP, so the listener's
 * address check sees the real peer: a's remote is 127.0.0.2:<proxy>, b listens on 127.0.0.2:<own>.
 */
interface PairOptions {
  /** Extra lines for the resource section (e.g. `checksum crc32`). */
  readonly extra?: readonly string[];
  /** The proxies parse frames (corrupt-replies, failing-flush). */
  readonly inspect?: boolean;
  readonly rnd?: () => number;
  /** a gets `device fuse` with this provider name (b: `<name>b`, device none). */
  readonly fuseName?: string;
}

async function makeProxiedPair(
  scope: CycleScope,
  mode: Mode,
  opts: PairOptions = {},
): Promise<{ pair: Pair; proxies: FaultProxy[]; root: string }> {
  const root = mkdtempSync(join(tmpdir(), 'hastd-campaign-'));
  scope.after(() => rmSync(root, { recursive: true, force: true }));
  const ipA = '127.0.0.1';
  const ipB = '127.0.0.2';
  const a: NodeSpec = { name: 'node-a', addr: `${ipA}:${await freePort(ipA)}`, dir: join(root, 'a') };
  const b: NodeSpec = { name: 'node-b', addr: `${ipB}:${await freePort(ipB)}`, dir: join(root, 'b') };
  const popts = { inspect: opts.inspect === true, ...(opts.rnd !== undefined ? { rnd: opts.rnd } : {}) };
  const toB = new FaultProxy(
    { host: ipB, port: await freePort(ipB) },
    { host: ipB, port: Number(b.addr.split(':')[1]) },
    ipA,
    popts,
  );
  const toA = new FaultProxy(
    { host: ipA, port: await freePort(ipA) },
    { host: ipA, port: Number(a.addr.split(':')[1]) },
    ipB,
    popts,
  );
  for (const x of [toB, toA]) {
    await x.start();
    scope.after(() => x.close());
  }
  let text = '';
  for (const n of [a, b]) {
    mkdirSync(n.dir);
    text += `on ${n.name} {\n  control uds://${n.dir}/control.sock\n  pidfile ${n.dir}/hastd.pid\n  listen tcp4://${n.addr}\n}\n`;
  }
  // Every hook event of both nodes, as "<hastd pid> <event> <resource>".
  const hook = join(root, 'hook.sh');
  writeFileSync(hook, `#!/bin/sh\necho "$PPID $*" >> ${join(root, 'hooks.log')}\n`);
  chmodSync(hook, 0o755);
  text += `resource r0 {\n  replication ${mode}\n  exec ${hook}\n`;
  for (const line of opts.extra ?? []) text += `  ${line}\n`;
  for (const [n, via, ip] of [
    [a, toB, ipA],
    [b, toA, ipB],
  ] as const) {
    const device =
      opts.fuseName === undefined
        ? 'device none\n'
        : n === a
          ? `device fuse\n    name ${opts.fuseName}\n`
          : `device none\n    name ${opts.fuseName}b\n`;
    text += `  on ${n.name} {\n    local ${n.dir}/r0.img\n    export uds://${n.dir}/r0.sock\n    ${device}`;
    text += `    remote tcp4://${via.address}\n    source tcp4://${ip}\n  }\n`;
  }
  text += '}\n';
  const conf = join(root, 'hast.conf');
  writeFileSync(conf, text);
  await Promise.all(
    [a, b].map(async (n) => {
      const img = join(n.dir, 'r0.img');
      writeFileSync(img, '');
      truncateSync(img, 24 << 20);
      const r = await hastctl(conf, n.name, ['create', '-e', '1M', 'r0']);
      if (r.code !== 0) throw new Error(`hastctl create failed: ${r.stderr}`);
    }),
  );
  return {
    pair: { conf, a, b, res: 'r0', img: (n) => join(n.dir, 'r0.img'), sock: (n) => join(n.dir, 'r0.sock') },
    proxies: [toB, toA],
    root,
  };
}

/** Nodes whose hastd ran the 'split-brain' hook (pids of every hastd started in the cycle). */
function splitBrainHooked(root: string, nodeOfPid: ReadonlyMap<number, string>): string[] {
  const file = join(root, 'hooks.log');
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const nodes = new Set<string>();
  for (const line of text.split('\n')) {
    const [pid, event] = line.split(' ');
    if (event === 'split-brain') nodes.add(nodeOfPid.get(Number(pid)) ?? `pid ${pid}`);
  }
  return [...nodes].sort();
}

function linkExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

export const DEMOTE_BUSY_TOOLS = ['nbdfuse', 'losetup', 'fusermount3'] as const;

/** Why demote-busy cannot run here, or null. */
function demoteBusyUnmet(): string | null {
  if (!isRoot()) return 'needs root (device fuse)';
  const missing = DEMOTE_BUSY_TOOLS.filter((t) => !hasTool(t));
  return missing.length > 0 ? `needs ${missing.join(', ')}` : null;
}

export async function runCycle(
  cycle: number,
  seed: number,
  opts: { mode?: Mode; fault?: Fault; log?: (s: string) => void } = {},
): Promise<CycleResult> {
  const rnd = prng(seed);
  const mode = opts.mode ?? (MODES[Math.floor(rnd() * MODES.length)] as Mode);
  const fault = opts.fault ?? (FAULTS[Math.floor(rnd() * FAULTS.length)] as Fault);
  // A killed primary worker is restarted by hastd itself; a user may also fail over instead.
  const net = fault.startsWith('net-');
  const recovery: CycleResult['recovery'] =
    fault === 'resync-restart'
      ? 'resync'
      : net || fault === 'corrupt-replies' || fault === 'failing-flush'
        ? 'heal'
        : fault === 'promote-during-resync'
          ? 'restart'
          : fault === 'second-primary'
            ? 'none'
            : fault === 'demote-busy'
              ? 'switchover'
              : fault === 'secondary-worker'
                ? 'reconnect'
                : fault === 'primary-parent' || rnd() < 0.5
                  ? 'failover'
                  : 'restart';
  const outageMs = 300 + Math.floor(rnd() * 3000);
  let cutDuringResync = false;
  const interruptions: string[] = [];
  const killAfterMs = 150 + Math.floor(rnd() * 1500);
  const requirement: Requirement =
    (recovery === 'failover' || recovery === 'switchover') && mode === 'async' ? 'none' : 'acked';
  const corruptKind = CORRUPT_KINDS[Math.floor(rnd() * CORRUPT_KINDS.length)] as CorruptKind;
  const refusals: Refusal[] = [];
  let splitBrainSituation = false;
  let hooked: string[] = [];
  let corruption: CycleResult['corruption'];
  let flushFailure: CycleResult['flushFailure'];
  const nodeOfPid = new Map<number, string>();
  let pairRootDir = '';
  const unmet = fault === 'demote-busy' ? demoteBusyUnmet() : null;
  if (unmet !== null) {
    (opts.log ?? (() => undefined))(`cycle ${cycle}: ${mode}, ${fault}: skipped (${unmet})`);
    return {
      cycle,
      seed,
      mode,
      fault,
      recovery,
      killAfterMs,
      issued: 0,
      acked: 0,
      durable: 0,
      requirement,
      survivor: null,
      afterResync: [],
      identical: false,
      crashes: [],
      failure: null,
      skipped: unmet,
    };
  }
  const scope = new CycleScope();
  currentScope = scope;
  const daemons: HastdProcess[] = [];
  const killed = new Set<number>();
  let survivor: VerifyReport | null = null;
  const afterResync: VerifyReport[] = [];
  let identical = false;
  let failure: string | null = null;
  let counts = { issued: 0, acked: 0, durable: 0 };
  const say = opts.log ?? (() => undefined);
  const t0 = Date.now();
  try {
    const fuseName = fault === 'demote-busy' ? `cmp${process.pid % 100000}c${cycle}` : undefined;
    const {
      pair: p,
      proxies,
      root,
    } = await makeProxiedPair(scope, mode, {
      ...(fault === 'corrupt-replies' ? { extra: ['checksum crc32', 'timeout 5'] } : {}),
      inspect: fault === 'corrupt-replies' || fault === 'failing-flush',
      rnd,
      ...(fuseName !== undefined ? { fuseName } : {}),
    });
    pairRootDir = root;
    const { a, b } = p;
    const start = async (n: NodeSpec): Promise<HastdProcess> => {
      const d = await startHastd(scope, p.conf, n);
      daemons.push(d);
      nodeOfPid.set(d.pid, n.name);
      return d;
    };
    const [, ha] = await Promise.all([start(b), start(a)]);
    if (fuseName !== undefined) {
      // Registered after the daemons: runs before they are killed. The device's state of a (FUSE
      // mount, loop, nbdfuse, link), whatever the cycle left.
      const fuse = fusePaths(fuseName, join(a.dir, 'hastd-state'));
      scope.after(async () => {
        for (const loop of loopsBackedBy(fuse.file)) {
          try {
            execFileSync('losetup', ['-d', loop], { stdio: 'ignore' });
          } catch {
            // gone
          }
        }
        unmountAll(fuse.mountDir);
        if (existsSync(fuse.pidFile))
          await killPid(Number(readFileSync(fuse.pidFile, 'utf8').trim())).catch(() => undefined);
        try {
          unlinkSync(`/dev/hast/${fuseName}`);
        } catch {
          // gone
        }
      });
    }
    await role(p, b, 'secondary');
    await role(p, a, 'primary');
    await waitFor('export socket on a', () => existsSync(p.sock(a)));
    await waitSynced(p, a, 60_000);

    const client = await NbdClient.connect({ path: p.sock(a) });
    scope.after(() => client.destroy());
    const wl = startWorkload(client, {
      seed,
      blocks: 2048,
      lanes: 8,
      fuaRate: 0.05,
      flushRate: fault === 'failing-flush' ? 0.2 : 0.03,
    });
    await sleep(killAfterMs);

    /** Stop the workload on a live primary; a request error fails the cycle unless `allow` says it may happen. */
    const endWorkload = async (allow: (e: Error) => boolean = () => false): Promise<void> => {
      wl.stop();
      await bounded(wl.done, 60_000, 'workload end');
      await client.disconnect().catch(() => client.destroy());
      const c = wl.log.counts();
      counts = { issued: c.issued, acked: c.acked, durable: c.durable };
      if (wl.error !== null && !allow(wl.error)) throw new Error(`the primary failed a request: ${wl.error.message}`);
    };
    /** `current` is primary and `other` its secondary: wait for the resync, verify both copies. */
    const verifyBoth = async (current: NodeSpec, other: NodeSpec): Promise<void> => {
      await waitSynced(p, current, 120_000);
      await waitFor('secondary connected', async () => (await statusOf(p, other)).worker != null, 30_000);
      for (const n of [current, other]) afterResync.push(await verifyComponent(wl.log, p.img(n), requirement));
      identical = await sameDataAreas(p, current, other);
      say(
        `  (+${Date.now() - t0} ms) after resync: ${afterResync.map((r) => formatReport(r).split('\n')[0]).join(' | ')}; data areas ${identical ? 'identical' : 'DIFFER'}`,
      );
    };
    /** A command that must be refused with one of `expected`; the exit status is recorded. */
    const mustRefuse = async (
      n: NodeSpec,
      args: readonly string[],
      expected: readonly number[],
      action: string,
    ): Promise<number> => {
      const r = await hastctl(p.conf, n.name, args);
      refusals.push({ action, code: r.code, expected });
      say(
        `  ${action}: exit ${r.code}${r.code !== 0 ? ` (${r.stderr.trim().split('\n').pop() ?? ''})` : ' (NOT REFUSED)'}`,
      );
      return r.code;
    };
    /**
     * A refusal wrongly succeeded and `rogue` is primary beside `keeper`: what an administrator
     * would do next (write on it), then back to one primary; the 'split-brain' hook must fire on
     * both nodes. The cycle fails either way.
     */
    const rogueWrites = async (rogue: NodeSpec, keeper: NodeSpec, restartKeeper: boolean): Promise<never> => {
      splitBrainSituation = true;
      await waitFor(`export socket on ${rogue.name}`, () => existsSync(p.sock(rogue)), 30_000);
      const c = await NbdClient.connect({ path: p.sock(rogue) });
      await c.write(16 << 20, Buffer.alloc(4096, 0x5b));
      await c.flush();
      await c.disconnect();
      await role(p, rogue, 'secondary');
      if (restartKeeper) {
        await start(keeper);
        await role(p, keeper, 'primary');
      }
      await waitFor(
        'the split-brain hook on both nodes',
        () => splitBrainHooked(root, nodeOfPid).length >= 2,
        30_000,
      ).catch(() => undefined);
      throw new Error(`a refusal wrongly succeeded (${refusals.map((r) => `${r.action}: ${r.code}`).join('; ')})`);
    };

    if (fault === 'promote-during-resync') {
      say(
        `cycle ${cycle} (+${Date.now() - t0} ms): ${mode}, ${fault}: secondary killed after ${killAfterMs} ms, kept away, then the primary killed mid-resync`,
      );
      process.kill(await workerPid(p, b), 'SIGKILL');
      for (const x of proxies) x.setDown(true);
      await sleep(300 + Math.floor(rnd() * 700));
      // A slow link, so that the resync is still running when the primary dies.
      for (const x of proxies) x.setRate(2 << 20);
      for (const x of proxies) x.setDown(false);
      await waitFor(
        'a resync to b, with b marked inconsistent',
        async () => {
          const wa = (await statusOf(p, a).catch(() => null))?.worker;
          const wb = (await statusOf(p, b).catch(() => null))?.worker;
          return wa?.sync != null && wb?.disk?.consistent === false;
        },
        40_000,
        20,
      );
      await sleep(Math.floor(rnd() * 300));
      for (const x of proxies) x.setStalled(true);
      const pw = await workerPid(p, a);
      killed.add(ha.pid);
      process.kill(ha.pid, 'SIGKILL');
      process.kill(pw, 'SIGKILL');
      for (const x of proxies) x.setStalled(false);
      for (const x of proxies) x.setRate(0);
      await waitGone(pw, 'the killed primary worker to exit');
      say(`  (+${Date.now() - t0} ms) primary hastd and worker killed during the resync`);
      await bounded(wl.done, 30_000, 'workload end after the primary died');
      client.destroy();
      const c = wl.log.counts();
      counts = { issued: c.issued, acked: c.acked, durable: c.durable };
      survivor = await verifyComponent(wl.log, p.img(a), requirement);
      say(`  (+${Date.now() - t0} ms) primary ${a.name}: ${formatReport(survivor)}`);
      await waitFor('the secondary worker to notice', async () => (await statusOf(p, b)).worker == null, 30_000, 50);
      const db = await dumpOf(p.conf, b.name);
      const before = await dataAreaHash(p.img(b), db.localOff, db.dataSize);
      const code = await mustRefuse(
        b,
        ['role', 'primary', p.res],
        [77],
        'role primary on the half-synchronised secondary',
      );
      if (code === 0) await rogueWrites(b, a, true);
      if ((await dataAreaHash(p.img(b), db.localOff, db.dataSize)) !== before)
        throw new Error('the refused promotion wrote to the data area');
      const rb = (await statusOf(p, b)).role;
      if (rb === 'primary') throw new Error(`b is ${rb} after the refusal`);
      // Recovery: b back as secondary, the old primary restarted; the resync completes.
      await role(p, b, 'secondary');
      await start(a);
      await role(p, a, 'primary');
      await waitFor('export socket on a again', () => existsSync(p.sock(a)), 30_000);
      await verifyBoth(a, b);
      throw DONE;
    }

    if (fault === 'second-primary') {
      say(`cycle ${cycle} (+${Date.now() - t0} ms): ${mode}, ${fault} after ${killAfterMs} ms`);
      const code = await mustRefuse(b, ['role', 'primary', p.res], [75, 69], 'role primary on the connected secondary');
      if (code === 0) await rogueWrites(b, a, false);
      const rb = (await statusOf(p, b)).role;
      if (rb !== 'secondary') throw new Error(`b is ${rb} after the refusal`);
      await sleep(300 + Math.floor(rnd() * 700));
      await endWorkload();
      survivor = await verifyComponent(wl.log, p.img(a), requirement);
      say(`  (+${Date.now() - t0} ms) primary ${a.name}: ${formatReport(survivor)}`);
      await verifyBoth(a, b);
      throw DONE;
    }

    if (fault === 'corrupt-replies') {
      const toB = proxies[0] as FaultProxy;
      const count = 1 + Math.floor(rnd() * 3);
      const closedBefore = toB.closed;
      const logBefore = daemons.map((d) => d.output().length);
      say(
        `cycle ${cycle} (+${Date.now() - t0} ms): ${mode}, ${fault}: ${count} × ${corruptKind} after ${killAfterMs} ms for up to ${outageMs} ms`,
      );
      toB.corruptNext(count, corruptKind);
      await waitFor('a corrupted message', () => toB.corrupted.length > 0, 20_000, 10);
      const dropped = await waitFor('the link to be dropped', () => toB.closed > closedBefore, 15_000, 20).then(
        () => true,
        () => false,
      );
      await sleep(outageMs);
      toB.corruptNext(0, corruptKind);
      // The reason the primary logged for the disconnect (else the first reason the secondary gave).
      const since = daemons.map((d, i) => ({
        node: nodeOfPid.get(d.pid),
        lines: d
          .output()
          .slice(logBefore[i] ?? 0)
          .split('\n'),
      }));
      const why =
        since
          .filter((x) => x.node === a.name)
          .flatMap((x) => x.lines)
          .find((l) => /Disconnected from/.test(l)) ??
        since
          .flatMap((x) => x.lines)
          .find((l) => /Unable to receive|checksum|Timeout|mismatch|too large|Unable to|disconnect/i.test(l));
      const detected = dropped ? (why?.trim() ?? 'link dropped (no reason logged)') : null;
      corruption = { kind: corruptKind, injected: [...toB.corrupted], detected };
      say(
        `  corrupted: ${toB.corrupted.join('; ')}; ${detected !== null ? `detected: ${detected}` : 'NOT DETECTED (link kept)'}`,
      );
      await sleep(200);
      await endWorkload();
      survivor = await verifyComponent(wl.log, p.img(a), requirement);
      say(`  (+${Date.now() - t0} ms) primary ${a.name}: ${formatReport(survivor)}`);
      await verifyBoth(a, b);
      throw DONE;
    }

    if (fault === 'failing-flush') {
      const toB = proxies[0] as FaultProxy;
      const closedBefore = toB.closed;
      say(
        `cycle ${cycle} (+${Date.now() - t0} ms): ${mode}, ${fault}: the next FLUSH to the secondary answered with EIO after ${killAfterMs} ms`,
      );
      toB.failNextFlushes(1);
      await waitFor('a FLUSH reply replaced with EIO', () => toB.flushesFailed > 0, 20_000, 10);
      let handled: string | null = null;
      await waitFor(
        'the primary to act on the failed remote flush',
        async () => {
          if (wl.log.flushesFailed > 0) handled = 'FLUSH failed to the workload';
          else if (toB.closed > closedBefore) handled = 'link dropped, the extents resynced';
          return handled !== null;
        },
        10_000,
        20,
      ).catch(() => undefined);
      flushFailure = { injected: toB.flushesFailed, handled };
      say(`  ${handled ?? 'IGNORED: the primary went on as if the remote flush had succeeded'}`);
      await sleep(200);
      await endWorkload(() => wl.log.flushesFailed > 0);
      survivor = await verifyComponent(wl.log, p.img(a), requirement);
      say(`  (+${Date.now() - t0} ms) primary ${a.name}: ${formatReport(survivor)}`);
      await verifyBoth(a, b);
      if (handled === null)
        throw new Error(
          'a failed remote FLUSH was ignored: acknowledged as durable on both, nothing marked for resync (issue 13 finding 9)',
        );
      throw DONE;
    }

    if (fault === 'demote-busy' && fuseName !== undefined) {
      const dev = `/dev/hast/${fuseName}`;
      const fuse = fusePaths(fuseName, join(a.dir, 'hastd-state'));
      say(`cycle ${cycle} (+${Date.now() - t0} ms): ${mode}, ${fault}: ${dev} held open after ${killAfterMs} ms`);
      if (!existsSync(dev)) throw new Error(`no ${dev} after role primary`);
      const holder = spawn('sh', ['-c', `exec 3<${dev}; exec sleep 600`], { stdio: 'ignore' });
      const holderPid = holder.pid ?? 0;
      scope.after(() => killPid(holderPid));
      await sleep(300);
      const code = await mustRefuse(a, ['role', 'secondary', p.res], [75], `role secondary with ${dev} held open`);
      if (code === 0)
        throw new Error(
          `the demotion was not refused (device ${linkExists(dev) ? 'still linked' : 'removed under its user'})`,
        );
      const ra = (await statusOf(p, a)).role;
      if (ra !== 'primary') throw new Error(`a is ${ra} after the refusal`);
      // The device keeps serving: read through it while the workload goes on.
      const fd = openSync(dev, 'r');
      try {
        readSync(fd, Buffer.alloc(4096), 0, 4096, 0);
      } finally {
        closeSync(fd);
      }
      await sleep(300);
      await killPid(holderPid);
      // The application stops, then the administrator demotes and fails over.
      await endWorkload();
      const down = await hastctl(p.conf, a.name, ['role', 'secondary', p.res]);
      if (down.code !== 0) throw new Error(`role secondary once ${dev} is free failed (${down.code}): ${down.stderr}`);
      const stale = [
        ...(linkExists(dev) ? [`link ${dev}`] : []),
        ...loopsBackedBy(fuse.file).map((l) => `loop ${l}`),
        ...(isMountPoint(fuse.mountDir) ? [`FUSE mount ${fuse.mountDir}`] : []),
      ];
      if (stale.length > 0) throw new Error(`left behind by the demotion: ${stale.join(', ')}`);
      await role(p, b, 'primary');
      await waitFor('export socket on b', () => existsSync(p.sock(b)), 30_000);
      survivor = await verifyComponent(wl.log, p.img(b), requirement);
      say(`  (+${Date.now() - t0} ms) new primary ${b.name}: ${formatReport(survivor)}`);
      await verifyBoth(b, a);
      throw DONE;
    }

    if (fault === 'resync-restart') {
      // The secondary dies, the primary writes on alone (dirty extents), then every resync is
      // interrupted: frozen by a stall so the kill lands inside it, then a worker of either side
      // is killed; hastd restarts a primary worker itself, the primary reconnects a secondary.
      say(
        `cycle ${cycle} (+${Date.now() - t0} ms): ${mode}, ${fault}: secondary killed after ${killAfterMs} ms, then resyncs interrupted`,
      );
      process.kill(await workerPid(p, b), 'SIGKILL');
      // A slow link, so that each resync lasts long enough to be interrupted.
      for (const x of proxies) x.setRate(4 << 20);
      const rounds = 2 + Math.floor(rnd() * 2);
      for (let k = 0; k < rounds; k++) {
        let calm = 0;
        const state = await waitFor(
          'a resync to start (or the pair to be in sync)',
          async () => {
            const w = (await statusOf(p, a).catch(() => null))?.worker;
            if (w == null) return null;
            if (w.sync !== null) return 'syncing';
            // In sync only if it stays so (a just-connected worker may not have merged the bitmaps yet).
            calm = w.status === 'complete' && w.dirty === 0 ? calm + 1 : 0;
            return calm >= 50 ? 'synced' : null;
          },
          40_000,
          10,
        );
        if (state === 'synced') break;
        for (const x of proxies) x.setStalled(true);
        await sleep(50 + Math.floor(rnd() * 300));
        const side = rnd() < 0.5 ? a : b;
        const pid = await workerPid(p, side).catch(() => 0);
        for (const x of proxies) x.setStalled(false);
        if (pid === 0) continue;
        process.kill(pid, 'SIGKILL');
        interruptions.push(side === a ? 'primary' : 'secondary');
        say(`  resync ${k + 1}: killed the ${side === a ? 'primary' : 'secondary'} worker (pid ${pid})`);
      }
      wl.stop();
      await bounded(wl.done, 60_000, 'workload end');
      client.destroy();
      const c = wl.log.counts();
      counts = { issued: c.issued, acked: c.acked, durable: c.durable };
      survivor = await verifyComponent(wl.log, p.img(a), requirement);
      say(`  (+${Date.now() - t0} ms) primary ${a.name}: ${formatReport(survivor)}`);
      await waitSynced(p, a, 120_000);
      await waitFor('secondary connected', async () => (await statusOf(p, b)).worker != null, 30_000);
      for (const n of [a, b]) afterResync.push(await verifyComponent(wl.log, p.img(n), requirement));
      identical = await sameDataAreas(p, a, b);
      say(
        `  (+${Date.now() - t0} ms) after resync: ${afterResync.map((r) => formatReport(r).split('\n')[0]).join(' | ')}; data areas ${identical ? 'identical' : 'DIFFER'}`,
      );
      throw DONE;
    }

    if (net) {
      say(`cycle ${cycle} (+${Date.now() - t0} ms): ${mode}, ${fault} after ${killAfterMs} ms for ${outageMs} ms`);
      if (fault === 'net-cut') for (const x of proxies) x.cut();
      else {
        for (const x of proxies) fault === 'net-stall' ? x.setStalled(true) : x.setDown(true);
        await sleep(outageMs);
        for (const x of proxies) fault === 'net-stall' ? x.setStalled(false) : x.setDown(false);
      }
      // Half the time, cut again once the resync after the heal is running.
      if (rnd() < 0.5) {
        const syncing = await waitFor(
          'a resync to start',
          async () => (await statusOf(p, a)).worker?.sync != null,
          20_000,
          20,
        ).catch(() => false);
        if (syncing) {
          for (const x of proxies) x.cut();
          cutDuringResync = true;
          say('  cut again during the resync');
        }
      }
      await sleep(200);
      wl.stop();
      await bounded(wl.done, 60_000, 'workload end');
      await client.disconnect();
      const c = wl.log.counts();
      counts = { issued: c.issued, acked: c.acked, durable: c.durable };
      if (wl.error !== null)
        throw new Error(`the primary failed a request during a network fault: ${wl.error.message}`);
      survivor = await verifyComponent(wl.log, p.img(a), requirement);
      say(`  (+${Date.now() - t0} ms) primary ${a.name}: ${formatReport(survivor)}`);
      await waitSynced(p, a, 120_000);
      await waitFor('secondary connected', async () => (await statusOf(p, b)).worker != null, 30_000);
      for (const n of [a, b]) afterResync.push(await verifyComponent(wl.log, p.img(n), requirement));
      identical = await sameDataAreas(p, a, b);
      say(
        `  (+${Date.now() - t0} ms) after resync: ${afterResync.map((r) => formatReport(r).split('\n')[0]).join(' | ')}; data areas ${identical ? 'identical' : 'DIFFER'}`,
      );
      throw DONE;
    }

    // The fault.
    let victim: number;
    if (fault === 'primary-worker') victim = await workerPid(p, a);
    else if (fault === 'secondary-worker') victim = await workerPid(p, b);
    else victim = ha.pid;
    const primaryWorker = fault === 'primary-parent' ? await workerPid(p, a) : 0;
    killed.add(victim);
    process.kill(victim, 'SIGKILL');
    say(
      `cycle ${cycle} (+${Date.now() - t0} ms): ${mode}, SIGKILL ${fault} (pid ${victim}) after ${killAfterMs} ms, recovery ${recovery}`,
    );

    if (fault === 'secondary-worker') {
      // The primary degrades and goes on: more writes while alone, then stop.
      await sleep(300);
      wl.stop();
      await bounded(wl.done, 30_000, 'workload end');
      await client.disconnect();
    } else {
      await bounded(wl.done, 30_000, 'workload end after the primary died');
      client.destroy();
    }
    const c = wl.log.counts();
    counts = { issued: c.issued, acked: c.acked, durable: c.durable };

    let current: NodeSpec;
    let other: NodeSpec;
    if (recovery === 'reconnect') {
      // The primary reconnects by itself and the listener starts a new secondary worker.
      current = a;
      other = b;
      survivor = await verifyComponent(wl.log, p.img(a), requirement);
    } else if (recovery === 'restart') {
      current = a;
      other = b;
      await waitFor('export socket on a again', () => existsSync(p.sock(a)), 30_000);
      survivor = await verifyComponent(wl.log, p.img(a), requirement);
    } else {
      current = b;
      other = a;
      if (fault === 'primary-parent') {
        // The orphaned worker notices its parent is gone and stops.
        await waitGone(primaryWorker, 'the orphaned primary worker to exit');
        await start(a);
      }
      // Demote the old primary first (this also cancels hastd's own restart of a killed worker),
      // so that the new primary's first connection attempt finds a secondary. The new primary is
      // the sync source: its copy is not written while it is verified.
      await role(p, a, 'secondary');
      await role(p, b, 'primary');
      await waitFor('export socket on b', () => existsSync(p.sock(b)), 30_000);
      survivor = await verifyComponent(wl.log, p.img(b), requirement);
    }
    say(`  (+${Date.now() - t0} ms) survivor ${current.name}: ${formatReport(survivor)}`);

    await waitSynced(p, current, 120_000);
    // The secondary's worker must be connected too before its copy is compared.
    await waitFor('secondary complete', async () => (await statusOf(p, other)).worker != null, 30_000);
    for (const n of [current, other]) afterResync.push(await verifyComponent(wl.log, p.img(n), requirement));
    identical = await sameDataAreas(p, current, other);
    say(
      `  (+${Date.now() - t0} ms) after resync: ${afterResync.map((r) => formatReport(r).split('\n')[0]).join(' | ')}; data areas ${identical ? 'identical' : 'DIFFER'}`,
    );
  } catch (err) {
    if (err !== DONE) {
      failure = err instanceof Error ? err.message : String(err);
      say(`  FAILURE: ${failure}`);
    }
  }
  const crashes: string[] = [];
  // Give a hook spawned just now a moment to write its line.
  if (pairRootDir !== '') {
    await sleep(100);
    hooked = splitBrainHooked(pairRootDir, nodeOfPid);
  }
  if (hooked.length > 0 || splitBrainSituation)
    say(
      `  split-brain hook fired on: ${hooked.join(', ') || 'none'}${splitBrainSituation ? ' (two primaries wrote)' : ''}`,
    );
  for (const d of daemons) {
    if (
      !killed.has(d.pid) &&
      (d.proc.exitCode !== null || (d.proc.signalCode !== null && d.proc.signalCode !== 'SIGKILL'))
    ) {
      crashes.push(`hastd pid ${d.pid} exited by itself (code ${d.proc.exitCode}, signal ${d.proc.signalCode})`);
    }
    for (const line of d.output().split('\n')) if (CRASH.test(line)) crashes.push(line.trim());
  }
  for (const c of crashes) say(`  CRASH: ${c}`);
  if (failure !== null || crashes.length > 0) {
    for (const d of daemons)
      say(`---- hastd pid ${d.pid} output (tail)\n${d.output().split('\n').slice(-40).join('\n')}`);
  }
  await scope.run();
  currentScope = null;
  return {
    cycle,
    seed,
    mode,
    fault,
    recovery,
    ...(net ? { cutDuringResync } : {}),
    ...(fault === 'resync-restart' ? { interruptions } : {}),
    killAfterMs,
    ...counts,
    requirement,
    survivor,
    afterResync,
    identical,
    crashes,
    failure,
    ...(refusals.length > 0 ? { refusals } : {}),
    splitBrain: { situation: splitBrainSituation, hooked },
    ...(corruption !== undefined ? { corruption } : {}),
    ...(flushFailure !== undefined ? { flushFailure } : {}),
  };
}

export interface CampaignSummary {
  readonly cycles: number;
  readonly perFault: Record<string, number>;
  readonly perMode: Record<string, number>;
  readonly writesIssued: number;
  readonly writesAcked: number;
  readonly writesVerified: number;
  readonly lost: number;
  readonly foreign: number;
  readonly torn: number;
  /** Blocks whose newest acknowledged write is missing where the mode allows it (async after failover). */
  readonly allowedMissing: number;
  /** Async failover cycles: acknowledged writes found on the new primary, of those acknowledged. */
  readonly asyncFailoverAckedPresent: number;
  readonly asyncFailoverAckedTotal: number;
  readonly notIdentical: number;
  readonly crashes: number;
  readonly failures: number;
  /** Exit codes of the commands that must be refused, per action: {"role primary on …": {"75": 3}}. */
  readonly refusalCodes: Record<string, Record<string, number>>;
  /** Refusals that exited 0, and those refused with another status than documented. */
  readonly refusalsWronglySucceeded: number;
  readonly refusalsUnexpectedCode: number;
  /** Cycles where two primaries wrote; of those and of all, where the hook did not fire on both nodes. */
  readonly splitBrainSituations: number;
  readonly undetectedSplitBrains: number;
  /** corrupt-replies: messages corrupted, and cycles in which the link was not dropped. */
  readonly corruptionsInjected: number;
  readonly corruptionsUndetected: number;
  /** failing-flush: remote FLUSH failures injected, and those the primary ignored. */
  readonly flushFailuresInjected: number;
  readonly flushFailuresIgnored: number;
  /** Cycles that could not run here (demote-busy without root or its tools). */
  readonly skipped: number;
  readonly results: readonly CycleResult[];
}

/** The split-brain hook fired on one node only, or two primaries wrote and it did not fire on both. */
function splitBrainUndetected(r: CycleResult): boolean {
  const n = r.splitBrain?.hooked.length ?? 0;
  return n === 1 || (r.splitBrain?.situation === true && n < 2);
}

function cycleOk(r: CycleResult): boolean {
  if (r.skipped !== undefined) return true;
  return (
    r.failure === null &&
    r.crashes.length === 0 &&
    r.identical &&
    r.survivor !== null &&
    reportOk(r.survivor) &&
    r.afterResync.every(reportOk) &&
    (r.refusals ?? []).every((x) => x.expected.includes(x.code)) &&
    !splitBrainUndetected(r)
  );
}

/**
 * Run `cycles` cycles from `seed`. With `roundRobin`, cycle i uses fault i mod F and mode
 * (i + i div F) mod 3 (F = FAULTS.length, 12): F cycles cover every fault once and every mode
 * F/3 times, 3F every (fault, mode) pair; timing, durations and recovery still come from the seed.
 */
export async function runCampaign(opts: {
  cycles: number;
  seed: number;
  roundRobin?: boolean;
  faults?: readonly Fault[];
  log?: (s: string) => void;
  deadlineMs?: number;
}): Promise<CampaignSummary> {
  const faults = opts.faults ?? FAULTS;
  const results: CycleResult[] = [];
  const started = Date.now();
  for (let i = 0; i < opts.cycles; i++) {
    if (opts.deadlineMs !== undefined && Date.now() - started > opts.deadlineMs) break;
    const seed = (opts.seed + i * 7919) >>> 0;
    // --faults: only these, in turn (the mode from the seed unless round-robin).
    const pin =
      opts.roundRobin === true
        ? {
            fault: faults[i % faults.length] as Fault,
            mode: MODES[(i + Math.floor(i / faults.length)) % MODES.length] as Mode,
          }
        : opts.faults !== undefined
          ? { fault: faults[i % faults.length] as Fault }
          : {};
    results.push(await runCycle(i, seed, { ...pin, ...(opts.log !== undefined ? { log: opts.log } : {}) }));
  }
  const count = (key: (r: CycleResult) => string): Record<string, number> => {
    const o: Record<string, number> = {};
    for (const r of results) o[key(r)] = (o[key(r)] ?? 0) + 1;
    return o;
  };
  const all = results.flatMap((r) => (r.survivor === null ? r.afterResync : [r.survivor, ...r.afterResync]));
  return {
    cycles: results.length,
    perFault: count((r) => `${r.fault}/${r.recovery}`),
    perMode: count((r) => r.mode),
    writesIssued: results.reduce((n, r) => n + r.issued, 0),
    writesAcked: results.reduce((n, r) => n + r.acked, 0),
    writesVerified: results.reduce((n, r) => n + (r.survivor?.writesVerified ?? 0), 0),
    lost: all.reduce((n, r) => n + r.lost.length, 0),
    foreign: all.reduce((n, r) => n + r.foreign.length, 0),
    torn: all.reduce((n, r) => n + r.torn.length, 0),
    allowedMissing: results.reduce((n, r) => n + (r.survivor?.allowedMissing ?? 0), 0),
    asyncFailoverAckedPresent: results.reduce(
      (n, r) => n + (r.requirement === 'none' ? (r.survivor?.ackedPresent ?? 0) : 0),
      0,
    ),
    asyncFailoverAckedTotal: results.reduce(
      (n, r) => n + (r.requirement === 'none' ? (r.survivor?.ackedTotal ?? 0) : 0),
      0,
    ),
    notIdentical: results.filter((r) => r.failure === null && !r.identical).length,
    crashes: results.reduce((n, r) => n + r.crashes.length, 0),
    failures: results.filter((r) => r.failure !== null).length,
    refusalCodes: results
      .flatMap((r) => r.refusals ?? [])
      .reduce<Record<string, Record<string, number>>>((o, x) => {
        const key = x.action.replace(/\/dev\/hast\/\S+/, '/dev/hast/<name>');
        const per = o[key] ?? {};
        o[key] = per;
        per[String(x.code)] = (per[String(x.code)] ?? 0) + 1;
        return o;
      }, {}),
    refusalsWronglySucceeded: results
      .flatMap((r) => r.refusals ?? [])
      .filter((x) => x.code === 0 && !x.expected.includes(0)).length,
    refusalsUnexpectedCode: results
      .flatMap((r) => r.refusals ?? [])
      .filter((x) => x.code !== 0 && !x.expected.includes(x.code)).length,
    splitBrainSituations: results.filter((r) => r.splitBrain?.situation === true).length,
    undetectedSplitBrains: results.filter(splitBrainUndetected).length,
    corruptionsInjected: results.reduce((n, r) => n + (r.corruption?.injected.length ?? 0), 0),
    corruptionsUndetected: results.filter((r) => r.corruption !== undefined && r.corruption.detected === null).length,
    flushFailuresInjected: results.reduce((n, r) => n + (r.flushFailure?.injected ?? 0), 0),
    flushFailuresIgnored: results.filter((r) => r.flushFailure !== undefined && r.flushFailure.handled === null).length,
    skipped: results.filter((r) => r.skipped !== undefined).length,
    results,
  };
}

export function campaignOk(s: CampaignSummary): boolean {
  return s.results.every(cycleOk);
}

export function formatSummary(s: CampaignSummary): string {
  return [
    `cycles: ${s.cycles}`,
    `per fault/recovery: ${JSON.stringify(s.perFault)}`,
    `per mode: ${JSON.stringify(s.perMode)}`,
    `writes issued ${s.writesIssued}, acknowledged ${s.writesAcked}, verified on the surviving copy ${s.writesVerified}`,
    `acknowledged writes lost: ${s.lost}; foreign blocks: ${s.foreign}; torn blocks: ${s.torn}`,
    `async failover: ${s.asyncFailoverAckedPresent} of ${s.asyncFailoverAckedTotal} acknowledged writes on the new primary; blocks missing their newest acknowledged write (allowed): ${s.allowedMissing}`,
    `cycles with differing data areas after resync: ${s.notIdentical}`,
    `crashes: ${s.crashes}; cycles that failed to complete: ${s.failures}`,
    `refusals (exit codes seen): ${JSON.stringify(s.refusalCodes)}; wrongly succeeded: ${s.refusalsWronglySucceeded}; refused with another status: ${s.refusalsUnexpectedCode}`,
    `split-brain situations (two primaries wrote): ${s.splitBrainSituations}; undetected split-brains: ${s.undetectedSplitBrains}`,
    `corrupted messages: ${s.corruptionsInjected} (cycles where the link was not dropped: ${s.corruptionsUndetected}); remote FLUSH failures injected: ${s.flushFailuresInjected} (ignored by the primary: ${s.flushFailuresIgnored})`,
    `skipped cycles: ${s.skipped}`,
  ].join('\n');
}

async function main(): Promise<void> {
  const { parseArgs } = await import('node:util');
  const { values } = parseArgs({
    options: {
      cycles: { type: 'string' },
      seed: { type: 'string' },
      'round-robin': { type: 'boolean' },
      verbose: { type: 'boolean' },
      json: { type: 'string' },
      faults: { type: 'string' },
    },
    strict: true,
  });
  if (values.cycles === undefined || !/^\d+$/.test(values.cycles)) {
    process.stderr.write(
      'usage: campaign --cycles N [--seed S] [--round-robin] [--faults F,F...] [--verbose] [--json FILE]\n',
    );
    process.exit(64);
  }
  const faults = values.faults?.split(',');
  const unknown = faults?.filter((f) => !(FAULTS as readonly string[]).includes(f)) ?? [];
  if (unknown.length > 0) {
    process.stderr.write(`unknown fault ${unknown.join(', ')}; faults: ${FAULTS.join(', ')}\n`);
    process.exit(64);
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stdout.write(`\n${sig}: stopping the current cycle's daemons\n`);
      void (currentScope?.run() ?? Promise.resolve()).finally(() => process.exit(130));
    });
  }
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  process.stdout.write(`fault campaign: ${values.cycles} cycles, seed ${seed}\n`);
  const s = await runCampaign({
    cycles: Number(values.cycles),
    seed,
    roundRobin: values['round-robin'] === true,
    ...(faults !== undefined ? { faults: faults as Fault[] } : {}),
    log: (l) => {
      if (values.verbose === true || !l.startsWith('----')) process.stdout.write(`${l}\n`);
    },
  });
  process.stdout.write(`\n${formatSummary(s)}\nreplay with --seed ${seed}\n`);
  if (values.json !== undefined) {
    const { writeFileSync } = await import('node:fs');
    // The per-block generation arrays are for comparing copies in-process only.
    writeFileSync(
      values.json,
      JSON.stringify(s, (k, v: unknown) => (k === 'found' ? undefined : v)),
    );
  }
  // Explicit exit: after 100 cycles Node 20 once spun at 100% CPU in its exit-time handle
  // cleanup (Environment::CleanupHandles, nodejs/node#47748) instead of exiting.
  process.exit(campaignOk(s) ? 0 : 1);
}

if (
  process.argv[1] !== undefined &&
  import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/').split('/').slice(-3).join('/'))
) {
  main().catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(2);
  });
}
