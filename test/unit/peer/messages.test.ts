// Peer messages (HAST-SPEC §6.3, §6.4): upstream field names and nv types, strict views, and the
// secondary's request validation.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeNv, encodeNv, NvList } from '../../../src/nv/codec.js';
import {
  buildErrorReply,
  buildFirstConnect,
  buildHandshakeReply,
  buildKeepalive,
  buildReply,
  buildRequest,
  buildSecondConnect,
  buildSyncProgress,
  buildSyncReply,
  buildSyncStateRequest,
  agreeCsums,
  buildCsumRequest,
  csumProblem,
  csumsOf,
  HIO,
  isErrorReply,
  nameOfHioCmd,
  readConnectCounters,
  readConnectHeader,
  readHandshakeReply,
  readReply,
  readRequest,
  readSyncReply,
  requestProblem,
  validateRequest,
  type HioRequest,
} from '../../../src/peer/messages.js';
import { PeerProtocolError } from '../../../src/peer/errors.js';

/** One nv element laid out per HAST-SPEC §3.1 (type, namesize, LE datasize, padded name, padded data). */
function el(type: number, name: string, data: number[]): number[] {
  const pad = (n: number) => (8 - (n % 8)) % 8;
  const nameBytes = [...Buffer.from(name), 0];
  const size = Buffer.alloc(4);
  size.writeUInt32LE(data.length, 0);
  return [
    type,
    nameBytes.length,
    ...size,
    ...nameBytes,
    ...Array(pad(nameBytes.length)).fill(0),
    ...data,
    ...Array(pad(data.length)).fill(0),
  ];
}
const u64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return [...b];
};
const str = (s: string) => [...Buffer.from(s), 0];

/** Element summary: [name, type code]. */
const shape = (nv: NvList) => [...nv].map((e) => [e.name, e.type]);

const isPeerError = (re: RegExp) => (e: unknown) => e instanceof PeerProtocolError && re.test(e.message);

