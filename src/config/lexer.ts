// hast.conf tokenizer: words, numbers, braces, with line numbers counted from 1. HAST-SPEC §1.1.
// Upstream (token.l) counts lines from 0 (HAST-SPEC §11 item 22) and silently echoes unknown
// characters; we count from 1 and reject any character outside the grammar with its line.
import { ConfigError } from './errors.js';

/**
 * Reserved words: upstream's list plus our extension keywords `export` and `device`.
 * A reserved word can never be used as a bare value (resource, node or provider name, path).
 */
export const KEYWORDS = [
  'control',
  'pidfile',
  'listen',
  'replication',
  'checksum',
  'compression',
  'timeout',
  'exec',
  'metaflush',
  'resource',
  'name',
  'local',
  'remote',
  'source',
  'on',
  'off',
  'fullsync',
  'memsync',
  'async',
  'none',
  'crc32',
  'sha256',
  'hole',
  'lzf',
  // Our extensions (HAST-SPEC §1 has no equivalent): NBD export address and device mode.
  'export',
  'device',
  // Ours too (README "Security"): peer secret file and the control socket's group.
  'authkey',
  'controlgroup',
  'tlscert',
  'tlskey',
  'tlsca',
  'tlspeer',
  // Our extensions: resynchronization rate control (issue 17).
  'syncrate',
  'syncminrate',
  // Ours: checksum-assisted resynchronization (issue 17).
  'checksumsync',
  // Ours: the Prometheus metrics listen address.
  'metrics',
] as const;
export type Keyword = (typeof KEYWORDS)[number];

const KEYWORD_SET: ReadonlySet<string> = new Set(KEYWORDS);

/** True when `word` is reserved (so it cannot be a value). */
export function isKeyword(word: string): word is Keyword {
  return KEYWORD_SET.has(word);
}

export type Token =
  | { readonly type: 'keyword'; readonly text: Keyword; readonly line: number }
  | { readonly type: 'num'; readonly text: string; readonly line: number }
  | { readonly type: 'str'; readonly text: string; readonly line: number }
  | { readonly type: '{' | '}'; readonly text: '{' | '}'; readonly line: number }
  | { readonly type: 'eof'; readonly text: ''; readonly line: number };

/** Characters of a word (STR): `[A-Za-z0-9._/:\[\]-]`. */
function isWordChar(code: number): boolean {
  return (
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x2e ||
    code === 0x2d ||
    code === 0x5f ||
    code === 0x2f || // . - _ /
    code === 0x3a ||
    code === 0x5b ||
    code === 0x5d
  ); // : [ ]
}

const DIGITS = /^[0-9]+$/;

/** How a character is shown in an error: printable ASCII as is, anything else escaped. */
function showChar(ch: string): string {
  const code = ch.codePointAt(0) ?? 0;
  if (code >= 0x21 && code <= 0x7e) return ch;
  if (code <= 0xff) return `\\x${code.toString(16).padStart(2, '0')}`;
  return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * Splits `text` into tokens; the last one is always `eof` (its line is the last line of the file).
 * Throws ConfigError on a character no token can contain.
 */
export function tokenize(text: string, file: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const code = text.charCodeAt(i);
    if (code === 0x0a) {
      line++;
      i++;
      continue;
    }
    // Spaces and tabs separate tokens; we also accept CR so CRLF files load (upstream would not).
    if (code === 0x20 || code === 0x09 || code === 0x0d) {
      i++;
      continue;
    }
    if (code === 0x23) {
      // '#' comment, anywhere on a line, up to the newline
      while (i < n && text.charCodeAt(i) !== 0x0a) i++;
      continue;
    }
    if (code === 0x7b || code === 0x7d) {
      const b = code === 0x7b ? '{' : '}';
      tokens.push({ type: b, text: b, line });
      i++;
      continue;
    }
    if (isWordChar(code)) {
      const start = i;
      while (i < n && isWordChar(text.charCodeAt(i))) i++;
      const word = text.slice(start, i);
      // Longest match wins; among equal lengths keywords and NUM come before STR (token.l order).
      if (isKeyword(word)) tokens.push({ type: 'keyword', text: word, line });
      else if (DIGITS.test(word)) tokens.push({ type: 'num', text: word, line });
      else tokens.push({ type: 'str', text: word, line });
      continue;
    }
    const ch = String.fromCodePoint(text.codePointAt(i) ?? code);
    throw new ConfigError(
      `Unable to parse configuration file at line ${line} near '${showChar(ch)}': unexpected character`,
      file,
      line,
    );
  }
  // A final newline ends the last line rather than starting an empty one.
  const eofLine = n > 0 && text.charCodeAt(n - 1) === 0x0a ? Math.max(1, line - 1) : line;
  tokens.push({ type: 'eof', text: '', line: eofLine });
  return tokens;
}
