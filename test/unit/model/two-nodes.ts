// A model of two hastd nodes for split-brain detection (HAST-SPEC §5, §6.3, §7). What is real: the
// secondary's decision (src/peer/decide.ts decideSync) and every counter change of the primary
// (src/primary/counters.ts PrimaryCounters: resuid at the handshake, the virgin bump, the bump on
// an unreplicated write, the equalisation after a sync), called at the points where the daemon
// calls them (connect.ts, resource.ts, replicate.ts). What is modelled: roles and workers as the
// parent runs them (§5.3, §5.4), the link, the activemap/bitmap bookkeeping (§4.3, §4.5), data as
// one write history per extent, and the startup refusal while the peer is primary.
import type { CounterFields, PeerCounters, Persist } from '../../../src/primary/counters.js';
import { PrimaryCounters } from '../../../src/primary/counters.js';
import { decideSync } from '../../../src/peer/decide.js';

/** The counter code under test: the daemon's, or a replica of an older version. */
export interface CounterPolicy {
  beforeHandshake(): { virgin: boolean; persist: Persist };
  onSyncReply(peer: PeerCounters): Persist;
  onUnreplicatedWrite(kind: 'degraded' | 'remote-failed'): Persist;
  onSyncComplete(): Persist;
}

export interface ModelOptions {
  readonly counters: (md: CounterFields, freshResuid: () => bigint) => CounterPolicy;
  /** `role primary` refuses while the peer answers that it is primary (unless forced). */
  readonly refuseWhilePeerPrimary: boolean;
}

export const CURRENT: ModelOptions = {
  counters: (md, fresh) => {
    const c = new PrimaryCounters(md, fresh);
    return {
      beforeHandshake: () => c.beforeHandshake(),
      onSyncReply: (p) => c.onSyncReply(p),
      onUnreplicatedWrite: () => c.onUnreplicatedWrite(),
      onSyncComplete: () => c.onSyncComplete(),
    };
  },
  refuseWhilePeerPrimary: true,
};

export const EXTENTS = 2;
const ALL = (1 << EXTENTS) - 1;

type Role = 'init' | 'primary' | 'secondary';

interface Worker {
  /** The worker's in-memory metadata (the daemon's res.md); `disk.md` is what was written. */
  readonly mem: CounterFields;
  readonly counters: CounterPolicy;
  /** Extents to synchronise (the activemap's sync map); persisted to `disk.bitmap` at once. */
  amap: number;
  readonly force: boolean;
}

interface Session {
  readonly syncSrc: 'primary' | 'secondary';
  firstRequest: boolean;
}

interface Node {
  readonly name: 'a' | 'b';
  role: Role;
  disk: { md: CounterFields; bitmap: number; data: number[][] };
  worker: Worker | null;
  splitBrain: number;
  mismatch: number;
  refused: number;
}

export interface World {
  readonly opts: ModelOptions;
  readonly nodes: readonly [Node, Node];
  link: boolean;
  /** The primary's session with the secondary (at most one: two primaries never connect). */
  session: Session | null;
  nextWrite: number;
  nextResuid: bigint;
  rule7: number;
  readonly violations: string[];
}

export type Step =
  | `${'a' | 'b'}:${'primary' | 'primary!' | 'secondary' | 'init' | 'write0' | 'write1' | 'writeLost' | 'crash' | 'restart'}`
  | 'link-down'
  | 'link-up'
  | 'sync';

function newNode(name: 'a' | 'b'): Node {
  return {
    name,
    role: 'init',
    disk: {
      md: { resuid: 0n, localCnt: 0n, remoteCnt: 0n },
      bitmap: 0,
      data: Array.from({ length: EXTENTS }, () => []),
    },
    worker: null,
    splitBrain: 0,
    mismatch: 0,
    refused: 0,
  };
}

/** Two freshly created components (`hastctl create`), both init, link up. */
export function freshWorld(opts: ModelOptions): World {
  return {
    opts,
    nodes: [newNode('a'), newNode('b')],
    link: true,
    session: null,
    nextWrite: 1,
    nextResuid: 100n,
    rule7: 0,
    violations: [],
  };
}

const other = (w: World, n: Node): Node => (w.nodes[0] === n ? w.nodes[1] : w.nodes[0]);
const byName = (w: World, name: string): Node => (name === 'a' ? w.nodes[0] : w.nodes[1]);

