// The data path's wire adapter (src/secondary/wire.ts) on top of src/nv and src/peer: every
// compression × checksum combination round-trips, lzf really compresses, corruption is detected,
// and frames interoperate both ways with src/peer's own encoder and reader.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NvList } from '../../../src/nv/codec.js';
import { encodeMessage, MessageReader } from '../../../src/peer/framing.js';
import { decodePayload, encodeFrame, FrameReader, nvU64, type PayloadOptions, WireError } from '../../../src/secondary/wire.js';

const COMPRESSIONS = ['none', 'hole', 'lzf'] as const;
const CHECKSUMS = ['none', 'crc32', 'sha256'] as const;
const MAX = 1024 * 1024;

/** Payloads that exercise each compressor path: zeros (hole), text (lzf), noise (sent as is). */
const PAYLOADS: Record<string, Buffer> = {
  zeros: Buffer.alloc(64 * 1024),
  text: Buffer.from('hastd replicates blocks; '.repeat(4000)),
  noise: randomBytes(128 * 1024),
  small: Buffer.from('tiny'),
};

function readOne(bytes: Buffer): { nv: import('../../../src/secondary/wire.js').NvFields; payload: Buffer | null } {
  const r = new FrameReader({ maxNv: 64 * 1024, maxPayload: MAX });
  r.push(bytes);
  const f = r.next();
  assert.ok(f !== null, 'a whole frame');
  assert.equal(r.buffered, 0);
  return f;
}

describe('encodeFrame() / decodePayload()', () => {
  for (const compression of COMPRESSIONS) {
    for (const checksum of CHECKSUMS) {
      test(`${compression} + ${checksum}: every payload round-trips, and src/peer reads the same bytes`, () => {
        const opts: PayloadOptions = { compression, checksum };
        for (const [name, data] of Object.entries(PAYLOADS)) {
          const bytes = Buffer.concat(encodeFrame(2, [nvU64('seq', 7n)], data, opts));
          const f = readOne(bytes);
          assert.equal(f.nv.int('seq', 8), 7n);
          assert.ok(f.payload !== null);
          assert.deepEqual(decodePayload(f.nv, f.payload, MAX), data, `${name} via FrameReader`);
          const msgs = new MessageReader().push(bytes);
          assert.equal(msgs.length, 1);
          assert.deepEqual(msgs[0]?.payload, data, `${name} via src/peer MessageReader`);
        }
      });

      test(`${compression} + ${checksum}: frames from src/peer's encoder decode here`, () => {
        for (const data of Object.values(PAYLOADS)) {
          const bytes = Buffer.concat(encodeMessage(new NvList().addUint64('seq', 9n), data, { compression, checksum }));
          const f = readOne(bytes);
          assert.ok(f.payload !== null);
          assert.deepEqual(decodePayload(f.nv, f.payload, MAX), data);
        }
      });
    }
  }

  test('lzf compresses a compressible payload and names it in the header', () => {
    const data = PAYLOADS['text'] as Buffer;
    const f = readOne(Buffer.concat(encodeFrame(2, [], data, { compression: 'lzf', checksum: 'none' })));
    assert.equal(f.nv.string('compression'), 'lzf');
    assert.ok(f.payload !== null && f.payload.length < data.length / 4, `sent ${f.payload?.length} bytes for ${data.length}`);
  });

  test('hole sends an all-zero payload as 4 bytes', () => {
    const f = readOne(Buffer.concat(encodeFrame(2, [], Buffer.alloc(1 << 20), { compression: 'hole', checksum: 'crc32' })));
    assert.equal(f.nv.string('compression'), 'hole');
    assert.equal(f.payload?.length, 4);
  });

  for (const checksum of ['crc32', 'sha256'] as const) {
    test(`${checksum}: one flipped payload bit is a hash mismatch`, () => {
      const bytes = Buffer.concat(encodeFrame(2, [], PAYLOADS['noise'] as Buffer, { compression: 'lzf', checksum }));
      bytes[bytes.length - 100] = (bytes[bytes.length - 100] ?? 0) ^ 0x10;
      const f = readOne(bytes);
      assert.ok(f.payload !== null);
      assert.throws(() => decodePayload(f.nv, f.payload as Buffer, MAX), (e: unknown) => e instanceof WireError && /Hash mismatch/.test(e.message));
    });
  }

  test('a corrupt lzf stream without a checksum is refused, not mis-decoded', () => {
    const bytes = Buffer.concat(encodeFrame(2, [], PAYLOADS['text'] as Buffer, { compression: 'lzf', checksum: 'none' }));
    const f = readOne(bytes);
    assert.ok(f.payload !== null);
    const bad = Buffer.from(f.payload);
    bad.writeUInt32LE(50_000, 0); // declared size no longer matches what the stream produces
    assert.throws(() => decodePayload(f.nv, bad, MAX), WireError);
  });

  test('a declared decompressed size above the receive limit is refused before allocating', () => {
    const f = readOne(Buffer.concat(encodeFrame(2, [], Buffer.alloc(1 << 20), { compression: 'hole', checksum: 'none' })));
    assert.ok(f.payload !== null);
    assert.throws(() => decodePayload(f.nv, f.payload as Buffer, 4096), (e: unknown) => e instanceof WireError && /exceeds/.test(e.message));
  });
});