describe('handshake messages', () => {
  test('first connect is {resource: string, version: uint8 2}', () => {
    assert.deepEqual(
      encodeNv(buildFirstConnect('shared')),
      Buffer.from([...el(17, 'resource', str('shared')), ...el(2, 'version', [2])]),
    );
  });

  test('second connect carries token, virgin (int8), resuid, localcnt, remotecnt (uint64) in order', () => {
    const token = new Uint8Array(16).fill(7);
    const nv = buildSecondConnect('r', token, { resuid: 5n, localCnt: 1n, remoteCnt: 0n, virgin: true });
    assert.deepEqual(shape(nv), [
      ['resource', 17],
      ['token', 10],
      ['virgin', 1],
      ['resuid', 8],
      ['localcnt', 8],
      ['remotecnt', 8],
    ]);
    const plain = buildSecondConnect('r', token, { resuid: 5n, localCnt: 1n, remoteCnt: 0n, virgin: false });
    assert.equal(plain.has('virgin'), false);
    assert.deepEqual(readConnectCounters(decodeNv(encodeNv(nv)), 'tcp://10.0.0.1:1234'), {
      resuid: 5n,
      localCnt: 1n,
      remoteCnt: 0n,
      virgin: true,
    });
  });

  test('readConnectHeader() defaults version to 1 and validates the token size', () => {
    assert.deepEqual(readConnectHeader(new NvList().addString('resource', 'r'), 'X'), {
      resource: 'r',
      token: undefined,
      version: 1,
    });
    assert.equal(readConnectHeader(buildFirstConnect('r'), 'X').version, 2);
    const ok = readConnectHeader(
      new NvList().addString('resource', 'r').addUint8Array('token', new Uint8Array(16)),
      'X',
    );
    assert.equal(ok.token?.length, 16);
    assert.throws(
      () =>
        readConnectHeader(
          new NvList().addString('resource', 'r').addUint8Array('token', new Uint8Array(15)),
          'tcp://1.2.3.4:5',
        ),
      isPeerError(/Received token of invalid size from tcp:\/\/1\.2\.3\.4:5/),
    );
    assert.throws(
      () => readConnectHeader(new NvList().addUint8('version', 2), 'X'),
      isPeerError(/No 'resource' field/),
    );
  });

  test('readConnectCounters() names a missing field and the sender', () => {
    const nv = new NvList().addString('resource', 'r').addUint64('resuid', 1n).addUint64('localcnt', 0n);
    assert.throws(
      () => readConnectCounters(nv, 'tcp://10.0.0.2:8457'),
      isPeerError(/Header from tcp:\/\/10\.0\.0\.2:8457 has no 'remotecnt' field/),
    );
    const wrong = new NvList().addUint32('resuid', 1).addUint64('localcnt', 0n).addUint64('remotecnt', 0n);
    assert.throws(() => readConnectCounters(wrong, 'X'), isPeerError(/'resuid' is uint32, expected uint64/));
  });

  test('handshake reply is {version: uint8, token: uint8[16]}', () => {
    const token = Uint8Array.from({ length: 16 }, (_, i) => i);
    const nv = buildHandshakeReply(2, token);
    assert.deepEqual(encodeNv(nv), Buffer.from([...el(2, 'version', [2]), ...el(10, 'token', [...token])]));
    assert.deepEqual(readHandshakeReply(nv, 'X'), { kind: 'ok', version: 2, token });
  });

  test('readHandshakeReply() refuses a version above 2 and a missing or short token', () => {
    const token = new Uint8Array(16);
    assert.throws(
      () => readHandshakeReply(buildHandshakeReply(3, token), 'X'),
      (e: unknown) => e instanceof PeerProtocolError && e.code === 'EPEER_VERSION',
    );
    assert.throws(
      () => readHandshakeReply(new NvList().addUint8('version', 2), 'tcp://h:1'),
      isPeerError(/Handshake header from tcp:\/\/h:1 has no 'token' field/),
    );
    assert.throws(
      () => readHandshakeReply(buildHandshakeReply(2, new Uint8Array(8)), 'X'),
      isPeerError(/invalid size \(8\)/),
    );
    // No version field means a version 1 peer.
    assert.deepEqual(readHandshakeReply(new NvList().addUint8Array('token', token), 'X'), {
      kind: 'ok',
      version: 1,
      token,
    });
  });

  test('error reply is {errmsg: string, [wait: uint8 1]} and wins over other fields', () => {
    const nv = buildErrorReply('Remote node acts as primary for the resource and not as secondary.', true);
    assert.deepEqual(shape(nv), [
      ['errmsg', 17],
      ['wait', 2],
    ]);
    assert.deepEqual(readHandshakeReply(nv, 'X'), {
      kind: 'error',
      errmsg: 'Remote node acts as primary for the resource and not as secondary.',
      wait: true,
    });
    assert.deepEqual(readHandshakeReply(buildErrorReply("Token doesn't match."), 'X'), {
      kind: 'error',
      errmsg: "Token doesn't match.",
      wait: false,
    });
  });

  test('sync reply: datasize int64, extentsize int32, localcnt/remotecnt uint64, virgin int8, syncsrc uint8, mapsize uint32', () => {
    const r = {
      dataSize: 1 << 30,
      extentSize: 2 << 20,
      localCnt: 3n,
      remoteCnt: 4n,
      virgin: true,
      syncSrc: 'secondary',
      mapSize: 64,
    } as const;
    const nv = buildSyncReply(r);
    assert.deepEqual(
      encodeNv(nv),
      Buffer.from([
        ...el(7, 'datasize', u64(1 << 30)),
        ...el(5, 'extentsize', [0x00, 0x00, 0x20, 0x00]),
        ...el(8, 'localcnt', u64(3)),
        ...el(8, 'remotecnt', u64(4)),
        ...el(1, 'virgin', [1]),
        ...el(2, 'syncsrc', [2]),
        ...el(6, 'mapsize', [64, 0, 0, 0]),
      ]),
    );
    assert.deepEqual(readSyncReply(decodeNv(encodeNv(nv)), 'X'), r);
    assert.equal(buildSyncReply({ ...r, virgin: false, syncSrc: 'primary' }).getUint8('syncsrc'), 1);
  });

  test('readSyncReply() returns errmsg first, and names missing fields and bad syncsrc', () => {
    const refused = buildSyncReply({
      dataSize: 1,
      extentSize: 1,
      localCnt: 0n,
      remoteCnt: 0n,
      virgin: false,
      syncSrc: 'primary',
      mapSize: 0,
    }).addString('errmsg', 'Split-brain condition!');
    const r = readSyncReply(refused, 'X');
    assert.ok(isErrorReply(r));
    assert.equal(r.errmsg, 'Split-brain condition!');
    const noMap = new NvList()
      .addInt64('datasize', 1n)
      .addInt32('extentsize', 1)
      .addUint64('localcnt', 0n)
      .addUint64('remotecnt', 0n)
      .addUint8('syncsrc', 1);
    assert.throws(
      () => readSyncReply(noMap, 'tcp://p:1'),
      isPeerError(/Header from tcp:\/\/p:1 has no 'mapsize' field/),
    );
    const badSrc = new NvList()
      .addInt64('datasize', 1n)
      .addInt32('extentsize', 1)
      .addUint64('localcnt', 0n)
      .addUint64('remotecnt', 0n)
      .addUint8('syncsrc', 0)
      .addUint32('mapsize', 0);
    assert.throws(() => readSyncReply(badSrc, 'X'), isPeerError(/invalid 'syncsrc' \(0\)/));
    const huge = new NvList()
      .addInt64('datasize', 1n << 60n)
      .addInt32('extentsize', 1)
      .addUint64('localcnt', 0n)
      .addUint64('remotecnt', 0n)
      .addUint8('syncsrc', 1)
      .addUint32('mapsize', 0);
    assert.throws(() => readSyncReply(huge, 'X'), isPeerError(/'datasize' is out of range/));
  });
});

