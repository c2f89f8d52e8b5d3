#!/usr/bin/env node
// Unused-export check (run by `npm run lint`): every name exported by a module under src/, bench/
// or test/harness/ must be imported by some other module of the tree (src, test, bench). An
// export nobody imports is dead code, or a name that should be private to its file.
// Entry points (src/cli/*.ts, bench/run.ts) are run, not imported, and are exempt. Types and
// interfaces are exempt too: they cost nothing at run time and name the shapes of exported
// signatures. `--fix` drops the `export` keyword of each unused declaration (tsc then reports
// the ones that are not used inside their own file either).
import { writeFileSync } from 'node:fs';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const scanned = ['src', 'test', 'bench'];
const checked = [/^src\//, /^bench\//, /^test\/harness\//];
const entryPoints = [/^src\/cli\/[^/]+\.ts$/, /^bench\/run\.ts$/];

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const files = scanned.flatMap((d) => walk(join(root, d)));
const rel = (p) => relative(root, p).split('\\').join('/');
/** The names each module is asked for by others: file → Set(name | '*'). */
const wanted = new Map();
const want = (file, name) => {
  if (!wanted.has(file)) wanted.set(file, new Set());
  wanted.get(file).add(name);
};

const importRe = /(?:import|export)\s+(type\s+)?([^;'"]*?)\s+from\s+'(\.[^']+)'/g;
const dynRe = /import\(\s*'(\.[^']+)'\s*\)/g;
const sideRe = /import\s+'(\.[^']+)'/g;
function target(from, spec) {
  return rel(resolve(dirname(from), spec.replace(/\.js$/, '.ts')));
}
function namesOf(clause) {
  const names = [];
  const braces = /\{([\s\S]*?)\}/.exec(clause);
  if (braces !== null) {
    for (const part of braces[1].split(',')) {
      const n = part
        .trim()
        .replace(/^type\s+/, '')
        .split(/\s+as\s+/)[0]
        ?.trim();
      if (n) names.push(n);
    }
  }
  if (/\*/.test(clause.replace(/\{[\s\S]*?\}/, ''))) names.push('*');
  const def = clause
    .replace(/\{[\s\S]*?\}/, '')
    .replace(/\*\s+as\s+\w+/, '')
    .replace(/,/g, '')
    .trim();
  if (def !== '' && def !== 'type') names.push('default');
  return names;
}

const exported = [];
for (const f of files) {
  const text = readFileSync(f, 'utf8');
  for (const m of text.matchAll(importRe)) for (const n of namesOf(m[2])) want(target(f, m[3]), n);
  for (const m of text.matchAll(dynRe)) want(target(f, m[1]), '*');
  for (const m of text.matchAll(sideRe)) want(target(f, m[1]), '*');
  const r = rel(f);
  if (!checked.some((re) => re.test(r)) || entryPoints.some((re) => re.test(r))) continue;
  const declRe =
    /^export\s+(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?(?:function\*?|class|const|let|var|enum)\s+([A-Za-z_$][\w$]*)/gm;
  for (const m of text.matchAll(declRe)) exported.push({ file: r, name: m[1] });
  const listRe = /^export\s+(?:type\s+)?\{([^}]*)\}(?!\s*from)/gm;
  for (const m of text.matchAll(listRe)) {
    for (const part of m[1].split(',')) {
      const n = part
        .trim()
        .replace(/^type\s+/, '')
        .split(/\s+as\s+/)
        .pop()
        ?.trim();
      if (n && !/^type\s/.test(part.trim())) exported.push({ file: r, name: n, list: true });
    }
  }
}

const unused = exported.filter(({ file, name }) => {
  const w = wanted.get(file);
  return w === undefined || !(w.has(name) || w.has('*'));
});
if (unused.length > 0 && process.argv.includes('--fix')) {
  for (const { file, name, list } of unused) {
    if (list) {
      console.error(`${file}: '${name}' is in an export list: edit by hand`);
      continue;
    }
    const p = join(root, file);
    const re = new RegExp(
      `^export\\s+((?:declare\\s+)?(?:abstract\\s+)?(?:async\\s+)?(?:function\\*?|class|const|let|var|enum)\\s+${name.replace(/\$/g, '\\$')}\\b)`,
      'm',
    );
    writeFileSync(p, readFileSync(p, 'utf8').replace(re, '$1'));
  }
  console.log(`check-unused-exports: dropped 'export' from ${unused.length} declaration(s)`);
  process.exit(0);
}
if (unused.length > 0) {
  for (const u of unused) console.error(`${u.file}: '${u.name}' is exported but no other module imports it`);
  console.error(`check-unused-exports: ${unused.length} unused export(s); remove them or drop the 'export'`);
  process.exit(1);
}
console.log(`check-unused-exports: ${exported.length} exports, all imported`);
