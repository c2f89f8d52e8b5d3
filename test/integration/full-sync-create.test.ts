// `hastctl create --full-sync` (issue 17): two freshly created components are declared in sync
// without copying anything (upstream's virgin rule, right for blank disks); on reused disks whose
// old contents differ, --full-sync on either node makes the first connection copy everything.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync, writeSync } from 'node:fs';
import { test } from 'node:test';
import { dataHashOf, dumpOf, hastctl, makePair, type Pair, startRole, waitNodeInSync } from '../harness/cluster.js';
import type { NodeSpec } from '../harness/cluster.js';

const MiB = 1 << 20;

/** Old contents on a reused disk: random bytes over part of the data area. */
async function scribble(p: Pair, n: NodeSpec): Promise<void> {
  const d = await dumpOf(p.conf, n.name);
  const fd = openSync(p.img(n), 'r+');
  try {
    writeSync(fd, randomBytes(2 * MiB), 0, 2 * MiB, d.localOff + 3 * MiB);
  } finally {
    closeSync(fd);
  }
}

for (const where of ['none', 'primary', 'secondary'] as const) {
  const title =
    where === 'none'
      ? 'two plain creates on reused disks are declared in sync: nothing is copied, the old contents differ'
      : `create --full-sync on the ${where} copies the whole data area at the first connection`;
  test(title, async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    await scribble(p, p.b);
    if (where !== 'none') {
      const node = where === 'primary' ? p.a : p.b;
      const r = await hastctl(p.conf, node.name, ['create', '--full-sync', p.res]);
      assert.equal(r.code, 0, r.stderr);
    }
    await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
    await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
    const w = await waitNodeInSync(p.conf, p.a.name);
    const dataSize = (await dumpOf(p.conf, p.a.name)).dataSize;
    if (where === 'none') {
      assert.equal(w.lastSync, null, 'the virgin pair copies nothing');
      assert.notEqual(await dataHashOf(p, p.a), await dataHashOf(p, p.b), "b's old contents are still there");
    } else {
      assert.equal(w.lastSync?.bytes, dataSize, 'a full synchronization');
      assert.equal(await dataHashOf(p, p.a), await dataHashOf(p, p.b), 'identical copies');
    }
  });
}

test('--full-sync is an option of create only', async (t) => {
  const p = await makePair(t, { size: 4 * MiB });
  const r = await hastctl(p.conf, p.a.name, ['dump', '--full-sync', p.res]);
  assert.equal(r.code, 64);
  assert.match(r.stderr, /--full-sync is an option of create/);
});