/** The primary of the session, if any (the node whose worker holds it). */
function sessionPrimary(w: World): Node | null {
  if (w.session === null) return null;
  return w.nodes.find((n) => n.role === 'primary' && n.worker !== null) ?? null;
}

function persist(n: Node, p: Persist): void {
  if (p === 'none' || n.worker === null) return;
  // The daemon writes the whole in-memory block (resource.ts saveMetadata).
  n.disk.md = { ...n.worker.mem };
}

/** The connection breaks: the secondary's worker exits, the primary is degraded. */
function dropSession(w: World): void {
  w.session = null;
}

function stopWorker(w: World, n: Node): void {
  if (n.role === 'primary' && n.worker !== null && w.session !== null) dropSession(w);
  if (n.role === 'secondary' && w.session !== null) dropSession(w);
  n.worker = null;
}

function startPrimary(w: World, n: Node, force: boolean): void {
  const mem = { ...n.disk.md };
  const counters = w.opts.counters(mem, () => w.nextResuid++);
  n.worker = { mem, counters, amap: n.disk.bitmap, force };
  // Startup wait (§6.3): the peer's parent answers "acts as primary" with `wait`.
  const peer = other(w, n);
  if (w.link && peer.role === 'primary' && w.opts.refuseWhilePeerPrimary && !force) {
    // Refused: worker exit PEER_PRIMARY, the parent puts the role back to init (§5.4).
    n.worker = null;
    n.role = 'init';
    n.refused++;
  }
}

function setRole(w: World, n: Node, role: Role, force = false): void {
  if (n.role === role) return;
  stopWorker(w, n);
  n.role = role;
  if (role === 'primary') startPrimary(w, n, force);
}

/** The primary's connection attempt (connect.ts) and the secondary's answer (session.ts). */
function tryConnect(w: World): void {
  if (!w.link || w.session !== null) return;
  const p = w.nodes.find((n) => n.role === 'primary' && n.worker !== null);
  if (p === undefined) return;
  const s = other(w, p);
  if (s.role !== 'secondary') return;
  const pw = p.worker as Worker;
  const hs = pw.counters.beforeHandshake();
  persist(p, hs.persist);
  const d = decideSync(s.disk.md, {
    resuid: pw.mem.resuid,
    localCnt: pw.mem.localCnt,
    remoteCnt: pw.mem.remoteCnt,
    virgin: hs.virgin,
  });
  let map: number;
  let virgin = false;
  switch (d.kind) {
    case 'refuse':
      p.mismatch++;
      s.mismatch++;
      return;
    case 'split-brain':
      // The secondary runs its hook and exits 78; the primary runs its own hook.
      p.splitBrain++;
      s.splitBrain++;
      return;
    case 'adopt':
      s.disk.md = { ...s.disk.md, resuid: pw.mem.resuid };
      map = d.sendBitmap === 'none' ? 0 : ALL;
      virgin = true;
      break;
    case 'sync':
      if (d.bitmap === 'all-ones') w.rule7++;
      map = d.bitmap === 'all-ones' ? ALL : s.disk.bitmap;
      break;
  }
  persist(p, pw.counters.onSyncReply({ localCnt: s.disk.md.localCnt, remoteCnt: s.disk.md.remoteCnt, virgin }));
  pw.amap |= map;
  p.disk.bitmap = pw.amap;
  w.session = { syncSrc: d.syncSrc, firstRequest: false };
  if (pw.amap === 0) persist(p, pw.counters.onSyncComplete());
}

/** The first request of a session clears the secondary's on-disk bitmap (session.ts onFirstRequest). */
function firstRequest(w: World, s: Node): void {
  if (w.session === null || w.session.firstRequest) return;
  w.session.firstRequest = true;
  s.disk.bitmap = 0;
}

function write(w: World, n: Node, e: number, lost: boolean): void {
  const pw = n.worker as Worker;
  const id = w.nextWrite++;
  n.disk.data[e]?.push(id);
  const connected = w.session !== null && sessionPrimary(w) === n;
  if (connected && !lost) {
    const s = other(w, n);
    firstRequest(w, s);
    s.disk.data[e]?.push(id);
    return;
  }
  if (lost) {
    // In flight when the link broke: applied locally, never by the peer, acknowledged (§6.6).
    w.link = false;
    dropSession(w);
  }
  pw.amap |= 1 << e;
  n.disk.bitmap = pw.amap;
  persist(n, pw.counters.onUnreplicatedWrite(lost ? 'remote-failed' : 'degraded'));
}

