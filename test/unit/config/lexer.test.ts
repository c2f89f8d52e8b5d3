// Unit tests for the hast.conf tokenizer (HAST-SPEC §1.1).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { tokenize, KEYWORDS } from '../../../src/config/lexer.js';
import { ConfigError } from '../../../src/config/errors.js';

const kinds = (text: string) => tokenize(text, 'f').map((t) => [t.type, t.text, t.line]);

describe('tokenize()', () => {
  test('counts lines from 1 and gives every token its line', () => {
    assert.deepEqual(kinds('resource r {\n\n  on a {\n}\n}\n'), [
      ['keyword', 'resource', 1],
      ['str', 'r', 1],
      ['{', '{', 1],
      ['keyword', 'on', 3],
      ['str', 'a', 3],
      ['{', '{', 3],
      ['}', '}', 4],
      ['}', '}', 5],
      ['eof', '', 5],
    ]);
  });

  test('treats # as a comment anywhere on a line', () => {
    assert.deepEqual(kinds('# head\ntimeout 5 # trailing } {\n#x\nexec /x#notcomment'), [
      ['keyword', 'timeout', 2],
      ['num', '5', 2],
      ['keyword', 'exec', 4],
      ['str', '/x', 4],
      ['eof', '', 4],
    ]);
  });

  test('braces are tokens of their own without surrounding spaces', () => {
    assert.deepEqual(
      kinds('on a{listen x}').map((k) => k[0]),
      ['keyword', 'str', '{', 'keyword', 'str', '}', 'eof'],
    );
  });

  test('a run of digits is a number, digits mixed with letters are a value', () => {
    assert.deepEqual(kinds('20 20s 10.0.0.1 0x1'), [
      ['num', '20', 1],
      ['str', '20s', 1],
      ['str', '10.0.0.1', 1],
      ['str', '0x1', 1],
      ['eof', '', 1],
    ]);
  });

  test('addresses with brackets and colons are one value', () => {
    assert.deepEqual(kinds('tcp://[::1]:8457 uds:///var/run/hastctl a_b-c'), [
      ['str', 'tcp://[::1]:8457', 1],
      ['str', 'uds:///var/run/hastctl', 1],
      ['str', 'a_b-c', 1],
      ['eof', '', 1],
    ]);
  });

  test('every reserved word is a keyword, and only as a whole word', () => {
    for (const kw of KEYWORDS) {
      assert.deepEqual(kinds(kw)[0], ['keyword', kw, 1]);
      assert.deepEqual(kinds(`${kw}x`)[0], ['str', `${kw}x`, 1]);
    }
    assert.ok(KEYWORDS.includes('export') && KEYWORDS.includes('device'));
    assert.deepEqual(kinds('auto nbd fuse Resource')[0], ['str', 'auto', 1]);
    assert.deepEqual(kinds('Resource')[0], ['str', 'Resource', 1]);
  });

  test('rejects a character outside the grammar with its line', () => {
    for (const [text, line, shown] of [
      ['timeout = 5', 1, '='],
      ['\n\nexec "/x"', 3, '"'],
      ['a@b', 1, '@'],
      ['x\0', 1, '\\x00'],
      ['é', 1, '\\xe9'],
      ['\u2603', 1, 'U+2603'],
    ] as const) {
      assert.throws(
        () => tokenize(text, 'f.conf'),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.equal(err.line, line);
          assert.equal(
            err.message,
            `f.conf:${line}: Unable to parse configuration file at line ${line} near '${shown}': unexpected character`,
          );
          return true;
        },
      );
    }
  });

  test('accepts CRLF line ends and tabs', () => {
    assert.deepEqual(kinds('timeout\t5\r\nexec /x\r\n'), [
      ['keyword', 'timeout', 1],
      ['num', '5', 1],
      ['keyword', 'exec', 2],
      ['str', '/x', 2],
      ['eof', '', 2],
    ]);
  });

  test('empty input gives only eof on line 1', () => {
    assert.deepEqual(kinds(''), [['eof', '', 1]]);
  });
});
