// LZF and hole compression (HAST-SPEC §6.2): golden streams written by hand from the liblzf format,
// bounds checks, and round-trip properties.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { lzfCompress, lzfDecompress, LzfError } from '../../../src/peer/compression/lzf.js';
import { compressPayload, decompressPayload } from '../../../src/peer/compression/index.js';
import { isAllZeros } from '../../../src/peer/compression/hole.js';
import { PeerProtocolError } from '../../../src/peer/errors.js';

function decompress(stream: number[], outSize: number): Buffer {
  const out = Buffer.alloc(outSize);
  const n = lzfDecompress(Uint8Array.from(stream), out);
  return out.subarray(0, n);
}

describe('lzfDecompress() golden streams', () => {
  test('a literal run 000LLLLL carries L + 1 bytes', () => {
    // 0x04 = literal run of 5 bytes.
    assert.equal(decompress([0x04, 0x68, 0x65, 0x6c, 0x6c, 0x6f], 64).toString(), 'hello');
  });

  test('two literal runs in a row concatenate', () => {
    assert.equal(decompress([0x01, 0x61, 0x62, 0x00, 0x63], 64).toString(), 'abc');
  });

  test('a back reference LLLooooo oooooooo copies L + 2 bytes from offset + 1 back', () => {
    // "abc" literal, then L=4 (6 bytes) from distance 3 (offset field 2): 0x80 0x02.
    assert.equal(decompress([0x02, 0x61, 0x62, 0x63, 0x80, 0x02], 64).toString(), 'abcabcabc');
  });

  test('an overlapping back reference repeats the bytes it has just written', () => {
    // "a", then L=7 with extra 255 (264 bytes) from distance 1, then L=7 extra 26 (35 bytes).
    const out = decompress([0x00, 0x61, 0xe0, 0xff, 0x00, 0xe0, 0x1a, 0x00], 1000);
    assert.equal(out.length, 300);
    assert.equal(out.toString(), 'a'.repeat(300));
  });

  test('the 13-bit offset uses the low 5 bits of the control byte as its high part', () => {
    // 300 literal bytes (runs of 32 ... ), then copy 3 bytes from distance 257 (offset 0x100).
    const lits: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < 300; i++) plain.push(i & 0xff);
    for (let i = 0; i < 300; i += 32) {
      const chunk = plain.slice(i, i + 32);
      lits.push(chunk.length - 1, ...chunk);
    }
    // L = 1 (3 bytes), offset field 0x100: control (1 << 5) | 0x01, then 0x00.
    const out = decompress([...lits, 0x21, 0x00], 400);
    assert.equal(out.length, 303);
    assert.deepEqual(
      [...out.subarray(300)],
      [300 - 257, 300 - 256, 300 - 255].map((i) => i & 0xff),
    );
  });

  test('an empty stream decodes to nothing', () => {
    assert.equal(decompress([], 10).length, 0);
  });
});

describe('lzfDecompress() rejects bad streams without writing out of bounds', () => {
  const bad: Array<[string, number[], number]> = [
    ['a back reference before any output', [0x20, 0x00], 64],
    ['a back reference farther back than the output', [0x01, 0x61, 0x62, 0x20, 0x05], 64],
    ['a truncated literal run', [0x05, 0x61, 0x62], 64],
    ['a back reference missing its offset byte', [0x00, 0x61, 0x20], 64],
    ['a long back reference missing its length byte', [0x00, 0x61, 0xe0], 64],
    ['a literal run larger than the output', [0x04, 1, 2, 3, 4, 5], 4],
    ['a back reference larger than the output', [0x00, 0x61, 0xe0, 0x10, 0x00], 20],
  ];
  for (const [what, stream, size] of bad) {
    test(`throws LzfError for ${what}`, () => {
      const backing = Buffer.alloc(size + 16, 0xee);
      const out = backing.subarray(0, size);
      assert.throws(() => lzfDecompress(Uint8Array.from(stream), out), LzfError);
      assert.ok(
        backing.subarray(size).every((b) => b === 0xee),
        'guard bytes after the output untouched',
      );
    });
  }
});

