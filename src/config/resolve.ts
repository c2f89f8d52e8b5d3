// From raw AST to the resolved HastConfig: node matching, the global → resource → `on <node>`
// cascade, defaults and the post-parse validation of upstream's parse.y. HAST-SPEC §1.3–1.4, §1.7.
import { ConfigError } from './errors.js';
import { parseSize } from '../metadata/size.js';
import { parseControlAddress } from './address.js';
import { isThisNode } from './node-match.js';
import type { ConfigAst, Statement, StatementKeyword } from './parser.js';
import type { ChecksumAlg, CompressionAlg, DeviceMode, HastConfig, ReplicationMode, ResourceConfig } from './types.js';

const DEFAULT_CONTROL = 'uds:///var/run/hastctl';
const DEFAULT_PIDFILE = '/var/run/hastd.pid';
/** Used only when neither the global section nor this node's `on` blocks list any address. */
const DEFAULT_LISTEN: readonly string[] = ['tcp4://0.0.0.0:8457', 'tcp6://[::]:8457'];
const DEFAULT_REPLICATION: ReplicationMode = 'memsync';
const DEFAULT_CHECKSUM: ChecksumAlg = 'none';
const DEFAULT_COMPRESSION: CompressionAlg = 'hole';
const DEFAULT_TIMEOUT = 20;
const DEFAULT_DEVICE: DeviceMode = 'auto';
/** Our `export` default: a unix socket named after the provider. */
function defaultExportAddr(provName: string): string {
  return `uds:///var/run/hastd/${provName}.sock`;
}

/** `syncrate`/`syncminrate` as bytes per second (checked by the parser); 0 for unlimited. */
function rateField<K extends 'syncRate' | 'syncMinRate'>(
  key: K,
  value: string | undefined,
): Partial<Record<K, number>> {
  if (value === undefined) return {};
  return { [key]: value === 'unlimited' ? 0 : parseSize(value) } as Partial<Record<K, number>>;
}

type Settings = Partial<Record<StatementKeyword, Statement>>;

/** Applies statements in order: a later statement of the same keyword wins. */
function collect(into: Settings, stmts: readonly Statement[]): void {
  for (const st of stmts) into[st.keyword] = st;
}

/** The TLS fields of a resource (node > resource > global), checked complete. */
function tlsOf(
  name: string,
  levels: readonly Settings[],
  fail: (msg: string) => never,
): Pick<ResourceConfig, 'tlsCert' | 'tlsKey' | 'tlsCa' | 'tlsPeer'> {
  const pick = (k: 'tlscert' | 'tlskey' | 'tlsca' | 'tlspeer'): string | undefined =>
    levels.map((l) => l[k]).find((s) => s !== undefined)?.value;
  const cert = pick('tlscert');
  const key = pick('tlskey');
  const ca = pick('tlsca');
  const peer = pick('tlspeer');
  if (cert === undefined && key === undefined && ca === undefined && peer === undefined) return {};
  if (cert === undefined || key === undefined) fail(`TLS for resource ${name} needs both tlscert and tlskey.`);
  if (ca === undefined && peer === undefined) {
    fail(`TLS for resource ${name} needs tlsca or tlspeer to check the other node's certificate.`);
  }
  const fp =
    peer === undefined
      ? undefined
      : peer
          .replace(/:/g, '')
          .toUpperCase()
          .replace(/(..)(?!$)/g, '$1:');
  return {
    tlsCert: cert ?? '',
    tlsKey: key ?? '',
    ...(ca !== undefined ? { tlsCa: ca } : {}),
    ...(fp !== undefined ? { tlsPeer: fp } : {}),
  };
}

/**
 * Resolves a parsed file for a host answering to `nodeNames`.
 * Throws ConfigError (78) with upstream's texts, at the line of the offending resource/statement.
 */
