// PrimaryResource with byte-granular NBD requests: the component and the peer protocol take whole
// sectors only, so unaligned writes, zeroes and trims are split into sector read-modify-writes
// and an aligned middle. The remote leg is a recording fake (we test the layer above it).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import type { Component } from '../../../src/component/component.js';
import { openComponent } from '../../../src/component/open.js';
import type { ResourceConfig } from '../../../src/config/types.js';
import { createResource } from '../../../src/metadata/create.js';
import { PrimaryResource, type RemoteLeg } from '../../../src/primary/resource.js';
import { tmpDir } from '../../harness/tools.js';
import { resourceConfig } from '../../harness/resource-config.js';

const SS = 512;
const DATASIZE = 256 * 1024;

const CFG: ResourceConfig = resourceConfig();

/** A peer that applies what it is sent to its own buffer and refuses anything not sector-aligned. */
class RecordingPeer implements RemoteLeg {
  readonly disk = Buffer.alloc(DATASIZE);
  readonly misaligned: string[] = [];
  #check(op: string, offset: number, length: number): boolean {
    const ok = offset % SS === 0 && length % SS === 0 && length > 0;
    if (!ok) this.misaligned.push(`${op}(${offset}, ${length})`);
    return ok;
  }
  write(offset: number, data: Buffer): { received: Promise<boolean>; done: Promise<boolean> } {
    const ok = this.#check('WRITE', offset, data.length);
    if (ok) data.copy(this.disk, offset);
    return { received: Promise.resolve(ok), done: Promise.resolve(ok) };
  }
  async writeZeroes(offset: number, length: number): Promise<boolean> {
    const ok = this.#check('DELETE', offset, length);
    if (ok) this.disk.fill(0, offset, offset + length);
    return ok;
  }
  async flush(): Promise<boolean> {
    return true;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    if (!this.#check('READ', offset, length)) throw new Error('misaligned read');
    return Buffer.from(this.disk.subarray(offset, offset + length));
  }
}

async function rig(t: TestContext): Promise<{ res: PrimaryResource; comp: Component; peer: RecordingPeer }> {
  const dir = tmpDir(t);
  const path = join(dir, 'disk');
  writeFileSync(path, Buffer.alloc(DATASIZE + 64 * 1024));
  const comp = await openComponent(path, { lock: false });
  t.after(() => comp.close());
  const md = await createResource({ component: comp, resource: 'r0', extentSize: 16 * 1024, mediaSize: 0 });
  const res = await PrimaryResource.open({ ...CFG, localPath: path }, comp, { ...md, dataSize: DATASIZE });
  const peer = new RecordingPeer();
  res.remote = peer;
  return { res, comp, peer };
}

type Op = { kind: 'write' | 'zero' | 'trim'; offset: number; length: number; seed: number };

const opArb: fc.Arbitrary<Op> = fc
  .record({
    kind: fc.constantFrom('write', 'zero', 'trim') as fc.Arbitrary<Op['kind']>,
    offset: fc.integer({ min: 0, max: DATASIZE - 1 }),
    length: fc.integer({ min: 1, max: 8192 }),
    seed: fc.integer(),
  })
  .map((o) => ({ ...o, length: Math.min(o.length, DATASIZE - o.offset) }));

test('unaligned writes, zeroes and trims: local data is exact, the peer sees only whole sectors and ends identical', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
      const { res, comp, peer } = await rig(t);
      const model = Buffer.alloc(DATASIZE);
      const trimmed: [number, number][] = [];
      for (const op of ops) {
        if (op.kind === 'write') {
          const data = randomBytes(op.length);
          await res.write(op.offset, data, false);
          data.copy(model, op.offset);
        } else if (op.kind === 'zero') {
          await res.writeZeroes(op.offset, op.length, false);
          model.fill(0, op.offset, op.offset + op.length);
        } else {
          await res.trim(op.offset, op.length, false);
          trimmed.push([op.offset, op.offset + op.length]);
        }
      }
      assert.deepEqual(peer.misaligned, [], 'every request to the peer is sector-aligned');
      const local = Buffer.alloc(DATASIZE);
      await comp.read(local, res.md.localOff);
      // Trimmed bytes may read as zeroes or as before (a trim is a hint), but the same on both copies.
      for (const [a, b] of trimmed) local.copy(model, a, a, b);
      assert.ok(local.equals(model), 'local data matches every write and zero');
      assert.ok(local.equals(peer.disk), 'the peer copy equals the local copy');
      assert.deepEqual(await res.read(3, 1000), local.subarray(3, 1003));
      await res.close();
    }),
    { numRuns: 30 },
  );
});

test('a read while the local copy is stale goes to the peer, widened to whole sectors and cut back', async (t) => {
  const { res, peer } = await rig(t);
  randomBytes(4096).copy(peer.disk, 8192);
  res.staleLocal = true;
  assert.deepEqual(await res.read(8192 + 7, 1000), peer.disk.subarray(8192 + 7, 8192 + 1007));
  assert.deepEqual(peer.misaligned, []);
  await res.close();
});

test('a local write error with a successful peer write: acknowledged, and the extent is read from the peer, never stale', async (t) => {
  const { res, comp, peer } = await rig(t);
  const old = Buffer.alloc(4096, 0x11);
  await res.write(65536, old, false);
  // The component below starts failing writes (a dying disk); reads still work and return old data.
  let failWrites = true;
  const realWrite = comp.write.bind(comp);
  (comp as { write: Component['write'] }).write = async (bufs, pos) => {
    if (failWrites && pos >= res.md.localOff) throw Object.assign(new Error('Input/output error'), { code: 'EIO' });
    return realWrite(bufs, pos);
  };
  const fresh = Buffer.alloc(4096, 0x22);
  await res.write(65536, fresh, false);
  assert.equal(res.stats.writeErrors, 1, 'counted as a local write error');
  assert.equal(res.staleExtentCount, 1);
  assert.deepEqual(await res.read(65536, 4096), fresh, 'served by the peer, not the stale local copy');
  const local = Buffer.alloc(4096);
  await comp.read(local, res.md.localOff + 65536);
  assert.deepEqual(local, old, 'the local copy did miss the write');
  // Disconnected: refusing is better than returning data the application overwrote.
  res.remote = null;
  await assert.rejects(res.read(65536 + 100, 10), /local copy missed a write/);
  assert.deepEqual(await res.read(0, 4096), Buffer.alloc(4096), 'other extents are still read locally');
  res.remote = peer;
  failWrites = false;
  await res.close();
});

test('a failed local flush (lost writeback) with a successful peer flush: no local byte is trusted any more', async (t) => {
  const { res, comp, peer } = await rig(t);
  await res.write(0, Buffer.alloc(4096, 0x44), false);
  (comp as { flush: Component['flush'] }).flush = async () => {
    throw Object.assign(new Error('Input/output error'), { code: 'EIO' });
  };
  await res.flush();
  assert.equal(res.stats.flushErrors, 1);
  // The local disk now holds something else than what was acknowledged (the writeback was lost).
  await comp.write([Buffer.alloc(4096, 0x99)], res.md.localOff);
  assert.deepEqual(await res.read(0, 4096), Buffer.alloc(4096, 0x44), 'read from the peer');
  assert.deepEqual(peer.misaligned, []);
  res.remote = null;
  await assert.rejects(res.read(0, 512), /local copy missed a write/);
});
