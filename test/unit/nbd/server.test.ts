// The NBD server's transmission phase over an in-memory stream: split delivery, validation,
// back-pressure, out-of-order replies and DISC (proto.md "Transmission"; NBD.md).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import { NBD_CMD, NBD_CMD_FLAG, NBD_E, NBD_OPT } from '../../../src/nbd/constants.js';
import { encodeRequest } from '../../../src/nbd/request.js';
import { createNbdServer, type NbdServerOptions } from '../../../src/nbd/server.js';
import { MemoryBackend } from '../../harness/nbd-memory-backend.js';

const GREETING = 18;
const EXPORT_REPLY = 10;

/** Client flags (FIXED_NEWSTYLE|NO_ZEROES) and NBD_OPT_EXPORT_NAME "" : simple replies only. */
function handshakeBytes(): Buffer {
  const b = Buffer.alloc(4 + 16);
  b.writeUInt32BE(3, 0);
  Buffer.from('IHAVEOPT').copy(b, 4);
  b.writeUInt32BE(NBD_OPT.EXPORT_NAME, 12);
  b.writeUInt32BE(0, 16);
  return b;
}

function request(type: number, cookie: number, offset: number, length: number, flags = 0): Buffer {
  const b = Buffer.alloc(28);
  encodeRequest(b, 0, { flags, type, cookieHi: 0, cookieLo: cookie, offset, length });
  return b;
}

interface Harness {
  backend: MemoryBackend;
  stream: Duplex;
  out: Buffer[];
  logs: string[];
  closed: () => boolean;
  /** Bytes the server wrote after the handshake. */
  replies: () => Buffer;
}

function harness(size = 1024 * 1024, opts: NbdServerOptions = {}, backend = new MemoryBackend(size)): Harness {
  const out: Buffer[] = [];
  const logs: string[] = [];
  let closed = false;
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk);
      cb();
    },
    final(cb) {
      cb();
    },
  });
  stream.on('close', () => (closed = true));
  const server = createNbdServer(backend, { ...opts, log: (level, msg) => logs.push(`${level}: ${msg}`) });
  server.accept(stream);
  stream.push(handshakeBytes());
  return {
    backend,
    stream,
    out,
    logs,
    closed: () => closed,
    replies: () => Buffer.concat(out).subarray(GREETING + EXPORT_REPLY),
  };
}

