// Every NBD stream parser gives the same result however its input is cut into chunks: the server's
// handshake and request parser, and the client's handshake reader and reply parser.
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import { NbdClient } from '../../../src/nbd/client.js';
import {
  NBD_CMD,
  NBD_CMD_FLAG,
  NBD_FLAG_T,
  NBD_INFO,
  NBD_OPT,
  NBD_REP,
  NBD_REPLY_FLAG,
  NBD_REPLY_TYPE,
} from '../../../src/nbd/constants.js';
import { NbdHandshake, type HandshakeConfig } from '../../../src/nbd/handshake.js';
import { encodeRequest, writeU64BE } from '../../../src/nbd/request.js';
import { createNbdServer } from '../../../src/nbd/server.js';
import { MemoryBackend } from '../../harness/nbd-memory-backend.js';
import { assertSameAtEverySplit } from '../util/split.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function u32(...values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, 4 * i));
  return b;
}

function option(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([Buffer.from('IHAVEOPT', 'latin1'), u32(code, data.length), data]);
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

function request(type: number, cookie: number, offset: number, length: number, flags = 0): Buffer {
  const b = Buffer.alloc(28);
  encodeRequest(b, 0, { flags, type, cookieHi: 0, cookieLo: cookie, offset, length });
  return b;
}

/** A stream for a test double: what the other side wrote, and push() to answer it. */
function scriptedStream(): { stream: Duplex; written: Buffer[] } {
  const written: Buffer[] = [];
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      written.push(chunk);
      cb();
    },
    final(cb) {
      cb();
    },
  });
  return { stream, written };
}

/** Push the chunks one event-loop turn apart, as a socket delivers them. */
async function deliver(stream: Duplex, chunks: readonly Buffer[]): Promise<void> {
  for (const c of chunks) {
    stream.push(c);
    await tick();
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    if (cond()) return;
    await tick();
  }
  assert.fail(`never happened: ${what}`);
}

describe('NbdHandshake at every split', () => {
  const cfg: HandshakeConfig = {
    exportName: 'mirror',
    description: 'HAST resource mirror',
    size: 64 * 1024 * 1024,
    transmissionFlags: NBD_FLAG_T.HAS_FLAGS | NBD_FLAG_T.SEND_FLUSH,
    minBlockSize: 1,
    preferredBlockSize: 4096,
    maxBlockSize: 1024 * 1024,
  };

  test('haggling (with an option too long to buffer) gives the same replies, verdict and leftover', async () => {
    const meta = Buffer.concat([u32(6), Buffer.from('mirror'), u32(1, 15), Buffer.from('base:allocation')]);
    const stream = Buffer.concat([
      u32(3), // FIXED_NEWSTYLE | NO_ZEROES
      option(NBD_OPT.STRUCTURED_REPLY),
      option(NBD_OPT.LIST),
      option(99, Buffer.from('unknown')),
      option(NBD_OPT.INFO, Buffer.alloc(5000, 0xee)), // discarded unbuffered: NBD_REP_ERR_TOO_BIG
      option(NBD_OPT.SET_META_CONTEXT, meta),
      option(NBD_OPT.GO, goData('mirror', [NBD_INFO.NAME])),
      request(NBD_CMD.FLUSH, 1, 0, 0), // the first transmission bytes: handed on as `rest`
    ]);
    const parse = (chunks: readonly Buffer[]) => {
      const hs = new NbdHandshake(cfg);
      const sent: Buffer[] = [];
      let i = 0;
      let step = hs.push(Buffer.alloc(0));
      while (step.state === 'more' && i < chunks.length) {
        step = hs.push(chunks[i++] as Buffer);
        sent.push(...step.send);
      }
      // Chunks after the one that ended haggling belong to the transmission phase too.
      const rest = step.state === 'transmission' ? Buffer.concat([step.rest, ...chunks.slice(i)]) : null;
      return {
        state: step.state,
        sent: Buffer.concat(sent).toString('hex'),
        negotiated: step.state === 'transmission' ? step.negotiated : null,
        rest: rest?.toString('hex') ?? null,
      };
    };
    const whole = await assertSameAtEverySplit(stream, parse, { random: 20 });
    assert.equal(whole.state, 'transmission');
    assert.deepEqual(whole.negotiated, {
      exportName: 'mirror',
      structuredReplies: true,
      metaContextId: 1,
      transmissionFlags: cfg.transmissionFlags | NBD_FLAG_T.SEND_DF,
    });
    assert.equal(whole.rest, request(NBD_CMD.FLUSH, 1, 0, 0).toString('hex'));
    assert.ok(whole.sent.includes(u32(NBD_OPT.INFO, NBD_REP.ERR_TOO_BIG).toString('hex')));
  });
});

