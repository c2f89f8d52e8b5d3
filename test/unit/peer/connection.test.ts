// PeerConnection over a loopback socket pair (HAST-SPEC §6.1, §6.5) and the PendingMap helper.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { NvList } from '../../../src/nv/codec.js';
import { PeerConnection, PendingMap, type PeerConnectionOptions } from '../../../src/peer/connection.js';
import { PeerProtocolError } from '../../../src/peer/errors.js';
import type { PeerMessage } from '../../../src/peer/framing.js';
import { buildKeepalive, buildRequest, HIO, readRequest } from '../../../src/peer/messages.js';

/** A connected loopback socket pair; both ends and the server are destroyed after the test. */
async function socketPair(t: TestContext): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  const [serverSide] = await accepted;
  t.after(() => {
    client.destroy();
    serverSide.destroy();
    server.close();
  });
  return [client, serverSide];
}

type Opts = Omit<PeerConnectionOptions, 'socket'>;
const PLAIN: Opts = { compression: 'none', checksum: 'none' };

function closedWith(
  conn: (r: (reason: Error | undefined) => void) => PeerConnection,
): Promise<[PeerConnection, Error | undefined]> {
  return new Promise((resolve) => {
    const c: PeerConnection = conn((reason) => resolve([c, reason]));
  });
}

