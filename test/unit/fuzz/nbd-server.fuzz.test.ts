// Hostile bytes against the real NBD server on a unix socket: random handshakes, random options
// after a valid greeting, random requests after a valid negotiation. The server must close (or
// finish) that connection, never crash, keep serving a well-behaved client, and change backend
// bytes only where a request it accepted asked for it.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { NbdClient } from '../../../src/nbd/client.js';
import { NBD_CMD, NBD_OPT } from '../../../src/nbd/constants.js';
import { encodeRequest } from '../../../src/nbd/request.js';
import { createNbdServer } from '../../../src/nbd/server.js';
import { MemoryBackend } from '../../harness/nbd-memory-backend.js';
import { tmpDir } from '../../harness/tools.js';

const SIZE = 1 << 20;

async function serve(t: TestContext) {
  const backend = new MemoryBackend(SIZE);
  for (let i = 0; i < SIZE; i++) backend.data[i] = (i * 7 + (i >> 9)) & 0xff;
  const logs: string[] = [];
  const server = createNbdServer(backend, { log: (level, msg) => logs.push(`${level}: ${msg}`) });
  const path = join(tmpDir(t, 'hastd-nbdfuzz-'), 'nbd.sock');
  await server.listen({ kind: 'unix', path });
  t.after(() => server.close());
  return { backend, server, path, logs };
}

/** Send `bytes`, half-close, and wait (bounded) until the server closes its side. */
function hostile(path: string, bytes: Buffer): Promise<'closed' | 'hung'> {
  return new Promise((done) => {
    const s = connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      done('hung');
    }, 10_000);
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      done('closed');
    });
    s.resume();
    s.end(bytes);
  });
}

function clientFlags(): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(3, 0); // FIXED_NEWSTYLE | NO_ZEROES
  return b;
}

function option(opt: number, data: Uint8Array, declared?: number): Buffer {
  const b = Buffer.alloc(16);
  b.write('IHAVEOPT', 0, 'latin1');
  b.writeUInt32BE(opt >>> 0, 8);
  b.writeUInt32BE((declared ?? data.length) >>> 0, 12);
  return Buffer.concat([b, Buffer.from(data)]);
}

const anOption = fc
  .tuple(
    fc.oneof(fc.constantFrom(...Object.values(NBD_OPT)), fc.nat()),
    fc.uint8Array({ maxLength: 64 }),
    fc.option(fc.oneof(fc.nat(), fc.constant(0xffffffff)), { nil: undefined }),
  )
  .map(([o, d, n]) => option(o, d, n));

const aRequest = fc.oneof(
  fc
    .tuple(
      fc.oneof(fc.constantFrom(...Object.values(NBD_CMD)), fc.integer({ min: 0, max: 0xffff })),
      fc.integer({ min: 0, max: 0xffff }),
      fc.oneof(fc.nat(SIZE * 2), fc.constant(Number.MAX_SAFE_INTEGER)),
      fc.oneof(fc.nat(70_000), fc.constant(0xffffffff)),
    )
    .map(([type, flags, offset, length]) => {
      const b = Buffer.alloc(28);
      encodeRequest(b, 0, { flags, type, cookieHi: 0, cookieLo: 1, offset, length });
      return b;
    }),
  fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)),
);

/** Requests (with no write payloads beyond what the generator adds) after a plain EXPORT_NAME "". */
const afterNegotiation = fc
  .array(aRequest, { maxLength: 6 })
  .map((rs) => Buffer.concat([clientFlags(), option(NBD_OPT.EXPORT_NAME, new Uint8Array()), ...rs]));

async function wellBehaved(path: string, backend: MemoryBackend): Promise<void> {
  const c = await NbdClient.connect({ path });
  try {
    const at = 512 * 1024;
    assert.deepEqual(await c.read(0, 4096), backend.data.subarray(0, 4096));
    const before = Buffer.from(backend.data.subarray(at, at + 512));
    await c.write(at, Buffer.alloc(512, 0xee));
    assert.equal(
      (await c.read(at, 512)).every((v) => v === 0xee),
      true,
    );
    await c.write(at, before);
  } finally {
    await c.disconnect();
  }
}

/** Every byte that changed lies inside a write-like call the backend accepted. */
function changesExplained(backend: MemoryBackend, snapshot: Buffer, callsBefore: number): void {
  const ranges = backend.calls.slice(callsBefore).filter((c) => c.op !== 'read' && c.op !== 'flush');
  for (let i = 0; i < SIZE; i++) {
    if (backend.data[i] !== snapshot[i] && !ranges.some((r) => i >= r.offset && i < r.offset + r.length)) {
      assert.fail(`byte ${i} changed without a request for it`);
    }
  }
}

describe('NBD server under hostile clients', () => {
  const cases: [string, fc.Arbitrary<Buffer>][] = [
    ['random handshake bytes', fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u))],
    [
      'random options after valid client flags',
      fc.array(anOption, { maxLength: 5 }).map((os) => Buffer.concat([clientFlags(), ...os])),
    ],
    ['random requests after a valid negotiation', afterNegotiation],
  ];
  for (const [name, arb] of cases) {
    test(`${name}: the connection closes, data changes only where asked, a good client is still served`, async (t) => {
      const { backend, server, path } = await serve(t);
      await fc.assert(
        fc.asyncProperty(arb, async (bytes) => {
          const snapshot = Buffer.from(backend.data);
          const calls = backend.calls.length;
          assert.equal(await hostile(path, bytes), 'closed');
          changesExplained(backend, snapshot, calls);
          await wellBehaved(path, backend);
        }),
        { numRuns: 120 },
      );
      assert.equal(server.connections, 0);
    });
  }

  test('an option declaring 4 GiB of data is refused without waiting for it', async (t) => {
    const { path, logs } = await serve(t);
    const s = connect(path);
    t.after(() => s.destroy());
    s.on('error', () => undefined);
    s.resume();
    // Not half-closed: the server must close on the declared length alone.
    s.write(Buffer.concat([clientFlags(), option(NBD_OPT.GO, new Uint8Array(8), 0xffffffff)]));
    await new Promise((r) => s.once('close', r));
    assert.ok(
      logs.some((l) => /warning|error/.test(l)),
      logs.join('\n'),
    );
  });
});
