// NbdHandshake: fixed newstyle option haggling, one option at a time, with bytes from proto.md.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NBD_FLAG_T, NBD_OPT, NBD_REP } from '../../../src/nbd/constants.js';
import { encodeGreeting, NbdHandshake, type HandshakeConfig, type HandshakeStep } from '../../../src/nbd/handshake.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const IHAVEOPT = '49484156454f5054';
const REPLY_MAGIC = '0003e889045565a9';

const CFG: HandshakeConfig = {
  exportName: 'mirror',
  description: 'HAST resource mirror',
  size: 64 * 1024 * 1024,
  transmissionFlags: NBD_FLAG_T.HAS_FLAGS | NBD_FLAG_T.SEND_FLUSH | NBD_FLAG_T.SEND_FUA,
  minBlockSize: 1,
  preferredBlockSize: 4096,
  maxBlockSize: 1024 * 1024,
};

/** Client flags FIXED_NEWSTYLE | NO_ZEROES. */
const CLIENT_FLAGS = hex('00000003');

function opt(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(16);
  Buffer.from(IHAVEOPT, 'hex').copy(h, 0);
  h.writeUInt32BE(code, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

function goData(name: string, infos: number[]): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i));
  return b;
}

function metaData(name: string, queries: string[]): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.from(name);
  const h = Buffer.alloc(4);
  h.writeUInt32BE(n.length);
  parts.push(h, n);
  const c = Buffer.alloc(4);
  c.writeUInt32BE(queries.length);
  parts.push(c);
  for (const q of queries) {
    const l = Buffer.alloc(4);
    l.writeUInt32BE(Buffer.byteLength(q));
    parts.push(l, Buffer.from(q));
  }
  return Buffer.concat(parts);
}

interface OptReply {
  option: number;
  type: number;
  data: Buffer;
}

function parseReplies(bufs: Buffer[]): OptReply[] {
  const b = Buffer.concat(bufs);
  const out: OptReply[] = [];
  let at = 0;
  while (at < b.length) {
    assert.equal(b.toString('hex', at, at + 8), REPLY_MAGIC, 'option reply magic');
    const len = b.readUInt32BE(at + 16);
    out.push({
      option: b.readUInt32BE(at + 8),
      type: b.readUInt32BE(at + 12),
      data: b.subarray(at + 20, at + 20 + len),
    });
    at += 20 + len;
  }
  return out;
}

function started(cfg: HandshakeConfig = CFG): NbdHandshake {
  const hs = new NbdHandshake(cfg);
  assert.equal(hs.push(CLIENT_FLAGS).state, 'more');
  return hs;
}

