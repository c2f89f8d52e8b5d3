// Unit tests for the hast.conf grammar: the statement/section matrix of HAST-SPEC §1.2 (plus our
// export/device), value types, syntax error messages and unclosed blocks.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseAst, ALLOWED, STATEMENT_KEYWORDS, type Section } from '../../../src/config/parser.js';
import { ConfigError } from '../../../src/config/errors.js';
import { parseConfig } from '../../../src/config/load.js';
import { fixturePath } from './fixture-path.js';

const SAMPLE: Record<(typeof STATEMENT_KEYWORDS)[number], string> = {
  control: 'uds:///tmp/ctl',
  pidfile: '/tmp/p.pid',
  listen: '127.0.0.1:8457',
  replication: 'async',
  checksum: 'crc32',
  compression: 'lzf',
  timeout: '5',
  exec: '/usr/bin/hook',
  metaflush: 'off',
  name: 'prov',
  local: '/dev/x',
  remote: '10.0.0.2',
  source: '10.0.0.1',
  export: 'uds:///tmp/e.sock',
  device: 'fuse',
  authkey: '/etc/hast.key',
  controlgroup: 'operator',
  tlscert: '/etc/hast/node.pem',
  tlskey: '/etc/hast/node.key',
  tlsca: '/etc/hast/ca.pem',
  tlspeer: 'ab'.repeat(32),
  syncrate: '10M',
  syncminrate: '1048576',
  checksumsync: 'on',
  metrics: 'tcp4://127.0.0.1:9100',
};

/** Places `stmt` in `section`; returns the text and the line the statement is on. */
function place(stmt: string, section: Section): [string, number] {
  switch (section) {
    case 'global':
      return [`${stmt}\n`, 1];
    case 'node':
      return [`on n {\n${stmt}\n}\n`, 2];
    case 'resource':
      return [`resource r {\n${stmt}\n}\n`, 2];
    case 'resource-node':
      return [`resource r {\non n {\n${stmt}\n}\n}\n`, 3];
  }
}

function syntaxError(_text: string, line: number, near: string, what?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.line, line, err.message);
    assert.equal(err.exitCode, 78);
    assert.match(
      err.message,
      new RegExp(
        `^f:${line}: Unable to parse configuration file at line ${line} near ${near.replace(/[[\]{}()*+?.\\^$|]/g, '\\$&')}: `,
      ),
    );
    if (what !== undefined) assert.match(err.message, what);
    return true;
  };
}

const SECTIONS: Section[] = ['global', 'node', 'resource', 'resource-node'];

