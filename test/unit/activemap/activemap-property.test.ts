// Property tests of the activemap against a plain model (HAST-SPEC §4.2–4.4): any interleaving
// of writes, completions, sync marks, peer merges and sync steps keeps the counts, the dirty map
// and THE write-ahead invariant right, and a drained map ends clean.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Activemap } from '../../../src/activemap/activemap.js';
import { testBit } from '../../../src/activemap/bitmap.js';

const EXT = 4096;

type Action =
  | { readonly t: 'start'; readonly off: number; readonly len: number }
  | { readonly t: 'complete'; readonly pick: number }
  | { readonly t: 'mark'; readonly off: number; readonly len: number }
  | { readonly t: 'merge'; readonly bytes: Uint8Array }
  | { readonly t: 'syncBegin' }
  | { readonly t: 'syncDone' };

const action = (dataSize: number): fc.Arbitrary<Action> => {
  const range = fc
    .nat(dataSize - 1)
    .chain((off) => fc.integer({ min: 1, max: dataSize - off }).map((len) => ({ off, len })));
  return fc.oneof(
    { weight: 5, arbitrary: range.map(({ off, len }) => ({ t: 'start' as const, off, len })) },
    { weight: 5, arbitrary: fc.nat().map((pick) => ({ t: 'complete' as const, pick })) },
    { weight: 1, arbitrary: range.map(({ off, len }) => ({ t: 'mark' as const, off, len })) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 3 }).map((bytes) => ({ t: 'merge' as const, bytes })) },
    { weight: 2, arbitrary: fc.constant({ t: 'syncBegin' as const }) },
    { weight: 2, arbitrary: fc.constant({ t: 'syncDone' as const }) },
  );
};

const scenario = fc
  .record({ nExt: fc.integer({ min: 1, max: 20 }), tail: fc.nat(EXT - 1), keepDirty: fc.integer({ min: 0, max: 5 }) })
  .chain(({ nExt, tail, keepDirty }) => {
    const dataSize = (nExt - 1) * EXT + tail + 1;
    return fc.record({
      dataSize: fc.constant(dataSize),
      keepDirty: fc.constant(keepDirty),
      actions: fc.array(action(dataSize), { maxLength: 80 }),
    });
  });

function extentsOf(off: number, len: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(off / EXT); e <= Math.floor((off + len - 1) / EXT); e++) out.push(e);
  return out;
}

