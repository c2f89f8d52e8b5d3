// hast.conf recursive-descent parser: tokens → raw AST with line numbers, enforcing which
// statement may appear in which section (HAST-SPEC §1.2) and the per-statement checks upstream's
// parse.y makes while parsing (length limits, "Negative or zero timeout.", §1.7).
//
// Extensions to upstream's grammar (documented in README):
//   export <addr>               resource and resource-node (`on`) sections; node wins.
//                               uds:///path, unix:///path or tcp://host[:port].
//   device auto|nbd|fuse|none   global, resource and resource-node sections; node > resource >
//                               global. The values are plain words checked here, not reserved.
//   authkey <path>              global, resource and resource-node sections; node > resource >
//                               global. The peer secret file.
//   tlscert|tlskey|tlsca <path>, tlspeer <sha256>  like authkey: TLS on the replication link.
//   controlgroup <group>        global and node sections; node wins. Control socket 0660 root:<group>.
//   syncrate <size>|unlimited   global and resource sections; resource > global. The most bytes
//   syncminrate <size>          per second a resync copies; syncminrate: what it slows down to (and
//                               keeps) while the application does I/O. Sizes as hastctl create's.
//   checksumsync on|off         global, resource and resource-node sections; node > resource >
//                               global. Offer (primary) or accept (secondary) checksum-assisted
//                               resync; default off. Negotiated, so each node has its own.
//   metrics <addr>              global and node sections: serve Prometheus metrics over HTTP at
//                               tcp://host[:port] (default port 8458); node wins.
import { ConfigError } from './errors.js';
import { tokenize, type Keyword, type Token } from './lexer.js';
import { METRICS_PORT, parseExportAddress, parsePeerAddress } from './address.js';
import { parseSize } from '../metadata/size.js';
import { DEVICE_MODES } from './types.js';

/** Statement keywords (everything that takes one value). */
export const STATEMENT_KEYWORDS = [
  'control',
  'pidfile',
  'listen',
  'replication',
  'checksum',
  'compression',
  'timeout',
  'exec',
  'metaflush',
  'name',
  'local',
  'remote',
  'source',
  'export',
  'device',
  'authkey',
  'controlgroup',
  'tlscert',
  'tlskey',
  'tlsca',
  'tlspeer',
  'syncrate',
  'syncminrate',
  'checksumsync',
  'metrics',
] as const;
export type StatementKeyword = (typeof STATEMENT_KEYWORDS)[number];

/** Sections: top level, `on` at top level, `resource`, `on` inside a resource. */
export type Section = 'global' | 'node' | 'resource' | 'resource-node';

/** HAST-SPEC §1.2's table (plus our `export`/`device`), and where `on`/`resource` blocks may open. */
export const ALLOWED: Readonly<Record<Section, readonly (StatementKeyword | 'on' | 'resource')[]>> = {
  global: [
    'control',
    'pidfile',
    'listen',
    'replication',
    'checksum',
    'compression',
    'timeout',
    'exec',
    'metaflush',
    'device',
    'authkey',
    'controlgroup',
    'tlscert',
    'tlskey',
    'tlsca',
    'tlspeer',
    'syncrate',
    'syncminrate',
    'checksumsync',
    'metrics',
    'on',
    'resource',
  ],
  node: ['control', 'pidfile', 'listen', 'controlgroup', 'metrics'],
  resource: [
    'replication',
    'checksum',
    'compression',
    'timeout',
    'exec',
    'metaflush',
    'name',
    'local',
    'export',
    'device',
    'authkey',
    'tlscert',
    'tlskey',
    'tlsca',
    'tlspeer',
    'syncrate',
    'syncminrate',
    'checksumsync',
    'on',
  ],
  'resource-node': [
    'name',
    'local',
    'remote',
    'source',
    'metaflush',
    'export',
    'device',
    'authkey',
    'tlscert',
    'tlskey',
    'tlsca',
    'tlspeer',
    'checksumsync',
  ],
};

const SECTION_NAME: Readonly<Record<Section, string>> = {
  global: 'the global section',
  node: "a node ('on') section",
  resource: 'a resource section',
  'resource-node': "a resource node ('on') section",
};