describe('parseAst() statement matrix (HAST-SPEC §1.2)', () => {
  for (const kw of STATEMENT_KEYWORDS) {
    for (const section of SECTIONS) {
      const allowed = (ALLOWED[section] as readonly string[]).includes(kw);
      test(`${kw} is ${allowed ? 'accepted' : 'a syntax error'} in the ${section} section`, () => {
        const [text, line] = place(`${kw} ${SAMPLE[kw]}`, section);
        if (allowed) {
          const ast = parseAst(text, 'f');
          const flat = JSON.stringify(ast);
          assert.ok(flat.includes(`"keyword":"${kw}","value":"${SAMPLE[kw]}","line":${line}`), flat);
        } else {
          assert.throws(() => parseAst(text, 'f'), syntaxError(text, line, `'${kw}'`, /is not allowed in/));
        }
      });
    }
  }

  test('the matrix is the spec table plus export, device, authkey, controlgroup, the tls keywords, syncrate, syncminrate, checksumsync and metrics', () => {
    assert.deepEqual([...ALLOWED.global].sort(), [
      'authkey',
      'checksum',
      'checksumsync',
      'compression',
      'control',
      'controlgroup',
      'device',
      'exec',
      'listen',
      'metaflush',
      'metrics',
      'on',
      'pidfile',
      'replication',
      'resource',
      'syncminrate',
      'syncrate',
      'timeout',
      'tlsca',
      'tlscert',
      'tlskey',
      'tlspeer',
    ]);
    assert.deepEqual([...ALLOWED.node].sort(), ['control', 'controlgroup', 'listen', 'metrics', 'pidfile']);
    assert.deepEqual([...ALLOWED.resource].sort(), [
      'authkey',
      'checksum',
      'checksumsync',
      'compression',
      'device',
      'exec',
      'export',
      'local',
      'metaflush',
      'name',
      'on',
      'replication',
      'syncminrate',
      'syncrate',
      'timeout',
      'tlsca',
      'tlscert',
      'tlskey',
      'tlspeer',
    ]);
    assert.deepEqual([...ALLOWED['resource-node']].sort(), [
      'authkey',
      'checksumsync',
      'device',
      'export',
      'local',
      'metaflush',
      'name',
      'remote',
      'source',
      'tlsca',
      'tlscert',
      'tlskey',
      'tlspeer',
    ]);
  });

  test('on is not allowed inside a node section nor inside a resource node section', () => {
    assert.throws(() => parseAst('on a {\non b {\n}\n}\n', 'f'), syntaxError('', 2, "'on'"));
    assert.throws(() => parseAst('resource r {\non a {\non b {\n}\n}\n}\n', 'f'), syntaxError('', 3, "'on'"));
  });

  test('resource is allowed only at the top level', () => {
    assert.throws(() => parseAst('resource r {\nresource s {\n}\n}\n}\n', 'f'), syntaxError('', 2, "'resource'"));
    assert.throws(() => parseAst('on a {\nresource s {\n}\n}\n}\n', 'f'), syntaxError('', 2, "'resource'"));
  });

  test('empty blocks and an empty file parse', () => {
    assert.deepEqual(parseAst('', 'f'), { body: [] });
    assert.deepEqual(parseAst('on a {}\nresource r { on b { } }', 'f'), {
      body: [
        { kind: 'on', node: 'a', line: 1, body: [] },
        { kind: 'resource', name: 'r', line: 2, body: [{ kind: 'on', node: 'b', line: 2, body: [] }] },
      ],
    });
  });
});

