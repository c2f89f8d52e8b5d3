// README command 1 (`npm run demo`), run with --exit: two hastd on loopback, roles set, a write
// through the primary's export arrives on the secondary; afterwards nothing is left running or on disk.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isRunning } from '../harness/cleanup.js';
import { tmpDir } from '../harness/tools.js';
import { run } from '../harness/process.js';
import { waitFor } from '../harness/wait.js';

const DEMO_JS = resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'src', 'cli', 'demo.js');

test('the demo starts two nodes, replicates a write, shows both statuses and cleans up', {
  timeout: 120_000,
}, async (t) => {
  const work = join(tmpDir(t, 'hastd-demo-test-'), 'tmp');
  mkdirSync(work);
  const r = await run(process.execPath, [DEMO_JS, '--exit'], {
    timeoutMs: 100_000,
    env: { ...process.env, TMPDIR: work },
  });
  assert.equal(r.code, 0, `demo exited ${r.code}:\n${r.stdout}\n${r.stderr}`);

  // Both status blocks, primary and secondary, connected and clean.
  const blocks = r.stdout.split(/^\$ hastctl status demo {3}# on /m).slice(1);
  assert.equal(blocks.length, 2, `expected two status blocks:\n${r.stdout}`);
  assert.match(blocks[0] ?? '', /^demo-a\n[\s\S]*role: primary[\s\S]*status: complete[\s\S]*dirty: 0 \(0B\)/);
  assert.match(blocks[1] ?? '', /^demo-b\n[\s\S]*role: secondary[\s\S]*status: complete[\s\S]*writes: [1-9]/);

  // The written MiB is in both components' data areas.
  const want = /# sha256 of the written MiB: ([0-9a-f]{16})/.exec(r.stdout)?.[1];
  assert.ok(want !== undefined, `no hash of the written data:\n${r.stdout}`);
  for (const node of ['demo-a', 'demo-b']) {
    const got = new RegExp(`# sha256 of ${node}'s component at localoff \\d+: ([0-9a-f]{16})`).exec(r.stdout)?.[1];
    assert.equal(got, want, `${node}'s data area does not hold the written MiB`);
  }

  // Every log line of the daemons carries its node's name.
  const logLines = r.stderr.split('\n').filter((l) => l.includes('[INFO]'));
  assert.ok(logLines.length > 0, `no daemon log lines:\n${r.stderr}`);
  for (const l of logLines) assert.match(l, /^\[demo-[ab]\] /, `log line without its node: ${l}`);

  // Cleanup: the workers end and the demo directory is gone.
  const pids = [...r.stdout.matchAll(/workerpid: (\d+)/g)].map((m) => Number(m[1]));
  assert.equal(pids.length, 2, 'two worker pids in the statuses');
  await waitFor('the demo workers to exit', () => pids.every((p) => !isRunning(p)), 20_000);
  const dir = /^# demo directory: (.+)$/m.exec(r.stdout)?.[1];
  assert.ok(dir !== undefined && !existsSync(dir), `demo directory ${dir} left behind`);
  assert.deepEqual(readdirSync(work), [], 'nothing left in the temporary directory');
});
