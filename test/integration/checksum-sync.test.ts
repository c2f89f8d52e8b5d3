// Checksum-assisted sync (issue 17, `checksumsync on`): a secondary re-created with `hastctl create`
// on a disk that still holds the data, one MiB of it changed, gets a full sync that moves only the
// chunks whose hashes differ; with checksumsync off (on one node only) the same full sync moves
// every byte. A sync from the secondary (the primary is out of date) compares the same way. Two
// real hastd processes on loopback.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { test } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import { addNodeLines, dataHashOf, dumpOf, hastctl, makePair, startRole, waitNodeInSync } from '../harness/cluster.js';
import { waitFor } from '../harness/wait.js';

const MiB = 1 << 20;
/** Largest request, and so the chunk a checksum covers: a changed byte costs at most this much. */
const CHUNK = MiB;

interface LastSync {
  readonly bytes: number;
  readonly transferred: number;
  readonly skipped: number;
}

for (const [title, on] of [
  ['with checksumsync on at both nodes, the full sync of a re-created secondary moves about the changed MiB', 'both'],
  ['with checksumsync on at the primary only, the same full sync moves everything', 'primary'],
] as const) {
  test(title, async (t) => {
    const p = await makePair(t, { size: 16 * MiB, createArgs: ['-e', '1M'] });
    addNodeLines(p, on === 'both' ? { a: 'checksumsync on', b: 'checksumsync on' } : { a: 'checksumsync on' });
    const b1 = await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
    await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
    const client = await NbdClient.connect({ path: p.sock(p.a) });
    const d = await dumpOf(p.conf, p.a.name);
    for (let off = 0; off < d.dataSize; off += MiB)
      await client.write(off, randomBytes(Math.min(MiB, d.dataSize - off)));
    await client.flush();
    await client.disconnect();
    // Replicated (the written extents stay dirty in the map: keepdirty, so no "in sync" to wait for).
    await waitFor('both copies equal', async () => (await dataHashOf(p, p.a)) === (await dataHashOf(p, p.b)));

    // b is re-created: new metadata (a full sync follows), the old data stays, one MiB changed.
    await b1.kill();
    assert.equal((await hastctl(p.conf, p.b.name, ['create', '-e', '1M', p.res])).code, 0);
    const fd = openSync(p.img(p.b), 'r+');
    try {
      writeSync(fd, randomBytes(MiB), 0, MiB, (await dumpOf(p.conf, p.b.name)).localOff + 5 * MiB);
    } finally {
      closeSync(fd);
    }
    await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
    // A new primary worker connects at once instead of at its next reconnect attempt (10 s).
    for (const role of ['init', 'primary'])
      assert.equal((await hastctl(p.conf, p.a.name, ['role', role, p.res])).code, 0);
    const w = await waitNodeInSync(p.conf, p.a.name);
    const last = await waitFor('the full sync', async () => (w.lastSync as LastSync | null) ?? null, 1000);
    assert.equal(last.bytes, d.dataSize, 'a full synchronization');
    assert.equal(last.transferred + last.skipped, last.bytes);
    if (on === 'both') {
      assert.ok(last.transferred >= MiB, `${last.transferred} bytes transferred: the changed MiB is copied`);
      assert.ok(last.transferred <= 1.1 * MiB + CHUNK, `${last.transferred} bytes transferred for one changed MiB`);
    } else {
      assert.equal(last.transferred, d.dataSize, 'the secondary did not agree: a plain sync');
      assert.equal(last.skipped, 0);
    }
    assert.equal(await dataHashOf(p, p.a), await dataHashOf(p, p.b), 'identical copies after the sync');
  });
}

test('with checksumsync on, a sync from the secondary fetches only the chunks that differ', async (t) => {
  // Default extents (2 MiB): two chunks each, one written while apart, the other still equal.
  const EXTENT = 2 * MiB;
  const p = await makePair(t, { size: 16 * MiB, extra: 'checksumsync on' });
  await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  let a = await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  const d = await dumpOf(p.conf, p.a.name);
  const ca = await NbdClient.connect({ path: p.sock(p.a) });
  for (let off = 0; off < d.dataSize; off += MiB) await ca.write(off, randomBytes(Math.min(MiB, d.dataSize - off)));
  await ca.flush();
  await ca.disconnect();
  await waitFor('both copies equal', async () => (await dataHashOf(p, p.a)) === (await dataHashOf(p, p.b)));

  // a stops cleanly; b is promoted and writes 4 KiB into the first chunk of 4 extents; b steps
  // down and a comes back as primary: a is out of date, the sync copies from b.
  await a.stop();
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'primary', p.res])).code, 0);
  await waitFor('b serves', async () => {
    try {
      await (await NbdClient.connect({ path: p.sock(p.b) })).disconnect();
      return true;
    } catch {
      return false;
    }
  });
  const cb = await NbdClient.connect({ path: p.sock(p.b) });
  for (let e = 0; e < 4; e++) await cb.write(e * 2 * EXTENT + 8192, randomBytes(4096));
  await cb.flush();
  await cb.disconnect();
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);
  const written = await dataHashOf(p, p.b);
  a = await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  const w = await waitNodeInSync(p.conf, p.a.name);
  const last = w.lastSync as LastSync | null;
  assert.ok(last !== null, 'a sync ran');
  assert.match(a.output(), /agreed with the secondary/);
  assert.ok(last.transferred >= 4 * MiB, `${JSON.stringify(last)}: the 4 written chunks are fetched`);
  assert.ok(last.skipped >= 4 * MiB, `${JSON.stringify(last)}: the 4 unwritten halves are not`);
  assert.equal(last.transferred + last.skipped, last.bytes);
  assert.equal(await dataHashOf(p, p.b), written, "b's copy is the source: untouched");
  assert.equal(await dataHashOf(p, p.a), written, "a's copy is b's after the sync");
});
