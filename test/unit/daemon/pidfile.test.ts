// acquirePidfile(): exclusive, 0600, stale takeover, racing starts. HAST-SPEC §10.1.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PidfileError, acquirePidfile, looksLikeRunningHastd } from '../../../src/daemon/pidfile.js';
import { killPid } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tools.js';

const PIDFILE_MODULE = fileURLToPath(new URL('../../../src/daemon/pidfile.js', import.meta.url));

/** A live process whose command line looks like hastd: node running a script named hastd.js. */
async function fakeHastd(t: TestContext, dir: string): Promise<number> {
  const script = join(dir, 'hastd.js');
  writeFileSync(script, 'process.stdout.write("up\\n"); setInterval(() => {}, 1000);\n');
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'ignore'] });
  const pid = child.pid ?? -1;
  t.after(() => killPid(pid));
  await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
  return pid;
}

/** A process that is certainly dead: a child that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const child = spawn('true', [], { stdio: 'ignore' });
  const pid = child.pid ?? -1;
  await new Promise((r) => child.once('exit', r));
  return pid;
}

describe('acquirePidfile()', () => {
  test('creates parent directories and a 0600 file holding our pid; release() removes it', (t) => {
    const dir = tmpDir(t);
    const path = join(dir, 'run', 'hastd', 'hastd.pid');
    const pf = acquirePidfile(path);
    assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    pf.release();
    assert.equal(existsSync(path), false);
    assert.doesNotThrow(() => pf.release());
  });

  test('refuses when a live hastd holds the pidfile, with upstream wording and exit code 75', async (t) => {
    const dir = tmpDir(t);
    const pid = await fakeHastd(t, dir);
    assert.equal(looksLikeRunningHastd(pid), true);
    const path = join(dir, 'hastd.pid');
    writeFileSync(path, `${pid}\n`);
    assert.throws(
      () => acquirePidfile(path),
      (err: unknown) =>
        err instanceof PidfileError &&
        err.message === `Another hastd is already running, pidfile: ${path}, pid: ${pid}.` &&
        err.exitCode === 75 &&
        err.pid === pid,
    );
    assert.equal(readFileSync(path, 'utf8'), `${pid}\n`, 'the running hastd keeps its pidfile');
  });

  test('takes over a stale pidfile naming a dead process', async (t) => {
    const dir = tmpDir(t);
    const path = join(dir, 'hastd.pid');
    writeFileSync(path, `${await deadPid()}\n`);
    const pf = acquirePidfile(path);
    t.after(() => pf.release());
    assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
  });

  test('takes over a pidfile whose pid now belongs to something that is not hastd', async (t) => {
    const dir = tmpDir(t);
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    t.after(() => killPid(sleeper.pid));
    const path = join(dir, 'hastd.pid');
    writeFileSync(path, `${sleeper.pid}\n`);
    assert.equal(looksLikeRunningHastd(sleeper.pid ?? -1), false);
    const pf = acquirePidfile(path);
    t.after(() => pf.release());
    assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
  });

  test('takes over a pidfile with garbage content', (t) => {
    const dir = tmpDir(t);
    const path = join(dir, 'hastd.pid');
    writeFileSync(path, 'not a pid\n');
    const pf = acquirePidfile(path);
    t.after(() => pf.release());
    assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
  });

  test('release() leaves a pidfile that no longer names us', (t) => {
    const dir = tmpDir(t);
    const path = join(dir, 'hastd.pid');
    const pf = acquirePidfile(path);
    writeFileSync(path, '1\n');
    pf.release();
    assert.equal(readFileSync(path, 'utf8'), '1\n');
  });

  test('of several hastd processes racing for a stale pidfile exactly one wins', async (t) => {
    const dir = tmpDir(t);
    const path = join(dir, 'hastd.pid');
    writeFileSync(path, `${await deadPid()}\n`);
    // Each racer is `node <dir>/rN/hastd.mjs` so the others recognise it as hastd. All wait for a
    // start file, try once, print WIN or LOSE, and hold on until killed.
    const start = join(dir, 'start');
    const racers = 8;
    const results: Array<Promise<string>> = [];
    for (let i = 0; i < racers; i++) {
      const rdir = join(dir, `r${i}`);
      const script = join(rdir, 'hastd.mjs');
      mkdirSync(rdir);
      writeFileSync(
        script,
        `import { acquirePidfile } from ${JSON.stringify(PIDFILE_MODULE)};
import { existsSync } from 'node:fs';
while (!existsSync(${JSON.stringify(start)})) await new Promise((r) => setTimeout(r, 2));
try { acquirePidfile(${JSON.stringify(path)}); process.stdout.write('WIN\\n'); }
catch (err) { process.stdout.write(err.name === 'PidfileError' ? 'LOSE\\n' : 'ERR ' + err.message + '\\n'); }
setInterval(() => {}, 1000);
`,
      );
      const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
      t.after(() => killPid(child.pid));
      results.push(
        new Promise((resolve) => {
          let out = '';
          child.stdout?.on('data', (d: Buffer) => {
            out += d.toString();
            if (out.includes('\n')) resolve(out.trim());
          });
          child.once('exit', () => resolve(out.trim() || 'EXIT'));
        }),
      );
    }
    writeFileSync(start, '');
    const outcome = await Promise.all(results);
    assert.equal(outcome.filter((o) => o === 'WIN').length, 1, `outcomes: ${outcome.join(', ')}`);
    assert.equal(outcome.filter((o) => o === 'LOSE').length, racers - 1, `outcomes: ${outcome.join(', ')}`);
  });
});
