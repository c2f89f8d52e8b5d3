// HookRunner: upstream argv for the seven events, no shell, never blocking, exit reporting. HAST-SPEC §9.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { HookRunner } from '../../../src/hooks/exec.js';
import { HOOK_EVENTS, hookArgs, isHookEvent } from '../../../src/hooks/events.js';
import { registerKill } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tools.js';
import { waitFor } from '../../harness/wait.js';

/** Collect what the log facade writes to stderr for the rest of the test. */
function captureStderr(t: TestContext): { text(): string } {
  const chunks: string[] = [];
  const original = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
    chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    void rest;
    return true;
  }) as typeof process.stderr.write;
  t.after(() => {
    process.stderr.write = original;
  });
  return { text: () => chunks.join('') };
}

/** A #!/bin/sh hook that appends its argv, one bracketed arg each, as one line to `log`. */
function recordingHook(dir: string, body = ''): { exec: string; log: string } {
  const log = join(dir, 'calls.log');
  const exec = join(dir, 'hook.sh');
  writeFileSync(exec, `#!/bin/sh\n${body}\n{ printf '[%s]' "$@"; printf '\\n'; } >> '${log}'\n`);
  chmodSync(exec, 0o755);
  return { exec, log };
}

function script(dir: string, name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

function newRunner(t: TestContext, now?: () => number): HookRunner {
  const r = new HookRunner(now === undefined ? { foreground: false } : { foreground: false, now });
  t.after(() => r.close());
  return r;
}

describe('hook events', () => {
  test('HOOK_EVENTS lists exactly the seven upstream events', () => {
    assert.deepEqual(
      [...HOOK_EVENTS],
      ['role', 'connect', 'disconnect', 'syncstart', 'syncdone', 'syncintr', 'split-brain'],
    );
    assert.equal(isHookEvent('split-brain'), true);
    assert.equal(isHookEvent('start'), false);
  });

  test('hookArgs() builds upstream argv[1..]', () => {
    assert.deepEqual(hookArgs('role', 'shared', 'init', 'primary'), ['role', 'shared', 'init', 'primary']);
    assert.deepEqual(hookArgs('split-brain', 'shared'), ['split-brain', 'shared']);
  });
});

describe('HookRunner', () => {
  test('run() passes upstream argv exactly for every event', async (t) => {
    const dir = tmpDir(t);
    const { exec, log } = recordingHook(dir);
    const r = newRunner(t);
    const expected: string[] = [];
    // One at a time: overlapping hooks may finish in any order (as upstream).
    assert.notEqual(r.run(exec, 'role', 'shared', 'init', 'primary'), null);
    await r.idle();
    expected.push('[role][shared][init][primary]');
    for (const ev of HOOK_EVENTS.filter((e) => e !== 'role')) {
      r.run(exec, ev, 'shared');
      await r.idle();
      expected.push(`[${ev}][shared]`);
    }
    // The argv-array form used by the parent.
    r.run(exec, ['role', 'shared', 'primary', 'secondary']);
    await r.idle();
    expected.push('[role][shared][primary][secondary]');
    assert.deepEqual(readFileSync(log, 'utf8').trim().split('\n'), expected);
    assert.equal(r.running, 0);
  });

  test('arguments reach the hook literally, without shell interpretation', async (t) => {
    const dir = tmpDir(t);
    const { exec, log } = recordingHook(dir);
    const r = newRunner(t);
    const nasty = [`$(touch ${join(dir, 'x')})`, `; touch ${join(dir, 'y')}`, '*', 'a b', '`id`', "'q'"];
    r.run(exec, 'connect', ...nasty);
    await r.idle();
    assert.equal(readFileSync(log, 'utf8'), `[connect]${nasty.map((a) => `[${a}]`).join('')}\n`);
    assert.equal(existsSync(join(dir, 'x')), false);
    assert.equal(existsSync(join(dir, 'y')), false);
  });

  test('run() returns while the hook is still running', async (t) => {
    const dir = tmpDir(t);
    const go = join(dir, 'go');
    const { exec, log } = recordingHook(dir, `while [ ! -e '${go}' ]; do sleep 0.02; done`);
    const r = newRunner(t);
    const pid = r.run(exec, 'syncstart', 'shared');
    registerKill(t, pid ?? -1);
    assert.equal(typeof pid, 'number');
    // The hook is blocked on the marker file we have not created yet.
    assert.equal(r.running, 1);
    assert.equal(existsSync(log), false);
    writeFileSync(go, '');
    await r.idle();
    assert.equal(r.running, 0);
    assert.equal(readFileSync(log, 'utf8'), '[syncstart][shared]\n');
  });

  test('a non-zero exit is logged as "Hook exited ungracefully" with the full command', async (t) => {
    const dir = tmpDir(t);
    const exec = script(dir, 'fail.sh', 'exit 3');
    const out = captureStderr(t);
    const r = newRunner(t);
    const pid = r.run(exec, 'role', 'shared', 'init', 'primary');
    await r.idle();
    assert.match(
      out.text(),
      new RegExp(
        `\\[ERROR\\] Hook exited ungracefully \\(pid=${pid}, exitcode=3, cmd=\\[${exec} role shared init primary\\]\\)\\.\\n`,
      ),
    );
  });

  test('a hook killed by a signal is logged as "Hook was killed" with the signal number', async (t) => {
    const dir = tmpDir(t);
    const exec = script(dir, 'die.sh', 'kill -TERM $$');
    const out = captureStderr(t);
    const r = newRunner(t);
    const pid = r.run(exec, 'disconnect', 'shared');
    await r.idle();
    assert.match(
      out.text(),
      new RegExp(`Hook was killed \\(pid=${pid}, signal=15, cmd=\\[${exec} disconnect shared\\]\\)\\.`),
    );
  });

  test('exit 0 is not reported at the default debug level', async (t) => {
    const dir = tmpDir(t);
    const exec = script(dir, 'ok.sh', 'exit 0');
    const out = captureStderr(t);
    const r = newRunner(t);
    r.run(exec, 'syncdone', 'shared');
    await r.idle();
    assert.doesNotMatch(out.text(), /Hook/);
  });

  test('a long-running hook is reported after 60 s and then at most once a minute', async (t) => {
    const dir = tmpDir(t);
    const go = join(dir, 'go');
    const exec = script(dir, 'slow.sh', `while [ ! -e '${go}' ]; do sleep 0.02; done`);
    const out = captureStderr(t);
    let now = 1_000_000_000;
    const r = newRunner(t, () => now);
    const pid = r.run(exec, 'split-brain', 'shared');
    registerKill(t, pid ?? -1);
    const line = (n: number): string =>
      `[WARNING] Hook is running for ${n} seconds (pid=${pid}, cmd=[${exec} split-brain shared]).\n`;
    now += 59_000;
    r.check();
    assert.equal(out.text(), '');
    now += 2_000; // 61 s
    r.check();
    assert.equal(out.text(), line(61));
    now += 30_000; // 91 s: reported 30 s ago
    r.check();
    assert.equal(out.text(), line(61));
    now += 31_000; // 122 s
    r.check();
    assert.equal(out.text(), line(61) + line(122));
    writeFileSync(go, '');
    await r.idle();
  });

  test('an empty exec runs nothing', (t) => {
    const r = newRunner(t);
    assert.equal(r.run('', 'role', 'shared', 'init', 'primary'), null);
    assert.equal(r.running, 0);
  });

  test('a relative exec path is taken relative to /', async (t) => {
    const dir = tmpDir(t);
    const { exec, log } = recordingHook(dir);
    const r = newRunner(t);
    assert.notEqual(r.run(exec.slice(1), 'connect', 'shared'), null);
    await r.idle();
    assert.equal(readFileSync(log, 'utf8'), '[connect][shared]\n');
  });

  test('a missing hook executable is logged, never thrown', async (t) => {
    const dir = tmpDir(t);
    const out = captureStderr(t);
    const r = newRunner(t);
    const missing = join(dir, 'nope.sh');
    assert.doesNotThrow(() => r.run(missing, 'connect', 'shared'));
    await waitFor('the spawn error to be logged', () => out.text().includes('Unable to execute'), 10_000, 20);
    assert.match(out.text(), new RegExp(`\\[ERROR\\] Unable to execute ${missing}: .*ENOENT`));
    assert.equal(r.running, 0);
  });
});
