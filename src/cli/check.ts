// hastctl check / hastd -n: parse hast.conf, then validate what can be known before running:
// addresses, export/device combinations, local components (present, large enough, metadata
// present and matching) and hooks (present, executable). Every finding names file:line. Addresses
// are checked by the parser itself (src/config/parser.ts checkStatement).
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { openComponent } from '../component/open.js';
import { ConfigError } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { isThisNode } from '../config/node-match.js';
import { parseExportAddress } from '../config/address.js';
import { parseAst, type ConfigAst, type StatementKeyword } from '../config/parser.js';
import type { HastConfig, ResourceConfig } from '../config/types.js';
import { METADATA_SIZE, mapSizeFor } from '../metadata/layout.js';
import { readMetadata } from '../metadata/metadata.js';
import { EX } from '../util/sysexits.js';

/** One problem found, at a line of the file (0: the file as a whole). */
export interface Finding {
  readonly line: number;
  readonly resource: string | null;
  readonly message: string;
}

/** The line of `keyword` as it applies to `resource` on this node: its `on` block, the resource, then global. */
function lineOf(ast: ConfigAst, cfg: HastConfig, resource: string | null, keyword: StatementKeyword): number {
  let line = 0;
  for (const item of ast.body) {
    if (item.kind === 'stmt' && item.keyword === keyword && line === 0) line = item.line;
  }
  if (resource === null) return line;
  for (const item of ast.body) {
    if (item.kind !== 'resource' || item.name !== resource) continue;
    let found = item.line;
    for (const e of item.body) if (e.kind === 'stmt' && e.keyword === keyword) found = e.line;
    for (const e of item.body) {
      if (e.kind !== 'on' || !isThisNode(e.node, cfg.nodeNames)) continue;
      for (const st of e.body) if (st.keyword === keyword) found = st.line;
    }
    return found !== item.line || line === 0 ? found : line;
  }
  return line;
}

async function checkComponent(r: ResourceConfig, add: (kw: StatementKeyword, msg: string) => void): Promise<void> {
  let st;
  try {
    st = statSync(r.localPath);
  } catch (err) {
    add('local', `local component ${r.localPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`);
    return;
  }
  if (!st.isFile() && !st.isBlockDevice()) {
    add('local', `local component ${r.localPath} is neither a regular file nor a block device.`);
    return;
  }
  let comp;
  try {
    comp = await openComponent(r.localPath, { lock: false, readOnly: true });
  } catch (err) {
    add('local', `Unable to open local component ${r.localPath}: ${(err as Error).message}.`);
    return;
  }
  try {
    if (comp.size <= METADATA_SIZE) {
      add('local', `local component ${r.localPath} is ${comp.size} bytes: too small for metadata and data.`);
      return;
    }
    let md;
    try {
      md = await readMetadata(comp, r.name);
    } catch (err) {
      add(
        'local',
        `${(err as Error).message.replace(/\.?$/, '.')} Initialise it with "hastctl create ${r.name}" (this destroys what the component holds).`,
      );
      return;
    }
    const sector = comp.sectorSize;
    if (md.extentSize <= 0 || md.extentSize % sector !== 0) {
      add(
        'local',
        `metadata of ${r.localPath}: extent size ${md.extentSize} is not a multiple of the sector size ${sector}.`,
      );
      return;
    }
    const expectOff = METADATA_SIZE + mapSizeFor(md.dataSize, md.extentSize, sector);
    if (md.localOff !== expectOff) {
      add(
        'local',
        `metadata of ${r.localPath}: data offset ${md.localOff} does not match data size ${md.dataSize} and extent size ` +
          `${md.extentSize} (expected ${expectOff}).`,
      );
    }
    if (md.localOff + md.dataSize > comp.size) {
      add(
        'local',
        `metadata of ${r.localPath}: data size ${md.dataSize} at offset ${md.localOff} needs ${md.localOff + md.dataSize} bytes, ` +
          `the component has ${comp.size} (shrunk since "hastctl create"?).`,
      );
    }
  } finally {
    await comp.close();
  }
}