describe('parseAst() values', () => {
  for (const [kw, values] of [
    ['replication', ['fullsync', 'memsync', 'async']],
    ['checksum', ['none', 'crc32', 'sha256']],
    ['compression', ['none', 'hole', 'lzf']],
    ['metaflush', ['on', 'off']],
  ] as const) {
    test(`${kw} accepts ${values.join(', ')} and nothing else`, () => {
      for (const v of values) assert.equal(parseAst(`${kw} ${v}`, 'f').body[0]?.kind, 'stmt');
      for (const bad of ['fast', '1', 'lzf2', values[0].toUpperCase(), 'sha256x']) {
        assert.throws(() => parseAst(`${kw} ${bad}`, 'f'), syntaxError('', 1, `'${bad}'`, /expected .* after/));
      }
    });
  }

  test('timeout needs a number; zero is "Negative or zero timeout."; "-5" is not a number', () => {
    assert.throws(
      () => parseAst('timeout 0', 'f'),
      (err: unknown) =>
        err instanceof ConfigError && err.message === 'f:1: Negative or zero timeout.' && err.keyword === 'timeout',
    );
    assert.throws(() => parseAst('timeout -5', 'f'), syntaxError('', 1, "'-5'", /expected a number of seconds/));
    assert.throws(() => parseAst('timeout 99999999999', 'f'), /timeout argument is too large/);
    assert.deepEqual(parseAst('timeout 007', 'f').body[0], { kind: 'stmt', keyword: 'timeout', value: '007', line: 1 });
  });

  test('a reserved word or a number cannot be a value or a name', () => {
    assert.throws(() => parseAst('exec none', 'f'), syntaxError('', 1, "'none'", /reserved word/));
    assert.throws(
      () => parseAst('resource local {\n}', 'f'),
      syntaxError('', 1, "'local'", /expected a resource name/),
    );
    assert.throws(() => parseAst('on 123 {\n}', 'f'), syntaxError('', 1, "'123'", /expected a node name.*number/));
    assert.throws(() => parseAst('resource r {\nname 42\n}', 'f'), syntaxError('', 2, "'42'", /number/));
    assert.throws(() => parseAst('resource export {}', 'f'), syntaxError('', 1, "'export'"));
  });

  test('remote none is special-cased; other reserved words are not addresses', () => {
    const ast = parseAst('resource r {\non a {\nremote none\n}\n}', 'f');
    assert.equal(JSON.stringify(ast).includes('"keyword":"remote","value":"none"'), true);
    assert.throws(
      () => parseAst('resource r {\non a {\nremote off\n}\n}', 'f'),
      syntaxError('', 3, "'off'", /an address or none/),
    );
  });

  test('device values are checked, not reserved', () => {
    for (const v of ['auto', 'nbd', 'fuse', 'none']) assert.ok(parseAst(`device ${v}`, 'f'));
    assert.throws(
      () => parseAst('\ndevice ublk', 'f'),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.line === 2 &&
        err.keyword === 'device' &&
        err.message === 'f:2: Invalid device mode ublk: expected auto, nbd, fuse or none.',
    );
    // 'auto' stays usable as a name.
    assert.ok(parseAst('resource auto {\non fuse {\n}\n}', 'f'));
  });

  test('export values are checked', () => {
    for (const v of ['uds:///run/x.sock', 'unix:///run/x.sock', 'tcp://127.0.0.1:10809', 'tcp://[::1]']) {
      assert.ok(parseAst(`resource r {\nexport ${v}\n}`, 'f'));
    }
    for (const v of ['http://x', 'uds://relative', 'tcp://host:0', 'relative/path']) {
      assert.throws(
        () => parseAst(`resource r {\nexport ${v}\n}`, 'f'),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.line === 2 &&
          err.keyword === 'export' &&
          err.message.startsWith(`f:2: Invalid export address ${v}: `),
      );
    }
  });

  test('length limits use upstream texts', () => {
    const long = (n: number) => `/${'a'.repeat(n - 1)}`;
    const cases: [string, string][] = [
      [`exec ${long(1024)}`, 'Exec path is too long.'],
      [`pidfile ${long(1024)}`, 'pidfile argument is too long.'],
      [`control ${long(1024)}`, 'control argument is too long.'],
      [`listen ${long(1024)}`, 'listen argument is too long.'],
      [`resource ${'r'.repeat(255)} {\n}`, 'Resource name is too long.'],
      [`resource r {\nname ${'n'.repeat(255)}\n}`, 'name argument is too long.'],
      [`resource r {\nlocal ${long(1024)}\n}`, 'local argument is too long.'],
      [`resource r {\non a {\nremote ${long(1024)}\n}\n}`, 'remote argument is too long.'],
      [`resource r {\non a {\nsource ${long(1024)}\n}\n}`, 'source argument is too long.'],
    ];
    for (const [text, msg] of cases) {
      assert.throws(
        () => parseAst(text, 'f'),
        (err: unknown) => err instanceof ConfigError && err.message.endsWith(`: ${msg}`),
        text.slice(0, 20),
      );
    }
    // One byte below each limit is accepted.
    assert.ok(parseAst(`exec ${long(1023)}\nresource ${'r'.repeat(254)} {\nname ${'n'.repeat(254)}\n}`, 'f'));
  });
});

