// nv codec: golden bytes written by hand from HAST-SPEC §3.1, every rejection rule, round trip,
// and garbage that must only ever raise NvError.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { NV_TYPE, NvError, NvList, decodeNv, encodeNv, nvEncodedSize, type NvElement } from '../../../src/nv/codec.js';

/** Bytes from a hex string with spaces/newlines ignored. */
function hex(s: string): Buffer {
  return Buffer.from(s.replace(/[\s|]/g, ''), 'hex');
}

// uint8 "cmd" = 5: type 2, namesize 4, dsize 1 LE, "cmd\0" padded to 8, value padded to 8.
const CMD_U8 = hex('02 04 01000000 | 636d6400 00000000 | 05 00000000000000');
// uint64 "seq" = 0x0102030405060708, little-endian.
const SEQ_U64 = hex('08 04 08000000 | 73657100 00000000 | 0807060504030201');
// string "resource" = "r0": namesize 9 → 16 bytes of name, dsize 3 → 8 bytes of data.
const RES_STR = hex('11 09 03000000 | 7265736f75726365 00 00000000000000 | 72 30 00 0000000000');
// uint8 array "data" = [1, 2, 3]: type 10, dsize 3.
const DATA_U8A = hex('0a 05 03000000 | 6461746100 000000 | 010203 0000000000');
// uint32 "extentsize" = 2 MiB; int16 "x" = -2; uint16 array "w" = [0x0102, 0xfffe].
const EXT_U32 = hex('06 0b 04000000 | 657874656e7473697a6500 0000000000 | 00002000 00000000');
const X_I16 = hex('03 02 02000000 | 7800 000000000000 | feff 000000000000');
const W_U16A = hex('0c 02 04000000 | 7700 000000000000 | 0201 feff 00000000');

function expectMalformed(buf: Buffer, pattern: RegExp): void {
  assert.throws(
    () => decodeNv(buf),
    (err: unknown) => err instanceof NvError && err.reason === 'malformed' && pattern.test(err.message),
  );
}

describe('encodeNv() golden bytes', () => {
  test('encodeNv() writes a uint8 element as the spec lays it out', () => {
    assert.deepEqual(encodeNv(new NvList().addUint8('cmd', 5)), CMD_U8);
  });
  test('encodeNv() writes a uint64 little-endian', () => {
    assert.deepEqual(encodeNv(new NvList().addUint64('seq', 0x0102030405060708n)), SEQ_U64);
  });
  test('encodeNv() writes a string with its NUL and pads name and data to 8', () => {
    assert.deepEqual(encodeNv(new NvList().addString('resource', 'r0')), RES_STR);
  });
  test('encodeNv() writes a uint8 array', () => {
    assert.deepEqual(encodeNv(new NvList().addUint8Array('data', Uint8Array.of(1, 2, 3))), DATA_U8A);
  });
  test('encodeNv() concatenates elements in order, unaligned as upstream', () => {
    const list = new NvList()
      .addUint8('cmd', 5)
      .addUint64('seq', 0x0102030405060708n)
      .addString('resource', 'r0')
      .addUint8Array('data', Uint8Array.of(1, 2, 3))
      .addUint32('extentsize', 2097152)
      .addInt16('x', -2)
      .addUint16Array('w', Uint16Array.of(0x0102, 0xfffe));
    const expected = Buffer.concat([CMD_U8, SEQ_U64, RES_STR, DATA_U8A, EXT_U32, X_I16, W_U16A]);
    assert.deepEqual(encodeNv(list), expected);
    assert.equal(nvEncodedSize(list), expected.length);
  });
  test('encodeNv() pads to minSize with zeros', () => {
    const out = encodeNv(new NvList().addUint8('cmd', 5), 64);
    assert.equal(out.length, 64);
    assert.deepEqual(out.subarray(0, CMD_U8.length), CMD_U8);
    assert.ok(out.subarray(CMD_U8.length).every((b) => b === 0));
  });
});

