// Hostile bytes against the pure decoders: the nv decoder, the metadata reader, the peer protocol's
// MessageReader (both roles read with it; more cases in test/unit/peer). Each may only accept or
// throw its own typed error, and a huge declared length is refused from the header alone.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { NvList, NvError, decodeNv, encodeNv } from '../../../src/nv/codec.js';
import { decodeMetadata, encodeMetadata, MetadataError, type Metadata } from '../../../src/metadata/metadata.js';
import { PeerProtocolError } from '../../../src/peer/errors.js';
import { encodeMessage, MessageReader } from '../../../src/peer/framing.js';

function onlyThrows<E>(cls: abstract new (...a: never[]) => E, fn: () => unknown): 'ok' | E {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (!(err instanceof cls))
      throw new Error(`expected ${cls.name}, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, {
        cause: err,
      });
    return err;
  }
}

/** A valid buffer with 1–6 bytes overwritten at random places. */
function mutated(base: Buffer): fc.Arbitrary<Buffer> {
  return fc
    .array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 })
    .map((muts) => {
      const b = Buffer.from(base);
      for (const [at, v] of muts) b[at] = v;
      return b;
    });
}

const RUNS = { numRuns: 2000 };

describe('nv decoder under hostile input', () => {
  const sample = new NvList()
    .addString('resource', 'r0')
    .addUint64('datasize', 123n)
    .addUint32('extentsize', 2 << 20);
  const good = encodeNv(sample);

  test('random bytes give a list or NvError, never another exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => void onlyThrows(NvError, () => decodeNv(b))),
      RUNS,
    );
  });

  test('mutated valid lists give a list or NvError', () => {
    fc.assert(
      fc.property(mutated(good), (b) => void onlyThrows(NvError, () => decodeNv(b))),
      RUNS,
    );
  });

  test('a declared data size of 4 GiB is refused as not fitting, from a 16-byte buffer', () => {
    const b = Buffer.alloc(16);
    b[0] = 10; // uint8 array
    b[1] = 2; // name "a\0"
    b.writeUInt32LE(0xffffffff, 2);
    b.write('a', 6);
    const err = onlyThrows(NvError, () => decodeNv(b));
    assert.ok(err instanceof NvError && /does not fit/.test(err.message), String(err));
  });
});

describe('metadata reader on corrupt blocks', () => {
  const md: Metadata = {
    resource: 'r0',
    dataSize: 1 << 30,
    extentSize: 2 << 20,
    keepDirty: 64,
    localOff: 8192,
    resuid: 77n,
    localCnt: 3n,
    remoteCnt: 2n,
    prevRole: 'primary',
  };
  const block = encodeMetadata(md);

  test('a mutated metadata block decodes or throws MetadataError', () => {
    fc.assert(
      fc.property(mutated(block.subarray(0, 256)), (head) => {
        const b = Buffer.from(block);
        head.copy(b);
        const r = onlyThrows(MetadataError, () => decodeMetadata(b));
        if (r === 'ok') {
          const d = decodeMetadata(b);
          assert.ok(d.extentSize > 0 && d.localOff >= 4096, 'a decoded block is usable by the data path');
        }
      }),
      RUNS,
    );
  });

  test('random 4 KiB blocks throw MetadataError', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 4096, maxLength: 4096 }),
        (b) => void onlyThrows(MetadataError, () => decodeMetadata(Buffer.from(b))),
      ),
      { numRuns: 300 },
    );
  });
});

function frames(): Buffer {
  const parts = [
    ...encodeMessage(
      new NvList().addString('cmd', 'write').addUint64('offset', 4096n).addUint32('length', 4096),
      Buffer.alloc(4096, 7),
      { checksum: 'crc32', compression: 'none' },
    ),
    ...encodeMessage(new NvList().addString('cmd', 'flush'), undefined, { checksum: 'none', compression: 'none' }),
  ];
  return Buffer.concat(parts);
}

describe('peer framing readers under hostile input', () => {
  test('MessageReader (both roles, production): garbage gives messages or PeerProtocolError', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 8 }), (chunks) => {
        const r = new MessageReader({ maxPayload: 1 << 20 });
        void onlyThrows(PeerProtocolError, () => {
          for (const c of chunks) r.push(Buffer.from(c));
        });
      }),
      RUNS,
    );
  });

  test('MessageReader: mutated valid frames give messages or PeerProtocolError, payloads verified in the reader', () => {
    const good = frames();
    fc.assert(
      fc.property(mutated(good), fc.nat(good.length), (b, split) => {
        const r = new MessageReader({ maxPayload: 1 << 20 });
        void onlyThrows(PeerProtocolError, () => {
          r.push(b.subarray(0, split));
          r.push(b.subarray(split));
        });
      }),
      RUNS,
    );
  });

  test('MessageReader refuses a 4 GiB header length from the 5 header bytes', () => {
    const r = new MessageReader({ maxPayload: 1 << 20 });
    assert.throws(() => r.push(Buffer.from([2, 0xff, 0xff, 0xff, 0xff])), PeerProtocolError);
  });
});