describe('lzfCompress()', () => {
  test('produces the expected stream for "abcabcabc"', () => {
    const out = Buffer.alloc(64);
    const n = lzfCompress(Buffer.from('abcabcabc'), out);
    assert.deepEqual([...out.subarray(0, n)], [0x02, 0x61, 0x62, 0x63, 0x80, 0x02]);
  });

  test('returns 0 when the stream does not fit in the output', () => {
    const input = Buffer.from('incompressible?');
    assert.equal(lzfCompress(input, Buffer.alloc(input.length)), 0);
  });

  test('round-trips random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 5000 }), (data) => {
        const out = Buffer.alloc(data.length + Math.ceil(data.length / 32) + 16);
        const n = lzfCompress(data, out);
        assert.ok(n > 0);
        const back = Buffer.alloc(data.length);
        assert.equal(lzfDecompress(out.subarray(0, n), back), data.length);
        assert.deepEqual(back, Buffer.from(data));
      }),
    );
  });

  test('round-trips and shrinks compressible data (repeated fragments, long runs, far offsets)', () => {
    const fragment = fc.uint8Array({ minLength: 1, maxLength: 40 });
    const piece = fc.tuple(fragment, fc.integer({ min: 1, max: 400 }));
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 60 }), (pieces) => {
        const data = Buffer.concat(pieces.map(([f, k]) => Buffer.concat(Array(k).fill(Buffer.from(f)))));
        const out = Buffer.alloc(data.length + Math.ceil(data.length / 32) + 16);
        const n = lzfCompress(data, out);
        const back = Buffer.alloc(data.length);
        assert.equal(lzfDecompress(out.subarray(0, n), back), data.length);
        assert.deepEqual(back, data);
        if (data.length > 2000 && pieces.every(([, k]) => k > 20)) assert.ok(n < data.length / 2);
      }),
      { numRuns: 200 },
    );
  });

  test('a 1 MiB repetitive buffer compresses and round-trips', () => {
    const data = Buffer.alloc(1 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251 === 0 ? i & 0xff : 0x41 + (i % 13);
    const out = Buffer.alloc(data.length);
    const n = lzfCompress(data, out);
    assert.ok(n > 0 && n < data.length);
    const back = Buffer.alloc(data.length);
    assert.equal(lzfDecompress(out.subarray(0, n), back), data.length);
    assert.ok(back.equals(data));
  });
});

describe('isAllZeros()', () => {
  test('finds a single non-zero byte anywhere', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200_000 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (n, at, v) => {
        const buf = Buffer.alloc(n);
        assert.equal(isAllZeros(buf), true);
        buf[at % n] = v;
        assert.equal(isAllZeros(buf), false);
      }),
      { numRuns: 100 },
    );
  });
});

