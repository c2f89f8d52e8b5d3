// Hostile input against a running hastd: random lines on the control socket, random bytes on the
// listen port, a valid first handshake followed by garbage, and garbage in the data phase after a
// complete handshake. The offending connection is closed or answered with an error, the daemon
// keeps answering `hastctl status`, the secondary's data area does not change, and a real primary
// still pairs with it afterwards.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { NvList } from '../../src/nv/codec.js';
import { encodeMessage, MessageReader, type PeerMessage as Frame } from '../../src/peer/framing.js';
import { dumpOf, hastctl, makePair, startHastd, workerOf, waitNodeInSync } from '../harness/cluster.js';
import { dataAreaHash } from '../harness/data-area.js';
import { waitFor } from '../harness/wait.js';

const PLAIN = { compression: 'none', checksum: 'none' } as const;

/** Send a line, half-close, collect what comes back until the daemon closes (bounded). */
function controlExchange(path: string, line: Buffer): Promise<{ reply: string; hung: boolean }> {
  return new Promise((done) => {
    const s = connect(path);
    let reply = '';
    const timer = setTimeout(() => {
      s.destroy();
      done({ reply, hung: true });
    }, 10_000);
    s.on('data', (d: Buffer) => (reply += d.toString()));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      done({ reply, hung: false });
    });
    s.end(line);
  });
}

function peerSocket(addr: string): Promise<Socket> {
  const [host, port] = addr.split(':');
  return new Promise((done, fail) => {
    // From node a's address, so the listener's address check lets the bytes reach the parser.
    const s = connect({ host: host as string, port: Number(port), localAddress: '127.0.0.1' }, () => done(s));
    s.once('error', fail);
  });
}

/** Frames read from a socket, plus its close. */
function framesOf(s: Socket): { next(): Promise<Frame | null>; closed: Promise<void> } {
  const r = new MessageReader({ maxPayload: 1 << 24 });
  const queue: Frame[] = [];
  let failure: Error | null = null;
  const waiting: (() => void)[] = [];
  let ended = false;
  s.on('data', (d: Buffer) => {
    try {
      queue.push(...r.push(d));
    } catch (err) {
      failure = err as Error;
    }
    for (const w of waiting.splice(0)) w();
  });
  const closed = new Promise<void>((res) =>
    s.on('close', () => {
      ended = true;
      for (const w of waiting.splice(0)) w();
      res();
    }),
  );
  s.on('error', () => undefined);
  return {
    closed,
    async next() {
      for (;;) {
        const f = queue.shift();
        if (f !== undefined) return f;
        if (failure !== null) throw failure;
        if (ended) return null;
        await new Promise<void>((w) => waiting.push(w));
      }
    },
  };
}

function boundedClose(closed: Promise<void>): Promise<'closed' | 'hung'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    closed.then(() => 'closed' as const),
    new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), 30_000))),
  ]).finally(() => clearTimeout(timer));
}