describe('NbdHandshake', () => {
  test('encodeGreeting() sends NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE|NO_ZEROES', () => {
    assert.deepEqual(encodeGreeting(), hex(`4e42444d41474943 ${IHAVEOPT} 0003`));
  });

  test('closes a client without NBD_FLAG_C_FIXED_NEWSTYLE', () => {
    const step = new NbdHandshake(CFG).push(hex('00000000'));
    assert.equal(step.state, 'close');
    assert.equal(step.state === 'close' && step.protocolError, true);
  });

  test('closes a client with unknown flags', () => {
    assert.equal(new NbdHandshake(CFG).push(hex('00000005')).state, 'close');
  });

  test('closes on a bad option magic', () => {
    const bad = opt(NBD_OPT.LIST);
    bad[0] = 0;
    assert.equal(started().push(bad).state, 'close');
  });

  test('EXPORT_NAME with NO_ZEROES ends haggling with size and flags only', () => {
    const step = started().push(Buffer.concat([opt(NBD_OPT.EXPORT_NAME, Buffer.from('mirror')), hex('2560')]));
    assert.equal(step.state, 'transmission');
    if (step.state !== 'transmission') return;
    assert.deepEqual(Buffer.concat(step.send), hex('0000000004000000 000d'));
    assert.deepEqual(step.rest, hex('2560'), 'bytes after the option are handed on');
    assert.equal(step.negotiated.structuredReplies, false);
  });

  test('EXPORT_NAME without NO_ZEROES sends 124 zero bytes', () => {
    const hs = new NbdHandshake(CFG);
    hs.push(hex('00000001'));
    const step = hs.push(opt(NBD_OPT.EXPORT_NAME));
    assert.equal(step.state, 'transmission');
    const out = Buffer.concat(step.send);
    assert.equal(out.length, 8 + 2 + 124);
    assert.ok(out.subarray(10).every((x) => x === 0));
  });

  test('EXPORT_NAME with an unknown name closes (no error reply exists)', () => {
    assert.equal(started().push(opt(NBD_OPT.EXPORT_NAME, Buffer.from('other'))).state, 'close');
  });

  test('any name is accepted when no export name is configured', () => {
    const step = started({ ...CFG, exportName: undefined }).push(opt(NBD_OPT.EXPORT_NAME, Buffer.from('whatever')));
    assert.equal(step.state, 'transmission');
  });

  test('ABORT is acknowledged, then the session ends without a protocol error', () => {
    const step = started().push(opt(NBD_OPT.ABORT));
    assert.equal(step.state, 'close');
    assert.equal(step.state === 'close' && step.protocolError, false);
    assert.deepEqual(
      parseReplies(step.send).map((r) => r.type),
      [NBD_REP.ACK],
    );
  });

  test('LIST answers one SERVER then ACK; LIST with data is ERR_INVALID', () => {
    const hs = started();
    const r = parseReplies(hs.push(opt(NBD_OPT.LIST)).send);
    assert.deepEqual(
      r.map((x) => x.type),
      [NBD_REP.SERVER, NBD_REP.ACK],
    );
    const server = r[0]?.data ?? Buffer.alloc(0);
    assert.equal(server.readUInt32BE(0), 6);
    assert.equal(server.toString('utf8', 4, 10), 'mirror');
    const bad = parseReplies(hs.push(opt(NBD_OPT.LIST, Buffer.from('x'))).send);
    assert.deepEqual(
      bad.map((x) => x.type),
      [NBD_REP.ERR_INVALID],
    );
  });

  test('STARTTLS is refused with ERR_POLICY and haggling continues', () => {
    const hs = started();
    const step = hs.push(opt(NBD_OPT.STARTTLS));
    assert.equal(step.state, 'more');
    assert.deepEqual(
      parseReplies(step.send).map((x) => x.type),
      [NBD_REP.ERR_POLICY],
    );
    assert.equal(hs.push(opt(NBD_OPT.GO, goData('', []))).state, 'transmission');
  });

  test('unknown options get ERR_UNSUP', () => {
    const step = started().push(opt(4242, Buffer.from('data')));
    assert.equal(step.state, 'more');
    const r = parseReplies(step.send);
    assert.equal(r[0]?.option, 4242);
    assert.equal(r[0]?.type, NBD_REP.ERR_UNSUP);
  });

  test('INFO answers EXPORT, NAME, DESCRIPTION, BLOCK_SIZE then ACK and stays in haggling', () => {
    const step = started().push(opt(NBD_OPT.INFO, goData('mirror', [1, 2, 3])));
    assert.equal(step.state, 'more');
    const r = parseReplies(step.send);
    assert.deepEqual(
      r.map((x) => x.type),
      [NBD_REP.INFO, NBD_REP.INFO, NBD_REP.INFO, NBD_REP.INFO, NBD_REP.ACK],
    );
    // NBD_INFO_EXPORT: type 0, size, transmission flags
    assert.deepEqual(r[0]?.data, hex('0000 0000000004000000 000d'));
    assert.deepEqual(r[1]?.data, Buffer.concat([hex('0001'), Buffer.from('mirror')]));
    assert.deepEqual(r[2]?.data, Buffer.concat([hex('0002'), Buffer.from('HAST resource mirror')]));
    assert.deepEqual(r[3]?.data, hex('0003 00000001 00001000 00100000'));
  });

  test('GO enters transmission; unknown name is ERR_UNKNOWN; malformed data is ERR_INVALID', () => {
    const hs = started();
    assert.deepEqual(
      parseReplies(hs.push(opt(NBD_OPT.GO, goData('nope', []))).send).map((x) => x.type),
      [NBD_REP.ERR_UNKNOWN],
    );
    assert.deepEqual(
      parseReplies(hs.push(opt(NBD_OPT.GO, hex('000000ff00'))).send).map((x) => x.type),
      [NBD_REP.ERR_INVALID],
    );
    const step = hs.push(opt(NBD_OPT.GO, goData('mirror', [])));
    assert.equal(step.state, 'transmission');
    assert.equal(parseReplies(step.send).at(-1)?.type, NBD_REP.ACK);
  });

  test('STRUCTURED_REPLY is acknowledged and adds NBD_FLAG_SEND_DF', () => {
    const hs = started();
    assert.deepEqual(
      parseReplies(hs.push(opt(NBD_OPT.STRUCTURED_REPLY)).send).map((x) => x.type),
      [NBD_REP.ACK],
    );
    const step = hs.push(opt(NBD_OPT.GO, goData('', [])));
    assert.equal(step.state, 'transmission');
    if (step.state !== 'transmission') return;
    assert.equal(step.negotiated.structuredReplies, true);
    assert.equal(step.negotiated.transmissionFlags & NBD_FLAG_T.SEND_DF, NBD_FLAG_T.SEND_DF);
  });

  test('meta contexts need structured replies; base:allocation is listed and selected', () => {
    const hs = started();
    const early = parseReplies(hs.push(opt(NBD_OPT.SET_META_CONTEXT, metaData('', ['base:allocation']))).send);
    assert.deepEqual(
      early.map((x) => x.type),
      [NBD_REP.ERR_INVALID],
    );
    hs.push(opt(NBD_OPT.STRUCTURED_REPLY));
    const list = parseReplies(hs.push(opt(NBD_OPT.LIST_META_CONTEXT, metaData('', []))).send);
    assert.deepEqual(
      list.map((x) => x.type),
      [NBD_REP.META_CONTEXT, NBD_REP.ACK],
    );
    assert.equal(list[0]?.data.toString('utf8', 4), 'base:allocation');
    const none = parseReplies(hs.push(opt(NBD_OPT.SET_META_CONTEXT, metaData('', ['x-foo:bar']))).send);
    assert.deepEqual(
      none.map((x) => x.type),
      [NBD_REP.ACK],
    );
    const set = parseReplies(hs.push(opt(NBD_OPT.SET_META_CONTEXT, metaData('', ['base:allocation']))).send);
    assert.deepEqual(
      set.map((x) => x.type),
      [NBD_REP.META_CONTEXT, NBD_REP.ACK],
    );
    const id = set[0]?.data.readUInt32BE(0);
    const step = hs.push(opt(NBD_OPT.GO, goData('', [])));
    assert.equal(step.state === 'transmission' && step.negotiated.metaContextId, id);
  });

  test('an option length of 1 GiB closes the connection before any data is buffered', () => {
    const h = opt(NBD_OPT.GO).subarray(0, 16);
    h.writeUInt32BE(0x4000_0000, 12);
    const step = started().push(h);
    assert.equal(step.state, 'close');
    assert.match(step.state === 'close' ? step.reason : '', /too large/);
  });

  test('an option a little over the bound is discarded and answered ERR_TOO_BIG', () => {
    const hs = started();
    const big = opt(NBD_OPT.GO, Buffer.alloc(6000));
    let step: HandshakeStep = { state: 'more', send: [] };
    const sent: Buffer[] = [];
    for (let at = 0; at < big.length; at += 1000) {
      step = hs.push(big.subarray(at, at + 1000));
      sent.push(...step.send);
    }
    assert.equal(step.state, 'more');
    assert.deepEqual(
      parseReplies(sent).map((x) => x.type),
      [NBD_REP.ERR_TOO_BIG],
    );
    assert.equal(hs.push(opt(NBD_OPT.GO, goData('', []))).state, 'transmission');
  });

  test('a handshake split at every offset gives the same replies and leftover bytes', () => {
    const stream = Buffer.concat([
      CLIENT_FLAGS,
      opt(NBD_OPT.STRUCTURED_REPLY),
      opt(NBD_OPT.SET_META_CONTEXT, metaData('mirror', ['base:allocation'])),
      opt(NBD_OPT.INFO, goData('mirror', [3])),
      opt(NBD_OPT.GO, goData('mirror', [1])),
      hex('25609513'),
    ]);
    const whole = new NbdHandshake(CFG).push(stream);
    assert.equal(whole.state, 'transmission');
    const expected = Buffer.concat(whole.send);
    for (let i = 0; i <= stream.length; i++) {
      const hs = new NbdHandshake(CFG);
      const a = hs.push(stream.subarray(0, i));
      const sent = [...a.send];
      let last = a;
      if (a.state === 'more') {
        last = hs.push(stream.subarray(i));
        sent.push(...last.send);
      }
      assert.equal(last.state, 'transmission', `split at ${i}`);
      assert.deepEqual(Buffer.concat(sent), expected, `split at ${i}`);
      // Bytes never fed (when the first part already ended haggling) follow the leftover.
      const rest = last.state === 'transmission' ? last.rest : Buffer.alloc(0);
      const unfed = a.state === 'transmission' ? stream.subarray(i) : Buffer.alloc(0);
      assert.deepEqual(Buffer.concat([rest, unfed]), hex('25609513'), `split at ${i}`);
    }
  });
});