describe('parseAst() syntax errors', () => {
  test('a stray closing brace', () => {
    assert.throws(() => parseAst('timeout 5\n}', 'f'), syntaxError('', 2, "'}'", /no block open/));
  });

  test('a missing opening brace', () => {
    assert.throws(
      () => parseAst('resource r\non a {}', 'f'),
      syntaxError('', 2, "'on'", /expected '\{' after 'resource r'/),
    );
  });

  test('an unknown word where a statement is expected lists the expected keywords', () => {
    assert.throws(
      () => parseAst('\n# c\n\nfoo bar', 'f'),
      syntaxError(
        '',
        4,
        "'foo'",
        /expected control, pidfile, listen, replication, checksum, compression, timeout, exec, metaflush, device, authkey, controlgroup, tlscert, tlskey, tlsca, tlspeer, syncrate, syncminrate, checksumsync, metrics, on or resource$/,
      ),
    );
    assert.throws(
      () => parseAst('on a {\nfoo\n}', 'f'),
      syntaxError('', 2, "'foo'", /expected control, pidfile, listen, controlgroup, metrics or '\}'/),
    );
  });

  test('a value missing at end of file', () => {
    assert.throws(() => parseAst('exec', 'f'), syntaxError('', 1, 'end of file', /expected a value after 'exec'/));
  });

  test('an unclosed block at end of file names the line that opened it', () => {
    assert.throws(
      () => parseAst('# x\nresource r {\n\non a {\n}\n', 'f'),
      syntaxError(
        '',
        5,
        'end of file',
        /'resource r' block opened at line 2 is not closed: '\}' expected before end of file$/,
      ),
    );
  });

  test('the seed file (closing braces lost) names the unclosed on skunk1 block of line 2', () => {
    const text = readFileSync(fixturePath('seed-broken.conf'), 'latin1');
    assert.throws(
      () => parseConfig(text, '/etc/hast.conf', { nodeName: 'skunk1' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(
          err.message,
          "/etc/hast.conf:4: Unable to parse configuration file at line 4 near 'on': " +
            "'on skunk1' block opened at line 2 is not closed: '}' expected before 'on'",
        );
        assert.equal(err.exitCode, 78);
        return true;
      },
    );
  });

  test('a misplaced statement in a closed block is not reported as an unclosed block', () => {
    assert.throws(
      () => parseAst('on a {\nreplication async\n}\n', 'f'),
      syntaxError('', 2, "'replication'", /'replication' is not allowed in a node \('on'\) section$/),
    );
  });
});

describe('syncrate and syncminrate (issue 17)', () => {
  const rates = (text: string) => parseConfig(text, 'f', { nodeName: 'a' }).resources[0];
  const conf = (global: string, res: string): string =>
    `${global}\nresource r {\n${res}\non a {\nlocal /x\nremote none\n}\n}\n`;

  test('absent: no limit and no slow-down (the fields are not set)', () => {
    const r = rates(conf('', ''));
    assert.equal(r?.syncRate, undefined);
    assert.equal(r?.syncMinRate, undefined);
  });

  test('sizes with suffixes, plain numbers, unlimited; the resource wins over the global section', () => {
    assert.equal(rates(conf('syncrate 10M', ''))?.syncRate, 10 * 1024 * 1024);
    assert.equal(rates(conf('syncrate 10M', 'syncrate 4096'))?.syncRate, 4096);
    assert.equal(rates(conf('syncrate 10M', 'syncrate unlimited'))?.syncRate, 0);
    assert.equal(rates(conf('syncminrate 512k', ''))?.syncMinRate, 512 * 1024);
  });

  for (const [text, why] of [
    ['syncrate 0', /syncrate must be greater than zero/],
    ['syncrate fast', /Invalid syncrate fast: expected bytes per second.*or unlimited/],
    ['syncminrate unlimited', /Invalid syncminrate unlimited/],
    ['syncrate 10Q', /Invalid syncrate 10Q/],
  ] as const) {
    test(`'${text}' is refused at its line with the keyword`, () => {
      assert.throws(
        () => parseAst(`\n${text}\n`, 'f'),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.line === 2 &&
          err.keyword === text.split(' ')[0] &&
          why.test(err.message) &&
          err.message.startsWith('f:2:'),
      );
    });
  }
});

describe('checksumsync (issue 17)', () => {
  const resolved = (text: string) => parseConfig(text, 'f', { nodeName: 'a' }).resources[0];
  const conf = (global: string, res: string, node = ''): string =>
    `${global}\nresource r {\n${res}\non a {\n${node}\nlocal /x\nremote none\n}\n}\n`;

  test('absent or off: not set (off, the default); on: set; node > resource > global', () => {
    assert.equal(resolved(conf('', ''))?.checksumSync, undefined);
    assert.equal('checksumSync' in (resolved(conf('checksumsync off', '')) ?? {}), false);
    assert.equal(resolved(conf('checksumsync on', ''))?.checksumSync, true);
    assert.equal(resolved(conf('checksumsync on', 'checksumsync off'))?.checksumSync, undefined);
    assert.equal(resolved(conf('checksumsync off', 'checksumsync on'))?.checksumSync, true);
  });

  test('a value other than on or off is refused at its line; not in a node section', () => {
    assert.throws(
      () => parseAst('\nchecksumsync sha256\n', 'f'),
      syntaxError('', 2, "'sha256'", /expected on or off after 'checksumsync'$/),
    );
    assert.throws(
      () => parseAst('on a {\nchecksumsync on\n}\n', 'f'),
      syntaxError('', 2, "'checksumsync'", /is not allowed in a node/),
    );
  });
});
