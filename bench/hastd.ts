// hastd targets for the benchmark, built from the integration harness: a lone primary (`remote
// none`) and a primary/secondary pair on 127.0.0.1/127.0.0.2 in a given replication mode.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issue, makeCa, tlsLines } from '../test/harness/certs.js';
import {
  addNodeLines,
  dumpOf,
  freePort,
  hastctl,
  type HastdProcess,
  makePair,
  type NodeSpec,
  type Pair,
  startRole,
  statusJson,
  writeConfig,
  waitNodeInSync,
} from '../test/harness/cluster.js';
import { fillPattern, sparseFile } from './fill.js';
import { nbdUri } from './fio.js';
import type { Scope } from './scope.js';

export type Mode = 'memsync' | 'fullsync' | 'async';

/** A running hastd primary (and its secondary, if any) exporting resource r0. */
export interface HastdTarget {
  readonly conf: string;
  readonly primary: NodeSpec;
  readonly secondary: NodeSpec | null;
  readonly sock: string;
  readonly uri: string;
  /** Size of the data area = the export's size. */
  readonly dataSize: number;
  readonly localOff: number;
  readonly extentSize: number;
  /** Parent processes by node name. */
  readonly daemons: Map<string, HastdProcess>;
}

const RES = 'r0';

/** Layout of node's component, after `hastctl create`. */
async function layout(
  conf: string,
  node: NodeSpec,
): Promise<{ dataSize: number; localOff: number; extentSize: number }> {
  const d = await dumpOf(conf, node.name);
  if (d.dataSize <= 0) throw new Error(`hastctl dump on ${node.name} shows no data area`);
  return d;
}

/** A primary alone (`remote none`) on a component file of `fileSize` bytes; `extra`: a hast.conf line for the resource. */
export async function startSolo(
  scope: Scope,
  fileSize: number,
  fill: boolean,
  extra: string | null = null,
): Promise<HastdTarget> {
  const root = mkdtempSync(join(tmpdir(), 'hastd-bench-solo-'));
  scope.after(() => rmSync(root, { recursive: true, force: true }));
  const node: NodeSpec = { name: 'node-a', addr: `127.0.0.1:${await freePort('127.0.0.1')}`, dir: join(root, 'a') };
  mkdirSync(node.dir);
  const conf = join(root, 'hast.conf');
  writeConfig(conf, [node], [{ name: RES, ...(extra !== null ? { extra } : {}) }]);
  const img = join(node.dir, `${RES}.img`);
  sparseFile(img, fileSize);
  const r = await hastctl(conf, node.name, ['create', RES]);
  if (r.code !== 0) throw new Error(`hastctl create on ${node.name} failed (${r.code}): ${r.stderr}`);
  const l = await layout(conf, node);
  if (fill) fillPattern(img, l.localOff, l.dataSize);
  const sock = join(node.dir, `${RES}.sock`);
  const d = await startRole(scope, conf, node, RES, 'primary', sock);
  return { conf, primary: node, secondary: null, sock, uri: nbdUri(sock), ...l, daemons: new Map([[node.name, d]]) };
}

/** A primary on 127.0.0.1 replicating in `mode` to a secondary on 127.0.0.2, in sync on return. */
export async function startPair(
  scope: Scope,
  mode: Mode,
  fileSize: number,
  opts: { fill: boolean; fillSecondary?: boolean; extra?: string | null; tls?: boolean },
): Promise<HastdTarget & { pair: Pair }> {
  const fill = opts.fill;
  const fillSecondary = opts.fillSecondary ?? fill;
  const pair = await makePair(scope, {
    size: fileSize,
    replication: mode,
    ...(opts.extra != null ? { extra: opts.extra } : {}),
  });
  if (opts.tls === true) {
    // Certificates from one test CA (test/harness/certs.ts), as the TLS tests make them.
    const ca = makeCa(pair.a.dir, 'ca');
    addNodeLines(pair, {
      a: tlsLines(issue(ca, 'node-a'), { ca: ca.cert }),
      b: tlsLines(issue(ca, 'node-b'), { ca: ca.cert }),
    });
  }
  const l = await layout(pair.conf, pair.a);
  if (fill) fillPattern(pair.img(pair.a), l.localOff, l.dataSize);
  if (fillSecondary) fillPattern(pair.img(pair.b), l.localOff, l.dataSize);
  const daemons = new Map<string, HastdProcess>();
  daemons.set(pair.b.name, await startRole(scope, pair.conf, pair.b, RES, 'secondary', pair.sock(pair.b)));
  daemons.set(pair.a.name, await startRole(scope, pair.conf, pair.a, RES, 'primary', pair.sock(pair.a)));
  await waitNodeInSync(pair.conf, pair.a.name);
  return {
    conf: pair.conf,
    primary: pair.a,
    secondary: pair.b,
    sock: pair.sock(pair.a),
    uri: nbdUri(pair.sock(pair.a)),
    ...l,
    daemons,
    pair,
  };
}

/** Pid of the worker that serves r0 on `node`, from `hastctl status --json`. */
export async function workerPid(conf: string, node: NodeSpec): Promise<number> {
  const st = await statusJson(conf, node.name, RES);
  const pid = st.workerpid;
  if (typeof pid !== 'number') throw new Error(`no worker runs for ${RES} on ${node.name}`);
  return pid;
}
