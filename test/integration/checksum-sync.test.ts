// Checksum-assisted sync (issue 17, `checksumsync on`): a secondary re-created with `hastctl create`
// on a disk that still holds the data, one MiB of it changed, gets a full sync that moves only the
// chunks whose hashes differ; with checksumsync off (on one node only) the same full sync moves
// every byte. Two real hastd processes on loopback.
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
