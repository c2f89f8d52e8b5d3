// Peer message framing (HAST-SPEC §6.2): golden bytes from the spec, every compression × checksum
// pipeline, split delivery, limits enforced before buffering, garbage in → PeerProtocolError out.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NvList } from '../../../src/nv/codec.js';
import { encodeMessage, MessageReader, MAXPHYS, type PeerMessage } from '../../../src/peer/framing.js';
import { PeerProtocolError } from '../../../src/peer/errors.js';

/** `{resource: "r0" (string), version: 2 (uint8)}` framed, written byte by byte from §3.1 and §6.2. */
const GOLDEN_HANDSHAKE = Buffer.from([
  // Message header: version 2, nv length 52 (uint32 LE).
  0x02, 0x34, 0x00, 0x00, 0x00,
  // Element 1: type 17 (string), namesize 9, datasize 3 (LE).
  0x11, 0x09, 0x03, 0x00, 0x00, 0x00,
  // "resource\0" padded to 16.
  0x72, 0x65, 0x73, 0x6f, 0x75, 0x72, 0x63, 0x65, 0x00, 0, 0, 0, 0, 0, 0, 0,
  // "r0\0" padded to 8.
  0x72, 0x30, 0x00, 0, 0, 0, 0, 0,
  // Element 2: type 2 (uint8), namesize 8, datasize 1.
  0x02, 0x08, 0x01, 0x00, 0x00, 0x00,
  // "version\0" (already a multiple of 8).
  0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x00,
  // 2, padded to 8.
  0x02, 0, 0, 0, 0, 0, 0, 0,
]);

const PLAIN = { compression: 'none', checksum: 'none' } as const;

function frame(nv: NvList, payload?: Buffer, opts: Parameters<typeof encodeMessage>[2] = PLAIN): Buffer {
  return Buffer.concat(encodeMessage(nv, payload, opts));
}

function readAll(bytes: Buffer, reader = new MessageReader()): PeerMessage[] {
  return reader.push(bytes);
}

function isPeerError(code?: string, re?: RegExp) {
  return (e: unknown) =>
    e instanceof PeerProtocolError &&
    (code === undefined || e.code === code) &&
    (re === undefined || re.test(e.message));
}

describe('encodeMessage()', () => {
  test('frames the first handshake message exactly as the spec lays it out', () => {
    const nv = new NvList().addString('resource', 'r0').addUint8('version', 2);
    assert.deepEqual(frame(nv), GOLDEN_HANDSHAKE);
  });

  test('returns the header and the payload as separate buffers, payload not copied', () => {
    const payload = Buffer.from('0123456789abcdef');
    const parts = encodeMessage(new NvList().addUint64('seq', 1n), payload, PLAIN);
    assert.equal(parts.length, 2);
    assert.equal(parts[1], payload);
  });

  test('adds size (uint32), then checksum and hash for a payload', () => {
    const nv = new NvList();
    encodeMessage(nv, Buffer.from('123456789'), { compression: 'none', checksum: 'crc32' });
    assert.equal(nv.getUint32('size'), 9);
    assert.equal(nv.getString('checksum'), 'crc32');
    assert.deepEqual([...(nv.getUint8Array('hash') ?? [])], [0x26, 0x39, 0xf4, 0xcb]);
    assert.equal(nv.has('compression'), false);
  });

  test('adds compression only when it compressed, and size is the length as sent', () => {
    const nv = new NvList();
    const parts = encodeMessage(nv, Buffer.alloc(65536), { compression: 'hole', checksum: 'none' });
    assert.equal(nv.getString('compression'), 'hole');
    assert.equal(nv.getUint32('size'), 4);
    assert.deepEqual(parts[1], Buffer.from([0, 0, 1, 0]));
  });

  test('an empty payload sends no size', () => {
    const nv = new NvList();
    assert.equal(encodeMessage(nv, Buffer.alloc(0), PLAIN).length, 1);
    assert.equal(nv.has('size'), false);
  });

  test('uses the given version byte', () => {
    assert.equal(frame(new NvList().addUint8('cmd', 5), undefined, { ...PLAIN, version: 1 })[0], 1);
  });
});