export function resolveConfig(ast: ConfigAst, file: string, nodeNames: readonly string[]): HastConfig {
  const global: Settings = {};
  const node: Settings = {};
  const listen: string[] = [];
  for (const item of ast.body) {
    if (item.kind === 'stmt') {
      if (item.keyword === 'listen') listen.push(item.value);
      else collect(global, [item]);
    } else if (item.kind === 'on' && isThisNode(item.node, nodeNames)) {
      for (const st of item.body) {
        // Upstream collects global and this node's listens into one list, in file order.
        if (st.keyword === 'listen') listen.push(st.value);
        else collect(node, [st]);
      }
    }
  }

  const controlStmt = node.control ?? global.control;
  const controlAddr = controlStmt?.value ?? DEFAULT_CONTROL;
  let controlPath: string;
  try {
    controlPath = parseControlAddress(controlAddr);
  } catch (err) {
    throw new ConfigError(
      `Invalid control address ${controlAddr}: ${(err as Error).message}.`,
      file,
      controlStmt?.line ?? 1,
      { keyword: 'control', cause: err },
    );
  }

  const resources: ResourceConfig[] = [];
  const seen = new Set<string>();
  for (const item of ast.body) {
    if (item.kind !== 'resource') continue;
    if (seen.has(item.name)) {
      throw new ConfigError(`Resource ${item.name} configured more than once.`, file, item.line, {
        keyword: 'resource',
      });
    }
    seen.add(item.name);
    const res: Settings = {};
    const mine: Settings = {};
    let hadMyNode = false;
    for (const entry of item.body) {
      if (entry.kind === 'stmt') collect(res, [entry]);
      else if (isThisNode(entry.node, nodeNames)) {
        hadMyNode = true;
        collect(mine, entry.body);
      }
    }
    const fail = (msg: string): never => {
      throw new ConfigError(msg, file, item.line, { keyword: 'resource' });
    };
    if (!hadMyNode) {
      fail(`No resource ${item.name} configuration for this node (acceptable node names: ${nodeNames.join(', ')}).`);
    }
    const provName = (mine.name ?? res.name)?.value ?? item.name;
    const remote = mine.remote?.value;
    if (remote === undefined) fail(`Remote address not configured for resource ${item.name}.`);
    const local = (mine.local ?? res.local)?.value;
    if (local === undefined) fail(`Path to local component not configured for resource ${item.name}.`);
    const metaflush = (mine.metaflush ?? res.metaflush ?? global.metaflush)?.value ?? 'on';
    resources.push({
      name: item.name,
      provName,
      localPath: local ?? '',
      remoteAddr: remote ?? '',
      sourceAddr: mine.source?.value ?? null,
      replication: ((res.replication ?? global.replication)?.value ?? DEFAULT_REPLICATION) as ReplicationMode,
      checksum: ((res.checksum ?? global.checksum)?.value ?? DEFAULT_CHECKSUM) as ChecksumAlg,
      compression: ((res.compression ?? global.compression)?.value ?? DEFAULT_COMPRESSION) as CompressionAlg,
      timeout: Number((res.timeout ?? global.timeout)?.value ?? DEFAULT_TIMEOUT),
      exec: (res.exec ?? global.exec)?.value ?? '',
      metaFlush: metaflush === 'on',
      exportAddr: (mine.export ?? res.export)?.value ?? defaultExportAddr(provName),
      device: ((mine.device ?? res.device ?? global.device)?.value ?? DEFAULT_DEVICE) as DeviceMode,
      ...((mine.authkey ?? res.authkey ?? global.authkey) !== undefined
        ? { authKey: (mine.authkey ?? res.authkey ?? global.authkey)?.value ?? '' }
        : {}),
      ...tlsOf(item.name, [mine, res, global], fail),
      // Only when configured: a file without them resolves as before the extension.
      ...rateField('syncRate', (res.syncrate ?? global.syncrate)?.value),
      ...rateField('syncMinRate', (res.syncminrate ?? global.syncminrate)?.value),
      // Only when on: `checksumsync off` is the default made explicit, not a change at a reload.
      ...((mine.checksumsync ?? res.checksumsync ?? global.checksumsync)?.value === 'on' ? { checksumSync: true } : {}),
    });
  }

  return {
    file,
    nodeNames: [...nodeNames],
    controlPath,
    controlAddr,
    ...((node.controlgroup ?? global.controlgroup) !== undefined
      ? { controlGroup: (node.controlgroup ?? global.controlgroup)?.value ?? '' }
      : {}),
    pidFile: (node.pidfile ?? global.pidfile)?.value ?? DEFAULT_PIDFILE,
    listen: listen.length > 0 ? listen : [...DEFAULT_LISTEN],
    metrics: (node.metrics ?? global.metrics)?.value ?? null,
    resources,
  };
}