describe('NBD server request parser at every split', () => {
  test('a request mix (writes, refused write with drained payload, reads, DISC) is served the same', async () => {
    const payload = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 13) & 0xff));
    // Handshake first: NBD_OPT_EXPORT_NAME "" (simple replies), so the split also crosses into
    // the transmission phase and exercises the handshake's leftover bytes.
    const stream = Buffer.concat([
      u32(3),
      option(NBD_OPT.EXPORT_NAME),
      request(NBD_CMD.WRITE, 1, 4096, payload.length, NBD_CMD_FLAG.FUA),
      payload,
      request(NBD_CMD.READ, 2, 4000, 512),
      request(NBD_CMD.WRITE, 3, 65536 - 10, 100), // past the end: ENOSPC, payload drained
      Buffer.alloc(100, 0x25),
      request(NBD_CMD.FLUSH, 4, 0, 0),
      request(NBD_CMD.TRIM, 5, 0, 512),
      request(NBD_CMD.WRITE_ZEROES, 6, 8192, 512),
      request(NBD_CMD.CACHE, 7, 0, 4096),
      request(42, 8, 0, 0),
      request(NBD_CMD.READ, 9, 0, 8, NBD_CMD_FLAG.DF), // DF without structured replies: EINVAL
      request(NBD_CMD.BLOCK_STATUS, 10, 0, 512), // no meta context: EINVAL
      request(NBD_CMD.WRITE, 11, 0, 1),
      Buffer.from([0x77]),
      request(NBD_CMD.DISC, 12, 0, 0),
    ]);
    const readLengths = new Map([[2, 512]]);
    const parse = async (chunks: readonly Buffer[]) => {
      const backend = new MemoryBackend(65536);
      const { stream: s, written } = scriptedStream();
      let closed = false;
      s.on('close', () => (closed = true));
      createNbdServer(backend).accept(s);
      await deliver(s, chunks);
      await until(() => closed, 'closed after NBD_CMD_DISC');
      // Greeting (18) and the EXPORT_NAME answer (10 with NO_ZEROES), then simple replies, which
      // leave in completion order: sort them by cookie to compare.
      const out = Buffer.concat(written);
      const replies: string[] = [];
      for (let at = 28; at + 16 <= out.length; ) {
        const error = out.readUInt32BE(at + 4);
        const cookie = out.readUInt32BE(at + 12);
        const n = 16 + (error === 0 ? (readLengths.get(cookie) ?? 0) : 0);
        replies.push(`${cookie}:${error}:${out.toString('hex', at + 16, at + n)}`);
        at += n;
      }
      replies.sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
      return { calls: backend.calls, data: backend.data.toString('hex', 0, 8192 + 512), replies };
    };
    const whole = await assertSameAtEverySplit(stream, parse, { random: 20 });
    assert.deepEqual(
      whole.calls.map((c) => `${c.op} ${c.offset}+${c.length}`),
      ['write 4096+300', 'read 4000+512', 'flush 0+0', 'trim 0+512', 'writeZeroes 8192+512', 'write 0+1'],
    );
    assert.deepEqual(
      whole.replies.map((r) => r.split(':').slice(0, 2).join(':')),
      ['1:0', '2:0', '3:28', '4:0', '5:0', '6:0', '7:0', '8:22', '9:22', '10:22', '11:0'],
    );
    assert.equal(
      whole.replies[1],
      `2:0:${Buffer.concat([Buffer.alloc(96), payload, Buffer.alloc(116)]).toString('hex')}`,
    );
  });
});

