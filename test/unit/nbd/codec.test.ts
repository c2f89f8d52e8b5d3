// Request header decode and reply encoders against bytes written from proto.md, plus round trips.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { NBD_CMD, NBD_CMD_FLAG, NBD_E, nameOfNbdCmd } from '../../../src/nbd/constants.js';
import { codeOfNbdErrno, nbdErrnoOf, nbdErrnoOfCode } from '../../../src/nbd/errno.js';
import {
  writeBlockStatusChunk,
  writeErrorChunk,
  writeOffsetDataHeader,
  writeSimpleReply,
} from '../../../src/nbd/reply.js';
import { decodeRequest, encodeRequest, isRequestMagic, newRequest, readU64BE } from '../../../src/nbd/request.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('decodeRequest()', () => {
  test('decodes a WRITE with FUA from spec bytes', () => {
    // magic 0x25609513, flags FUA, type WRITE, cookie 0102030405060708, offset 1 MiB, length 4096
    const b = hex('25609513 0001 0001 0102030405060708 0000000000100000 00001000');
    const r = decodeRequest(b, 0, newRequest());
    assert.equal(isRequestMagic(r), true);
    assert.equal(r.flags, NBD_CMD_FLAG.FUA);
    assert.equal(r.type, NBD_CMD.WRITE);
    assert.equal(r.cookieHi, 0x01020304);
    assert.equal(r.cookieLo, 0x05060708);
    assert.equal(r.offset, 1024 * 1024);
    assert.equal(r.length, 4096);
  });

  test('decodes at an offset inside a larger buffer', () => {
    const b = Buffer.concat([Buffer.from('xyz'), hex('25609513 0000 0000 0000000000000001 0000000100000000 00000200')]);
    const r = decodeRequest(b, 3, newRequest());
    assert.equal(r.type, NBD_CMD.READ);
    assert.equal(r.offset, 2 ** 32);
    assert.equal(r.length, 512);
  });

  test('reports a bad magic and an offset beyond 2^53 as -1', () => {
    const b = hex('25609514 0000 0000 0000000000000001 ffffffffffffffff 00000200');
    const r = decodeRequest(b, 0, newRequest());
    assert.equal(isRequestMagic(r), false);
    assert.equal(r.offset, -1);
    assert.equal(readU64BE(hex('001fffffffffffff'), 0), 2 ** 53 - 1);
    assert.equal(readU64BE(hex('0020000000000000'), 0), -1);
  });

  test('round-trips encodeRequest() for any header', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (flags, type, cookieHi, cookieLo, offset, length) => {
          const b = Buffer.alloc(28);
          encodeRequest(b, 0, { flags, type, cookieHi, cookieLo, offset, length });
          const r = decodeRequest(b, 0, newRequest());
          assert.deepEqual({ ...r }, { magic: 0x25609513, flags, type, cookieHi, cookieLo, offset, length });
        },
      ),
    );
  });
});

describe('reply encoders', () => {
  test('writeSimpleReply() writes magic, error and cookie', () => {
    const b = Buffer.alloc(16);
    assert.equal(writeSimpleReply(b, 0, NBD_E.EINVAL, 0xdeadbeef, 0x00000001), 16);
    assert.deepEqual(b, hex('67446698 00000016 deadbeef00000001'));
  });

  test('writeOffsetDataHeader() writes a DONE OFFSET_DATA chunk header with the offset', () => {
    const b = Buffer.alloc(28);
    assert.equal(writeOffsetDataHeader(b, 0, 0, 7, 0x10000, 512), 28);
    // magic, flags DONE, type 1, cookie, length 8+512, offset
    assert.deepEqual(b, hex('668e33ef 0001 0001 0000000000000007 00000208 0000000000010000'));
  });

  test('writeErrorChunk() writes a DONE ERROR chunk with the message', () => {
    const b = Buffer.alloc(29);
    assert.equal(writeErrorChunk(b, 0, 0, 9, NBD_E.ENOSPC, 'abc'), 29);
    assert.deepEqual(b, hex('668e33ef 0001 8001 0000000000000009 00000009 0000001c 0003 616263'));
  });

  test('writeBlockStatusChunk() writes the context id and extents', () => {
    const b = Buffer.alloc(40);
    assert.equal(
      writeBlockStatusChunk(b, 0, 0, 3, 1, [
        { length: 4096, flags: 0 },
        { length: 512, flags: 3 },
      ]),
      40,
    );
    assert.deepEqual(
      b,
      hex('668e33ef 0001 0005 0000000000000003 00000014 00000001 00001000 00000000 00000200 00000003'),
    );
  });
});

describe('errno mapping', () => {
  test('maps backend codes to NBD error values', () => {
    assert.equal(nbdErrnoOfCode('EPERM'), 1);
    assert.equal(nbdErrnoOfCode('EIO'), 5);
    assert.equal(nbdErrnoOfCode('ENOMEM'), 12);
    assert.equal(nbdErrnoOfCode('EINVAL'), 22);
    assert.equal(nbdErrnoOfCode('ENOSPC'), 28);
    assert.equal(nbdErrnoOfCode('EDQUOT'), 28);
    assert.equal(nbdErrnoOfCode('EOVERFLOW'), 75);
    assert.equal(nbdErrnoOfCode('ENOTSUP'), 95);
    assert.equal(nbdErrnoOfCode('EOPNOTSUPP'), 95);
    assert.equal(nbdErrnoOfCode('ESHUTDOWN'), 108);
    assert.equal(nbdErrnoOfCode('EWHATEVER'), 5);
  });

  test('nbdErrnoOf() reads a code from any value and defaults to EIO', () => {
    assert.equal(nbdErrnoOf(Object.assign(new Error('x'), { code: 'ENOSPC' })), 28);
    assert.equal(nbdErrnoOf(new Error('no code')), 5);
    assert.equal(nbdErrnoOf('string'), 5);
    assert.equal(nbdErrnoOf(null), 5);
    assert.equal(codeOfNbdErrno(108), 'ESHUTDOWN');
    assert.equal(codeOfNbdErrno(9999), 'EIO');
    assert.equal(nameOfNbdCmd(6), 'NBD_CMD_WRITE_ZEROES');
  });
});
