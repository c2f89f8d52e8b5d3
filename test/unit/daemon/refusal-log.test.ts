// RefusalLog: the first `burst` refusals of a window are logged as they come, the rest are counted
// and summed up in one line; a new window logs again.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RefusalLog } from '../../../src/daemon/refusal-log.js';

test('a flood of refusals yields burst lines plus one summary', () => {
  const lines: string[] = [];
  const r = new RefusalLog({ burst: 3, windowMs: 60_000, sink: (_l, text) => lines.push(text) });
  for (let i = 0; i < 1000; i++) r.note('warning', `Client tcp://192.0.2.${i % 250}:1 isn't known.`);
  assert.equal(lines.length, 3);
  assert.match(lines[0] ?? '', /tcp:\/\/192\.0\.2\.0:1 isn't known/);
  r.close();
  assert.equal(lines.length, 4);
  assert.match(
    lines[3] ?? '',
    /^997 more refused connection\(s\) not logged in the last 60 s \(last: Client tcp:\/\/192\.0\.2\.249:1/,
  );
  r.close();
  assert.equal(lines.length, 4, 'nothing more to sum up');
});

test('after the window a refusal is logged again', async () => {
  const lines: string[] = [];
  const r = new RefusalLog({ burst: 1, windowMs: 20, sink: (_l, text) => lines.push(text) });
  r.note('error', 'one');
  r.note('error', 'two');
  await new Promise((res) => setTimeout(res, 40));
  r.note('error', 'three');
  r.close();
  assert.deepEqual(lines.slice(0, 1), ['one']);
  assert.ok(lines.includes('three'), lines.join('\n'));
  assert.ok(
    lines.some((l) => /^1 more refused/.test(l)),
    lines.join('\n'),
  );
});