describe('NbdClient parsers at every split', () => {
  /** An option reply: magic, option, type, length, data. */
  function optReply(opt: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
    return Buffer.concat([u32(0x0003e889, 0x045565a9, opt, type, data.length), data]);
  }
  function info(type: number, body: Buffer): Buffer {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(type, 0);
    return Buffer.concat([b, body]);
  }
  const exportInfo = Buffer.alloc(10);
  writeU64BE(exportInfo, 1 << 20, 0);
  exportInfo.writeUInt16BE(NBD_FLAG_T.HAS_FLAGS | NBD_FLAG_T.SEND_DF, 8);
  const greeting = Buffer.concat([Buffer.from('NBDMAGICIHAVEOPT', 'latin1'), Buffer.from([0, 3])]);
  const handshake = Buffer.concat([
    greeting,
    optReply(NBD_OPT.STRUCTURED_REPLY, NBD_REP.ACK),
    optReply(NBD_OPT.GO, NBD_REP.INFO, info(NBD_INFO.EXPORT, exportInfo)),
    optReply(NBD_OPT.GO, NBD_REP.INFO, info(NBD_INFO.BLOCK_SIZE, u32(1, 4096, 65536))),
    optReply(NBD_OPT.GO, NBD_REP.ACK),
  ]);

  test('the handshake reader negotiates the same whatever the cuts', async () => {
    const parse = async (chunks: readonly Buffer[]) => {
      const { stream, written } = scriptedStream();
      const connecting = NbdClient.connect({ stream });
      await deliver(stream, chunks);
      const c = await connecting;
      const got = {
        size: c.size,
        flags: c.transmissionFlags,
        structured: c.structuredReplies,
        max: c.maxBlockSize,
        sent: Buffer.concat(written).toString('hex'),
      };
      c.destroy();
      return got;
    };
    const whole = await assertSameAtEverySplit(handshake, parse, { random: 20 });
    assert.deepEqual(
      [whole.size, whole.flags, whole.structured, whole.max],
      [1 << 20, NBD_FLAG_T.HAS_FLAGS | NBD_FLAG_T.SEND_DF, true, 65536],
    );
  });

  /** A structured reply chunk: magic, flags, type, cookie, length, payload. */
  function chunk(flags: number, type: number, cookie: number, payload: Buffer): Buffer {
    const h = Buffer.alloc(20);
    h.writeUInt32BE(0x668e33ef, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(cookie, 12);
    h.writeUInt32BE(payload.length, 16);
    return Buffer.concat([h, payload]);
  }
  function offsetData(offset: number, data: Buffer): Buffer {
    const o = Buffer.alloc(8);
    writeU64BE(o, offset, 0);
    return Buffer.concat([o, data]);
  }
  function simple(error: number, cookie: number, data: Buffer = Buffer.alloc(0)): Buffer {
    return Buffer.concat([u32(0x67446698, error, 0, cookie), data]);
  }

  test('the reply parser completes the same requests with the same results whatever the cuts', async () => {
    const DONE = NBD_REPLY_FLAG.DONE;
    const replies = Buffer.concat([
      chunk(DONE, NBD_REPLY_TYPE.OFFSET_DATA, 1, offsetData(0, Buffer.from('eightbyt'))),
      chunk(0, NBD_REPLY_TYPE.OFFSET_HOLE, 2, Buffer.concat([offsetData(8, Buffer.alloc(0)), u32(8)])),
      simple(0, 3), // a write acknowledged with a simple reply
      chunk(0, NBD_REPLY_TYPE.OFFSET_DATA, 2, offsetData(16, Buffer.from('lasthalf'))),
      chunk(DONE, NBD_REPLY_TYPE.NONE, 2, Buffer.alloc(0)),
      chunk(DONE, NBD_REPLY_TYPE.ERROR, 4, Buffer.concat([u32(5), Buffer.from([0, 4]), Buffer.from('disk')])),
      simple(22, 5),
      simple(0, 6, Buffer.from('simpledata')),
    ]);
    const parse = async (chunks: readonly Buffer[]) => {
      const { stream } = scriptedStream();
      const connecting = NbdClient.connect({ stream });
      stream.push(handshake);
      const c = await connecting;
      const results = Promise.allSettled([
        c.read(0, 8),
        c.read(8, 16),
        c.write(0, Buffer.from('w')),
        c.flush(),
        c.trim(0, 512),
        c.read(100, 10),
      ]);
      await deliver(stream, chunks);
      const got = (await results).map((r) =>
        r.status === 'fulfilled'
          ? `ok ${r.value instanceof Buffer ? r.value.toString('hex') : ''}`
          : `${(r.reason as { code?: string }).code ?? '?'} ${(r.reason as Error).message}`,
      );
      const inFlight = c.inFlight;
      c.destroy();
      return { got, inFlight };
    };
    const whole = await assertSameAtEverySplit(replies, parse, { random: 20 });
    assert.deepEqual(whole, {
      got: [
        `ok ${Buffer.from('eightbyt').toString('hex')}`,
        `ok ${Buffer.concat([Buffer.alloc(8), Buffer.from('lasthalf')]).toString('hex')}`,
        'ok ',
        'EIO NBD_CMD_FLUSH at 0 length 0: EIO (disk)',
        'EINVAL NBD_CMD_TRIM at 0 length 512: EINVAL',
        `ok ${Buffer.from('simpledata').toString('hex')}`,
      ],
      inFlight: 0,
    });
  });
});