describe('I/O requests and replies', () => {
  test('a WRITE request header matches the spec byte for byte', () => {
    assert.deepEqual(
      encodeNv(buildRequest(HIO.WRITE, 1n, 4096, 512, true)),
      Buffer.from([
        ...el(2, 'cmd', [2]),
        ...el(8, 'seq', u64(1)),
        ...el(8, 'offset', u64(4096)),
        ...el(8, 'length', u64(512)),
        ...el(2, 'memsync', [1]),
      ]),
    );
  });

  test('KEEPALIVE carries only cmd', () => {
    assert.deepEqual(encodeNv(buildKeepalive()), Buffer.from(el(2, 'cmd', [5])));
  });

  test('readRequest() reads fields leniently, like upstream nv_get_*', () => {
    assert.deepEqual(readRequest(buildRequest(HIO.READ, 9n, 512, 1024)), {
      cmd: 1,
      seq: 9n,
      offset: 512,
      length: 1024,
      memsync: false,
    });
    assert.deepEqual(readRequest(buildKeepalive()), { cmd: 5, seq: 0n, offset: -1, length: -1, memsync: false });
    const huge = new NvList()
      .addUint8('cmd', 1)
      .addUint64('seq', 1n)
      .addUint64('offset', 1n << 60n)
      .addUint64('length', 512n);
    assert.equal(readRequest(huge).offset, -1);
    assert.equal(readRequest(new NvList().addUint32('cmd', 1)).cmd, 0);
  });

  const limits = { dataSize: 1 << 20, sectorSize: 512 };
  const R = (p: Partial<HioRequest>): HioRequest => ({
    cmd: HIO.WRITE,
    seq: 1n,
    offset: 0,
    length: 512,
    memsync: false,
    ...p,
  });
  const cases: Array<[string, HioRequest, string | null]> = [
    ['a valid write', R({}), null],
    ['a valid read at the very end', R({ cmd: HIO.READ, offset: (1 << 20) - 512 }), null],
    ['a keepalive without seq', R({ cmd: HIO.KEEPALIVE, seq: 0n, offset: -1, length: -1 }), null],
    ['a flush with offset/length ignored', R({ cmd: HIO.FLUSH, offset: 7, length: 3 }), null],
    ['a delete longer than MAXPHYS', R({ cmd: HIO.DELETE, length: 1 << 20 }), null],
    ['no cmd', R({ cmd: 0 }), "Header contains no 'cmd' field."],
    ['no seq', R({ seq: 0n }), "Header contains no 'seq' field."],
    ['a flush without seq', R({ cmd: HIO.FLUSH, seq: 0n }), "Header contains no 'seq' field."],
    ['an unknown cmd', R({ cmd: 6 }), "Header contains invalid 'cmd' (6)."],
    ['no offset', R({ offset: -1 }), "Header is missing 'offset' field."],
    ['no length', R({ length: -1 }), "Header is missing 'length' field."],
    ['a zero length', R({ length: 0 }), 'Data length is zero.'],
    [
      'a write above MAXPHYS',
      R({ length: (1 << 20) + 512 }),
      `Data length is too large (${(1 << 20) + 512} > ${1 << 20}).`,
    ],
    ['a misaligned offset', R({ offset: 100 }), 'Offset 100 is not multiple of sector size.'],
    ['a misaligned length', R({ length: 100 }), 'Length 100 is not multiple of sector size.'],
    ['a range past the end', R({ offset: 1 << 20 }), `Data offset is too large (${(1 << 20) + 512} > ${1 << 20}).`],
  ];
  for (const [what, r, problem] of cases) {
    test(`validateRequest() ${problem === null ? 'accepts' : 'refuses'} ${what}`, () => {
      assert.equal(requestProblem(r, limits), problem);
      assert.equal(validateRequest(r, limits), problem === null ? null : 'EINVAL');
    });
  }

  test('validateRequest() honours a smaller maxIo', () => {
    assert.equal(validateRequest(R({ length: 8192 }), { ...limits, maxIo: 4096 }), 'EINVAL');
  });

  test('a reply is {seq: uint64, [received: int8 1], [error: int16]}', () => {
    assert.deepEqual(
      encodeNv(buildReply(7n, { received: true, error: 5 })),
      Buffer.from([...el(8, 'seq', u64(7)), ...el(1, 'received', [1]), ...el(3, 'error', [5, 0])]),
    );
    assert.deepEqual(shape(buildReply(7n)), [['seq', 8]]);
    assert.deepEqual(shape(buildReply(7n, { error: 0 })), [['seq', 8]]);
  });

  test('readReply() returns seq, received and the FreeBSD errno', () => {
    assert.deepEqual(readReply(buildReply(3n, { error: 45 })), { seq: 3n, received: false, error: 45 });
    assert.deepEqual(readReply(buildReply(3n, { received: true })), { seq: 3n, received: true, error: 0 });
    assert.throws(() => readReply(new NvList().addInt16('error', 5)), isPeerError(/no 'seq' field/));
    assert.throws(
      () => readReply(new NvList().addUint64('seq', 1n).addUint32('error', 5)),
      isPeerError(/'error' is uint32, expected int16/),
    );
  });

  test('nameOfHioCmd() uses upstream names', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 9].map(nameOfHioCmd), [
      'READ',
      'WRITE',
      'DELETE',
      'FLUSH',
      'KEEPALIVE',
      'UNKNOWN(9)',
    ]);
  });
});