test('hostile control lines and peer bytes: connections closed, daemon alive, data untouched', async (t) => {
  const p = await makePair(t, { replication: 'memsync', size: 16 << 20 });
  await startHastd(t, p.conf, p.b);
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);
  const dump = await dumpOf(p.conf, p.b.name);
  const before = await dataAreaHash(p.img(p.b), dump.localOff, dump.dataSize);
  const control = join(p.b.dir, 'control.sock');

  // Control socket: JSON-ish and raw lines. Only harmless commands: no role that starts a worker.
  const jsonish = fc
    .oneof(
      fc.json(),
      fc
        .record(
          {
            cmd: fc.oneof(fc.constantFrom('status', 'role', 'list', ''), fc.string()),
            resources: fc.oneof(fc.array(fc.oneof(fc.constantFrom('r0', 'all', 'nope'), fc.string())), fc.anything()),
            role: fc.oneof(fc.constantFrom('init', 'bogus'), fc.anything()),
          },
          { requiredKeys: [] },
        )
        .map((o) => JSON.stringify(o)),
    )
    .map((s) => Buffer.from(`${s}\n`));
  const raw = fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u));
  await fc.assert(
    fc.asyncProperty(fc.oneof(jsonish, raw), async (line) => {
      const { reply, hung } = await controlExchange(control, line);
      assert.equal(hung, false, 'the daemon answered or closed the connection');
      if (reply !== '') {
        const parsed = JSON.parse(reply) as { error?: number; resources?: unknown };
        assert.ok(typeof parsed === 'object' && parsed !== null);
      }
    }),
    { numRuns: 150 },
  );
  assert.equal((await hastctl(p.conf, p.b.name, ['status', p.res])).code, 0, 'hastctl status still works');
  // The role must not have moved away from secondary through any of that (role init is allowed: put it back).
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);

  // Listen port: random bytes, and a valid first handshake followed by a garbage second message.
  const first = Buffer.concat(
    encodeMessage(new NvList().addString('resource', p.res).addUint8('version', 2), undefined, PLAIN),
  );
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), fc.boolean(), async (junk, afterFirst) => {
      if (afterFirst) {
        const c1 = await peerSocket(p.b.addr);
        const f1 = framesOf(c1);
        c1.write(first);
        const reply = await f1.next();
        assert.ok(reply?.nv.getUint8Array('token') !== undefined, 'first handshake answered with a token');
        const c2 = await peerSocket(p.b.addr);
        c2.resume();
        c2.on('error', () => undefined);
        c2.end(Buffer.from(junk));
        assert.equal(await boundedClose(new Promise((r) => c2.on('close', () => r()))), 'closed');
        c1.destroy();
      } else {
        const c = await peerSocket(p.b.addr);
        c.resume();
        c.on('error', () => undefined);
        c.end(Buffer.from(junk));
        assert.equal(await boundedClose(new Promise((r) => c.on('close', () => r()))), 'closed');
      }
    }),
    { numRuns: 40 },
  );
  assert.equal((await hastctl(p.conf, p.b.name, ['status', p.res])).code, 0);

  // Data phase: a complete handshake as a primary would do it, then garbage on the request connection.
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { minLength: 1, maxLength: 4 }),
      async (chunks) => {
        const c1 = await peerSocket(p.b.addr);
        const f1 = framesOf(c1);
        c1.write(first);
        const token = (await f1.next())?.nv.getUint8Array('token');
        assert.ok(token !== undefined);
        const md = await dumpOf(p.conf, p.b.name);
        const c2 = await peerSocket(p.b.addr);
        const f2 = framesOf(c2);
        c2.write(
          Buffer.concat(
            encodeMessage(
              new NvList()
                .addString('resource', p.res)
                .addUint8Array('token', token)
                .addUint64('resuid', md.resuid === '0' ? 4242n : BigInt(md.resuid))
                .addUint64('localcnt', BigInt(md.remotecnt))
                .addUint64('remotecnt', BigInt(md.localcnt)),
              undefined,
              PLAIN,
            ),
          ),
        );
        // The handshake reply arrives on one of the two connections.
        const reply = await Promise.race([f1.next(), f2.next()]);
        assert.ok(
          reply !== null && reply.nv.getString('errmsg') === undefined,
          `handshake accepted (${reply?.nv.getString('errmsg')})`,
        );
        for (const c of chunks) c1.write(Buffer.from(c));
        c1.end();
        assert.equal(await boundedClose(f1.closed), 'closed', 'the secondary closed the request connection');
        c2.destroy();
      },
    ),
    { numRuns: 8 },
  );
  assert.equal((await hastctl(p.conf, p.b.name, ['status', p.res])).code, 0);
  assert.equal(
    await dataAreaHash(p.img(p.b), dump.localOff, dump.dataSize),
    before,
    'the secondary data area is unchanged',
  );

  // And a real primary still pairs with it, once the secondary forgets the fake primary's resuid
  // it adopted above (otherwise it rightly refuses: "Resource unique ID mismatch").
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'init', p.res])).code, 0);
  assert.equal((await hastctl(p.conf, p.b.name, ['create', p.res])).code, 0);
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);
  await startHastd(t, p.conf, p.a);
  assert.equal((await hastctl(p.conf, p.a.name, ['role', 'primary', p.res])).code, 0);
  await waitFor('export socket', () => existsSync(p.sock(p.a)));
  await waitNodeInSync(p.conf, p.a.name, 60_000);
  assert.equal((await workerOf(p.conf, p.b.name))?.status, 'complete');
});