/** Values a keyword-valued statement accepts (these values are reserved words). */
const ENUM_VALUES: Partial<Record<StatementKeyword, readonly Keyword[]>> = {
  replication: ['fullsync', 'memsync', 'async'],
  checksum: ['none', 'crc32', 'sha256'],
  compression: ['none', 'hole', 'lzf'],
  metaflush: ['on', 'off'],
  checksumsync: ['on', 'off'],
};

export interface Statement {
  readonly kind: 'stmt';
  readonly keyword: StatementKeyword;
  /** The value as written (`timeout`: its digits; `remote none`: 'none'). */
  readonly value: string;
  readonly line: number;
}
export interface OnBlock {
  readonly kind: 'on';
  readonly node: string;
  readonly line: number;
  readonly body: readonly Statement[];
}
export interface ResourceBlock {
  readonly kind: 'resource';
  readonly name: string;
  readonly line: number;
  readonly body: readonly (Statement | OnBlock)[];
}
/** The file as written, in order (order decides listen order and "later wins"). */
export interface ConfigAst {
  readonly body: readonly (Statement | OnBlock | ResourceBlock)[];
}

/** Address-like values: < HAST_ADDRSIZE (1024) bytes; paths: < PATH_MAX (1024); names < NAME_MAX. */
const ADDR_MAX = 1024;
const PATH_MAX = 1024;
const NAME_MAX = 255;
const INT_MAX = 2 ** 31 - 1;

function unexpected(tok: Token, what: string, file: string, keyword?: string): ConfigError {
  const near = tok.type === 'eof' ? 'end of file' : `'${tok.text}'`;
  return new ConfigError(
    `Unable to parse configuration file at line ${tok.line} near ${near}: ${what}`,
    file,
    tok.line,
    { keyword },
  );
}

