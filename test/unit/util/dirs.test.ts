// makeDirs(): every directory it creates has exactly the mode asked for, whatever the umask;
// directories that were there are left alone.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeDirs, PRIVATE_DIR_MODE, SHARED_DIR_MODE } from '../../../src/util/dirs.js';
import { tmpDir } from '../../harness/tools.js';

const modeOf = (p: string): number => statSync(p).mode & 0o7777;

function underUmask<T>(mask: number, fn: () => T): T {
  const old = process.umask(mask);
  try {
    return fn();
  } finally {
    process.umask(old);
  }
}

test('under umask 000 every created directory is 0700 (private) or 0755 (shared), not 0777', (t) => {
  const root = tmpDir(t);
  const deep = join(root, 'a', 'b', 'c');
  const made = underUmask(0, () => makeDirs(deep, PRIVATE_DIR_MODE));
  assert.deepEqual(made, [join(root, 'a'), join(root, 'a', 'b'), deep]);
  for (const d of made) assert.equal(modeOf(d), 0o700, d);
  const shared = join(root, 's', 't');
  underUmask(0, () => makeDirs(shared, SHARED_DIR_MODE));
  assert.equal(modeOf(join(root, 's')), 0o755);
  assert.equal(modeOf(shared), 0o755);
});

test('a restrictive umask does not narrow a shared directory', (t) => {
  const root = tmpDir(t);
  const d = join(root, 'pid');
  underUmask(0o077, () => makeDirs(d, SHARED_DIR_MODE));
  assert.equal(modeOf(d), 0o755);
});

test('an existing directory keeps its mode and nothing is reported created', (t) => {
  const root = tmpDir(t);
  const d = join(root, 'mine');
  mkdirSync(d);
  chmodSync(d, 0o751);
  assert.deepEqual(makeDirs(d, PRIVATE_DIR_MODE), []);
  assert.equal(modeOf(d), 0o751);
  const below = join(d, 'x');
  assert.deepEqual(makeDirs(below, PRIVATE_DIR_MODE), [below]);
  assert.equal(modeOf(d), 0o751, 'the parent that existed is untouched');
});
