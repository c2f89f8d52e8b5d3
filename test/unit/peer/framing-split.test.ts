// MessageReader at every split: the same messages, payloads verified and decompressed, whatever
// the cuts, including a payload that spans chunks (assembled with one copy) and empty payloads.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NvList } from '../../../src/nv/codec.js';
import { encodeMessage, MessageReader } from '../../../src/peer/framing.js';
import { assertSameAtEverySplit } from '../util/split.js';

describe('MessageReader at every split', () => {
  test('a message sequence with every payload pipeline parses the same whatever the cuts', async () => {
    const payload = Buffer.from(Array.from({ length: 1500 }, (_, i) => (i * 31) & 0xff));
    const bytes = Buffer.concat([
      ...encodeMessage(new NvList().addString('resource', 'r0').addUint8('version', 2), undefined, {
        compression: 'none',
        checksum: 'none',
      }),
      ...encodeMessage(new NvList().addUint8('cmd', 2).addUint64('seq', 7n), payload, {
        compression: 'none',
        checksum: 'crc32',
      }),
      ...encodeMessage(new NvList().addUint8('cmd', 5), Buffer.alloc(0), { compression: 'none', checksum: 'none' }),
      ...encodeMessage(new NvList().addUint64('seq', 9n), Buffer.alloc(2048), {
        compression: 'hole',
        checksum: 'sha256',
      }),
      ...encodeMessage(new NvList().addUint64('seq', 10n), Buffer.from('abcdefgh'.repeat(64)), {
        compression: 'lzf',
        checksum: 'none',
      }),
      ...encodeMessage(new NvList().addUint8('cmd', 1), undefined, {
        version: 1,
        compression: 'none',
        checksum: 'none',
      }),
    ]);
    const parse = (chunks: readonly Buffer[]) => {
      const r = new MessageReader();
      const got = chunks
        .flatMap((c) => r.push(c))
        .map((m) => ({
          version: m.version,
          nv: [...m.nv].map((e) => `${e.name}=${String(e.value)}`),
          payload: m.payload?.toString('hex'),
        }));
      return { got, idle: r.idle, buffered: r.buffered };
    };
    const whole = await assertSameAtEverySplit(bytes, parse, { random: 30 });
    assert.equal(whole.idle, true);
    // Versions and payload sizes in bytes (the hex strings are twice as long).
    assert.deepEqual(
      whole.got.map((m) => [m.version, (m.payload?.length ?? 0) / 2]),
      [
        [2, 0],
        [2, 1500],
        [2, 0],
        [2, 2048],
        [2, 512],
        [1, 0],
      ],
    );
    assert.equal(whole.got[1]?.payload, payload.toString('hex'));
  });

  test('a payload in one chunk is handed on as a subarray of that chunk (no copy)', () => {
    const payload = Buffer.alloc(4096, 0x5a);
    const [head, body] = encodeMessage(new NvList(), payload, { compression: 'none', checksum: 'none' });
    const r = new MessageReader();
    assert.deepEqual(r.push(head as Buffer), []);
    const chunk = Buffer.concat([body as Buffer, Buffer.alloc(0)]);
    const got = r.push(chunk)[0]?.payload;
    assert.ok(
      got !== undefined && got.buffer === chunk.buffer && got.byteOffset === chunk.byteOffset && got.length === 4096,
    );
  });
});
