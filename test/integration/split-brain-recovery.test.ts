// Split-brain recovery by extents (issue 17): `hastctl role secondary --discard-my-data` on the node
// whose changes go resyncs only the extents changed on either side since the copies last agreed
// (its map ∪ the primary's), instead of the full sync of `role init; create; role secondary`.
// 1 GiB resource on sparse files, 8 MiB diverged on each side, two real hastd processes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import {
  dataHashOf,
  hastctl,
  makePair,
  type NodeSpec,
  type Pair,
  startRole,
  statusJson,
  waitNodeInSync,
  workerOf,
} from '../harness/cluster.js';
import { waitFor } from '../harness/wait.js';

const MiB = 1 << 20;
const EXTENT = 2 * MiB;

async function writeRange(p: Pair, n: NodeSpec, offset: number, length: number): Promise<void> {
  const c = await NbdClient.connect({ path: p.sock(n) });
  for (let off = offset; off < offset + length; off += MiB) await c.write(off, randomBytes(MiB));
  await c.flush();
  await c.disconnect();
}

async function changedExtents(p: Pair, n: NodeSpec): Promise<number | undefined> {
  return (await statusJson(p.conf, n.name, p.res)).changedExtents as number | undefined;
}

test('--discard-my-data recovers a split-brain moving the extents written on either side and the keepdirty ones', async (t) => {
  const p = await makePair(t, { size: 1024 * MiB, replication: 'memsync' });
  let b = await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  let a = await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  await waitNodeInSync(p.conf, p.a.name);
  // Replicated writes to 64 extents: a's keepdirty LRU is full of extents both copies agree on.
  const c = await NbdClient.connect({ path: p.sock(p.a) });
  for (let e = 0; e < 64; e++) await c.write(e * EXTENT * 4, randomBytes(4096));
  await c.flush();
  await c.disconnect();
  await waitNodeInSync(p.conf, p.a.name);

  // The link breaks; a goes on alone and writes 8 MiB.
  await b.kill();
  await waitFor('a degraded', async () => (await workerOf(p.conf, p.a.name))?.status === 'degraded');
  await writeRange(p, p.a, 101 * EXTENT, 8 * MiB);
  await a.stop();
  // b is promoted while a is away and writes another 8 MiB elsewhere.
  b = await startRole(t, p.conf, p.b, p.res, 'primary', p.sock(p.b));
  await writeRange(p, p.b, 301 * EXTENT, 8 * MiB);
  // a comes back as secondary: split-brain, nothing moves.
  a = await startRole(t, p.conf, p.a, p.res, 'secondary', p.sock(p.a));
  await waitFor('split-brain on a', () => /Split-brain detected, exiting\./.test(a.output()), 40_000);

  // Before discarding, status shows what each side would resync: b its 4 extents (8 MiB / 2 MiB);
  // a its 4 and the 64 keepdirty extents of the replicated past, kept dirty on purpose (they cover
  // writes a secondary may have lost in a power failure before they reached its disk).
  assert.equal(await changedExtents(p, p.b), 4, "the primary's changed extents");
  const mine = await changedExtents(p, p.a);
  assert.ok(mine !== undefined && mine > 4 && mine <= 4 + 64, `a's map: its changes and keepdirty extents (${mine})`);
  const text = await hastctl(p.conf, p.a.name, ['status', p.res]);
  assert.match(text.stdout, new RegExp(`^ {2}changed extents: ${mine}$`, 'm'));

  // a's changes go: the next connection resyncs the union from b.
  const r = await hastctl(p.conf, p.a.name, ['role', 'secondary', '--discard-my-data', p.res]);
  assert.equal(r.code, 0, r.stderr);
  const w = await waitNodeInSync(p.conf, p.b.name, 60_000);
  const written = 8 * EXTENT; // 4 extents on each side
  const keptDirty = 64 * EXTENT;
  assert.ok(w.lastSync !== null, 'a sync ran');
  assert.ok(w.lastSync.bytes >= written, `moved ${w.lastSync.bytes}: every changed extent is copied`);
  // The union of both maps, nothing more: far from upstream's whole 1 GiB.
  assert.ok(
    w.lastSync.bytes <= written + keptDirty,
    `moved ${w.lastSync.bytes} for ${written} bytes of changed extents and ${keptDirty} kept dirty`,
  );
  assert.match(a.output(), /discarding the changes of this node as asked/);
  assert.equal(await dataHashOf(p, p.a), await dataHashOf(p, p.b), 'byte-identical afterwards');

  // The flag is spent, and goes with role secondary only.
  const bad = await hastctl(p.conf, p.a.name, ['role', 'primary', '--discard-my-data', p.res]);
  assert.equal(bad.code, 64);
  assert.match(bad.stderr, /--discard-my-data goes with role secondary/);
});
