// The divergence record of the metadata block (issue 17, src/metadata/divergence.ts): its two nv
// elements byte by byte, the generation check, every way of being ignored, the cut when it does not
// fit, and a block without one staying FreeBSD's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { agreedCapacity, withoutAgreed } from '../../../src/metadata/divergence.js';
import { type Metadata, decodeMetadata, encodeMetadata } from '../../../src/metadata/metadata.js';
import { NvList, decodeNv, encodeNv, nvEncodedSize } from '../../../src/nv/codec.js';

const MiB = 1024 * 1024;

const MD: Metadata = {
  resource: 'r0',
  dataSize: 1024 * MiB,
  extentSize: 2 * MiB,
  keepDirty: 64,
  localOff: 8192,
  resuid: 7n,
  localCnt: 3n,
  remoteCnt: 2n,
  prevRole: 'primary',
};

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/[\s|]/g, ''), 'hex');
}

test('the record is two nv elements after the upstream ones, as HAST-SPEC §3.1 lays them out', () => {
  const plain = encodeMetadata(MD);
  const block = encodeMetadata({ ...MD, agreed: { localCnt: 3n, remoteCnt: 2n, extents: [4, 300] } });
  const at = nvEncodedSize(decodeNv(plain));
  assert.deepEqual(block.subarray(0, at), plain.subarray(0, at), 'the upstream fields are unchanged');
  // type, namesize, LE dsize | name + NUL padded to 8 | value padded to 8:
  // uint64 array (16) "agreedcnt" = [3, 2]; uint32 array (14) "agreed" = [4, 300].
  const tail = hex(`
    10 0a 10000000 | 616772656564636e 74 00 000000000000 | 0300000000000000 0200000000000000
    0e 07 08000000 | 61677265656400 00 | 04000000 2c010000
  `);
  assert.deepEqual(block.subarray(at, at + tail.length), tail);
  assert.ok(
    block.subarray(at + tail.length).every((b) => b === 0),
    'zero padding to 4096',
  );
  assert.deepEqual(decodeMetadata(block).agreed, { localCnt: 3n, remoteCnt: 2n, extents: [4, 300] });
});

test('no record: the block is byte-identical to one without the field (FreeBSD reads it as before)', () => {
  const plain = encodeMetadata(MD);
  assert.deepEqual(encodeMetadata({ ...MD, agreed: { localCnt: 3n, remoteCnt: 2n, extents: [] } }), plain);
  assert.equal(decodeMetadata(plain).agreed, undefined);
});

test('a record of another generation, malformed or out of range is ignored (the activemap alone counts)', () => {
  const stale = encodeMetadata({ ...MD, agreed: { localCnt: 2n, remoteCnt: 2n, extents: [1] } });
  assert.equal(decodeMetadata(stale).agreed, undefined, 'localcnt moved since it was written');
  const other = encodeMetadata({ ...MD, agreed: { localCnt: 3n, remoteCnt: 1n, extents: [1] } });
  assert.equal(decodeMetadata(other).agreed, undefined, 'remotecnt moved since it was written');
  const build = (f: (nv: NvList) => void): Buffer => {
    const nv = decodeNv(encodeMetadata(MD));
    f(nv);
    return encodeNv(nv, 4096);
  };
  const cases: [string, (nv: NvList) => void][] = [
    [
      'past the last extent',
      (nv) => nv.addUint64Array('agreedcnt', BigUint64Array.of(3n, 2n)).addUint32Array('agreed', Uint32Array.of(512)),
    ],
    [
      'not ascending',
      (nv) => nv.addUint64Array('agreedcnt', BigUint64Array.of(3n, 2n)).addUint32Array('agreed', Uint32Array.of(5, 5)),
    ],
    [
      'wrong type',
      (nv) => nv.addUint64Array('agreedcnt', BigUint64Array.of(3n, 2n)).addUint8Array('agreed', Uint8Array.of(5)),
    ],
    ['no generation', (nv) => nv.addUint32Array('agreed', Uint32Array.of(5))],
    [
      'short generation',
      (nv) => nv.addUint64Array('agreedcnt', BigUint64Array.of(3n)).addUint32Array('agreed', Uint32Array.of(5)),
    ],
  ];
  for (const [what, f] of cases) {
    const md = decodeMetadata(build(f));
    assert.equal(md.agreed, undefined, what);
    assert.equal(md.localCnt, 3n, `${what}: the rest of the block reads as before`);
  }
});

test('a record larger than the room left is cut to a prefix, and the block still fits 4096 bytes', () => {
  const many = Array.from({ length: 5000 }, (_, i) => i);
  const md = { ...MD, dataSize: 5000 * 2 * MiB };
  const block = encodeMetadata({ ...md, agreed: { localCnt: 3n, remoteCnt: 2n, extents: many } });
  assert.equal(block.length, 4096);
  const back = decodeMetadata(block).agreed;
  assert.ok(back !== undefined);
  const nv = new NvList()
    .addString('resource', 'r0')
    .addUint64('datasize', 1n)
    .addUint32('extentsize', 1)
    .addUint32('keepdirty', 1)
    .addUint64('offset', 1n)
    .addUint64('resuid', 1n)
    .addUint64('localcnt', 1n)
    .addUint64('remotecnt', 1n)
    .addString('prevrole', 'primary');
  assert.equal(back.extents.length, agreedCapacity(nv), 'as many as fit');
  assert.ok(back.extents.length > 900 && back.extents.length < 1000, `${back.extents.length} extents fit`);
  assert.deepEqual(back.extents, many.slice(0, back.extents.length), 'a prefix: a subset of the agreed extents');
});

test('withoutAgreed clears exactly the record’s bits of a map image, on a copy', () => {
  const map = Buffer.from([0xff, 0x0f, 0x00]);
  const out = withoutAgreed(map, [0, 9, 23, 100]);
  assert.deepEqual([...out], [0xfe, 0x0d, 0x00]);
  assert.deepEqual([...map], [0xff, 0x0f, 0x00], 'the input is left alone');
});
