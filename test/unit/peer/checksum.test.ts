// Payload checksums (HAST-SPEC §6.2): crc32 stored as 4 little-endian bytes, sha256 as 32 bytes.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NvList } from '../../../src/nv/codec.js';
import { addChecksum, computeHash, crc32, verifyChecksum } from '../../../src/peer/checksum.js';
import { PeerProtocolError } from '../../../src/peer/errors.js';

const CHECK = Buffer.from('123456789');

describe('checksum', () => {
  test('crc32() is the standard CRC-32: "123456789" → 0xCBF43926', () => {
    assert.equal(crc32(CHECK), 0xcbf43926);
    assert.equal(crc32(Buffer.alloc(0)), 0);
  });

  test('crc32 hash bytes are little-endian', () => {
    assert.deepEqual([...computeHash('crc32', CHECK)], [0x26, 0x39, 0xf4, 0xcb]);
  });

  test('sha256 hash is the 32-byte digest', () => {
    assert.equal(
      computeHash('sha256', Buffer.from('abc')).toString('hex'),
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });

  test('addChecksum() adds checksum and hash fields; none adds nothing', () => {
    const nv = new NvList();
    addChecksum('crc32', nv, CHECK);
    assert.equal(nv.getString('checksum'), 'crc32');
    assert.deepEqual([...(nv.getUint8Array('hash') ?? [])], [0x26, 0x39, 0xf4, 0xcb]);
    const none = new NvList();
    addChecksum('none', none, CHECK);
    assert.equal(none.length, 0);
  });

  for (const alg of ['crc32', 'sha256'] as const) {
    test(`verifyChecksum() accepts a good ${alg} and rejects a flipped bit`, () => {
      const nv = new NvList();
      const data = Buffer.from('some payload bytes');
      addChecksum(alg, nv, data);
      verifyChecksum(nv, data);
      const bad = Buffer.from(data);
      bad[3] = (bad[3] as number) ^ 0x10;
      assert.throws(
        () => verifyChecksum(nv, bad),
        (e: unknown) => e instanceof PeerProtocolError && e.code === 'EPEER_CHECKSUM' && e.message === 'Hash mismatch',
      );
    });
  }

  test('verifyChecksum() accepts a header without checksum', () => {
    verifyChecksum(new NvList(), Buffer.from('x'));
  });

  test('verifyChecksum() rejects a missing hash, an unknown algorithm and a wrong hash size', () => {
    assert.throws(() => verifyChecksum(new NvList().addString('checksum', 'crc32'), CHECK), /Hash is missing/);
    assert.throws(
      () => verifyChecksum(new NvList().addString('checksum', 'md5').addUint8Array('hash', new Uint8Array(16)), CHECK),
      /Unknown checksum algorithm 'md5'/,
    );
    assert.throws(
      () =>
        verifyChecksum(new NvList().addString('checksum', 'sha256').addUint8Array('hash', new Uint8Array(4)), CHECK),
      /Invalid hash size \(4\) for sha256, should be 32/,
    );
    // A hash of the wrong nv type counts as missing.
    assert.throws(
      () => verifyChecksum(new NvList().addString('checksum', 'crc32').addUint32('hash', 0xcbf43926), CHECK),
      PeerProtocolError,
    );
  });
});
