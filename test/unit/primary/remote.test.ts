// The primary's remote leg (src/primary/remote.ts) against a fake secondary on loopback sockets:
// a reply that fails to decode completes its own request with EIO, then the leg disconnects.
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import type { ResourceConfig } from '../../../src/config/types.js';
import { PeerConnection } from '../../../src/peer/connection.js';
import { HIO } from '../../../src/peer/constants.js';
import { encodeMessage, MessageReader } from '../../../src/peer/framing.js';
import { buildReply, readRequest } from '../../../src/peer/messages.js';
import { PeerRemote } from '../../../src/primary/remote.js';
import { ErrnoError } from '../../../src/util/errno.js';
import { waitFor } from '../../harness/wait.js';
import { resourceConfig } from '../../harness/resource-config.js';

const CFG: ResourceConfig = resourceConfig({ checksum: 'crc32', metaFlush: true });

/** A connected loopback pair: [the primary's end, the fake secondary's end]. */
async function pair(t: TestContext): Promise<[Socket, Socket]> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const client = connect(port, '127.0.0.1');
  const s = await accepted;
  server.close();
  t.after(() => {
    client.destroy();
    s.destroy();
  });
  s.on('error', () => undefined);
  return [client, s];
}

async function leg(
  t: TestContext,
  opts: { mode?: ResourceConfig['replication']; version?: number; csums?: boolean } = {},
): Promise<{ remote: PeerRemote; secOut: Socket; secIn: Socket; why: string[] }> {
  const [out, secOut] = await pair(t);
  const [inn, secIn] = await pair(t);
  const why: string[] = [];
  const remote = new PeerRemote({
    out: new PeerConnection({ socket: out, compression: 'none', checksum: 'none' }),
    in: new PeerConnection({ socket: inn, compression: 'none', checksum: 'none' }),
    cfg: CFG,
    mode: opts.mode ?? 'fullsync',
    ...(opts.version !== undefined ? { version: opts.version } : {}),
    ...(opts.csums !== undefined ? { csums: opts.csums } : {}),
    onDisconnect: (w) => why.push(w),
  });
  t.after(() => remote.disconnect('test over'));
  return { remote, secOut, secIn, why };
}

describe('PeerRemote', () => {
  test('a READ reply with a wrong crc32 hash fails that read with EIO, then disconnects', async (t) => {
    const { remote, secOut, secIn, why } = await leg(t);
    const reader = new MessageReader();
    secOut.on('data', (chunk: Buffer) => {
      for (const msg of reader.push(chunk)) {
        const req = readRequest(msg.nv);
        if (req.cmd !== HIO.READ) continue; // the FLUSH stays unanswered
        const [head, payload] = encodeMessage(buildReply(req.seq), Buffer.alloc(req.length, 0x5a), {
          compression: 'none',
          checksum: 'crc32',
        });
        assert.ok(head !== undefined && payload !== undefined);
        const bad = Buffer.from(payload);
        bad[0] = (bad[0] ?? 0) ^ 0xff; // the hash no longer matches
        secIn.write(Buffer.concat([head, bad]));
      }
    });
    const other = remote.flush(); // still waiting when the bad reply arrives: fails with the disconnect
    await assert.rejects(remote.read(0, 4096), (err: unknown) => err instanceof ErrnoError && err.code === 'EIO');
    assert.equal(await other, false);
    assert.equal(remote.connected, false);
    assert.equal(why.length, 1);
    assert.match(why[0] ?? '', /Unable to receive reply header: .*[Hh]ash/);
  });

  test('a READ reply without data fails that read with EIO, then disconnects', async (t) => {
    const { remote, secOut, secIn, why } = await leg(t);
    const reader = new MessageReader();
    secOut.on('data', (chunk: Buffer) => {
      for (const msg of reader.push(chunk)) {
        for (const b of encodeMessage(buildReply(readRequest(msg.nv).seq), undefined, {
          compression: 'none',
          checksum: 'none',
        })) {
          secIn.write(b);
        }
      }
    });
    await assert.rejects(remote.read(0, 512), (err: unknown) => err instanceof ErrnoError && err.code === 'EIO');
    assert.equal(remote.connected, false);
    assert.deepEqual(why, ['READ reply carries no data']);
  });

  test('requests are framed as {cmd, seq, offset, length}; the reply completes them by seq', async (t) => {
    const { remote, secOut, secIn } = await leg(t);
    const reader = new MessageReader();
    const seen: number[] = [];
    secOut.on('data', (chunk: Buffer) => {
      for (const msg of reader.push(chunk)) {
        const req = readRequest(msg.nv);
        seen.push(req.cmd);
        assert.deepEqual(msg.nv.elements.map((e) => e.name).slice(0, 4), ['cmd', 'seq', 'offset', 'length']);
        const data = req.cmd === HIO.READ ? Buffer.alloc(req.length, 7) : undefined;
        for (const b of encodeMessage(buildReply(req.seq), data, { compression: 'none', checksum: 'crc32' }))
          secIn.write(b);
      }
    });
    assert.deepEqual(await remote.read(4096, 512), Buffer.alloc(512, 7));
    assert.equal(await remote.write(0, Buffer.alloc(512, 1)).done, true);
    assert.equal(await remote.flush(), true);
    assert.deepEqual(seen, [HIO.READ, HIO.WRITE, HIO.FLUSH]);
    assert.equal(remote.connected, true);
  });

  /** A fake secondary answering every request with `error` (FreeBSD errno) for FLUSH, success otherwise. */
  function answer(secOut: Socket, secIn: Socket, flushError: number, seen: { memsync: boolean }[] = []): void {
    const reader = new MessageReader();
    secOut.on('data', (chunk: Buffer) => {
      for (const msg of reader.push(chunk)) {
        const req = readRequest(msg.nv);
        if (req.cmd === HIO.KEEPALIVE) continue;
        seen.push({ memsync: req.memsync });
        const error = req.cmd === HIO.FLUSH ? flushError : 0;
        for (const b of encodeMessage(buildReply(req.seq, { error }), undefined, {
          compression: 'none',
          checksum: 'none',
        }))
          secIn.write(b);
      }
    });
  }

  test('a FLUSH answered with EIO fails and disconnects, naming the cause', async (t) => {
    const { remote, secOut, secIn, why } = await leg(t);
    answer(secOut, secIn, 5);
    assert.equal(await remote.write(0, Buffer.alloc(512, 1)).done, true);
    assert.equal(await remote.flush(), false);
    assert.equal(remote.connected, false);
    assert.deepEqual(why, ['Remote flush failed (EIO)']);
  });

  test('a FLUSH answered with EOPNOTSUPP fails, is remembered, and keeps the connection', async (t) => {
    const { remote, secOut, secIn, why } = await leg(t);
    answer(secOut, secIn, 45);
    assert.equal(await remote.flush(), false);
    assert.equal(remote.flushUnsupported, true);
    assert.equal(remote.connected, true);
    assert.deepEqual(why, []);
  });

  test('reload keeps the fullsync fallback of a version-1 peer; a version-2 peer gets memsync', async (t) => {
    for (const [version, memsync] of [
      [1, false],
      [2, true],
    ] as const) {
      const { remote, secOut, secIn } = await leg(t, { mode: version === 1 ? 'fullsync' : 'memsync', version });
      const seen: { memsync: boolean }[] = [];
      answer(secOut, secIn, 0, seen);
      remote.reload({ ...CFG, replication: 'memsync' });
      assert.equal(await remote.write(0, Buffer.alloc(512, 1)).done, true);
      assert.deepEqual(seen, [{ memsync }], `version ${version}`);
    }
  });

  test('a reset connection is told apart from a timeout in the disconnect cause', async (t) => {
    const { remote, secIn, why } = await leg(t);
    const pendingWrite = remote.write(0, Buffer.alloc(512, 1)).done;
    secIn.resetAndDestroy();
    assert.equal(await pendingWrite, false);
    assert.equal(why.length, 1);
    assert.match(why[0] ?? '', /ECONNRESET/);
    assert.doesNotMatch(why[0] ?? '', /[Tt]imeout/);
  });

  test('the send queue counts requests not yet written to the socket', async (t) => {
    const { remote, secOut } = await leg(t);
    secOut.pause(); // the fake secondary stops reading: requests pile up in our socket buffer
    const big = Buffer.alloc(1024 * 1024, 3);
    for (let i = 0; i < 64; i++) void remote.write(i * big.length, big);
    await new Promise((r) => setTimeout(r, 200));
    const q = remote.unwritten;
    assert.ok(q.messages > 0 && q.messages <= 64, `messages ${q.messages}`);
    assert.ok(q.bytes > 0, `bytes ${q.bytes}`);
    secOut.resume();
    // Drained once the fake secondary reads again: wait for it (bounded), not for a fixed time (a
    // fixed 300 ms failed on a loaded 2-core machine).
    await waitFor('the send queue to drain', () => remote.unwritten.messages === 0, 20_000, 20);
    assert.equal(remote.unwritten.bytes, 0);
  });
});