/** One extent of the running sync (sync.ts); equalise when nothing is left (replicate.ts). */
function syncOne(w: World): void {
  const p = sessionPrimary(w);
  if (p === null || w.session === null) return;
  const pw = p.worker as Worker;
  if (pw.amap === 0) return;
  const s = other(w, p);
  const e = Math.log2(pw.amap & -pw.amap);
  const [src, dst] = w.session.syncSrc === 'primary' ? [p, s] : [s, p];
  firstRequest(w, s);
  const from = src.disk.data[e] ?? [];
  const lost = (dst.disk.data[e] ?? []).filter((id) => !from.includes(id));
  if (lost.length > 0) {
    w.violations.push(
      `sync ${src.name}→${dst.name} of extent ${e} discarded acknowledged write(s) ${lost.join(',')} without split-brain`,
    );
  }
  dst.disk.data[e] = [...from];
  pw.amap &= ~(1 << e);
  p.disk.bitmap = pw.amap;
  if (pw.amap === 0) persist(p, pw.counters.onSyncComplete());
}

/** Is the step possible (and not a no-op) in this world? */
export function enabled(w: World, step: Step): boolean {
  if (step === 'link-down') return w.link;
  if (step === 'link-up') return !w.link;
  if (step === 'sync') {
    const p = sessionPrimary(w);
    return p !== null && (p.worker?.amap ?? 0) !== 0;
  }
  const [name, what] = step.split(':') as ['a' | 'b', string];
  const n = byName(w, name);
  const peer = other(w, n);
  switch (what) {
    case 'primary':
      return n.role !== 'primary';
    case 'primary!':
      // Only differs from the plain one when the peer would refuse.
      return n.role !== 'primary' && w.link && peer.role === 'primary';
    case 'secondary':
      return n.role !== 'secondary';
    case 'init':
      return n.role !== 'init';
    case 'write0':
    case 'write1':
      return n.role === 'primary' && n.worker !== null;
    case 'writeLost':
      return n.role === 'primary' && n.worker !== null && w.session !== null;
    case 'crash':
      return (n.role === 'primary' && n.worker !== null) || (n.role === 'secondary' && w.session !== null);
    case 'restart':
      return n.role !== 'init';
  }
  return false;
}

export function apply(w: World, step: Step): void {
  if (step === 'link-down') {
    w.link = false;
    dropSession(w);
  } else if (step === 'link-up') {
    w.link = true;
  } else if (step === 'sync') {
    syncOne(w);
  } else {
    const [name, what] = step.split(':') as ['a' | 'b', string];
    const n = byName(w, name);
    switch (what) {
      case 'primary':
        setRole(w, n, 'primary');
        break;
      case 'primary!':
        setRole(w, n, 'primary', true);
        break;
      case 'secondary':
      case 'init':
        setRole(w, n, what);
        break;
      case 'write0':
        write(w, n, 0, false);
        break;
      case 'write1':
        write(w, n, 1, false);
        break;
      case 'writeLost':
        write(w, n, 0, true);
        break;
      case 'crash':
        // A primary worker killed by a signal is restarted by the parent (§5.4); a secondary
        // worker's exit just ends the session (the primary reconnects).
        if (n.role === 'primary') {
          const force = n.worker?.force ?? false;
          stopWorker(w, n);
          startPrimary(w, n, force);
        } else {
          stopWorker(w, n);
        }
        break;
      case 'restart':
        // hastd restarted: every worker dies, roles are not remembered (§5.1).
        stopWorker(w, n);
        n.role = 'init';
        break;
    }
  }
  tryConnect(w);
}

export const STEPS: readonly Step[] = [
  ...(['a', 'b'] as const).flatMap((n) =>
    (['primary', 'primary!', 'secondary', 'init', 'write0', 'write1', 'writeLost', 'crash', 'restart'] as const).map(
      (s): Step => `${n}:${s}`,
    ),
  ),
  'link-down',
  'link-up',
  'sync',
];

export function run(opts: ModelOptions, steps: readonly Step[]): World {
  const w = freshWorld(opts);
  for (const s of steps) if (enabled(w, s)) apply(w, s);
  return w;
}

export type Outcome =
  | { kind: 'converged' }
  | { kind: 'split-brain' }
  | { kind: 'mismatch' }
  | { kind: 'violation'; why: string };

