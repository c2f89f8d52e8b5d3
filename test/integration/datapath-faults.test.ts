// The primary's data path against a peer that stalls or fails (issue 13, findings 8–10): async
// writes stay within their budget while the real secondary is stopped (SIGSTOP), and status says
// why the resource is degraded and how its last connection ended.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import { ASYNC_MAX_BYTES, ASYNC_MAX_WRITES } from '../../src/primary/async-budget.js';
import { HIO } from '../../src/peer/constants.js';
import { encodeMessage, MessageReader } from '../../src/peer/framing.js';
import { buildReply, readRequest } from '../../src/peer/messages.js';
import {
  dumpOf,
  freePort,
  hastctl,
  makePair,
  startHastd,
  startRole,
  statusJson,
  waitNodeInSync,
} from '../harness/cluster.js';
import { dataAreaHash } from '../harness/data-area.js';
import { firstReply, PLAIN, virginSyncReply } from '../harness/fake-secondary.js';
import { sleep, waitFor } from '../harness/wait.js';

const KiB = 1024;

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]);
}

interface Backlog {
  writes: number;
  bytes: number;
  peakWrites: number;
  peakBytes: number;
  maxWrites: number;
  maxBytes: number;
}

test('async with a stopped secondary: acknowledged-but-unconfirmed writes stay within the budget, memory bounded', async (t) => {
  const p = await makePair(t, { replication: 'async', size: 160 << 20, extra: 'timeout 120' });
  const b = await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  await waitNodeInSync(p.conf, p.a.name);
  const primaryPid = (await statusJson(p.conf, p.a.name, p.res)).workerpid as number;
  const secondaryPid = (await statusJson(p.conf, p.b.name, p.res)).workerpid as number;
  assert.ok(primaryPid > 0 && secondaryPid > 0);
  void b;

  const c = await NbdClient.connect({ path: p.sock(p.a) });
  t.after(() => c.disconnect().catch(() => undefined));
  await c.write(0, Buffer.alloc(4096, 1));
  const rssBefore = rssKiB(primaryPid);

  let stopped = false;
  const cont = (): void => {
    if (stopped) process.kill(secondaryPid, 'SIGCONT');
    stopped = false;
  };
  t.after(cont); // never leave it stopped, whatever fails
  process.kill(secondaryPid, 'SIGSTOP');
  stopped = true;

  // 2,000 × 64 KiB (125 MiB) at distinct offsets, all issued at once.
  const n = 2000;
  const size = 64 * KiB;
  const payload = randomBytes(size);
  let acked = 0;
  const writes: Promise<void>[] = [];
  for (let i = 0; i < n; i++) writes.push(c.write((i + 1) * size, payload).then(() => void acked++));
  let peakRss = 0;
  let last = -1;
  for (let calm = 0; calm < 10; ) {
    await sleep(200);
    peakRss = Math.max(peakRss, rssKiB(primaryPid));
    calm = acked === last ? calm + 1 : 0;
    last = acked;
  }
  const st = (await statusJson(p.conf, p.a.name, p.res)).worker as { asyncBacklog: Backlog; status: string };
  assert.equal(st.status, 'complete', 'still connected (timeout 120)');
  assert.ok(acked <= ASYNC_MAX_WRITES, `${acked} writes acknowledged while the peer confirmed none`);
  assert.ok(acked * size <= ASYNC_MAX_BYTES);
  assert.equal(st.asyncBacklog.maxWrites, ASYNC_MAX_WRITES);
  assert.ok(
    st.asyncBacklog.peakWrites <= ASYNC_MAX_WRITES && st.asyncBacklog.peakBytes <= ASYNC_MAX_BYTES,
    JSON.stringify(st.asyncBacklog),
  );
  // The budget (16 MiB here) plus the 256 NBD slots in flight, not the 125 MiB written.
  assert.ok(peakRss - rssBefore < 96 * 1024, `the primary worker grew by ${peakRss - rssBefore} KiB`);

  cont();
  await Promise.all(writes);
  assert.equal(acked, n);
  await c.flush();
  const after = (await statusJson(p.conf, p.a.name, p.res)).worker as { asyncBacklog: Backlog };
  assert.ok(after.asyncBacklog.peakWrites <= ASYNC_MAX_WRITES);
  await waitNodeInSync(p.conf, p.a.name);
  await waitFor(
    'nothing unconfirmed',
    async () =>
      ((await statusJson(p.conf, p.a.name, p.res)).worker as { asyncBacklog: Backlog }).asyncBacklog.writes === 0,
  );
  const da = await dumpOf(p.conf, p.a.name);
  const db = await dumpOf(p.conf, p.b.name);
  assert.equal(
    await dataAreaHash(p.img(p.a), da.localOff, da.dataSize),
    await dataAreaHash(p.img(p.b), db.localOff, db.dataSize),
  );
});

