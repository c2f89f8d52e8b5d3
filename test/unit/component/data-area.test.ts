// The data area (HAST-SPEC §3.3): every data I/O kind, at both ends of the area, over a real file
// whose metadata block, bitmap area and tail past the data area hold guard bytes; out-of-range
// requests are refused before they reach the component (nbdkit tests/test-offset.c, for our localoff).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { Component } from '../../../src/component/component.js';
import { DataArea, DataAreaRangeError } from '../../../src/component/data-area.js';
import { openComponent } from '../../../src/component/open.js';
import { ErrnoError } from '../../../src/util/errno.js';
import { tmpDir } from '../../harness/tools.js';

/** Metadata block (4096) and a 1024-byte bitmap area, as `create` lays out 8184 extents. */
const LOCALOFF = 4096 + 1024;
const DATASIZE = 1 << 20;
/** Bytes past the data area (a component created with `-m` smaller than itself). */
const TAIL = 4096;
const FILESIZE = LOCALOFF + DATASIZE + TAIL;
/** Bytes written at each end of the data area. */
const EDGE = 8192;

/** A known, position-dependent pattern: any byte moved or rewritten shows. */
function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 131 + seed) & 0xff;
  return b;
}

async function rig(t: TestContext): Promise<{ path: string; image: Buffer; area: DataArea }> {
  const path = join(tmpDir(t), 'disk.img');
  const image = pattern(FILESIZE, 7);
  writeFileSync(path, image);
  const comp = await openComponent(path, { lock: false });
  t.after(() => comp.close());
  return { path, image, area: new DataArea(comp, LOCALOFF, DATASIZE) };
}

/** The guard bytes (everything outside the data area) are as written, the data area is `model`. */
function assertDisk(path: string, image: Buffer, model: Buffer): void {
  const now = readFileSync(path);
  assert.equal(now.length, FILESIZE, 'the file keeps its size');
  assert.ok(now.subarray(0, 4096).equals(image.subarray(0, 4096)), 'metadata block unchanged');
  assert.ok(now.subarray(4096, LOCALOFF).equals(image.subarray(4096, LOCALOFF)), 'bitmap area unchanged');
  assert.ok(
    now.subarray(LOCALOFF + DATASIZE).equals(image.subarray(LOCALOFF + DATASIZE)),
    'tail past the data area unchanged',
  );
  assert.ok(
    now.subarray(LOCALOFF, LOCALOFF + DATASIZE).equals(model),
    'data area holds what was written, at localoff + offset',
  );
}

/** Records which component methods were called; forwards nothing (refusals must not get here). */
function spyComponent(): { comp: Component; calls: string[] } {
  const calls: string[] = [];
  const comp: Component = {
    path: '/spy',
    size: FILESIZE,
    sectorSize: 512,
    isBlockDevice: false,
    read: async () => void calls.push('read'),
    write: async () => void calls.push('write'),
    flush: async () => void calls.push('flush'),
    discard: async () => void calls.push('discard'),
    writeZeroes: async () => void calls.push('writeZeroes'),
    close: async () => undefined,
  };
  return { comp, calls };
}

