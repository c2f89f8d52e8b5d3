// Property tests: any input ends in a model or a ConfigError (never another exception); printed
// ASTs parse back with the same statements and line numbers; a random model survives print+parse.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseConfig, printConfig, ConfigError } from '../../../src/config/index.js';
import {
  parseAst,
  ALLOWED,
  type ConfigAst,
  type OnBlock,
  type ResourceBlock,
  type Section,
  type Statement,
  type StatementKeyword,
} from '../../../src/config/parser.js';
import { isKeyword, KEYWORDS } from '../../../src/config/lexer.js';
import type { ResourceConfig } from '../../../src/config/types.js';

function onlyConfigErrors(text: string): void {
  try {
    parseConfig(text, 'fuzz.conf', { hostNames: ['a', 'a.example'] });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    assert.ok(err.line >= 1 && err.exitCode === 78, err.message);
  }
}

const word = fc.stringMatching(/^[a-z][a-z0-9._-]{0,7}$/).filter((w) => !isKeyword(w));
const path = word.map((w) => `/${w}`);
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));

function valueFor(kw: StatementKeyword): fc.Arbitrary<string> {
  switch (kw) {
    case 'replication':
      return fc.constantFrom('fullsync', 'memsync', 'async');
    case 'checksum':
      return fc.constantFrom('none', 'crc32', 'sha256');
    case 'compression':
      return fc.constantFrom('none', 'hole', 'lzf');
    case 'metaflush':
    case 'checksumsync':
      return fc.constantFrom('on', 'off');
    case 'timeout':
      return fc.integer({ min: 1, max: 1_000_000 }).map(String);
    case 'device':
      return fc.constantFrom('auto', 'nbd', 'fuse', 'none');
    case 'control':
      return fc.tuple(fc.constantFrom('uds://', 'unix://', ''), path).map(([s, p]) => s + p);
    case 'export':
      return fc.tuple(fc.constantFrom('uds://', 'unix://'), path).map(([s, p]) => s + p);
    case 'remote':
      return fc.oneof(fc.constant('none'), ipv4);
    case 'listen':
    case 'source':
    case 'metrics':
      return fc.oneof(
        ipv4,
        ipv4.map((a) => `tcp4://${a}:8457`),
        fc.constant('tcp6://[::1]:9'),
      );
    case 'pidfile':
    case 'local':
    case 'exec':
    case 'authkey':
    case 'tlscert':
    case 'tlskey':
    case 'tlsca':
      return path;
    case 'tlspeer':
      return fc.constant('ab'.repeat(32));
    case 'controlgroup':
      return word;
    case 'name':
      return word;
    case 'syncrate':
      return fc.oneof(fc.constant('unlimited'), fc.integer({ min: 1, max: 1 << 20 }).map(String), fc.constant('10M'));
    case 'syncminrate':
      return fc.oneof(fc.integer({ min: 1, max: 1 << 20 }).map(String), fc.constant('512k'));
  }
}

function stmtIn(section: Section): fc.Arbitrary<Statement> {
  const kws = ALLOWED[section].filter((k): k is StatementKeyword => k !== 'on' && k !== 'resource');
  return fc
    .constantFrom(...kws)
    .chain((kw) => valueFor(kw).map((value) => ({ kind: 'stmt' as const, keyword: kw, value, line: 0 })));
}
const onBlock = (section: 'node' | 'resource-node'): fc.Arbitrary<OnBlock> =>
  fc
    .record({ node: word, body: fc.array(stmtIn(section), { maxLength: 4 }) })
    .map(({ node, body }) => ({ kind: 'on' as const, node, line: 0, body }));
const resourceBlock: fc.Arbitrary<ResourceBlock> = fc
  .record({
    name: word,
    body: fc.array(fc.oneof(stmtIn('resource'), onBlock('resource-node')), { maxLength: 5 }),
  })
  .map(({ name, body }) => ({ kind: 'resource' as const, name, line: 0, body }));
const astArb: fc.Arbitrary<ConfigAst> = fc
  .array(fc.oneof(stmtIn('global'), onBlock('node'), resourceBlock), { maxLength: 6 })
  .map((body) => ({ body }));

