// Public entry points for hast.conf: read, parse, resolve, validate. HAST-SPEC §1, §1.7.
import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { ConfigError } from './errors.js';
import { acceptableNodeNames } from './node-match.js';
import { type ConfigAst, parseAst, type Statement } from './parser.js';
import { checkPrivateFile, readSecret } from '../peer/auth.js';
import { resolveConfig } from './resolve.js';
import type { HastConfig } from './types.js';
import { EX } from '../util/sysexits.js';

export interface ParseOptions {
  /** Our `--node NAME`: this host answers to exactly this name and no other. */
  readonly nodeName?: string | undefined;
  /** Injects the names this host answers to (tests); ignored when nodeName is given. */
  readonly hostNames?: readonly string[] | undefined;
}

const SYSTEM_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  EMFILE: 'Too many open files',
  ENAMETOOLONG: 'File name too long',
  EIO: 'Input/output error',
};

function names(opts: ParseOptions): readonly string[] {
  if (opts.nodeName !== undefined) return [opts.nodeName];
  return opts.hostNames ?? acceptableNodeNames();
}

/**
 * Parses hast.conf text (as read from `file`, which is only used in messages and `config.file`).
 * Throws ConfigError (exitCode 78) on a syntax or validation error.
 */
export function parseConfig(text: string, file: string, opts: ParseOptions = {}): HastConfig {
  return resolveConfig(parseAst(text, file), file, names(opts));
}

/**
 * Reads and parses a configuration file; the path is made absolute first.
 * Throws ConfigError with exitCode 72 (EX_OSFILE) when it cannot be read, 78 otherwise.
 */
export function loadConfig(
  file: string,
  opts: { nodeName?: string | undefined; checkFiles?: boolean } = {},
): HastConfig {
  const path = resolvePath(file);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ConfigError(`Unable to open configuration file ${path}: ${SYSTEM_ERRORS[code] ?? code}.`, path, 0, {
      exitCode: EX.OSFILE,
      cause: err,
    });
  }
  // latin1 maps every byte to one character, so stray bytes are reported, never mis-decoded away.
  const text = bytes.toString('latin1');
  if (opts.checkFiles !== true) return parseConfig(text, path, opts);
  const ast = parseAst(text, path);
  const cfg = resolveConfig(ast, path, names(opts));
  checkFiles(ast, cfg, path);
  return cfg;
}

/** Every statement of the file, nested ones included. */
function statementsOf(ast: ConfigAst): Statement[] {
  return ast.body.flatMap((e) =>
    e.kind === 'stmt' ? [e] : e.kind === 'on' ? e.body : e.body.flatMap((s) => (s.kind === 'stmt' ? [s] : s.body)),
  );
}

/**
 * What hastd checks on start and reload, beyond the grammar: each `authkey` a resource of this
 * node uses is a secret file only root can read, and so is each `tlskey` (README "Security").
 * @throws ConfigError at the statement's line
 */
function checkFiles(ast: ConfigAst, cfg: HastConfig, file: string): void {
  const used = new Set(cfg.resources.flatMap((r) => (r.authKey !== undefined ? [r.authKey] : [])));
  const keys = new Set(cfg.resources.flatMap((r) => (r.tlsKey !== undefined ? [r.tlsKey] : [])));
  for (const st of statementsOf(ast)) {
    const check =
      st.keyword === 'authkey' && used.has(st.value)
        ? readSecret
        : st.keyword === 'tlskey' && keys.has(st.value)
          ? checkPrivateFile
          : null;
    if (check === null) continue;
    try {
      check(st.value);
    } catch (err) {
      throw new ConfigError(`${(err as Error).message}.`, file, st.line, { keyword: st.keyword, cause: err });
    }
  }
}
