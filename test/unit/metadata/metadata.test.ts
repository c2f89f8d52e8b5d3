// Metadata block: golden 4096 bytes written by hand from HAST-SPEC §3.1/§3.2, strict decoding,
// resource check, and bitmap sizing from stored metadata (HAST-SPEC §3.3, §11.10).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NvList, encodeNv } from '../../../src/nv/codec.js';
import {
  type Metadata,
  MetadataError,
  decodeMetadata,
  encodeMetadata,
  readBitmap,
  readMetadata,
  writeBitmap,
  writeMetadata,
} from '../../../src/metadata/metadata.js';
import { createResource } from '../../../src/metadata/create.js';
import { MemComponent } from './mem-component.js';

const MiB = 1024 * 1024;

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/[\s|]/g, ''), 'hex');
}

// The nv list of the worked example (10 GiB disk, 2 MiB extents), element by element:
// type, namesize, LE dsize | name + NUL padded to 8 | value padded to 8.
const GOLDEN_LIST = hex(`
  11 09 03000000 | 7265736f75726365 00 00000000000000 | 723000 0000000000
  08 09 08000000 | 6461746173697a65 00 00000000000000 | 00ecff7f02000000
  06 0b 04000000 | 657874656e7473697a65 00 0000000000 | 00002000 00000000
  06 0a 04000000 | 6b65657064697274 79 00 000000000000 | 40000000 00000000
  08 07 08000000 | 6f666673657400 00 | 0014000000000000
  08 07 08000000 | 72657375696400 00 | 8877665544332211
  08 09 08000000 | 6c6f63616c636e74 00 00000000000000 | 0300000000000000
  08 0a 08000000 | 72656d6f7465636e 74 00 000000000000 | 0200000000000000
  11 09 08000000 | 70726576726f6c65 00 00000000000000 | 7072696d61727900
`);
const GOLDEN_BLOCK = Buffer.concat([GOLDEN_LIST, Buffer.alloc(4096 - GOLDEN_LIST.length)]);

const GOLDEN_MD: Metadata = {
  resource: 'r0',
  dataSize: 10737413120,
  extentSize: 2 * MiB,
  keepDirty: 64,
  localOff: 5120,
  resuid: 0x1122334455667788n,
  localCnt: 3n,
  remoteCnt: 2n,
  prevRole: 'primary',
};

/** The golden list rebuilt with one field dropped or replaced. */
function variant(drop: string, replace?: (nv: NvList) => void): Buffer {
  const nv = new NvList();
  if (drop !== 'resource') nv.addString('resource', 'r0');
  if (drop !== 'datasize') nv.addUint64('datasize', 10737413120n);
  if (drop !== 'extentsize') nv.addUint32('extentsize', 2 * MiB);
  if (drop !== 'keepdirty') nv.addUint32('keepdirty', 64);
  if (drop !== 'offset') nv.addUint64('offset', 5120n);
  if (drop !== 'resuid') nv.addUint64('resuid', 1n);
  if (drop !== 'localcnt') nv.addUint64('localcnt', 0n);
  if (drop !== 'remotecnt') nv.addUint64('remotecnt', 0n);
  if (drop !== 'prevrole') nv.addString('prevrole', 'init');
  replace?.(nv);
  return encodeNv(nv, 4096);
}

describe('metadata block codec', () => {
  test('encodeMetadata() produces the hand-written 4096-byte block', () => {
    const out = encodeMetadata(GOLDEN_MD);
    assert.equal(out.length, 4096);
    assert.deepEqual(out, GOLDEN_BLOCK);
  });

  test('decodeMetadata() reads the hand-written block', () => {
    assert.deepEqual(decodeMetadata(GOLDEN_BLOCK), GOLDEN_MD);
  });

  for (const field of [
    'resource',
    'datasize',
    'extentsize',
    'keepdirty',
    'offset',
    'resuid',
    'localcnt',
    'remotecnt',
    'prevrole',
  ]) {
    test(`decodeMetadata() refuses a block without '${field}'`, () => {
      assert.throws(
        () => decodeMetadata(variant(field)),
        (err: unknown) => err instanceof MetadataError && err.message.includes(`'${field}'`),
      );
    });
  }

  test('decodeMetadata() refuses a field of the wrong type', () => {
    const buf = variant('extentsize', (nv) => nv.addUint64('extentsize', 4096n));
    assert.throws(() => decodeMetadata(buf), /'extentsize' is uint64, expected uint32/);
  });

  test('decodeMetadata() refuses a malformed nv list and an all-zero block', () => {
    const bad = Buffer.from(GOLDEN_BLOCK);
    bad[0] = 0x91; // host-order flag
    assert.throws(() => decodeMetadata(bad), MetadataError);
    assert.throws(() => decodeMetadata(Buffer.alloc(4096)), /no 'resource' field/);
  });

  test('decodeMetadata() reads an unknown prevrole as init, as upstream', () => {
    const buf = variant('prevrole', (nv) => nv.addString('prevrole', 'bogus'));
    assert.equal(decodeMetadata(buf).prevRole, 'init');
  });

  test('decodeMetadata() refuses extentsize 0 and an offset inside the block', () => {
    assert.throws(() => decodeMetadata(variant('extentsize', (nv) => nv.addUint32('extentsize', 0))), MetadataError);
    assert.throws(() => decodeMetadata(variant('offset', (nv) => nv.addUint64('offset', 100n))), MetadataError);
  });

  test('decodeMetadata() refuses a datasize beyond 2^53 - 1', () => {
    assert.throws(() => decodeMetadata(variant('datasize', (nv) => nv.addUint64('datasize', 1n << 60n))), /too large/);
  });
});