const SEPARATORS = [' ', '\t', '\n', ' # a comment { } on\n', '\n\n', '\r\n', '  #\n'];

/** Prints `ast` token by token with chosen separators; returns the text and the AST with true lines. */
function noisyPrint(ast: ConfigAst, seps: readonly string[]): { text: string; ast: ConfigAst } {
  let text = '';
  let line = 1;
  let i = 0;
  const tok = (s: string): number => {
    const at = line;
    const sep = seps[i++ % seps.length] ?? ' ';
    text += s + sep;
    line += sep.split('\n').length - 1;
    return at;
  };
  const stmt = (s: Statement): Statement => {
    const at = tok(s.keyword);
    tok(s.value);
    return { ...s, line: at };
  };
  const on = (b: OnBlock): OnBlock => {
    const at = tok('on');
    tok(b.node);
    tok('{');
    const body = b.body.map(stmt);
    tok('}');
    return { ...b, line: at, body };
  };
  const body = ast.body.map((e) => {
    if (e.kind === 'stmt') return stmt(e);
    if (e.kind === 'on') return on(e);
    const at = tok('resource');
    tok(e.name);
    tok('{');
    const rb = e.body.map((x) => (x.kind === 'stmt' ? stmt(x) : on(x)));
    tok('}');
    return { ...e, line: at, body: rb };
  });
  return { text, ast: { body } };
}

const stripLines = (ast: ConfigAst): unknown =>
  JSON.parse(JSON.stringify(ast, (k, v: unknown) => (k === 'line' ? undefined : v)));