describe('NbdHandshake with TLS configured (NBD_OPT_STARTTLS)', () => {
  const TLS: HandshakeConfig = { ...CFG, tls: true };

  test('options before STARTTLS get ERR_TLS_REQD, EXPORT_NAME closes; STARTTLS is acknowledged', () => {
    const hs = started(TLS);
    const go = hs.push(opt(NBD_OPT.GO, goData('', [])));
    assert.equal(go.state, 'more');
    assert.deepEqual(
      parseReplies(go.send).map((x) => x.type),
      [NBD_REP.ERR_TLS_REQD],
    );
    const st = hs.push(opt(NBD_OPT.STARTTLS));
    assert.equal(st.state, 'starttls');
    assert.deepEqual(
      parseReplies(st.send).map((x) => x.type),
      [NBD_REP.ACK],
    );
    hs.tlsStarted();
    const again = hs.push(opt(NBD_OPT.STARTTLS));
    assert.deepEqual(
      parseReplies(again.send).map((x) => x.type),
      [NBD_REP.ERR_INVALID],
      'a second STARTTLS is refused',
    );
    assert.equal(hs.push(opt(NBD_OPT.GO, goData('', []))).state, 'transmission');
    assert.equal(started(TLS).push(opt(NBD_OPT.EXPORT_NAME, Buffer.from('mirror'))).state, 'close');
  });

  test('bytes after STARTTLS in the same chunk close the connection (they cannot be TLS)', () => {
    const step = started(TLS).push(Buffer.concat([opt(NBD_OPT.STARTTLS), Buffer.from('junk')]));
    assert.equal(step.state, 'close');
    const data = started(TLS).push(opt(NBD_OPT.STARTTLS, Buffer.from('x')));
    assert.deepEqual(
      parseReplies(data.send).map((x) => x.type),
      [NBD_REP.ERR_INVALID],
    );
  });
});