function checkHook(r: ResourceConfig, add: (kw: StatementKeyword, msg: string) => void): void {
  if (r.exec === '') return;
  if (!r.exec.startsWith('/')) {
    add('exec', `exec ${r.exec} is not an absolute path.`);
    return;
  }
  try {
    if (!statSync(r.exec).isFile()) {
      add('exec', `exec ${r.exec} is not a regular file.`);
      return;
    }
    accessSync(r.exec, constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    add('exec', code === 'EACCES' ? `exec ${r.exec} is not executable.` : `exec ${r.exec}: ${code ?? String(err)}.`);
  }
}

/** All findings for a parsed configuration; `names` limits the resource checks (empty: all). */
export async function findProblems(cfg: HastConfig, ast: ConfigAst, names: readonly string[]): Promise<Finding[]> {
  const out: Finding[] = [];
  const all = names.length === 0 || names[0] === 'all';
  for (const n of names) {
    if (!all && !cfg.resources.some((r) => r.name === n)) {
      out.push({ line: 0, resource: null, message: `Unknown resource ${n}.` });
    }
  }
  const seen = {
    local: new Map<string, string>(),
    provName: new Map<string, string>(),
    export: new Map<string, string>(),
  };
  for (const r of cfg.resources) {
    const add = (kw: StatementKeyword, message: string): void => {
      out.push({ line: lineOf(ast, cfg, r.name, kw), resource: r.name, message });
    };
    for (const [what, key, kw] of [
      ['local component', r.localPath, 'local'],
      ['provider name', r.provName, 'name'],
      ['export address', r.exportAddr, 'export'],
    ] as const) {
      const map = what === 'local component' ? seen.local : what === 'provider name' ? seen.provName : seen.export;
      const other = map.get(key);
      if (other !== undefined) add(kw, `${what} ${key} is also used by resource ${other}.`);
      else map.set(key, r.name);
    }
    if (!all && !names.includes(r.name)) continue;
    const exp = parseExportAddress(r.exportAddr);
    if (exp.kind !== 'unix' && r.device !== 'none') {
      add(
        'device',
        `device ${r.device} needs a unix-socket export, and export is ${r.exportAddr}: use export uds:///path, or device none ` +
          'to serve NBD over TCP only.',
      );
    }
    await checkComponent(r, add);
    checkHook(r, add);
  }
  return out;
}

/**
 * Check the configuration file at `path` for this node; print findings as `file:line: [res] msg`
 * through `warn` and a summary to stdout. Returns 0 when nothing was found, else EX_CONFIG (or the
 * ConfigError's code when the file does not even parse).
 */
export async function checkConfig(
  path: string,
  node: string | undefined,
  names: readonly string[] = [],
  warn: (msg: string) => void = (m) => process.stderr.write(`${m}\n`),
): Promise<number> {
  const file = resolvePath(path);
  let cfg: HastConfig;
  let ast: ConfigAst;
  try {
    cfg = loadConfig(file, node === undefined ? {} : { nodeName: node });
    ast = parseAst(readFileSync(file).toString('latin1'), file);
  } catch (err) {
    if (err instanceof ConfigError) {
      warn(err.message);
      return err.exitCode;
    }
    throw err;
  }
  const found = await findProblems(cfg, ast, names);
  for (const f of found) {
    const where = f.line > 0 ? `${file}:${f.line}` : file;
    warn(`${where}: ${f.resource !== null ? `[${f.resource}] ` : ''}${f.message}`);
  }
  if (found.length > 0) return EX.CONFIG;
  process.stdout.write(`${file}: OK (${cfg.resources.length} resource${cfg.resources.length === 1 ? '' : 's'}).\n`);
  return 0;
}