describe('hast.conf fuzzing', () => {
  test('random bytes give a model or a ConfigError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        onlyConfigErrors(Buffer.from(bytes).toString('latin1'));
      }),
      { numRuns: 2000 },
    );
  });

  test('random token soups give a model or a ConfigError, nothing else', () => {
    const tokenArb = fc.oneof(
      fc.constantFrom(
        ...KEYWORDS,
        '{',
        '}',
        '{',
        '}',
        'a',
        'b',
        '0',
        '20',
        '/dev/x',
        '10.0.0.1',
        'tcp://[::1]:1',
        'uds:///x',
        '# c',
        '\n',
        '=',
        'auto',
        'fuse',
        'ublk',
        'unix://rel',
        'tcp://h:99999',
      ),
      word,
    );
    fc.assert(
      fc.property(fc.array(tokenArb, { maxLength: 40 }), fc.constantFrom(' ', '\n', '\t'), (toks, sep) => {
        onlyConfigErrors(toks.join(sep));
      }),
      { numRuns: 3000 },
    );
  });

  test('mutating a valid file (drop, duplicate or swap tokens) never throws anything but ConfigError', () => {
    const base =
      'listen 10.0.0.1\non a {\ncontrol /c\n}\nresource r {\nname p\non a {\nlocal /x\nremote none\n}\n}\n'.split(
        /\s+/,
      );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(base.length - 1), fc.nat(2), fc.nat(base.length - 1)), { maxLength: 4 }),
        (muts) => {
          const toks = [...base];
          for (const [i, op, j] of muts) {
            if (op === 0) toks.splice(i, 1);
            else if (op === 1) toks.splice(i, 0, toks[i] ?? '}');
            else [toks[i], toks[j]] = [toks[j] ?? '', toks[i] ?? ''];
          }
          onlyConfigErrors(toks.join(' '));
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('hast.conf round trips', () => {
  test('printConfig() output parses back to the same statements', () => {
    fc.assert(
      fc.property(astArb, (ast) => {
        assert.deepEqual(stripLines(parseAst(printConfig(ast), 'rt')), stripLines(ast));
      }),
      { numRuns: 500 },
    );
  });

  test('with comments, blank lines and CRLF between tokens, every statement keeps its true line', () => {
    fc.assert(
      fc.property(astArb, fc.array(fc.constantFrom(...SEPARATORS), { minLength: 1, maxLength: 8 }), (ast, seps) => {
        const { text, ast: expected } = noisyPrint(ast, seps);
        assert.deepEqual(parseAst(text, 'rt'), expected);
      }),
      { numRuns: 500 },
    );
  });

  test('a random model printed as hast.conf resolves to that model on its node', () => {
    const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
    const where = fc.constantFrom('none', 'res', 'node', 'both');
    const resArb = fc.record({
      replication: opt(valueFor('replication')),
      checksum: opt(valueFor('checksum')),
      compression: opt(valueFor('compression')),
      timeout: opt(valueFor('timeout')),
      exec: opt(valueFor('exec')),
      nameAt: where,
      names: fc.tuple(word, word),
      localAt: where.filter((w) => w !== 'none'),
      locals: fc.tuple(path, path),
      mfAt: where,
      mfs: fc.tuple(valueFor('metaflush'), valueFor('metaflush')),
      devAt: where,
      devs: fc.tuple(valueFor('device'), valueFor('device')),
      remote: valueFor('remote'),
      source: opt(valueFor('source')),
      otherLocal: path,
    });
    const modelArb = fc.record({
      global: fc.record({
        replication: opt(valueFor('replication')),
        checksum: opt(valueFor('checksum')),
        compression: opt(valueFor('compression')),
        timeout: opt(valueFor('timeout')),
        exec: opt(valueFor('exec')),
        metaflush: opt(valueFor('metaflush')),
        device: opt(valueFor('device')),
      }),
      names: fc.uniqueArray(word, { maxLength: 4 }),
      resources: fc.array(resArb, { minLength: 4, maxLength: 4 }),
    });
    fc.assert(
      fc.property(modelArb, (m) => {
        const lines: string[] = [];
        for (const [k, v] of Object.entries(m.global)) if (v !== undefined) lines.push(`${k} ${v}`);
        const expected: ResourceConfig[] = [];
        m.names.forEach((name, i) => {
          const r = m.resources[i];
          assert.ok(r !== undefined);
          const resLines: string[] = [];
          const nodeLines: string[] = [];
          for (const k of ['replication', 'checksum', 'compression', 'timeout', 'exec'] as const) {
            const v = r[k];
            if (v !== undefined) resLines.push(`${k} ${v}`);
          }
          const place = (kw: string, at: string, [rv, nv]: readonly [string, string]): string | undefined => {
            if (at === 'res' || at === 'both') resLines.push(`${kw} ${rv}`);
            if (at === 'node' || at === 'both') nodeLines.push(`${kw} ${nv}`);
            return at === 'none' ? undefined : at === 'res' ? rv : nv;
          };
          const provName = place('name', r.nameAt, r.names) ?? name;
          const localPath = place('local', r.localAt, r.locals) ?? '';
          const mf = place('metaflush', r.mfAt, r.mfs) ?? m.global.metaflush ?? 'on';
          const device = place('device', r.devAt, r.devs) ?? m.global.device ?? 'auto';
          nodeLines.push(`remote ${r.remote}`);
          if (r.source !== undefined) nodeLines.push(`source ${r.source}`);
          lines.push(
            `resource ${name} {`,
            ...resLines.map((l) => `\t${l}`),
            '\ton other {',
            `\t\tlocal ${r.otherLocal}`,
            '\t\tremote 192.0.2.99',
            '\t}',
            '\ton a {',
            ...nodeLines.map((l) => `\t\t${l}`),
            '\t}',
            '}',
          );
          expected.push({
            name,
            provName,
            localPath,
            remoteAddr: r.remote,
            sourceAddr: r.source ?? null,
            replication: (r.replication ?? m.global.replication ?? 'memsync') as ResourceConfig['replication'],
            checksum: (r.checksum ?? m.global.checksum ?? 'none') as ResourceConfig['checksum'],
            compression: (r.compression ?? m.global.compression ?? 'hole') as ResourceConfig['compression'],
            timeout: Number(r.timeout ?? m.global.timeout ?? 20),
            exec: r.exec ?? m.global.exec ?? '',
            metaFlush: mf === 'on',
            exportAddr: `uds:///var/run/hastd/${provName}.sock`,
            device: device as ResourceConfig['device'],
          });
        });
        const cfg = parseConfig(`${lines.join('\n')}\n`, 'model.conf', { nodeName: 'a' });
        assert.deepEqual(cfg.resources, expected);
      }),
      { numRuns: 300 },
    );
  });
});
