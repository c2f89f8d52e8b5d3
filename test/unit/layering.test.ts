// Which folder of src/ may import which (DESIGN.md "Layout"): the NBD server and the component know
// nothing of replication, the peer protocol nothing of the roles or the daemon, and neither role
// reaches into the other's folder. Read from the sources, so a new import that breaks a layer
// fails here with the file and the line.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root: this file runs from dist/test/unit/ and sits in test/unit/. */
const ROOT = resolve(here, here.includes(`${join('dist', 'test')}`) ? '../../..' : '../..');
const SRC = join(ROOT, 'src');

/** Folder → folders of src/ it must not import. */
const FORBIDDEN: Readonly<Record<string, readonly string[]>> = {
  nbd: ['primary', 'secondary', 'daemon', 'peer', 'activemap', 'metadata', 'component'],
  component: ['primary', 'secondary', 'daemon', 'peer', 'nbd'],
  peer: ['primary', 'secondary', 'daemon'],
  nv: ['primary', 'secondary', 'daemon', 'peer', 'nbd'],
  primary: ['secondary'],
  secondary: ['primary'],
};

interface Import {
  readonly file: string;
  readonly line: number;
  /** First folder under src/ of the imported module, or null outside src/. */
  readonly folder: string | null;
  readonly spec: string;
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every relative import (static, re-export or dynamic) of every source file. */
function importsOf(files: readonly string[]): Import[] {
  const out: Import[] = [];
  const re = /(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)'(\.[^']+)'/gm;
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(re)) {
      const spec = m[1] as string;
      const target = relative(SRC, resolve(dirname(file), spec));
      const folder = target.startsWith('..') ? null : (target.split(/[\\/]/)[0] ?? null);
      const line = text.slice(0, m.index).split('\n').length;
      out.push({ file: relative(ROOT, file), line, folder, spec });
    }
  }
  return out;
}

function folderOf(file: string): string {
  return relative(SRC, join(ROOT, file)).split(/[\\/]/)[0] as string;
}

describe('layering of src/', () => {
  const imports = importsOf(walk(SRC));

  test('the scan sees the imports it checks', () => {
    // A scan that found nothing would pass every rule below.
    assert.ok(imports.length > 100, `only ${imports.length} imports found under ${SRC}`);
    assert.ok(imports.some((i) => folderOf(i.file) === 'primary' && i.folder === 'peer'));
  });

  for (const [from, banned] of Object.entries(FORBIDDEN)) {
    test(`${from}/ imports nothing of ${banned.join(', ')}`, () => {
      const bad = imports.filter((i) => folderOf(i.file) === from && i.folder !== null && banned.includes(i.folder));
      assert.deepEqual(
        bad.map((i) => `${i.file}:${i.line} imports '${i.spec}'`),
        [],
        `${from}/ must not depend on ${banned.join(', ')}`,
      );
    });
  }

  test('src/ imports nothing outside src/ (no test or bench code in the product)', () => {
    const bad = imports.filter((i) => i.folder === null);
    assert.deepEqual(
      bad.map((i) => `${i.file}:${i.line} imports '${i.spec}'`),
      [],
    );
  });

  test('a rule catches a violation (the checker itself can fail)', () => {
    const probe = join(SRC, 'nbd', 'server.ts');
    const found = importsOf([probe]).map((i) => i.folder);
    assert.ok(found.includes('nbd'), 'nbd/server.ts imports its own folder');
    const fake = [{ file: 'src/peer/x.ts', line: 1, folder: 'primary', spec: '../primary/x.js' }];
    assert.equal(fake.filter((i) => (FORBIDDEN.peer ?? []).includes(i.folder)).length, 1);
  });
});