describe('decodeNv() golden bytes', () => {
  test('decodeNv() reads every hand-written element back', () => {
    const nv = decodeNv(Buffer.concat([CMD_U8, SEQ_U64, RES_STR, DATA_U8A, EXT_U32, X_I16, W_U16A]));
    assert.equal(nv.getUint8('cmd'), 5);
    assert.equal(nv.getUint64('seq'), 0x0102030405060708n);
    assert.equal(nv.getString('resource'), 'r0');
    assert.deepEqual(nv.getUint8Array('data'), Uint8Array.of(1, 2, 3));
    assert.equal(nv.getUint32('extentsize'), 2097152);
    assert.equal(nv.getInt16('x'), -2);
    assert.deepEqual(nv.getUint16Array('w'), Uint16Array.of(0x0102, 0xfffe));
    assert.equal(nv.length, 7);
  });
  test('decodeNv() accepts trailing zero padding (a metadata block)', () => {
    const block = Buffer.alloc(4096);
    CMD_U8.copy(block);
    const nv = decodeNv(block);
    assert.equal(nv.length, 1);
    assert.equal(nv.getUint8('cmd'), 5);
  });
  test('decodeNv() of an empty buffer or only zeros is an empty list', () => {
    assert.equal(decodeNv(Buffer.alloc(0)).length, 0);
    assert.equal(decodeNv(Buffer.alloc(17)).length, 0);
  });
  test('decodeNv() ignores non-zero bytes in name padding (upstream leaves them uninitialised)', () => {
    const b = Buffer.from(CMD_U8);
    b.fill(0xaa, 10, 14);
    assert.equal(decodeNv(b).getUint8('cmd'), 5);
  });
  test('decodeNv() copies values out of the input buffer', () => {
    const b = Buffer.from(DATA_U8A);
    const nv = decodeNv(b);
    b.fill(0xff);
    assert.deepEqual(nv.getUint8Array('data'), Uint8Array.of(1, 2, 3));
  });
});

describe('decodeNv() rejection rules', () => {
  test('decodeNv() rejects the host byte order flag', () => {
    const b = Buffer.from(CMD_U8);
    b[0] = 0x82;
    expectMalformed(b, /host byte order/);
  });
  test('decodeNv() rejects a header truncated below 8 bytes', () => {
    expectMalformed(CMD_U8.subarray(0, 7), /truncated/);
  });
  test('decodeNv() rejects a name that does not fit', () => {
    expectMalformed(CMD_U8.subarray(0, 12), /name does not fit/);
  });
  test('decodeNv() rejects a name size of 0', () => {
    const b = Buffer.from(CMD_U8);
    b[1] = 0;
    expectMalformed(b, /name size is 0/);
  });
  test('decodeNv() rejects a name without a NUL', () => {
    const b = Buffer.from(CMD_U8);
    b[9] = 0x78; // "cmdx", NUL expected at index 9
    expectMalformed(b, /not NUL-terminated/);
  });
  test('decodeNv() rejects a NUL inside the name', () => {
    const b = Buffer.from(CMD_U8);
    b[7] = 0; // "c\0d\0"
    expectMalformed(b, /NUL inside the name/);
  });
  test('decodeNv() rejects type codes 18..127', () => {
    for (const t of [18, 0x7f]) {
      const b = Buffer.from(CMD_U8);
      b[0] = t;
      expectMalformed(b, /invalid type code/);
    }
  });
  test('decodeNv() rejects a data size of 0', () => {
    const b = Buffer.from(CMD_U8);
    b.writeUInt32LE(0, 2);
    expectMalformed(b, /data size is 0/);
  });
  test('decodeNv() rejects an element longer than the buffer, padding included', () => {
    expectMalformed(CMD_U8.subarray(0, CMD_U8.length - 1), /does not fit/);
    const b = Buffer.from(CMD_U8);
    b.writeUInt32LE(0xffff_ffff, 2);
    expectMalformed(b, /does not fit/);
  });
  test('decodeNv() rejects a scalar whose size is not its width', () => {
    const b = Buffer.from(SEQ_U64);
    b.writeUInt32LE(4, 2);
    expectMalformed(b, /uint64 with data size 4/);
    const c = Buffer.from(CMD_U8);
    c.writeUInt32LE(2, 2);
    expectMalformed(c, /uint8 with data size 2/);
  });
  test('decodeNv() rejects an array size not a multiple of the width', () => {
    const b = Buffer.from(W_U16A);
    b.writeUInt32LE(3, 2);
    expectMalformed(b, /not a multiple of 2/);
  });
  test('decodeNv() rejects a string without its NUL', () => {
    const b = Buffer.from(RES_STR);
    b.writeUInt32LE(2, 2); // "r0" without the NUL
    expectMalformed(b, /string/);
  });
  test('decodeNv() rejects a string with an embedded NUL', () => {
    const b = Buffer.from(RES_STR);
    b[22] = 0; // "\00\0"
    expectMalformed(b, /string/);
  });
  test('decodeNv() rejects the whole list when a later element is bad', () => {
    const bad = Buffer.from(SEQ_U64);
    bad[0] = 40;
    expectMalformed(Buffer.concat([CMD_U8, bad]), /offset 22.*invalid type code 40/);
  });
});