// Ours (issue 13): the consistency extension. Golden bytes laid out by hand per HAST-SPEC §3.1: a
// peer that does not speak it sends and receives exactly FreeBSD's bytes.
/** A handshake reply without any extension (shared by the extension tests below). */
const SYNC_REPLY = {
  dataSize: 1048576,
  extentSize: 65536,
  localCnt: 0n,
  remoteCnt: 1n,
  virgin: false,
  syncSrc: 'primary',
  mapSize: 0,
} as const;

describe('consistency extension', () => {
  const token = new Uint8Array(16).fill(7);
  const i64 = (v: number) => {
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(v));
    return [...b];
  };
  const i32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return [...b];
  };
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    return [...b];
  };
  const SECOND = [
    ...el(17, 'resource', str('r')),
    ...el(10, 'token', [...token]),
    ...el(8, 'resuid', u64(5)),
    ...el(8, 'localcnt', u64(1)),
    ...el(8, 'remotecnt', u64(0)),
  ];
  const REPLY = [
    ...el(7, 'datasize', i64(1048576)),
    ...el(5, 'extentsize', i32(65536)),
    ...el(8, 'localcnt', u64(0)),
    ...el(8, 'remotecnt', u64(1)),
    ...el(2, 'syncsrc', [1]),
    ...el(6, 'mapsize', u32(0)),
  ];
  const reply = SYNC_REPLY;

  test('second connect: FreeBSD bytes without it, `consistency: uint8 1` appended with it', () => {
    const c = { resuid: 5n, localCnt: 1n, remoteCnt: 0n, virgin: false };
    assert.deepEqual(encodeNv(buildSecondConnect('r', token, c)), Buffer.from(SECOND));
    const ext = buildSecondConnect('r', token, { ...c, consistency: true });
    assert.deepEqual(encodeNv(ext), Buffer.from([...SECOND, ...el(2, 'consistency', [1])]));
    assert.equal(readConnectCounters(ext, 'X').consistency, true);
    assert.equal('consistency' in readConnectCounters(buildSecondConnect('r', token, c), 'X'), false);
  });

  test('sync reply: FreeBSD bytes unless the primary advertised it; the state rides along', () => {
    assert.deepEqual(encodeNv(buildSyncReply(reply)), Buffer.from(REPLY));
    assert.deepEqual(
      encodeNv(buildSyncReply({ ...reply, inconsistent: true })),
      Buffer.from(REPLY),
      'never without the extension',
    );
    const ext = buildSyncReply({ ...reply, consistency: true, inconsistent: true });
    assert.deepEqual(
      encodeNv(ext),
      Buffer.from([...REPLY, ...el(2, 'consistency', [1]), ...el(2, 'inconsistent', [1])]),
    );
    assert.deepEqual(readSyncReply(ext, 'X'), { ...reply, consistency: true, inconsistent: true });
    assert.deepEqual(readSyncReply(buildSyncReply(reply), 'X'), reply);
  });

  test('sync state rides on a FLUSH, progress on a KEEPALIVE: what FreeBSD would do with them is harmless', () => {
    const target = buildSyncStateRequest(9n, 'target', 4096);
    assert.deepEqual(
      encodeNv(target),
      Buffer.from([
        ...el(2, 'cmd', [HIO.FLUSH]),
        ...el(8, 'seq', u64(9)),
        ...el(8, 'offset', u64(0)),
        ...el(8, 'length', u64(0)),
        ...el(2, 'syncstate', [1]),
        ...el(8, 'synctotal', u64(4096)),
      ]),
    );
    assert.deepEqual(readRequest(target), {
      cmd: HIO.FLUSH,
      seq: 9n,
      offset: 0,
      length: 0,
      memsync: false,
      syncState: 1,
      syncBytes: 4096,
    });
    assert.equal(
      requestProblem(readRequest(target), { dataSize: 1 << 20, sectorSize: 512 }),
      null,
      'a valid FLUSH to anyone',
    );
    assert.deepEqual(readRequest(buildSyncStateRequest(10n, 'done')).syncState, 2);
    const progress = buildSyncProgress(777);
    assert.deepEqual(
      encodeNv(progress),
      Buffer.from([...el(2, 'cmd', [HIO.KEEPALIVE]), ...el(8, 'syncleft', u64(777))]),
    );
    assert.equal(progress.has('seq') || progress.has('size'), false, 'no reply, no payload to a FreeBSD secondary');
  });
});