describe('MessageReader', () => {
  test('decodes the golden handshake bytes', () => {
    const [msg, ...rest] = readAll(GOLDEN_HANDSHAKE);
    assert.equal(rest.length, 0);
    assert.ok(msg);
    assert.equal(msg.version, 2);
    assert.equal(msg.nv.getString('resource'), 'r0');
    assert.equal(msg.nv.getUint8('version'), 2);
    assert.equal(msg.payload, undefined);
  });

  test('decodes a golden message with a crc32-checked payload', () => {
    // {size: uint32 3, checksum: "crc32", hash: uint8[4]} + "abc"; crc32("abc") = 0x352441c2.
    const nvBytes = Buffer.from([
      0x06,
      0x05,
      0x04,
      0,
      0,
      0,
      ...Buffer.from('size\0\0\0\0'),
      0x03,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0x11,
      0x09,
      0x06,
      0,
      0,
      0,
      ...Buffer.from('checksum\0\0\0\0\0\0\0\0'),
      ...Buffer.from('crc32\0\0\0'),
      0x0a,
      0x05,
      0x04,
      0,
      0,
      0,
      ...Buffer.from('hash\0\0\0\0'),
      0xc2,
      0x41,
      0x24,
      0x35,
      0,
      0,
      0,
      0,
    ]);
    const head = Buffer.from([2, 0, 0, 0, 0]);
    head.writeUInt32LE(nvBytes.length, 1);
    const [msg] = readAll(Buffer.concat([head, nvBytes, Buffer.from('abc')]));
    assert.equal(msg?.payload?.toString(), 'abc');
    // The same message with one payload byte changed is refused.
    assert.throws(() => readAll(Buffer.concat([head, nvBytes, Buffer.from('abd')])), isPeerError('EPEER_CHECKSUM'));
  });

  const payloads: Array<[string, Buffer]> = [
    ['zeros', Buffer.alloc(MAXPHYS)],
    ['compressible', Buffer.from('hastd replicates blocks; '.repeat(3000))],
    ['random', Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 2654435761) >>> 24))],
    ['tiny', Buffer.from('x')],
  ];
  for (const compression of ['none', 'hole', 'lzf'] as const) {
    for (const checksum of ['none', 'crc32', 'sha256'] as const) {
      test(`round-trips every payload kind with compression ${compression} and checksum ${checksum}`, () => {
        const bytes = Buffer.concat(
          payloads.flatMap(([name, p]) =>
            encodeMessage(new NvList().addString('kind', name), p, { compression, checksum }),
          ),
        );
        const msgs = readAll(bytes);
        assert.deepEqual(
          msgs.map((m) => m.nv.getString('kind')),
          payloads.map(([n]) => n),
        );
        msgs.forEach((m, i) => assert.ok(m.payload?.equals(payloads[i]?.[1] as Buffer), `payload ${i}`));
      });

      if (checksum !== 'none') {
        test(`a corrupted payload byte is detected with compression ${compression} and checksum ${checksum}`, () => {
          for (const [, p] of payloads) {
            const parts = encodeMessage(new NvList(), p, { compression, checksum });
            const body = Buffer.from(parts[1] as Buffer);
            body[body.length >>> 1] = (body[body.length >>> 1] as number) ^ 0x01;
            assert.throws(
              () => readAll(Buffer.concat([parts[0] as Buffer, body])),
              isPeerError('EPEER_CHECKSUM', /Hash mismatch/),
            );
          }
        });
      }
    }
  }

  test('a truncated lzf stream without checksum fails decompression', () => {
    const nv = new NvList();
    const parts = encodeMessage(nv, Buffer.from('abcdefgh'.repeat(1000)), { compression: 'lzf', checksum: 'none' });
    const body = parts[1] as Buffer;
    // Pretend the original was larger than what the stream produces.
    const lying = Buffer.from(body);
    lying.writeUInt32LE(8001, 0);
    assert.throws(() => readAll(Buffer.concat([parts[0] as Buffer, lying])), isPeerError('EPEER_COMPRESSION'));
  });

  test('delivers the same messages whatever the split point', () => {
    const bytes = Buffer.concat([
      GOLDEN_HANDSHAKE,
      frame(new NvList().addUint8('cmd', 2).addUint64('seq', 7n), Buffer.from('payload in the middle'), {
        compression: 'none',
        checksum: 'crc32',
      }),
      frame(new NvList().addUint8('cmd', 5)),
      frame(new NvList().addUint64('seq', 9n), Buffer.alloc(4096), { compression: 'hole', checksum: 'sha256' }),
    ]);
    const expected = readAll(bytes);
    assert.equal(expected.length, 4);
    const summary = (ms: PeerMessage[]) =>
      ms.map((m) => [m.version, [...m.nv].map((e) => e.name), m.payload?.toString('hex')]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const r = new MessageReader();
      const got = [...r.push(bytes.subarray(0, cut)), ...r.push(bytes.subarray(cut))];
      assert.deepEqual(summary(got), summary(expected), `split at ${cut}`);
      assert.equal(r.idle, true);
    }
    const r = new MessageReader();
    const oneByOne: PeerMessage[] = [];
    for (let i = 0; i < bytes.length; i++) oneByOne.push(...r.push(bytes.subarray(i, i + 1)));
    assert.deepEqual(summary(oneByOne), summary(expected));
  });

  test('payload chunks keep their content when the socket reuses its buffers', () => {
    const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => i & 0xff));
    const bytes = frame(new NvList(), payload);
    const r = new MessageReader();
    const got: PeerMessage[] = [];
    const scratch = Buffer.alloc(100);
    for (let i = 0; i < bytes.length; i += 100) {
      const n = bytes.copy(scratch, 0, i, i + 100);
      got.push(...r.push(Buffer.from(scratch.subarray(0, n))));
      scratch.fill(0xaa);
    }
    assert.ok(got[0]?.payload?.equals(payload));
  });

  test('refuses a header version above 2 with "RPC version mismatch"', () => {
    const bytes = Buffer.from(GOLDEN_HANDSHAKE);
    bytes[0] = 3;
    assert.throws(
      () => readAll(bytes),
      (e: unknown) =>
        isPeerError('EPEER_VERSION', /^RPC version mismatch/)(e) && (e as PeerProtocolError).errno === 'ERPCMISMATCH',
    );
  });

  test('accepts version 1 headers and reports the version', () => {
    const bytes = Buffer.from(GOLDEN_HANDSHAKE);
    bytes[0] = 1;
    assert.equal(readAll(bytes)[0]?.version, 1);
  });

  test('refuses an nv length over the limit from the 5 header bytes alone', () => {
    const r = new MessageReader();
    assert.throws(
      () => r.push(Buffer.from([2, 0xff, 0xff, 0xff, 0xff])),
      isPeerError('EPEER_TOO_LARGE', /Header too large/),
    );
    assert.equal(r.buffered, 0);
  });

  test('refuses an oversized declared payload size before buffering it', () => {
    const nv = new NvList().addUint64('seq', 1n).addUint32('size', 0xffffffff);
    const r = new MessageReader();
    assert.throws(
      () => r.push(frame(nv)),
      isPeerError('EPEER_TOO_LARGE', /Payload too large \(4294967295 bytes, limit 1048576\)/),
    );
    assert.equal(r.buffered, 0);
  });

  test('a payload of exactly the limit passes, one byte more is refused', () => {
    const limit = 4096;
    const ok = frame(new NvList(), Buffer.alloc(limit, 1));
    assert.equal(new MessageReader({ maxPayload: limit }).push(ok)[0]?.payload?.length, limit);
    const big = frame(new NvList(), Buffer.alloc(limit + 1, 1));
    assert.throws(() => new MessageReader({ maxPayload: limit }).push(big), isPeerError('EPEER_TOO_LARGE'));
  });

  test('a compressed payload that expands beyond the limit is refused', () => {
    const bytes = frame(new NvList(), Buffer.alloc(8192), { compression: 'hole', checksum: 'none' });
    assert.throws(() => new MessageReader({ maxPayload: 4096 }).push(bytes), isPeerError('EPEER_COMPRESSION'));
  });

  test('a limit function sees the header (handshake bitmap sized by mapsize)', () => {
    const bitmap = Buffer.alloc(3 * MAXPHYS, 0xff);
    const bytes = frame(new NvList().addUint32('mapsize', bitmap.length), bitmap, {
      compression: 'lzf',
      checksum: 'crc32',
    });
    const r = new MessageReader({ maxPayload: (nv) => nv.getUint32('mapsize') ?? 0 });
    assert.ok(r.push(bytes)[0]?.payload?.equals(bitmap));
    assert.throws(() => new MessageReader().push(bytes), isPeerError('EPEER_COMPRESSION'));
    const r2 = new MessageReader();
    r2.setMaxPayload(bitmap.length);
    assert.equal(r2.push(bytes)[0]?.payload?.length, bitmap.length);
  });

  test('a size field of the wrong type is a malformed header', () => {
    assert.throws(() => readAll(frame(new NvList().addUint64('size', 3n))), isPeerError('EPEER_HEADER', /'size'/));
  });

  test('a malformed nv list is a PeerProtocolError naming the header', () => {
    const bytes = Buffer.from(GOLDEN_HANDSHAKE);
    bytes[5] = 0x55; // type code 85
    assert.throws(() => readAll(bytes), isPeerError('EPEER_HEADER', /Unable to decode header/));
  });

  test('after an error the reader stays failed', () => {
    const r = new MessageReader();
    const bad = Buffer.from([9, 0, 0, 0, 0]);
    assert.throws(() => r.push(bad), PeerProtocolError);
    assert.throws(() => r.push(GOLDEN_HANDSHAKE), isPeerError('EPEER_VERSION'));
  });

  test('random garbage only ever produces messages or PeerProtocolError', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 8 }), fc.boolean(), (chunks, prefix) => {
        const r = new MessageReader({ maxPayload: 1 << 16 });
        const stream = prefix
          ? [Buffer.from([2]), ...chunks.map((c) => Buffer.from(c))]
          : chunks.map((c) => Buffer.from(c));
        try {
          for (const c of stream) r.push(c);
        } catch (err) {
          assert.ok(err instanceof PeerProtocolError, String(err));
        }
        assert.ok(r.buffered <= stream.reduce((n, c) => n + c.length, 0));
      }),
      { numRuns: 1000 },
    );
  });

  test('valid headers with mutated bytes only ever produce messages or PeerProtocolError', () => {
    const base = frame(
      new NvList().addUint8('cmd', 2).addUint64('seq', 3n).addUint64('offset', 0n).addUint64('length', 4096n),
      Buffer.from('abcdefgh'.repeat(512)),
      { compression: 'lzf', checksum: 'none' },
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (muts) => {
          const b = Buffer.from(base);
          for (const [at, v] of muts) b[at % b.length] = v;
          try {
            new MessageReader().push(b);
          } catch (err) {
            assert.ok(err instanceof PeerProtocolError, String(err));
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});

// Where the two former readers (secondary/wire FrameReader, this MessageReader) disagreed, decided
// from HAST-SPEC §6.2 and upstream hast_proto.c.
describe('MessageReader: version 0 and an empty header', () => {
  test('accepts header version 0, because upstream hast_proto_recv_hdr only refuses a version above 2 (§6.2)', () => {
    const bytes = Buffer.from(GOLDEN_HANDSHAKE);
    bytes[0] = 0;
    const [msg] = readAll(bytes);
    assert.equal(msg?.version, 0);
    assert.equal(msg?.nv.getString('resource'), 'r0');
  });

  test('refuses an nv length of 0, because upstream never sends one and cannot receive one (proto_common_recv asserts size > 0)', () => {
    assert.throws(() => readAll(Buffer.from([2, 0, 0, 0, 0])), isPeerError('EPEER_HEADER', /Invalid header size 0/));
  });

  test('a payload that fails its checksum names the header it came with (so its request can be failed)', () => {
    const bytes = frame(new NvList().addUint64('seq', 7n), Buffer.from('abc'), {
      compression: 'none',
      checksum: 'crc32',
    });
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0x01;
    assert.throws(
      () => readAll(bytes),
      (e: unknown) =>
        e instanceof PeerProtocolError && e.code === 'EPEER_CHECKSUM' && e.header?.getUint64('seq') === 7n,
    );
  });
});

// Cases carried over from the former secondary/wire.ts tests.
describe('MessageReader: what the data path relies on', () => {
  test('lzf compresses a compressible payload and names it in the header', () => {
    const data = Buffer.from('hastd replicates blocks; '.repeat(4000));
    const bytes = frame(new NvList().addUint64('seq', 1n), data, { compression: 'lzf', checksum: 'crc32' });
    assert.ok(bytes.length < data.length / 4, `sent ${bytes.length} bytes for ${data.length}`);
    const [msg] = readAll(bytes);
    assert.equal(msg?.nv.getString('compression'), 'lzf');
    assert.deepEqual(msg?.payload, data);
  });

  test('a corrupt lzf stream without a checksum is refused, not mis-decoded', () => {
    const nv = new NvList().addUint64('seq', 1n);
    const [head, payload] = encodeMessage(nv, Buffer.from('hastd replicates blocks; '.repeat(4000)), {
      compression: 'lzf',
      checksum: 'none',
    });
    assert.ok(head !== undefined && payload !== undefined);
    const bad = Buffer.from(payload);
    bad.writeUInt32LE(50_000, 0); // the declared size no longer matches what the stream produces
    assert.throws(() => readAll(Buffer.concat([head, bad])), isPeerError('EPEER_COMPRESSION'));
  });

  test('a declared decompressed size above the limit is refused before allocating', () => {
    const bytes = frame(new NvList().addUint64('seq', 1n), Buffer.alloc(1 << 20), {
      compression: 'hole',
      checksum: 'none',
    });
    assert.throws(() => readAll(bytes, new MessageReader({ maxPayload: 4096 })), PeerProtocolError);
  });
});