/**
 * The administrator's ordinary recovery with `survivor` as the primary: link up, demote the other,
 * promote the survivor (never forced), let the sync finish. Then: either the copies converged and
 * no acknowledged write was discarded on the way, or the connection was refused as split-brain on
 * both nodes (or as a resuid mismatch: two independently initialised copies).
 */
export function settle(w: World, survivor: 'a' | 'b'): Outcome {
  const x = byName(w, survivor);
  const y = other(w, x);
  const sb = [x.splitBrain, y.splitBrain] as const;
  const mm = [x.mismatch, y.mismatch] as const;
  if (!w.link) apply(w, 'link-up');
  if (y.role === 'primary') apply(w, `${y.name}:secondary`);
  if (x.role !== 'primary') apply(w, `${x.name}:primary`);
  if (y.role !== 'secondary') apply(w, `${y.name}:secondary`);
  if (x.role !== 'primary' || x.worker === null) return { kind: 'violation', why: `could not make ${x.name} primary` };
  // The primary retries every 10 s (§6.3): one more attempt after the recovery.
  tryConnect(w);
  for (let i = 0; i <= EXTENTS && enabled(w, 'sync'); i++) apply(w, 'sync');
  if (w.violations.length > 0) return { kind: 'violation', why: w.violations.join('; ') };
  if (w.session === null) {
    // This recovery's connection attempt was refused: it must have been reported on both nodes.
    if (x.splitBrain > sb[0] && y.splitBrain > sb[1]) return { kind: 'split-brain' };
    if (x.mismatch > mm[0] && y.mismatch > mm[1]) return { kind: 'mismatch' };
    return { kind: 'violation', why: 'not connected after recovery and no split-brain reported on both nodes' };
  }
  if (enabled(w, 'sync')) return { kind: 'violation', why: 'sync did not finish' };
  for (let e = 0; e < EXTENTS; e++) {
    const ax = x.disk.data[e] ?? [];
    const ay = y.disk.data[e] ?? [];
    if (ax.length !== ay.length || ax.some((v, i) => v !== ay[i])) {
      return {
        kind: 'violation',
        why: `extent ${e} differs after the sync (${x.name}: ${ax.join(',')}; ${y.name}: ${ay.join(',')})`,
      };
    }
  }
  return { kind: 'converged' };
}

export interface Enumeration {
  cases: number;
  outcomes: Record<Outcome['kind'], number>;
  rule7: number;
  refusals: number;
  /** The shortest violating sequences found, shortest first. */
  failures: { steps: Step[]; survivor: 'a' | 'b'; why: string }[];
}

/**
 * Every sequence of up to `depth` enabled steps after `prefix`; each one settled both ways.
 * Worlds are rebuilt by replay (the counter objects keep private state).
 */
export function enumerate(opts: ModelOptions, prefix: readonly Step[], depth: number, maxFailures = 5): Enumeration {
  const r: Enumeration = {
    cases: 0,
    outcomes: { converged: 0, 'split-brain': 0, mismatch: 0, violation: 0 },
    rule7: 0,
    refusals: 0,
    failures: [],
  };
  const visit = (steps: Step[]): void => {
    r.cases++;
    for (const survivor of ['a', 'b'] as const) {
      const w = run(opts, [...prefix, ...steps]);
      const o = settle(w, survivor);
      r.outcomes[o.kind]++;
      r.rule7 += w.rule7 > 0 ? 1 : 0;
      r.refusals += w.nodes[0].refused + w.nodes[1].refused > 0 ? 1 : 0;
      if (o.kind === 'violation') keepShortest(r.failures, { steps: [...steps], survivor, why: o.why }, maxFailures);
    }
    if (steps.length === depth) return;
    const w = run(opts, [...prefix, ...steps]);
    // A violation already happened on this path: its extensions add nothing new.
    if (w.violations.length > 0) return;
    for (const s of STEPS) if (enabled(w, s)) visit([...steps, s]);
  };
  visit([]);
  return r;
}

function keepShortest(list: Enumeration['failures'], f: Enumeration['failures'][number], max: number): void {
  if (list.length >= max && (list[list.length - 1]?.steps.length ?? 0) <= f.steps.length) return;
  list.push(f);
  list.sort((x, y) => x.steps.length - y.steps.length);
  if (list.length > max) list.pop();
}