// Ours (issue 17): checksum-assisted sync. Golden bytes as above: without `checksumsync on` on both
// nodes, every handshake byte is the one before the extension.
describe('checksum-assisted sync (csums)', () => {
  const token = new Uint8Array(16).fill(7);
  const c = { resuid: 5n, localCnt: 1n, remoteCnt: 0n, virgin: false, consistency: true };
  const reply = { ...SYNC_REPLY, consistency: true, inconsistent: false } as const;

  test('second connect: `csums: uint8 1` appended only when offered', () => {
    const plain = encodeNv(buildSecondConnect('r', token, c));
    const offered = buildSecondConnect('r', token, { ...c, csums: 1 });
    assert.deepEqual(encodeNv(offered), Buffer.from([...plain, ...el(2, 'csums', [1])]));
    assert.equal(readConnectCounters(offered, 'X').csums, 1);
    assert.equal('csums' in readConnectCounters(buildSecondConnect('r', token, c), 'X'), false);
    assert.equal(csumsOf(offered), 1);
  });

  test('sync reply: `csums` echoed only when given; an unknown algorithm reads as not agreed', () => {
    const plain = encodeNv(buildSyncReply(reply));
    const agreed = buildSyncReply({ ...reply, csums: 1 });
    assert.deepEqual(encodeNv(agreed), Buffer.from([...plain, ...el(2, 'csums', [1])]));
    assert.deepEqual(readSyncReply(agreed, 'X'), { ...reply, csums: 1 });
    assert.equal('csums' in readSyncReply(buildSyncReply(reply), 'X'), false, 'a FreeBSD-like reply: off');
    const unknown = buildSyncReply(reply).addUint8('csums', 9);
    assert.equal('csums' in readSyncReply(unknown, 'X'), false);
    assert.equal(csumsOf(new NvList().addString('csums', 'sha256')), undefined, 'mistyped: off');
  });

  test('agreement: on only when on here and the other side sent a known algorithm', () => {
    assert.equal(agreeCsums(true, 1), 1, 'on/on: on');
    assert.equal(agreeCsums(true, undefined), undefined, 'on here, off (or FreeBSD) there: off');
    assert.equal(agreeCsums(false, 1), undefined, 'off here, on there: off');
    assert.equal(agreeCsums(false, undefined), undefined);
    assert.equal(agreeCsums(true, 2), undefined, 'an algorithm we do not know: off');
  });

  test('a checksum READ is a READ with `csum: uint8 1`', () => {
    const nv = buildCsumRequest(7n, 4096, 8192);
    assert.deepEqual(
      encodeNv(nv),
      Buffer.from([...encodeNv(buildRequest(HIO.READ, 7n, 4096, 8192)), ...el(2, 'csum', [1])]),
    );
    const r = readRequest(nv);
    assert.equal(r.csum, 1);
    assert.equal(requestProblem(r, { dataSize: 1 << 20, sectorSize: 512 }), null, 'otherwise a valid READ');
    assert.equal('csum' in readRequest(buildRequest(HIO.READ, 7n, 0, 512)), false);
  });

  test('csumProblem: refused unless agreed, on READ, with the agreed algorithm', () => {
    const read = readRequest(buildCsumRequest(1n, 0, 512));
    assert.equal(csumProblem(read, 1), null);
    assert.equal(csumProblem(readRequest(buildRequest(HIO.READ, 1n, 0, 512)), undefined), null, 'plain READ');
    assert.match(csumProblem(read, undefined) ?? '', /checksum sync was not negotiated/);
    const write = readRequest(buildRequest(HIO.WRITE, 2n, 0, 512).addUint8('csum', 1));
    assert.match(csumProblem(write, 1) ?? '', /'csum' field on WRITE/);
    const flush = readRequest(buildRequest(HIO.FLUSH, 3n, 0, 0).addUint8('csum', 1));
    assert.match(csumProblem(flush, 1) ?? '', /'csum' field on FLUSH/);
    const other = readRequest(buildRequest(HIO.READ, 4n, 0, 512).addUint8('csum', 2));
    assert.match(csumProblem(other, 1) ?? '', /unknown 'csum' algorithm \(2\)/);
    const mistyped = readRequest(buildRequest(HIO.READ, 5n, 0, 512).addString('csum', 'x'));
    assert.match(csumProblem(mistyped, 1) ?? '', /unknown 'csum' algorithm \(-1\)/);
  });
});