describe('readMetadata() / writeMetadata()', () => {
  test('writeMetadata() then readMetadata() round-trips through the component', async () => {
    const comp = new MemComponent(MiB);
    await writeMetadata(comp, { ...GOLDEN_MD, dataSize: 1000, localOff: 4608 });
    assert.deepEqual(await readMetadata(comp, 'r0'), { ...GOLDEN_MD, dataSize: 1000, localOff: 4608 });
    assert.ok(
      comp.data.subarray(4096).every((b) => b === 0),
      'nothing written past the block',
    );
  });

  test('readMetadata() refuses metadata of another resource with the upstream message', async () => {
    const comp = new MemComponent(MiB, { path: '/dev/da0' });
    await writeMetadata(comp, GOLDEN_MD);
    await assert.rejects(readMetadata(comp, 'other'), { message: 'Provider /dev/da0 is not part of resource other.' });
    assert.equal((await readMetadata(comp)).resource, 'r0');
  });

  test('readMetadata() of a zeroed component fails with MetadataError', async () => {
    await assert.rejects(readMetadata(new MemComponent(MiB)), MetadataError);
    await assert.rejects(readMetadata(new MemComponent(1000)), MetadataError);
  });
});

describe('bitmap area', () => {
  test('readBitmap() sizes the bitmap from stored metadata, not from the component size', async () => {
    // Created with -m 10 MiB on a 64 MiB component: 10 extents of 1 MiB, 512 bytes reserved.
    const comp = new MemComponent(64 * MiB, { fill: 0xaa });
    const md = await createResource({ component: comp, resource: 'r0', extentSize: MiB, mediaSize: 10 * MiB });
    assert.equal(md.localOff, 4608);
    const bm = await readBitmap(comp, md);
    assert.equal(bm.length, 512);
    assert.ok(bm.every((b) => b === 0));
  });

  test('writeBitmap() never writes past localoff into user data (upstream bug 10)', async () => {
    const comp = new MemComponent(64 * MiB, { fill: 0xaa });
    const md = await createResource({ component: comp, resource: 'r0', extentSize: MiB, mediaSize: 10 * MiB });
    // A bitmap sized from the component (the upstream secondary's mistake) is cut to the reserved area.
    await writeBitmap(comp, md, Buffer.alloc((64 * MiB) / MiB / 8 + 4096, 0xff));
    assert.equal(comp.data[4096 + 511], 0xff);
    assert.ok(
      comp.data.subarray(md.localOff, md.localOff + 8192).every((b) => b === 0xaa),
      'user data intact',
    );
    assert.deepEqual((await readBitmap(comp, md)).subarray(0, 2), Buffer.from([0xff, 0xff]));
  });

  test('writeBitmap() refuses metadata whose extents need more bitmap than reserved', async () => {
    const comp = new MemComponent(MiB);
    const md: Metadata = { ...GOLDEN_MD, dataSize: 4096 * 8 * 600, extentSize: 4096, localOff: 4096 + 512 };
    await assert.rejects(writeBitmap(comp, md, Buffer.alloc(600)), MetadataError);
  });
});

// Ours (issue 13): `inconsistent` (uint8 1) after prevrole, present only while the copy is an
// unfinished sync target; FreeBSD reads its fields by name and ignores it.
describe('metadata consistency flag', () => {
  // type 2 (uint8), namesize 13, dsize 1 | "inconsistent" + NUL padded to 16 | 01 padded to 8.
  const FLAG = hex('02 0d 01000000 | 696e636f6e73697374656e74 00 000000 | 01 00000000000000');

  test('a consistent copy is byte-identical to the FreeBSD block (false and absent alike)', () => {
    assert.deepEqual(encodeMetadata({ ...GOLDEN_MD, inconsistent: false }), GOLDEN_BLOCK);
    assert.deepEqual(encodeMetadata(GOLDEN_MD), GOLDEN_BLOCK);
  });

  test('an inconsistent copy appends the flag after prevrole, nothing else changes', () => {
    const out = encodeMetadata({ ...GOLDEN_MD, inconsistent: true });
    const list = Buffer.concat([GOLDEN_LIST, FLAG]);
    assert.deepEqual(out, Buffer.concat([list, Buffer.alloc(4096 - list.length)]));
    assert.deepEqual(decodeMetadata(out), { ...GOLDEN_MD, inconsistent: true });
  });

  test('a FreeBSD block (no flag) decodes as consistent', () => {
    assert.equal(decodeMetadata(GOLDEN_BLOCK).inconsistent, undefined);
    assert.equal('inconsistent' in decodeMetadata(GOLDEN_BLOCK), false);
  });

  test('a flag of 0 or of another integer type is read by value', () => {
    assert.equal(decodeMetadata(variant('', (nv) => nv.addUint8('inconsistent', 0))).inconsistent, undefined);
    assert.equal(decodeMetadata(variant('', (nv) => nv.addUint32('inconsistent', 1))).inconsistent, true);
  });

  test('writeMetadata(durable) makes the flag stable before it resolves', async () => {
    const comp = new MemComponent(1 * MiB);
    let flushed = 0;
    comp.flush = async () => {
      flushed++;
    };
    await writeMetadata(comp, { ...GOLDEN_MD, dataSize: 1000, localOff: 4608, inconsistent: true }, true);
    assert.equal(flushed, 1);
    assert.equal((await readMetadata(comp, 'r0')).inconsistent, true);
  });
});