describe('PeerConnection', () => {
  test('delivers messages in order, with payloads, through lzf + crc32', async (t) => {
    const [a, b] = await socketPair(t);
    const sender = new PeerConnection({ socket: a, compression: 'lzf', checksum: 'crc32' });
    const got: PeerMessage[] = [];
    const done = new Promise<void>((resolve) => {
      new PeerConnection({
        socket: b,
        ...PLAIN,
        onMessage: (m) => {
          got.push(m);
          if (got.length === 4) resolve();
        },
      });
    });
    const data = Buffer.from('replicated block '.repeat(4000));
    // All in one tick: corked into one write.
    assert.equal(sender.send(buildRequest(HIO.WRITE, 1n, 0, data.length), data), true);
    assert.equal(sender.send(buildRequest(HIO.WRITE, 2n, 0, 4096), Buffer.alloc(4096)), true);
    assert.equal(sender.send(buildKeepalive()), true);
    assert.equal(sender.send(buildRequest(HIO.FLUSH, 3n, 0, 0)), true);
    await done;
    assert.deepEqual(
      got.map((m) => readRequest(m.nv).cmd),
      [HIO.WRITE, HIO.WRITE, HIO.KEEPALIVE, HIO.FLUSH],
    );
    assert.deepEqual(
      got.map((m) => readRequest(m.nv).seq),
      [1n, 2n, 0n, 3n],
    );
    assert.ok(got[0]?.payload?.equals(data));
    assert.ok(got[1]?.payload?.equals(Buffer.alloc(4096)));
    assert.equal(got[0]?.nv.getString('compression'), 'lzf');
    assert.equal(got[1]?.nv.getString('compression'), 'hole');
  });

  test('receive() returns queued messages in order and honours the negotiated version', async (t) => {
    const [a, b] = await socketPair(t);
    const sender = new PeerConnection({ socket: a, ...PLAIN });
    const receiver = new PeerConnection({ socket: b, ...PLAIN });
    sender.send(new NvList().addString('resource', 'r0'));
    sender.setSendOptions({ version: 1 });
    sender.send(new NvList().addString('resource', 'r1'));
    const m1 = await receiver.receive(10_000);
    const m2 = await receiver.receive(10_000);
    assert.deepEqual([m1.nv.getString('resource'), m1.version], ['r0', 2]);
    assert.deepEqual([m2.nv.getString('resource'), m2.version], ['r1', 1]);
  });

  test('garbage from the peer closes the connection with a PeerProtocolError', async (t) => {
    const [a, b] = await socketPair(t);
    const [conn, reason] = await (async () => {
      const p = closedWith((onClose) => new PeerConnection({ socket: b, ...PLAIN, onClose }));
      a.write(Buffer.from([7, 1, 2, 3, 4, 5, 6, 7, 8]));
      return p;
    })();
    assert.ok(reason instanceof PeerProtocolError);
    assert.equal(reason.code, 'EPEER_VERSION');
    assert.equal(conn.closed, true);
    assert.equal(conn.send(buildKeepalive()), false);
  });

  test('an oversized payload size closes the connection before the payload arrives', async (t) => {
    const [a, b] = await socketPair(t);
    const p = closedWith((onClose) => new PeerConnection({ socket: b, ...PLAIN, maxPayload: 1024, onClose }));
    const sender = new PeerConnection({ socket: a, ...PLAIN });
    sender.send(new NvList().addUint64('seq', 1n).addUint32('size', 1 << 30));
    const [, reason] = await p;
    assert.ok(reason instanceof PeerProtocolError && reason.code === 'EPEER_TOO_LARGE');
  });

  test('the peer closing its end is reported, and pending receive() calls reject', async (t) => {
    const [a, b] = await socketPair(t);
    let closeReason: Error | undefined;
    const conn = new PeerConnection({ socket: b, ...PLAIN, onClose: (r) => (closeReason = r) });
    const pending = conn.receive();
    a.end();
    await assert.rejects(pending, PeerProtocolError);
    assert.ok(closeReason instanceof PeerProtocolError);
    await assert.rejects(conn.receive(), PeerProtocolError);
  });

  test('close() is idempotent and reports its reason once', async (t) => {
    const [, b] = await socketPair(t);
    const reasons: Array<Error | undefined> = [];
    const conn = new PeerConnection({ socket: b, ...PLAIN, onClose: (r) => reasons.push(r) });
    conn.close('Disconnected from tcp://x:1');
    conn.close('again');
    assert.equal(reasons.length, 1);
    assert.equal(reasons[0]?.message, 'Disconnected from tcp://x:1');
    assert.equal(b.destroyed, true);
  });

  test('a silent peer trips the receive timeout with ETIMEDOUT', async (t) => {
    const [, b] = await socketPair(t);
    const [, reason] = await closedWith(
      (onClose) => new PeerConnection({ socket: b, ...PLAIN, receiveTimeout: { ms: 30 }, onClose }),
    );
    assert.ok(reason instanceof PeerProtocolError);
    assert.equal(reason.errno, 'ETIMEDOUT');
  });

  test('with whilePending, silence only counts while a reply is awaited', async (t) => {
    const [, b] = await socketPair(t);
    let pending = false;
    let closed = false;
    const p = closedWith(
      (onClose) =>
        new PeerConnection({
          socket: b,
          ...PLAIN,
          receiveTimeout: { ms: 20, whilePending: () => pending },
          onClose: (r) => {
            closed = true;
            onClose(r);
          },
        }),
    );
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(closed, false, 'no request outstanding: the connection stays up');
    pending = true;
    const [, reason] = await p;
    assert.equal((reason as PeerProtocolError).errno, 'ETIMEDOUT');
  });

  test('receive(timeout) rejects with ETIMEDOUT but leaves the connection open', async (t) => {
    const [, b] = await socketPair(t);
    const conn = new PeerConnection({ socket: b, ...PLAIN });
    await assert.rejects(conn.receive(20), (e: unknown) => e instanceof PeerProtocolError && e.errno === 'ETIMEDOUT');
    assert.equal(conn.closed, false);
  });

  test('setting onMessage later delivers the queued messages first', async (t) => {
    const [a, b] = await socketPair(t);
    const sender = new PeerConnection({ socket: a, ...PLAIN });
    const receiver = new PeerConnection({ socket: b, ...PLAIN });
    sender.send(new NvList().addUint64('seq', 1n));
    sender.send(new NvList().addUint64('seq', 2n));
    await receiver.receive(10_000);
    sender.send(new NvList().addUint64('seq', 3n));
    const seen: bigint[] = [];
    await new Promise<void>((resolve) => {
      receiver.onMessage = (m) => {
        seen.push(m.nv.getUint64('seq') ?? 0n);
        if (seen.length === 2) resolve();
      };
    });
    assert.deepEqual(seen, [2n, 3n]);
  });
});

describe('PendingMap', () => {
  test('add/get/take match by seq and an unknown seq returns undefined', () => {
    const m = new PendingMap<string>();
    m.add(5n, 'five');
    m.add(6n, 'six');
    assert.equal(m.get(5n), 'five');
    assert.equal(m.size, 2);
    assert.equal(m.take(5n), 'five');
    assert.equal(m.take(5n), undefined);
    assert.equal(m.take(99n), undefined);
    assert.equal(m.size, 1);
  });

  test('a duplicate seq is an invariant violation', () => {
    const m = new PendingMap<number>();
    m.add(1n, 1);
    assert.throws(() => m.add(1n, 2), /seq 1 is already pending/);
  });

  test('drainAll() hands over every entry in order and empties the map', () => {
    const m = new PendingMap<string>();
    m.add(3n, 'c');
    m.add(1n, 'a');
    m.add(2n, 'b');
    const seen: Array<[string, bigint]> = [];
    m.drainAll((e, seq) => seen.push([e, seq]));
    assert.deepEqual(seen, [
      ['c', 3n],
      ['a', 1n],
      ['b', 2n],
    ]);
    assert.equal(m.size, 0);
  });
});