test('status says why the resource is degraded: the last disconnect and its cause, then unreachable', async (t) => {
  const p = await makePair(t, { replication: 'fullsync', size: 16 << 20 });
  const b = await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  await waitNodeInSync(p.conf, p.a.name);
  type Peer = {
    reason: string | null;
    role: string | null;
    lastConnect: string | null;
    lastDisconnect: string | null;
    disconnectCause: string | null;
    message: string | null;
  };
  const peerOf = async (): Promise<Peer> => ((await statusJson(p.conf, p.a.name, p.res)).worker as { peer: Peer }).peer;
  const up = await peerOf();
  assert.equal(up.reason, null);
  assert.equal(up.role, 'secondary');
  assert.ok(up.lastConnect !== null && !Number.isNaN(Date.parse(up.lastConnect)));
  assert.equal(up.lastDisconnect, null);

  await b.kill();
  const down = await waitFor('disconnect seen', async () => {
    const peer = await peerOf();
    return peer.lastDisconnect !== null ? peer : null;
  });
  assert.ok(down.disconnectCause !== null && down.disconnectCause.length > 0);
  assert.doesNotMatch(down.disconnectCause, /[Tt]imeout/, 'a killed peer is not a timeout');
  // The next attempt (every 10 s) meets a closed port.
  const unreachable = await waitFor(
    'unreachable',
    async () => {
      const peer = await peerOf();
      return peer.reason === 'unreachable' ? peer : null;
    },
    30_000,
  );
  assert.match(unreachable.message ?? '', /ECONNREFUSED/);
  assert.equal(unreachable.lastDisconnect, down.lastDisconnect);
  const text = (await hastctl(p.conf, p.a.name, ['status', p.res])).stdout;
  assert.match(text, /\n {2}peer: unreachable \(.*ECONNREFUSED.*\)\n/);
  assert.match(text, /\n {2}lastconnect: \d{4}-/);
  assert.match(text, /\n {2}lastdisconnect: \d{4}-.* \(.+\)\n/);
  // FreeBSD's lines keep their order, ours come after the queues.
  assert.ok(text.indexOf('    queues:') < text.indexOf('  peer:'));
});

test('a secondary whose FLUSH fails: the FLUSH succeeds on the primary, the written extents stay dirty, the link drops with the cause', async (t) => {
  const p = await makePair(t, { replication: 'fullsync', size: 16 << 20 });
  const md = await dumpOf(p.conf, p.a.name);
  const fakePort = await freePort('127.0.0.2');
  writeFileSync(
    p.conf,
    readFileSync(p.conf, 'utf8').replace(`remote tcp4://${p.b.addr}`, `remote tcp4://127.0.0.2:${fakePort}`),
  );
  // A fake secondary speaking the real protocol: applies nothing, answers writes OK and FLUSH with EIO.
  let outSock: Socket | null = null;
  const fake = createServer((s) => {
    s.on('error', () => undefined);
    const reader = new MessageReader({ maxPayload: 2 << 20 });
    s.on('data', (d: Buffer) => {
      for (const f of reader.push(d)) {
        if (outSock === null && f.nv.getString('resource') !== undefined && f.nv.getUint8Array('token') === undefined) {
          outSock = s;
          s.write(firstReply());
        } else if (f.nv.getUint8Array('token') !== undefined) {
          const repl = s;
          outSock?.write(virginSyncReply(md));
          const reqs = new MessageReader({ maxPayload: 2 << 20 });
          outSock?.on('data', (chunk: Buffer) => {
            for (const m of reqs.push(chunk)) {
              const req = readRequest(m.nv);
              if (req.cmd === HIO.KEEPALIVE) continue;
              repl.write(
                Buffer.concat(
                  encodeMessage(buildReply(req.seq, { error: req.cmd === HIO.FLUSH ? 5 : 0 }), undefined, PLAIN),
                ),
              );
            }
          });
        }
      }
    });
  });
  await new Promise<void>((r) => fake.listen(fakePort, '127.0.0.2', () => r()));
  t.after(() => fake.close());
  await startHastd(t, p.conf, p.a);
  assert.equal((await hastctl(p.conf, p.a.name, ['role', 'primary', p.res])).code, 0);
  await waitFor('export socket', () => existsSync(p.sock(p.a)));
  await waitFor(
    'connected',
    async () =>
      ((await statusJson(p.conf, p.a.name, p.res)).worker as { status?: string } | null)?.status === 'complete',
  );
  const c = await NbdClient.connect({ path: p.sock(p.a) });
  t.after(() => c.disconnect().catch(() => undefined));
  const extent = md.extentSize;
  await c.write(3 * extent, Buffer.alloc(4096, 3));
  await c.write(5 * extent, Buffer.alloc(4096, 5));
  await c.flush(); // succeeds: the local flush did
  const w = await waitFor('degraded after the failed flush', async () => {
    const st = (await statusJson(p.conf, p.a.name, p.res)).worker as {
      status: string;
      dirty: number;
      peer: { disconnectCause: string | null };
    };
    return st.status === 'degraded' ? st : null;
  });
  assert.equal(w.peer.disconnectCause, 'Remote flush failed (EIO)');
  assert.ok(w.dirty >= 2 * extent, `dirty ${w.dirty}: both written extents must be resynchronized`);
  assert.deepEqual(await c.read(3 * extent, 4096), Buffer.alloc(4096, 3));
});
