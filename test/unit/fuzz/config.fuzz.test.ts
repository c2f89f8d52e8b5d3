// hast.conf parser under hostile values: every keyword with arbitrary (unicode, huge, empty-ish)
// values, at every level. Only a model or a ConfigError may come out; complements
// test/unit/config/fuzz.test.ts (random bytes and token soups).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ConfigError, parseConfig } from '../../../src/config/index.js';
import { KEYWORDS } from '../../../src/config/lexer.js';

const value = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 30 }).map((s) => s.replace(/[\s{}#]/g, 'x') || 'x'),
  fc.constantFrom(
    '99999999999999999999',
    '-1',
    '0',
    '1e9',
    '0x10',
    'NaN',
    'tcp4://1.2.3.4:99999',
    'tcp4://[::1]:1',
    'tcp6://1.2.3.4',
    'uds://',
    'tcp://:0',
    'tcp4://256.1.1.1',
    '/'.repeat(5000),
    'none',
    'on',
    'off',
  ),
);
const keyword = fc.constantFrom(...KEYWORDS);

test('any keyword with any value, at any level, gives a model or a ConfigError', () => {
  fc.assert(
    fc.property(keyword, value, fc.integer({ min: 0, max: 2 }), (kw, v, level) => {
      const stmt = `${kw} ${v}`;
      const text = [
        level === 0 ? stmt : '',
        'resource r0 {',
        level === 1 ? `  ${stmt}` : '',
        '  on a {',
        '    local /tmp/x.img',
        '    remote 127.0.0.2',
        level === 2 ? `    ${stmt}` : '',
        '  }',
        '  on b {',
        '    local /tmp/y.img',
        '    remote 127.0.0.1',
        '  }',
        '}',
      ].join('\n');
      try {
        parseConfig(text, 'fuzz.conf', { hostNames: ['a'] });
      } catch (err) {
        if (!(err instanceof ConfigError))
          throw new Error(`${(err as Error)?.constructor?.name} for "${stmt}": ${(err as Error)?.message}`);
        assert.ok(err.line >= 1 && err.line <= 13, err.message);
      }
    }),
    { numRuns: 3000 },
  );
});