// Ours (issue 17): checksum-assisted sync's hash request.
describe('PeerRemote readHash', () => {
  /** A fake secondary answering every READ with `answer(length, csum)` as payload. */
  const answering = (secOut: Socket, secIn: Socket, answer: (length: number, csum: number | undefined) => Buffer) => {
    const reader = new MessageReader();
    const seen: (number | undefined)[] = [];
    secOut.on('data', (chunk: Buffer) => {
      for (const msg of reader.push(chunk)) {
        const req = readRequest(msg.nv);
        if (req.cmd !== HIO.READ) continue;
        seen.push(req.csum);
        for (const b of encodeMessage(buildReply(req.seq), answer(req.length, req.csum), {
          compression: 'none',
          checksum: 'none',
        }))
          secIn.write(b);
      }
    });
    return seen;
  };

  test('agreed: a READ carrying csum, resolved with the 32-byte hash the peer sent', async (t) => {
    const { remote, secOut, secIn } = await leg(t, { csums: true });
    const seen = answering(secOut, secIn, (length, csum) => Buffer.alloc(csum === 1 ? 32 : length, 0x11));
    assert.deepEqual(await remote.readHash(0, 1 << 20), Buffer.alloc(32, 0x11));
    assert.deepEqual(await remote.read(0, 4096), Buffer.alloc(4096, 0x11), 'a plain READ carries no csum');
    assert.deepEqual(seen, [1, undefined]);
    assert.equal(remote.connected, true);
  });

  test('a hash reply of another size closes the connection; not agreed: refused before sending', async (t) => {
    const { remote, secOut, secIn, why } = await leg(t, { csums: true });
    answering(secOut, secIn, (length) => Buffer.alloc(length));
    await assert.rejects(remote.readHash(0, 4096), (e: unknown) => e instanceof ErrnoError);
    assert.equal(remote.connected, false);
    assert.match(why.join(), /Checksum reply of 4096 bytes, expected 32/);
    const plain = await leg(t);
    const seen = answering(plain.secOut, plain.secIn, (length) => Buffer.alloc(length));
    await assert.rejects(plain.remote.readHash(0, 4096), /not agreed/);
    assert.deepEqual(seen, [], 'nothing was sent');
  });
});