describe('compressPayload() / decompressPayload()', () => {
  test('none sends the buffer as is', () => {
    const data = Buffer.alloc(4096);
    const r = compressPayload('none', data);
    assert.equal(r.compression, null);
    assert.equal(r.data, data);
  });

  test('hole turns a zero buffer into its uint32 LE length', () => {
    const r = compressPayload('hole', Buffer.alloc(131072));
    assert.equal(r.compression, 'hole');
    assert.deepEqual([...r.data], [0x00, 0x00, 0x02, 0x00]);
  });

  test('hole leaves a non-zero buffer alone', () => {
    const data = Buffer.alloc(4096, 1);
    assert.equal(compressPayload('hole', data).compression, null);
  });

  test('lzf tests for zeros first and sends a hole', () => {
    assert.equal(compressPayload('lzf', Buffer.alloc(8192)).compression, 'hole');
  });

  test('lzf is not tried at 1024 bytes or less', () => {
    assert.equal(compressPayload('lzf', Buffer.alloc(1024, 0x61)).compression, null);
    assert.equal(compressPayload('lzf', Buffer.alloc(1025, 0x61)).compression, null, 'budget is 1 byte');
    assert.equal(compressPayload('lzf', Buffer.alloc(1100, 0x61)).compression, 'lzf');
  });

  test('lzf payload is the uint32 LE original length followed by the stream', () => {
    const data = Buffer.alloc(2048, 0x61);
    const r = compressPayload('lzf', data);
    assert.equal(r.compression, 'lzf');
    assert.equal(r.data.readUInt32LE(0), 2048);
    // "a" literal, then back references from distance 1.
    assert.deepEqual([...r.data.subarray(4, 7)], [0x00, 0x61, 0xe0]);
    assert.deepEqual(decompressPayload('lzf', r.data, 2048), data);
  });

  test('lzf is dropped unless it saves more than 1024 bytes', () => {
    // 2048 bytes where only the second half repeats: saves < 1024 bytes.
    const data = Buffer.alloc(2048);
    for (let i = 0; i < 1400; i++) data[i] = (i * 2654435761) >>> 24;
    data.fill(0x55, 1400);
    assert.equal(compressPayload('lzf', data).compression, null);
  });

  test('every algorithm round-trips arbitrary payloads', () => {
    const payload = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 4096 }).map((a) => Buffer.from(a)),
      fc.integer({ min: 1, max: 70000 }).map((n) => Buffer.alloc(n)),
      fc
        .tuple(fc.uint8Array({ minLength: 1, maxLength: 16 }), fc.integer({ min: 1, max: 3000 }))
        .map(([f, k]) => Buffer.concat(Array(k).fill(Buffer.from(f)))),
    );
    fc.assert(
      fc.property(fc.constantFrom('none', 'hole', 'lzf' as const), payload, (alg, data) => {
        const r = compressPayload(alg, data);
        const back = r.compression === null ? r.data : decompressPayload(r.compression, r.data, data.length);
        assert.deepEqual(back, data);
      }),
      { numRuns: 300 },
    );
  });

  test('a hole larger than the receive buffer is refused before allocating', () => {
    const payload = Buffer.from([0xff, 0xff, 0xff, 0xff]);
    assert.throws(
      () => decompressPayload('hole', payload, 1 << 20),
      (e: unknown) => e instanceof PeerProtocolError && e.code === 'EPEER_COMPRESSION' && /exceeds/.test(e.message),
    );
  });

  test('an lzf payload declaring more than the receive buffer is refused', () => {
    const r = compressPayload('lzf', Buffer.alloc(4096, 0x61));
    assert.throws(() => decompressPayload('lzf', r.data, 4095), PeerProtocolError);
  });

  test('an lzf stream shorter than its declared length is refused', () => {
    const r = compressPayload('lzf', Buffer.alloc(4096, 0x61));
    const lying = Buffer.from(r.data);
    lying.writeUInt32LE(4000, 0);
    assert.throws(() => decompressPayload('lzf', lying, 1 << 20), PeerProtocolError);
    lying.writeUInt32LE(5000, 0);
    assert.throws(() => decompressPayload('lzf', lying, 1 << 20), /produced 4096 bytes, header declared 5000/);
  });

  test('malformed hole/lzf payloads and unknown names throw PeerProtocolError', () => {
    assert.throws(() => decompressPayload('hole', Buffer.alloc(5), 100), PeerProtocolError);
    assert.throws(() => decompressPayload('lzf', Buffer.alloc(4), 100), PeerProtocolError);
    assert.throws(() => decompressPayload('gzip', Buffer.alloc(4), 100), /Unknown compression algorithm 'gzip'/);
  });

  test('random garbage never escapes as anything but PeerProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), fc.constantFrom('hole', 'lzf'), (bytes, name) => {
        const data = Buffer.from(bytes);
        if (data.length >= 4) data.writeUInt32LE(data.readUInt32LE(0) % 5000, 0);
        try {
          const out = decompressPayload(name, data, 4096);
          assert.ok(out.length <= 4096);
        } catch (err) {
          assert.ok(err instanceof PeerProtocolError, String(err));
        }
      }),
      { numRuns: 500 },
    );
  });
});
