// hastctl events: the current state first, then role changes, connect, a sync, hook runs with their
// exit status; the stream ends (exit 0) when hastd stops. Two real hastd on loopback.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import { hastctl, makePair, startHastd } from '../harness/cluster.js';
import { registerKill } from '../harness/cleanup.js';
import { HASTCTL } from '../harness/process.js';
import { tmpDir } from '../harness/tools.js';
import { waitFor } from '../harness/wait.js';

interface Ev {
  readonly event: string;
  readonly resource: string;
  readonly time: string;
  readonly [k: string]: unknown;
}

test('events: exists, role, connect, sync start/done, hooks; ends when hastd stops', {
  timeout: 120_000,
}, async (t) => {
  const dir = tmpDir(t);
  const hook = join(dir, 'hook.sh');
  writeFileSync(hook, '#!/bin/sh\nexit 3\n');
  chmodSync(hook, 0o755);
  const pair = await makePair(t, { size: 8 << 20, global: `exec ${hook}` });
  const a = await startHastd(t, pair.conf, pair.a);
  const b = await startHastd(t, pair.conf, pair.b);

  const unknown = await hastctl(pair.conf, pair.a.name, ['events', 'nosuch']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /Unknown resource nosuch/);

  const child = spawn(process.execPath, [HASTCTL, 'events', '-c', pair.conf, '--node', pair.a.name, '--json', 'r0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  registerKill(t, () => child.pid);
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const events = (): Ev[] =>
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Ev);
  const seen = (pred: (e: Ev) => boolean): Promise<Ev> =>
    waitFor(`an event in ${out}`, () => events().find(pred), 60_000, 50);

  const first = await seen(() => true);
  assert.deepEqual(
    { event: first.event, resource: first.resource, role: first.role, connection: first.connection },
    { event: 'exists', resource: 'r0', role: 'init', connection: 'standalone' },
  );
  assert.ok(!Number.isNaN(Date.parse(first.time)));

  // Primary alone (the peer's resource is in init), writes that the peer will need, then the peer.
  const p = await hastctl(pair.conf, pair.a.name, ['role', 'primary', 'r0']);
  assert.equal(p.code, 0, p.stderr);
  await seen((e) => e.event === 'role' && e.old === 'init' && e.new === 'primary');
  await waitFor('export', () => existsSync(pair.sock(pair.a)));
  const client = await NbdClient.connect({ path: pair.sock(pair.a) });
  await client.write(0, randomBytes(4 << 20));
  await client.flush();
  await client.disconnect();
  assert.equal((await hastctl(pair.conf, pair.b.name, ['role', 'secondary', 'r0'])).code, 0);
  await seen((e) => e.event === 'connect');
  await seen((e) => e.event === 'sync-start');
  await seen((e) => e.event === 'sync-done');
  // The hook ran for the role change and said 3.
  await seen((e) => e.event === 'hook' && e.hook === 'role' && e.exitcode === 3);

  // The text form, with timestamps, of the same stream's first line.
  const text = await new Promise<string>((resolve) => {
    const c = spawn(process.execPath, [HASTCTL, 'events', '-c', pair.conf, '--node', pair.a.name, '--timestamps']);
    registerKill(t, () => c.pid);
    let s = '';
    c.stdout.on('data', (d: Buffer) => {
      s += d.toString();
      if (s.includes('\n')) {
        c.kill();
        resolve(s);
      }
    });
  });
  assert.match(
    text,
    /^\d{4}-\d\d-\d\dT[\d:.]+Z exists r0 role:primary connection:(connected|disconnected\S*) disk:consistent/,
  );

  // The peer goes away: a disconnect, with its cause.
  assert.equal(await b.stop(), 0);
  const gone = await seen((e) => e.event === 'disconnect');
  assert.equal(typeof gone.reason, 'string', JSON.stringify(gone));

  assert.equal(await a.stop(), 0);
  assert.equal(await exited, 0, 'the stream ends cleanly when hastd stops');
  const kinds = events().map((e) => e.event);
  assert.ok(kinds.indexOf('sync-start') < kinds.indexOf('sync-done'), kinds.join(' '));
});
