#!/usr/bin/env node
// Build the native addon (native/hastio.node) with npm's bundled node-gyp, at install.
// Without the addon hastd falls back to portable code paths (no flock, zero-fill instead of hole
// punching/discard, sizes from /sys), so a failed build fails the install (npm hides the output of
// an install script that succeeds): the administrator sees it now, not later per worker. It needs
// python3, make and a C++ compiler (Debian: python3 make g++) and the Node headers (a distribution
// node ships them; otherwise node-gyp downloads them). HASTD_SKIP_NATIVE=1 installs without it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');

function warn(msg) {
  process.stderr.write(`hastd: native addon not built (${msg}); continuing without it.\n`);
}

/** The build failed: say why and what to do, and fail the install. */
function fail(msg) {
  process.stderr.write(
    `hastd: unable to build the native addon native/build/Release/hastio.node: ${msg}.\n` +
      "hastd: it needs python3, make and a C++ compiler (Debian: apt-get install python3 make g++) and npm's node-gyp;\n" +
      'hastd: install them and retry, or install without the addon (no flock, no hole punching) with HASTD_SKIP_NATIVE=1.\n',
  );
  process.exitCode = 1;
}

function findNodeGyp() {
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  // npm's own copy, next to the npm that runs us or next to the node binary.
  if (process.env.npm_execpath) {
    candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  const prefix = resolve(dirname(process.execPath), '..');
  candidates.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push('/usr/share/nodejs/npm/node_modules/node-gyp/bin/node-gyp.js');
  candidates.push('/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  return candidates.find((p) => existsSync(p)) ?? null;
}

function main() {
  if (process.platform !== 'linux') return warn(`platform ${process.platform} is not Linux`);
  if (process.env.HASTD_SKIP_NATIVE) return warn('HASTD_SKIP_NATIVE is set');
  const gyp = findNodeGyp();
  if (gyp === null) return fail('node-gyp not found');
  const args = [gyp, 'rebuild'];
  // Prefer locally installed headers (no download): a distribution node has them in <prefix>/include/node.
  const prefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  const r = spawnSync(process.execPath, args, { cwd: nativeDir, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) return fail(r.error.message);
  if (r.status !== 0) return fail(`node-gyp exited with ${r.status ?? r.signal}`);
  if (!existsSync(join(nativeDir, 'build', 'Release', 'hastio.node'))) return fail('build produced no hastio.node');
  process.stdout.write('hastd: built native/build/Release/hastio.node\n');
}

try {
  main();
} catch (err) {
  fail(err instanceof Error ? err.message : String(err));
}
process.exit(process.exitCode ?? 0);
