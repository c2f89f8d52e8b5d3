// Online verify (issue 17): `hastctl verify` compares both copies while the primary serves I/O.
// A single flipped byte on either node is found at its block; identical copies under concurrent
// writes report nothing; --mark resynchronises what differs; --start/--stop bound the range.
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
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
  waitNodeInSync,
} from '../harness/cluster.js';

const MiB = 1 << 20;

/** Flip one byte of node n's data area, underneath hastd (a disk that went bad). */
async function flipByte(p: Pair, n: NodeSpec, offset: number): Promise<void> {
  const d = await dumpOf(p.conf, n.name);
  const fd = openSync(p.img(n), 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, d.localOff + offset);
    b[0] = (b[0] ?? 0) ^ 0x20;
    writeSync(fd, b, 0, 1, d.localOff + offset);
  } finally {
    closeSync(fd);
  }
}

interface Report {
  outcome: string;
  comparedBytes: number;
  differing: { offset: number; length: number }[];
  markedExtents: number;
}

async function verify(
  p: Pair,
  args: readonly string[] = [],
): Promise<{ code: number; report: Report; stderr: string }> {
  const r = await hastctl(p.conf, p.a.name, ['verify', '--json', p.res, ...args]);
  return { code: r.code, report: JSON.parse(r.stdout || '{}') as Report, stderr: r.stderr };
}

test('verify: identical under concurrent writes, a flipped byte on either node found, --mark repairs', async (t) => {
  const p = await makePair(t, { size: 32 * MiB, createArgs: ['-e', '1M'] });
  await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  await waitNodeInSync(p.conf, p.a.name);
  const client = await NbdClient.connect({ path: p.sock(p.a) });
  t.after(() => client.disconnect().catch(() => undefined));
  for (let off = 0; off < 32 * MiB - MiB; off += 4 * MiB) await client.write(off, randomBytes(MiB));
  await client.flush();
  const size = (await dumpOf(p.conf, p.a.name)).dataSize;

  // Concurrent writes all over the disk during the whole verify: nothing may be reported.
  let writing = true;
  let writes = 0;
  const load = (async () => {
    while (writing) {
      const off = randomInt(0, Math.floor((size - 65536) / 4096)) * 4096;
      await client.write(off, randomBytes(randomInt(1, 17) * 4096));
      writes++;
    }
  })();
  const quiet = await verify(p);
  writing = false;
  await load;
  assert.ok(writes > 10, `the application wrote during the verify (${writes} writes)`);
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.equal(quiet.report.outcome, 'identical');
  assert.equal(quiet.report.comparedBytes, size, 'the whole data area was compared');
  assert.deepEqual(quiet.report.differing, []);
  await client.flush();

  // The same, with every write aimed at the 2 MiB being compared, verified again and again: a
  // chunk read from the two nodes at different moments of a write would differ.
  writing = true;
  const hot = Array.from({ length: 8 }, async () => {
    while (writing) await client.write(randomInt(0, 8) * 256 * 1024, randomBytes(256 * 1024));
  });
  for (let i = 0; i < 20; i++) {
    const r = await verify(p, ['--stop', '2M']);
    assert.equal(r.code, 0, `pass ${i}: ${JSON.stringify(r.report.differing)} ${r.stderr}`);
  }
  writing = false;
  await Promise.all(hot);
  await client.flush();

  // One byte flipped on the secondary, one on the primary: each is found at its 4 KiB block.
  await flipByte(p, p.b, 5 * MiB + 4097);
  await flipByte(p, p.a, 20 * MiB + 123);
  const bad = await verify(p);
  assert.equal(bad.code, 1, bad.stderr);
  assert.equal(bad.report.outcome, 'differ');
  assert.deepEqual(bad.report.differing, [
    { offset: 5 * MiB + 4096, length: 4096 },
    { offset: 20 * MiB, length: 4096 },
  ]);
  // The text output lists the ranges.
  const text = await hastctl(p.conf, p.a.name, ['verify', p.res]);
  assert.equal(text.code, 1);
  assert.match(text.stdout, /^r0: differ: 2 range\(s\), 8\.0KB? in 0-\d+/m);
  assert.match(text.stdout, new RegExp(`^  offset ${5 * MiB + 4096} length 4096$`, 'm'));

  // A range that holds neither difference is identical.
  const part = await verify(p, ['--start', '6M', '--stop', '20M']);
  assert.equal(part.code, 0, part.stderr);
  assert.equal(part.report.comparedBytes, 14 * MiB);

  // --mark: the differing extents are resynchronised from the primary; then all is identical.
  const marked = await verify(p, ['--mark']);
  assert.equal(marked.code, 1);
  assert.equal(marked.report.markedExtents, 2);
  const w = await waitNodeInSync(p.conf, p.a.name);
  assert.equal(w.lastSync?.bytes, 2 * MiB, 'the two marked extents were copied');
  const after = await verify(p);
  assert.equal(after.code, 0, after.stderr);
  assert.equal(await dataHashOf(p, p.a), await dataHashOf(p, p.b));

  // Refusals: on the secondary's node; options of other commands.
  const onB = await hastctl(p.conf, p.b.name, ['verify', p.res]);
  assert.equal(onB.code, 75);
  assert.match(onB.stderr, /run 'hastctl verify r0' on the primary node/);
  assert.equal((await hastctl(p.conf, p.a.name, ['verify', 'nosuch'])).code, 65);
  assert.equal((await hastctl(p.conf, p.a.name, ['status', '--mark', p.res])).code, 64);
});
