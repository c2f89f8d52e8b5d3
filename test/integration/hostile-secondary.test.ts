// The primary's peer receiver against a hostile "secondary" of our own: garbage instead of the
// first handshake reply, garbage instead of the second, and garbage replies in the data phase.
// The primary drops that connection, stays up and degraded, and an NBD write in flight during the
// garbage completes and is on its disk.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { NbdClient } from '../../src/nbd/client.js';
import { MessageReader } from '../../src/peer/framing.js';
import { dumpOf, freePort, hastctl, makePair, startHastd, workerOf } from '../harness/cluster.js';
import { firstReply, virginSyncReply } from '../harness/fake-secondary.js';
import { waitFor } from '../harness/wait.js';

type Behaviour = { kind: 'first' | 'second' | 'data'; junk: Buffer };

test('garbage from the peer in every phase: the primary drops the link, stays up, writes still land', async (t) => {
  const p = await makePair(t, { replication: 'memsync', size: 16 << 20 });
  const md = await dumpOf(p.conf, p.a.name);
  // Node b is our fake: node a's remote points at it (same 127.0.0.2 address, our own port).
  const fakePort = await freePort('127.0.0.2');
  const conf = readFileSync(p.conf, 'utf8').replace(`remote tcp4://${p.b.addr}`, `remote tcp4://127.0.0.2:${fakePort}`);
  const { writeFileSync } = await import('node:fs');
  writeFileSync(p.conf, conf);

  let behaviour: Behaviour = { kind: 'first', junk: Buffer.alloc(1) };
  let outSock: Socket | null = null;
  let closedByPrimary: () => void = () => undefined;
  const fake = createServer((s) => {
    s.on('error', () => undefined);
    const reader = new MessageReader({ maxPayload: 1 << 21 });
    const b = behaviour;
    s.on('close', () => closedByPrimary());
    s.on('data', (d: Buffer) => {
      for (const f of reader.push(d)) {
        if (f.nv.getString('resource') !== undefined && f.nv.getUint8Array('token') === undefined) {
          outSock = s;
          if (b.kind === 'first')
            s.end(b.junk); // half-closed: a partial header must not wait for the timeout
          else s.write(firstReply());
        } else if (f.nv.getUint8Array('token') !== undefined) {
          if (b.kind === 'second') outSock?.end(b.junk);
          else {
            outSock?.write(virginSyncReply(md));
            // Replies travel on the second connection: answer the first request with garbage.
            outSock?.once('data', () => s.end(b.junk));
          }
        }
      }
    });
  });
  await new Promise<void>((r) => fake.listen(fakePort, '127.0.0.2', () => r()));
  t.after(() => fake.close());

  await startHastd(t, p.conf, p.a);
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom('first', 'second', 'data') as fc.Arbitrary<Behaviour['kind']>,
      fc.uint8Array({ minLength: 1, maxLength: 300 }),
      async (kind, junk) => {
        behaviour = { kind, junk: Buffer.from(junk) };
        const dropped = new Promise<void>((r) => (closedByPrimary = r));
        assert.equal((await hastctl(p.conf, p.a.name, ['role', 'primary', p.res])).code, 0);
        await waitFor('export socket', () => existsSync(p.sock(p.a)));
        const c = await NbdClient.connect({ path: p.sock(p.a) });
        try {
          const data = Buffer.alloc(4096, ++n & 0xff);
          // In the data phase this write's request meets the garbage reply; it must still complete.
          await c.write(n * 4096, data);
          await c.flush();
          await dropped;
          assert.deepEqual(await c.read(n * 4096, 4096), data);
          await waitFor('degraded', async () => (await workerOf(p.conf, p.a.name))?.status === 'degraded', 30_000);
        } finally {
          await c.disconnect();
        }
        // A fresh worker for the next run connects at once (no 10 s reconnect wait).
        assert.equal((await hastctl(p.conf, p.a.name, ['role', 'init', p.res])).code, 0);
      },
    ),
    { numRuns: 12 },
  );
  assert.equal((await hastctl(p.conf, p.a.name, ['status', p.res])).code, 0, 'hastd still answers');
});