describe('NvList lookups', () => {
  test('NvList returns the first element of a repeated name', () => {
    const nv = decodeNv(encodeNv(new NvList().addUint8('a', 1).addUint8('a', 2)));
    assert.equal(nv.getUint8('a'), 1);
  });
  test('NvList getter with the wrong type returns undefined even if a later element matches', () => {
    const nv = new NvList().addUint32('a', 1).addUint8('a', 2);
    assert.equal(nv.getUint8('a'), undefined);
    assert.equal(nv.getUint32('a'), 1);
    assert.equal(nv.has('a'), true);
    assert.equal(nv.has('b'), false);
    assert.equal(nv.getString('b'), undefined);
  });
  test('requireUint64() names the missing field', () => {
    const nv = new NvList().addUint8('cmd', 1);
    assert.throws(() => nv.requireUint64('seq', 'Header from 10.0.0.2'), {
      name: 'NvError',
      message: "Header from 10.0.0.2 has no 'seq' field",
      reason: 'missing',
      field: 'seq',
    });
  });
  test('requireUint64() names the mistyped field', () => {
    const nv = new NvList().addUint32('seq', 1);
    assert.throws(() => nv.requireUint64('seq', 'Metadata'), {
      message: "Metadata field 'seq' is uint32, expected uint64",
      reason: 'type',
    });
    assert.equal(new NvList().addUint64('seq', 9n).requireUint64('seq'), 9n);
  });
  test('NvList adders reject values outside their type', () => {
    const nv = new NvList();
    assert.throws(() => nv.addUint8('a', 256), NvError);
    assert.throws(() => nv.addInt8('a', -129), NvError);
    assert.throws(() => nv.addUint32('a', 1.5), NvError);
    assert.throws(() => nv.addUint64('a', -1n), NvError);
    assert.throws(() => nv.addInt64('a', 1n << 63n), NvError);
    assert.throws(() => nv.addString('a', 'x\0y'), NvError);
    assert.throws(() => nv.addUint8Array('a', new Uint8Array(0)), NvError);
    assert.throws(() => nv.addUint8('', 1), NvError);
    assert.throws(() => nv.addUint8('x'.repeat(255), 1), NvError);
    nv.addUint8('x'.repeat(254), 1);
    assert.equal(nv.length, 1);
  });
});

// Arbitrary elements of every type, for round-trip and mutation properties.
const nameArb = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0'));
const elementArb: fc.Arbitrary<NvElement> = fc.oneof(
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.INT8), value: fc.integer({ min: -128, max: 127 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.UINT8), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.INT16), value: fc.integer({ min: -32768, max: 32767 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.UINT16), value: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.INT32), value: fc.integer() }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.UINT32), value: fc.nat({ max: 0xffffffff }) }),
  fc.record({
    name: nameArb,
    type: fc.constant(NV_TYPE.INT64),
    value: fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
  }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.UINT64), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.STRING), value: fc.string().filter((s) => !s.includes('\0')) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.INT8_ARRAY), value: fc.int8Array({ minLength: 1 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.UINT8_ARRAY), value: fc.uint8Array({ minLength: 1 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.INT16_ARRAY), value: fc.int16Array({ minLength: 1 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.UINT16_ARRAY), value: fc.uint16Array({ minLength: 1 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.INT32_ARRAY), value: fc.int32Array({ minLength: 1 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.UINT32_ARRAY), value: fc.uint32Array({ minLength: 1 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.INT64_ARRAY), value: fc.bigInt64Array({ minLength: 1 }) }),
  fc.record({ name: nameArb, type: fc.constant(NV_TYPE.UINT64_ARRAY), value: fc.bigUint64Array({ minLength: 1 }) }),
) as fc.Arbitrary<NvElement>;

function listOf(elements: readonly NvElement[]): NvList {
  const nv = new NvList();
  for (const el of elements) nv.addElement(el);
  return nv;
}

function onlyNvErrors(buf: Buffer): void {
  try {
    decodeNv(buf);
  } catch (err) {
    if (!(err instanceof NvError)) throw err;
  }
}

describe('nv properties', () => {
  test('decodeNv(encodeNv(x)) equals x for any list', () => {
    fc.assert(
      fc.property(fc.array(elementArb, { maxLength: 12 }), (elements) => {
        const encoded = encodeNv(listOf(elements));
        assert.equal(encoded.length % 2, 0); // 6 + 8k + 8m per element
        const back = decodeNv(encoded);
        assert.deepEqual(
          [...back],
          elements.map((e) => ({ ...e })),
        );
        assert.deepEqual(encodeNv(back), encoded);
      }),
    );
  });
  test('decodeNv() of random bytes throws nothing but NvError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => onlyNvErrors(Buffer.from(bytes))));
  });
  test('decodeNv() of a mutated valid list throws nothing but NvError', () => {
    fc.assert(
      fc.property(
        fc.array(elementArb, { minLength: 1, maxLength: 5 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (elements, flips, cut) => {
          const b = encodeNv(listOf(elements));
          for (const [at, v] of flips) b[at % b.length] = v;
          onlyNvErrors(b);
          onlyNvErrors(b.subarray(0, cut % (b.length + 1)));
        },
      ),
    );
  });
});
