// Split-brain recovery by extents (issue 17): `hastctl role secondary --discard-my-data` on the node
// whose changes go resyncs only the extents changed on either side since the copies last agreed
// (its map ∪ the primary's, less what each side's divergence record knows both copies hold alike),
// instead of the full sync of `role init; create; role secondary`. 1 GiB resource on sparse files,
// 8 MiB diverged on each side, two real hastd processes; then the case the keepdirty extents are
// there for: a secondary that lost acknowledged, unflushed writes in a power failure.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { test } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import {
  dataHashOf,
  dumpOf,
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

test('--discard-my-data recovers a split-brain moving only the extents written on either side', async (t) => {
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

  // Before discarding, status shows what each side changed: 4 extents each (8 MiB / 2 MiB). a's map
  // also holds the 64 keepdirty extents of the replicated past (kept dirty on purpose: they cover
  // writes a secondary may have lost in a power failure); its divergence record knows that both
  // copies hold those alike (written and flushed on both before the divergence), less extent 104,
  // which a wrote again.
  assert.equal(await changedExtents(p, p.b), 4, "the primary's changed extents");
  assert.equal(await changedExtents(p, p.a), 4, "a's changed extents (its map less its divergence record)");
  assert.equal((await statusJson(p.conf, p.a.name, p.res)).changedExtentsBy, 'record');
  const text = await hastctl(p.conf, p.a.name, ['status', p.res]);
  assert.match(text.stdout, /^ {2}changed extents: 4 \(divergence record\)$/m);

  // a's changes go: the next connection resyncs the union from b.
  const r = await hastctl(p.conf, p.a.name, ['role', 'secondary', '--discard-my-data', p.res]);
  assert.equal(r.code, 0, r.stderr);
  const w = await waitNodeInSync(p.conf, p.b.name, 60_000);
  const written = 8 * EXTENT; // 4 extents on each side
  assert.ok(w.lastSync !== null, 'a sync ran');
  assert.ok(w.lastSync.bytes >= written, `moved ${w.lastSync.bytes}: every changed extent is copied`);
  // The extents written on either side, nothing more: not the 64 keepdirty ones, not the whole 1 GiB.
  assert.ok(w.lastSync.bytes <= 1.05 * written, `moved ${w.lastSync.bytes} for ${written} bytes of changed extents`);
  assert.match(a.output(), /discarding the changes of this node as asked/);
  assert.equal(await dataHashOf(p, p.a), await dataHashOf(p, p.b), 'byte-identical afterwards');

  // The flag is spent, and goes with role secondary only.
  const bad = await hastctl(p.conf, p.a.name, ['role', 'primary', '--discard-my-data', p.res]);
  assert.equal(bad.code, 64);
  assert.match(bad.stderr, /--discard-my-data goes with role secondary/);
});

test('--discard-my-data after a secondary lost acknowledged, unflushed writes (power failure) ends byte-identical', async (t) => {
  // async: a FUA write flushes a's disk and not b's (the peer's cache is the only one at stake).
  const p = await makePair(t, { size: 64 * MiB, replication: 'async' });
  let b = await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  let a = await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  await waitNodeInSync(p.conf, p.a.name);
  // Extents 0–7: written and flushed on both (agreed). Extents 10–11: written with FUA, applied by
  // b, no FLUSH of b after them: b may hold them in its volatile cache only.
  const c = await NbdClient.connect({ path: p.sock(p.a) });
  for (let e = 0; e < 8; e++) await c.write(e * EXTENT, randomBytes(4096));
  await c.flush();
  for (const e of [10, 11]) await c.write(e * EXTENT, randomBytes(4096), { fua: true });
  await waitNodeInSync(p.conf, p.a.name);
  // b loses power: its cache is gone, so its disk never got extents 10–11 (zeros, as created).
  await b.kill();
  const lay = await dumpOf(p.conf, p.b.name);
  const fd = openSync(p.img(p.b), 'r+');
  for (const e of [10, 11]) writeSync(fd, Buffer.alloc(4096), 0, 4096, lay.localOff + e * EXTENT);
  closeSync(fd);
  await c.disconnect();
  await waitFor('a degraded', async () => (await workerOf(p.conf, p.a.name))?.status === 'degraded');
  // The copies diverge: a writes extent 20 alone, then b, promoted, extent 25.
  await writeRange(p, p.a, 20 * EXTENT, MiB);
  await a.stop();
  b = await startRole(t, p.conf, p.b, p.res, 'primary', p.sock(p.b));
  await writeRange(p, p.b, 25 * EXTENT, MiB);
  a = await startRole(t, p.conf, p.a, p.res, 'secondary', p.sock(p.a));
  await waitFor('split-brain on a', () => /Split-brain detected, exiting\./.test(a.output()), 40_000);
  // a's record holds extents 0–7 only: 10–11 were not covered by a FLUSH b completed.
  assert.equal(await changedExtents(p, p.a), 3, "a's changed extents: 10, 11 and 20");

  const r = await hastctl(p.conf, p.a.name, ['role', 'secondary', '--discard-my-data', p.res]);
  assert.equal(r.code, 0, r.stderr);
  const w = await waitNodeInSync(p.conf, p.b.name, 60_000);
  assert.equal(w.lastSync?.bytes, 4 * EXTENT, 'extents 10, 11, 20 and 25 are copied');
  assert.equal(await dataHashOf(p, p.a), await dataHashOf(p, p.b), 'byte-identical afterwards');
});