test('activemap: any interleaving keeps counts, the dirty map and the write-ahead invariant, and ends clean', () => {
  fc.assert(
    fc.property(scenario, ({ dataSize, keepDirty, actions }) => {
      const am = new Activemap({ dataSize, extentSize: EXT, keepDirty, sectorSize: 512 });
      const n = am.nExtents;
      const ops = new Array<number>(n).fill(0);
      const sync = new Array<boolean>(n).fill(false);
      const outstanding: { off: number; len: number }[] = [];
      /** The last image the caller was told to persist (a fresh component: all zero). */
      let persisted: Buffer = Buffer.alloc(am.diskMapSize);
      let walking = -1;
      let markedDuringWalk = false;
      const persistIf = (flag: boolean): void => {
        if (flag) persisted = am.bitmap();
      };

      const check = (): void => {
        let dirty = 0;
        for (let e = 0; e < n; e++) {
          assert.equal(am.extentOps(e), ops[e], `ops of extent ${e}`);
          assert.ok((ops[e] ?? 0) >= 0);
          assert.equal(am.needsSync(e), sync[e], `syncmap of extent ${e}`);
          const expectDirty = (ops[e] ?? 0) > 0 || sync[e] === true;
          assert.equal(am.isDirty(e), expectDirty, `memmap of extent ${e}`);
          if (expectDirty) dirty++;
          // THE write-ahead invariant: an extent with a write in flight (or waiting for sync) is set in
          // the last image the caller was told to persist.
          if (expectDirty) assert.ok(testBit(persisted, e), `extent ${e} is dirty but not in the persisted image`);
          if (am.inKeepDirty(e)) assert.ok(testBit(persisted, e), `keepdirty extent ${e} not in the persisted image`);
        }
        assert.equal(am.nDirty, dirty);
        assert.equal(am.dirtyBytes, dirty * EXT);
        assert.equal(
          am.opsInFlight,
          ops.reduce((a, b) => a + b, 0),
        );
        assert.ok(am.keepDirtyExtents().length <= keepDirty);
        // The image is exactly memmap | keepdirty, nothing past the last extent.
        const image = am.bitmap();
        for (let e = 0; e < am.diskMapSize * 8; e++) {
          assert.equal(testBit(image, e), e < n && (am.isDirty(e) || am.inKeepDirty(e)), `image bit ${e}`);
        }
      };

      for (const a of actions) {
        switch (a.t) {
          case 'start':
            persistIf(am.writeStart(a.off, a.len));
            for (const e of extentsOf(a.off, a.len)) ops[e] = (ops[e] ?? 0) + 1;
            outstanding.push({ off: a.off, len: a.len });
            break;
          case 'complete': {
            if (outstanding.length === 0) break;
            const [w] = outstanding.splice(a.pick % outstanding.length, 1);
            if (w === undefined) break;
            persistIf(am.writeComplete(w.off, w.len));
            for (const e of extentsOf(w.off, w.len)) ops[e] = (ops[e] ?? 0) - 1;
            break;
          }
          case 'mark':
            persistIf(am.markForSync(a.off, a.len));
            for (const e of extentsOf(a.off, a.len)) {
              sync[e] = true;
              if (e === walking) markedDuringWalk = true;
            }
            break;
          case 'merge':
            persistIf(am.mergeRemote(a.bytes));
            for (let e = 0; e < Math.min(n, a.bytes.length * 8); e++) {
              if (testBit(a.bytes, e)) {
                sync[e] = true;
                if (e === walking) markedDuringWalk = true;
              }
            }
            break;
          case 'syncBegin': {
            if (walking !== -1) break;
            const e = am.nextSyncExtent(0);
            assert.equal(e, sync.indexOf(true));
            if (e === -1) break;
            const r = am.syncExtentRange(e);
            assert.equal(r.offset, e * EXT);
            assert.equal(r.length, Math.min(EXT, dataSize - e * EXT));
            walking = e;
            markedDuringWalk = false;
            break;
          }
          case 'syncDone':
            if (walking === -1) break;
            persistIf(am.syncExtentDone(walking));
            // A mark while the extent was being copied keeps it for another pass.
            if (!markedDuringWalk) sync[walking] = false;
            walking = -1;
            break;
        }
        check();
      }

      // Drain: complete every write, then sync everything still marked.
      for (const w of outstanding.splice(0)) {
        persistIf(am.writeComplete(w.off, w.len));
        for (const e of extentsOf(w.off, w.len)) ops[e] = (ops[e] ?? 0) - 1;
      }
      if (walking !== -1) {
        persistIf(am.syncExtentDone(walking));
        if (!markedDuringWalk) sync[walking] = false;
      }
      assert.equal(am.opsInFlight, 0);
      for (let e = am.nextSyncExtent(0); e !== -1; e = am.nextSyncExtent(e + 1)) {
        am.syncExtentRange(e);
        persistIf(am.syncExtentDone(e));
        sync[e] = false;
      }
      check();
      assert.equal(am.nDirty, 0);
      assert.equal(am.syncPendingExtents, 0);
      assert.equal(am.syncPendingBytes, 0);
      // Only the keepdirty extents are left on disk.
      for (let e = 0; e < n; e++) assert.equal(testBit(am.bitmap(), e), am.inKeepDirty(e));
    }),
    { numRuns: 300 },
  );
});

test('activemap: syncPendingBytes equals the sum of the clipped ranges of the marked extents', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 * EXT }), fc.uint8Array({ maxLength: 6 }), (dataSize, bytes) => {
      const am = new Activemap({ dataSize, extentSize: EXT, keepDirty: 4, sectorSize: 512 });
      am.mergeRemote(bytes);
      let sum = 0;
      for (let e = am.nextSyncExtent(0); e !== -1; e = am.nextSyncExtent(e + 1)) sum += am.syncExtentRange(e).length;
      assert.equal(am.syncPendingBytes, sum);
    }),
  );
});