function listWords(words: readonly string[]): string {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} or ${words[words.length - 1] ?? ''}`;
}

/** Checks made on a statement as soon as it is read (upstream does them in parse.y actions). */
function checkStatement(st: Statement, file: string): void {
  const fail = (msg: string): never => {
    throw new ConfigError(msg, file, st.line, { keyword: st.keyword });
  };
  const len = Buffer.byteLength(st.value);
  switch (st.keyword) {
    case 'timeout': {
      const n = Number(st.value);
      if (n <= 0) fail('Negative or zero timeout.');
      // Upstream: atoi() overflows silently; we refuse what does not fit an int.
      if (n > INT_MAX) fail('timeout argument is too large.');
      break;
    }
    case 'exec':
      if (len >= PATH_MAX) fail('Exec path is too long.');
      break;
    case 'name':
      if (len >= NAME_MAX) fail('name argument is too long.');
      break;
    case 'pidfile':
    case 'local':
    case 'authkey':
    case 'tlscert':
    case 'tlskey':
    case 'tlsca':
      if (len >= PATH_MAX) fail(`${st.keyword} argument is too long.`);
      break;
    case 'control':
      if (len >= ADDR_MAX) fail('control argument is too long.');
      break;
    case 'listen':
    case 'remote':
    case 'source':
    case 'metrics':
      if (len >= ADDR_MAX) fail(`${st.keyword} argument is too long.`);
      // Impossible values (port 99999, 127.0.0.256) are refused here, not at the first connect.
      if (st.keyword !== 'remote' || st.value !== 'none') {
        try {
          parsePeerAddress(st.value, st.keyword === 'source' ? 0 : st.keyword === 'metrics' ? METRICS_PORT : undefined);
        } catch (err) {
          fail(`Invalid ${st.keyword} address ${st.value}: ${(err as Error).message}.`);
        }
      }
      break;
    case 'export':
      if (len >= ADDR_MAX) fail('export argument is too long.');
      try {
        parseExportAddress(st.value);
      } catch (err) {
        fail(`Invalid export address ${st.value}: ${(err as Error).message}.`);
      }
      break;
    case 'tlspeer':
      if (!/^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{64}$/.test(st.value)) {
        fail(
          `Invalid tlspeer ${st.value}: expected a SHA-256 certificate fingerprint (64 hex digits, colons allowed).`,
        );
      }
      break;
    case 'controlgroup':
      if (!/^[A-Za-z_][A-Za-z0-9_.-]*$|^\d+$/.test(st.value)) fail(`Invalid control group ${st.value}.`);
      break;
    case 'device':
      if (!(DEVICE_MODES as readonly string[]).includes(st.value)) {
        fail(`Invalid device mode ${st.value}: expected ${listWords(DEVICE_MODES)}.`);
      }
      break;
    case 'syncrate':
    case 'syncminrate':
      if (st.keyword === 'syncrate' && st.value === 'unlimited') break;
      try {
        if (parseSize(st.value) <= 0) fail(`${st.keyword} must be greater than zero.`);
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        fail(
          `Invalid ${st.keyword} ${st.value}: expected bytes per second with an optional k, m or g suffix` +
            `${st.keyword === 'syncrate' ? ', or unlimited' : ''}.`,
        );
      }
      break;
    default:
      break;
  }
}

interface OpenBlock {
  readonly label: string;
  readonly line: number;
  readonly section: Section;
}

class Parser {
  readonly #tokens: Token[];
  readonly #file: string;
  #pos = 0;
  /** closeSurplus[i]: number of '}' minus number of '{' from token i to the end. */
  readonly #closeSurplus: number[];
  /** Blocks currently open, outermost first: used to explain a missing '}'. */
  readonly #open: OpenBlock[] = [];

  constructor(tokens: Token[], file: string) {
    this.#tokens = tokens;
    this.#file = file;
    this.#closeSurplus = new Array<number>(tokens.length + 1).fill(0);
    for (let i = tokens.length - 1; i >= 0; i--) {
      const t = tokens[i]?.type;
      this.#closeSurplus[i] = (this.#closeSurplus[i + 1] ?? 0) + (t === '}' ? 1 : t === '{' ? -1 : 0);
    }
  }

  #peek(): Token {
    // The token list always ends with 'eof' and we never advance past it.
    return this.#tokens[this.#pos] ?? { type: 'eof', text: '', line: 1 };
  }

  #next(): Token {
    const tok = this.#peek();
    if (tok.type !== 'eof') this.#pos++;
    return tok;
  }

  parseFile(): ConfigAst {
    const body: (Statement | OnBlock | ResourceBlock)[] = [];
    for (;;) {
      const tok = this.#peek();
      if (tok.type === 'eof') return { body };
      if (tok.type === 'keyword' && tok.text === 'resource') body.push(this.#resource());
      else if (tok.type === 'keyword' && tok.text === 'on') body.push(this.#on('node'));
      else body.push(this.#statement('global'));
    }
  }

  #resource(): ResourceBlock {
    const kw = this.#next();
    const nameTok = this.#next();
    if (nameTok.type !== 'str') {
      throw unexpected(
        nameTok,
        `expected a resource name after 'resource'${this.#whyNotValue(nameTok)}`,
        this.#file,
        'resource',
      );
    }
    if (Buffer.byteLength(nameTok.text) >= NAME_MAX) {
      throw new ConfigError('Resource name is too long.', this.#file, nameTok.line, { keyword: 'resource' });
    }
    this.#expectOpen(`resource ${nameTok.text}`, 'resource');
    this.#open.push({ label: `resource ${nameTok.text}`, line: kw.line, section: 'resource' });
    const body: (Statement | OnBlock)[] = [];
    while (!this.#closes('resource')) {
      if (this.#peek().type === 'keyword' && this.#peek().text === 'on') body.push(this.#on('resource-node'));
      else body.push(this.#statement('resource'));
    }
    this.#open.pop();
    return { kind: 'resource', name: nameTok.text, line: kw.line, body };
  }

  #on(section: 'node' | 'resource-node'): OnBlock {
    const kw = this.#next();
    const nodeTok = this.#next();
    if (nodeTok.type !== 'str') {
      throw unexpected(nodeTok, `expected a node name after 'on'${this.#whyNotValue(nodeTok)}`, this.#file, 'on');
    }
    this.#expectOpen(`on ${nodeTok.text}`, 'on');
    this.#open.push({ label: `on ${nodeTok.text}`, line: kw.line, section });
    const body: Statement[] = [];
    while (!this.#closes(section)) body.push(this.#statement(section));
    this.#open.pop();
    return { kind: 'on', node: nodeTok.text, line: kw.line, body };
  }

  #expectOpen(label: string, keyword: string): void {
    const tok = this.#next();
    if (tok.type !== '{') throw unexpected(tok, `expected '{' after '${label}'`, this.#file, keyword);
  }

  /** Consumes a '}' and returns true, or returns false when a statement follows. */
  #closes(section: Section): boolean {
    const tok = this.#peek();
    if (tok.type === '}') {
      this.#next();
      return true;
    }
    const inner = this.#open[this.#open.length - 1];
    if (inner === undefined) return false;
    if (tok.type === 'eof') {
      throw unexpected(
        tok,
        `'${inner.label}' block opened at line ${inner.line} is not closed: '}' expected before end of file`,
        this.#file,
      );
    }
    // A keyword that is not allowed here but is allowed in an enclosing section, with too few
    // '}' left in the file to close what is open, means a '}' is missing: say which block is
    // still open rather than "syntax error".
    const tooFewCloses = (this.#closeSurplus[this.#pos] ?? 0) < this.#open.length;
    if (tok.type === 'keyword' && tooFewCloses && !ALLOWED[section].includes(tok.text as StatementKeyword)) {
      const outer = ['global', ...this.#open.slice(0, -1).map((b) => b.section)] as Section[];
      if (outer.some((s) => ALLOWED[s].includes(tok.text as StatementKeyword))) {
        throw unexpected(
          tok,
          `'${inner.label}' block opened at line ${inner.line} is not closed: '}' expected before '${tok.text}'`,
          this.#file,
          tok.text,
        );
      }
    }
    return false;
  }

  #whyNotValue(tok: Token): string {
    if (tok.type === 'keyword') return ` ('${tok.text}' is a reserved word)`;
    if (tok.type === 'num') return ' (a value made only of digits is a number)';
    return '';
  }

  #statement(section: Section): Statement {
    const tok = this.#next();
    const allowed = ALLOWED[section];
    if (tok.type === '}') {
      throw unexpected(tok, "unexpected '}' with no block open", this.#file);
    }
    if (tok.type !== 'keyword' || !(allowed as readonly string[]).includes(tok.text)) {
      const isStatement =
        tok.type === 'keyword' &&
        ((STATEMENT_KEYWORDS as readonly string[]).includes(tok.text) || tok.text === 'on' || tok.text === 'resource');
      const what = isStatement
        ? `'${tok.text}' is not allowed in ${SECTION_NAME[section]}`
        : `expected ${listWords([...allowed, ...(section === 'global' ? [] : ["'}'"])])}`;
      throw unexpected(tok, what, this.#file, tok.type === 'keyword' ? tok.text : undefined);
    }
    const keyword = tok.text as StatementKeyword;
    const valTok = this.#next();
    const enumValues = ENUM_VALUES[keyword];
    let value: string;
    if (enumValues !== undefined) {
      if (valTok.type !== 'keyword' || !enumValues.includes(valTok.text)) {
        throw unexpected(valTok, `expected ${listWords(enumValues)} after '${keyword}'`, this.#file, keyword);
      }
      value = valTok.text;
    } else if (keyword === 'timeout') {
      if (valTok.type !== 'num') {
        throw unexpected(valTok, "expected a number of seconds after 'timeout'", this.#file, keyword);
      }
      value = valTok.text;
    } else if ((keyword === 'syncrate' || keyword === 'syncminrate') && valTok.type === 'num') {
      // A plain number of bytes per second is a NUM token; with a suffix ("10M") it is a word.
      value = valTok.text;
    } else if ((keyword === 'remote' || keyword === 'device') && valTok.type === 'keyword' && valTok.text === 'none') {
      // `remote none` is upstream's special case; `device none` is ours ('none' is reserved).
      value = 'none';
    } else {
      if (valTok.type !== 'str') {
        const what = keyword === 'remote' ? 'an address or none' : 'a value';
        throw unexpected(
          valTok,
          `expected ${what} after '${keyword}'${this.#whyNotValue(valTok)}`,
          this.#file,
          keyword,
        );
      }
      value = valTok.text;
    }
    const st: Statement = { kind: 'stmt', keyword, value, line: tok.line };
    checkStatement(st, this.#file);
    return st;
  }
}

/**
 * Parses hast.conf text into its raw AST (no defaults, no node matching).
 * Throws ConfigError (exit code 78) naming the file, the line (from 1) and the keyword.
 */
export function parseAst(text: string, file: string): ConfigAst {
  return new Parser(tokenize(text, file), file).parseFile();
}