/** Let the event loop run until `cond` holds (bounded by iterations, not by time). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  assert.fail(`never happened: ${what}`);
}

interface SimpleReply {
  error: number;
  cookie: number;
}
function simpleReplies(b: Buffer, readLengths: Map<number, number> = new Map()): SimpleReply[] {
  const out: SimpleReply[] = [];
  let at = 0;
  while (at + 16 <= b.length) {
    assert.equal(b.readUInt32BE(at), 0x67446698, 'simple reply magic');
    const error = b.readUInt32BE(at + 4);
    const cookie = b.readUInt32BE(at + 12);
    out.push({ error, cookie });
    at += 16 + (error === 0 ? (readLengths.get(cookie) ?? 0) : 0);
  }
  return out;
}

describe('NBD server transmission', () => {
  test('a WRITE request split at every offset is written once, whole, and acknowledged', async () => {
    const payload = randomBytes(300);
    const bytes = Buffer.concat([request(NBD_CMD.WRITE, 77, 4096, payload.length, NBD_CMD_FLAG.FUA), payload]);
    for (let i = 0; i <= bytes.length; i++) {
      const h = harness(64 * 1024);
      h.stream.push(bytes.subarray(0, i));
      await new Promise((r) => setImmediate(r));
      h.stream.push(bytes.subarray(i));
      await until(() => h.replies().length >= 16, `reply at split ${i}`);
      assert.deepEqual(h.backend.calls, [{ op: 'write', offset: 4096, length: 300, fua: true }], `split ${i}`);
      assert.deepEqual(h.backend.data.subarray(4096, 4396), payload, `split ${i}`);
      assert.deepEqual(simpleReplies(h.replies()), [{ error: 0, cookie: 77 }], `split ${i}`);
      h.stream.destroy();
    }
  });

  test('out-of-range READ is EINVAL and the connection stays usable', async () => {
    const h = harness(64 * 1024);
    h.backend.data.fill(0x5a, 0, 512);
    h.stream.push(request(NBD_CMD.READ, 1, 64 * 1024 - 100, 200));
    h.stream.push(request(NBD_CMD.READ, 2, 0, 512));
    await until(() => h.replies().length >= 16 + 16 + 512, 'two replies');
    const r = simpleReplies(h.replies(), new Map([[2, 512]]));
    assert.deepEqual(r, [
      { error: NBD_E.EINVAL, cookie: 1 },
      { error: 0, cookie: 2 },
    ]);
    assert.ok(
      h
        .replies()
        .subarray(32)
        .every((x) => x === 0x5a),
    );
    assert.equal(h.closed(), false);
  });

  test('WRITE past the end is ENOSPC and its payload is drained', async () => {
    const h = harness(64 * 1024);
    h.stream.push(Buffer.concat([request(NBD_CMD.WRITE, 1, 64 * 1024 - 10, 100), Buffer.alloc(100, 0x25)]));
    h.stream.push(Buffer.concat([request(NBD_CMD.WRITE, 2, 0, 4), Buffer.from('abcd')]));
    await until(() => h.replies().length >= 32, 'two replies');
    assert.deepEqual(simpleReplies(h.replies()), [
      { error: NBD_E.ENOSPC, cookie: 1 },
      { error: 0, cookie: 2 },
    ]);
    assert.equal(h.backend.data.toString('utf8', 0, 4), 'abcd');
    assert.equal(h.backend.calls.length, 1);
  });

  test('unknown command is EINVAL; CACHE succeeds without touching the backend', async () => {
    const h = harness();
    h.stream.push(request(42, 1, 0, 0));
    h.stream.push(request(NBD_CMD.CACHE, 2, 0, 4096));
    await until(() => h.replies().length >= 32, 'two replies');
    assert.deepEqual(simpleReplies(h.replies()), [
      { error: NBD_E.EINVAL, cookie: 1 },
      { error: 0, cookie: 2 },
    ]);
    assert.equal(h.backend.calls.length, 0);
  });

  test('a backend error code becomes the NBD error of the reply', async () => {
    const h = harness();
    h.backend.failWith = 'ENOSPC';
    h.stream.push(request(NBD_CMD.FLUSH, 5, 0, 0));
    h.stream.push(request(NBD_CMD.TRIM, 6, 0, 4096));
    await until(() => h.replies().length >= 32, 'two replies');
    h.backend.failWith = 'EWEIRD';
    h.stream.push(request(NBD_CMD.WRITE_ZEROES, 7, 0, 4096));
    await until(() => h.replies().length >= 48, 'third reply');
    assert.deepEqual(
      simpleReplies(h.replies()).map((r) => r.error),
      [NBD_E.ENOSPC, NBD_E.ENOSPC, NBD_E.EIO],
    );
  });

  test('bad request magic closes the connection and logs the reason', async () => {
    const h = harness();
    const bad = request(NBD_CMD.READ, 1, 0, 512);
    bad[0] = 0xff;
    h.stream.push(bad);
    await until(() => h.closed(), 'closed');
    assert.ok(
      h.logs.some((l) => l.startsWith('warning:') && l.includes('bad request magic')),
      h.logs.join('\n'),
    );
  });

  test('READ longer than the maximum block size closes the connection', async () => {
    const h = harness(128 * 1024 * 1024);
    h.stream.push(request(NBD_CMD.READ, 1, 0, 64 * 1024 * 1024));
    await until(() => h.closed(), 'closed');
    assert.equal(h.backend.calls.length, 0);
    assert.ok(h.logs.some((l) => l.includes('exceeds the maximum block size')));
  });

  test('at most maxInFlight requests reach the backend; the rest wait (back-pressure)', async () => {
    const backend = new MemoryBackend(1024 * 1024);
    backend.hold = true;
    const h = harness(0, { maxInFlight: 3 }, backend);
    for (let i = 1; i <= 10; i++) h.stream.push(request(NBD_CMD.READ, i, i * 512, 512));
    await until(() => backend.heldCount === 3, 'three held');
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.equal(backend.calls.length, 3, 'no more than maxInFlight requests started');
    backend.hold = false;
    backend.release();
    const lens = new Map(Array.from({ length: 10 }, (_, i) => [i + 1, 512] as [number, number]));
    await until(() => h.replies().length >= 10 * (16 + 512), 'all replies');
    assert.equal(backend.calls.length, 10);
    assert.deepEqual(
      simpleReplies(h.replies(), lens)
        .map((r) => r.cookie)
        .sort((a, b) => a - b),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    );
  });

  test('replies leave in completion order, not request order', async () => {
    const backend = new MemoryBackend(1024 * 1024);
    const h = harness(0, {}, backend);
    backend.hold = true;
    h.stream.push(request(NBD_CMD.FLUSH, 1, 0, 0));
    await until(() => backend.heldCount === 1, 'flush held');
    backend.hold = false;
    h.stream.push(request(NBD_CMD.FLUSH, 2, 0, 0));
    await until(() => h.replies().length >= 16, 'second reply');
    backend.release();
    await until(() => h.replies().length >= 32, 'first reply');
    assert.deepEqual(
      simpleReplies(h.replies()).map((r) => r.cookie),
      [2, 1],
    );
  });

  test('DISC lets in-flight requests reply, then closes', async () => {
    const backend = new MemoryBackend(1024 * 1024);
    const h = harness(0, {}, backend);
    backend.hold = true;
    h.stream.push(request(NBD_CMD.FLUSH, 9, 0, 0));
    h.stream.push(request(NBD_CMD.DISC, 10, 0, 0));
    await until(() => backend.heldCount === 1, 'held');
    assert.equal(h.closed(), false);
    backend.release();
    await until(() => h.closed(), 'closed after DISC');
    assert.deepEqual(simpleReplies(h.replies()), [{ error: 0, cookie: 9 }]);
  });

  test('a read-only export refuses writes with EPERM', async () => {
    const h = harness(0, {}, new MemoryBackend(65536, { readOnly: true }));
    h.stream.push(Buffer.concat([request(NBD_CMD.WRITE, 1, 0, 8), Buffer.alloc(8)]));
    h.stream.push(request(NBD_CMD.TRIM, 2, 0, 8));
    await until(() => h.replies().length >= 32, 'replies');
    assert.deepEqual(
      simpleReplies(h.replies()).map((r) => r.error),
      [NBD_E.EPERM, NBD_E.EPERM],
    );
  });
});