describe('DataArea', () => {
  test('reads, writes, discards and write-zeroes at the first and last bytes of the data area leave the guard bytes alone', async (t) => {
    const { path, image, area } = await rig(t);
    const model = Buffer.from(image.subarray(LOCALOFF, LOCALOFF + DATASIZE));
    const last = DATASIZE - EDGE;

    // Reads see the data area from localoff on.
    for (const at of [0, last]) {
      const buf = Buffer.alloc(EDGE);
      await area.read(buf, at);
      assert.ok(buf.equals(model.subarray(at, at + EDGE)), `read at ${at}`);
    }
    const lastByte = Buffer.alloc(1);
    await area.read(lastByte, DATASIZE - 1);
    assert.equal(lastByte[0], model[DATASIZE - 1]);
    // An empty range touches nothing and may sit at the very end.
    await area.read(Buffer.alloc(0), DATASIZE);

    // Writes: one buffer at the start, several (contiguous) at the end, single bytes at the edges.
    const first = pattern(EDGE, 1);
    await area.write([first], 0);
    first.copy(model, 0);
    const end = pattern(EDGE, 2);
    await area.write([end.subarray(0, 1000), end.subarray(1000, 5000), end.subarray(5000)], last);
    end.copy(model, last);
    await area.write([Buffer.from([0xa5])], DATASIZE - 1);
    model[DATASIZE - 1] = 0xa5;
    await area.write([Buffer.from([0x5a])], 0);
    model[0] = 0x5a;
    await area.flush();
    assertDisk(path, image, model);

    // Discard (a hole in a file: reads back as zeroes), aligned and not, at both ends.
    await area.discard(0, EDGE);
    await area.discard(last + 100, EDGE - 100);
    model.fill(0, 0, EDGE);
    model.fill(0, last + 100, DATASIZE);
    assertDisk(path, image, model);

    // Write-zeroes after rewriting the edges with data.
    await area.write([pattern(EDGE, 3)], 0);
    await area.write([pattern(EDGE, 4)], last);
    pattern(EDGE, 3).copy(model, 0);
    pattern(EDGE, 4).copy(model, last);
    await area.writeZeroes(0, 512);
    await area.writeZeroes(DATASIZE - 777, 777);
    model.fill(0, 0, 512);
    model.fill(0, DATASIZE - 777, DATASIZE);
    await area.flush();
    assertDisk(path, image, model);
  });

  // [offset, length] pairs that reach out of [0, DATASIZE): into the bitmap, past the end, or not
  // a byte range at all.
  const outside: readonly (readonly [number, number])[] = [
    [-512, 512],
    [-1, 1],
    [-LOCALOFF, 4096],
    [DATASIZE, 1],
    [DATASIZE - 512, 1024],
    [DATASIZE + 4096, 512],
    [DATASIZE - 1, 2],
    [1, DATASIZE],
    [0, DATASIZE + 1],
    [2 ** 53, 512],
    [0.5, 512],
    [Number.NaN, 512],
    [Number.POSITIVE_INFINITY, 512],
    [0, -1],
    [512, 0.5],
    [DATASIZE + 1, 0],
  ];

  test('out-of-range requests of every kind are refused with EINVAL and never reach the component', async () => {
    const { comp, calls } = spyComponent();
    const area = new DataArea(comp, LOCALOFF, DATASIZE);
    for (const [offset, length] of outside) {
      const bufLength = Number.isSafeInteger(length) && length >= 0 ? length : 1;
      const attempts: [string, () => Promise<void>][] = [
        ['discard', () => area.discard(offset, length)],
        ['writeZeroes', () => area.writeZeroes(offset, length)],
      ];
      if (bufLength === length) {
        attempts.push(['read', () => area.read(Buffer.alloc(length), offset)]);
        attempts.push(['write', () => area.write([Buffer.alloc(length)], offset)]);
      }
      for (const [kind, run] of attempts) {
        await assert.rejects(run, (err: unknown) => {
          assert.ok(err instanceof DataAreaRangeError, `${kind}(${offset}, ${length}): ${String(err)}`);
          assert.ok(err instanceof ErrnoError);
          assert.equal(err.code, 'EINVAL');
          assert.match(err.message, /outside the data area of \/spy \(1048576 bytes\)/);
          return true;
        });
      }
    }
    // Several buffers that only together cross the end.
    await assert.rejects(area.write([Buffer.alloc(600), Buffer.alloc(600)], DATASIZE - 1024), DataAreaRangeError);
    assert.deepEqual(calls, [], 'no refused request reached the component');
    await area.read(Buffer.alloc(512), DATASIZE - 512);
    await area.flush();
    assert.deepEqual(calls, ['read', 'flush'], 'in-range requests do');
  });

  test('refusals come as rejected promises, not as throws', () => {
    const area = new DataArea(spyComponent().comp, LOCALOFF, DATASIZE);
    const p = area.write([Buffer.alloc(512)], DATASIZE);
    assert.ok(p instanceof Promise);
    return assert.rejects(p, DataAreaRangeError);
  });

  test('out-of-range requests leave the real file untouched', async (t) => {
    const { path, image, area } = await rig(t);
    for (const [offset, length] of outside) {
      await assert.rejects(area.writeZeroes(offset, length), DataAreaRangeError);
      await assert.rejects(area.discard(offset, length), DataAreaRangeError);
      if (Number.isSafeInteger(length) && length >= 0) {
        await assert.rejects(area.write([Buffer.alloc(length, 0xee)], offset), DataAreaRangeError);
      }
    }
    assertDisk(path, image, image.subarray(LOCALOFF, LOCALOFF + DATASIZE));
  });

  test('an invalid data area is refused when it is made', () => {
    const { comp } = spyComponent();
    for (const [off, size] of [
      [-1, 1],
      [0.5, 1],
      [0, -1],
      [0, Number.NaN],
      [2 ** 53, 1],
    ] as const) {
      assert.throws(() => new DataArea(comp, off, size), RangeError);
    }
  });
});
