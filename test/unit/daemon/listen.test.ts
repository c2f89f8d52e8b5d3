// Peer listener routing (HAST-SPEC §6.3 steps 2, 3, 6) with a fake parent, over loopback sockets.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import type { HastConfig, ResourceConfig } from '../../../src/config/types.js';
import type { Role } from '../../../src/control/messages.js';
import { type AcceptOutcome, normalizeIp, PeerAcceptor } from '../../../src/daemon/listen.js';
import { type PeerParent, ResourceState } from '../../../src/daemon/resource-state.js';
import type { ParentToWorker } from '../../../src/daemon/worker-ipc.js';
import { NvList } from '../../../src/nv/codec.js';
import { encodeMessage, MessageReader, type PeerMessage as Frame } from '../../../src/peer/framing.js';

const RES: ResourceConfig = {
  name: 'r0',
  provName: 'r0',
  localPath: '/dev/null',
  remoteAddr: 'tcp://127.0.0.1:8457',
  sourceAddr: null,
  replication: 'memsync',
  checksum: 'none',
  compression: 'hole',
  timeout: 20,
  exec: '',
  metaFlush: true,
  exportAddr: '',
  device: 'none',
};

interface Fake {
  parent: PeerParent;
  sent: { msg: ParentToWorker; handle: Socket | undefined }[];
  started: number;
  res: ResourceState;
}

function fakeParent(t: TestContext, role: Role, remote = RES.remoteAddr): Fake {
  const res = new ResourceState({ ...RES, remoteAddr: remote });
  res.role = role;
  const fake: Fake = { parent: undefined as unknown as PeerParent, sent: [], started: 0, res };
  const cfg: HastConfig = {
    file: '/x',
    nodeNames: [],
    controlPath: '/x',
    controlAddr: '/x',
    pidFile: '/x',
    listen: [],
    metrics: null,
    resources: [res.cfg],
  };
  fake.parent = {
    cfg,
    resources: new Map([['r0', res]]),
    stopWorker: async () => undefined,
    startWorker: () => {
      fake.started++;
      return { pid: 4242 } as ChildProcess;
    },
    sendToWorker: (_c: ChildProcess, msg: ParentToWorker, handle?: Socket) => {
      fake.sent.push({ msg, handle });
    },
    serialize: <T>(fn: () => Promise<T>) => fn(),
  };
  t.after(() => {
    for (const s of fake.sent) s.handle?.destroy();
  });
  return fake;
}

/** A loopback listener feeding the acceptor; connect() returns the client and the routing outcome. */
async function listen(
  t: TestContext,
  acceptor: PeerAcceptor,
): Promise<() => Promise<{ c: Socket; outcome: Promise<AcceptOutcome> }>> {
  // Outcomes are boxed: a Promise resolved with a Promise would wait for the whole handshake.
  type Box = { readonly o: Promise<AcceptOutcome> };
  const outcomes: Box[] = [];
  const waiters: ((b: Box) => void)[] = [];
  const server = createServer({ pauseOnConnect: true }, (sock) => {
    const box = { o: acceptor.accept(sock) };
    const w = waiters.shift();
    if (w !== undefined) w(box);
    else outcomes.push(box);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.close();
    acceptor.close();
  });
  const port = (server.address() as { port: number }).port;
  return async () => {
    const box = new Promise<Box>((r) => {
      const b = outcomes.shift();
      if (b !== undefined) r(b);
      else waiters.push(r);
    });
    const c = connect(port, '127.0.0.1');
    c.on('error', () => undefined);
    t.after(() => c.destroy());
    return { c, outcome: (await box).o };
  };
}

function sendNv(c: Socket, nv: NvList): void {
  for (const b of encodeMessage(nv, undefined, { compression: 'none', checksum: 'none' })) c.write(b);
}

function oneFrame(c: Socket): Promise<Frame | null> {
  const reader = new MessageReader({ maxPayload: 0 });
  return new Promise((resolve) => {
    c.on('data', (d: Buffer) => {
      const [f] = reader.push(d);
      if (f !== undefined) resolve(f);
    });
    c.on('close', () => resolve(null));
  });
}

describe('normalizeIp()', () => {
  test('maps IPv4-mapped IPv6 to IPv4 and keeps other addresses', () => {
    assert.equal(normalizeIp('::ffff:127.0.0.1'), '127.0.0.1');
    assert.equal(normalizeIp('10.0.0.1'), '10.0.0.1');
    assert.equal(normalizeIp('FE80::1'), 'fe80::1');
  });
});

describe('PeerAcceptor', () => {
  test("closes a connection from an address that is no resource's remote without reading", async (t) => {
    const f = fakeParent(t, 'secondary', 'tcp://127.0.0.2');
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const { c, outcome } = await connectPeer();
    const got = oneFrame(c);
    assert.deepEqual(await outcome, { kind: 'closed', reason: 'unknown client' });
    assert.equal(await got, null, 'no reply, just a close');
  });

  test('refuses an unknown resource with "Resource not configured."', async (t) => {
    const f = fakeParent(t, 'secondary');
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const { c, outcome } = await connectPeer();
    const got = oneFrame(c);
    sendNv(c, new NvList().addString('resource', 'nope').addUint8('version', 2));
    assert.equal((await outcome).kind, 'refused');
    assert.equal((await got)?.nv.getString('errmsg'), 'Resource not configured.');
  });

  test('refuses while primary with errmsg and wait=1', async (t) => {
    const f = fakeParent(t, 'primary');
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const { c } = await connectPeer();
    const got = oneFrame(c);
    sendNv(c, new NvList().addString('resource', 'r0').addUint8('version', 2));
    const reply = await got;
    assert.equal(reply?.nv.getString('errmsg'), 'Remote node acts as primary for the resource and not as secondary.');
    assert.equal(reply?.nv.getUint8('wait'), 1);
  });

  test('runs both halves of the handshake and hands the sockets to a new worker', async (t) => {
    const f = fakeParent(t, 'secondary');
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const first = await connectPeer();
    const reply1 = oneFrame(first.c);
    sendNv(first.c, new NvList().addString('resource', 'r0'));
    const r1 = await reply1;
    assert.equal(r1?.nv.getUint8('version'), 1, 'missing version means 1');
    const token = r1?.nv.getUint8Array('token');
    assert.equal(token?.length, 16);

    const wrong = await connectPeer();
    const wrongReply = oneFrame(wrong.c);
    sendNv(
      wrong.c,
      new NvList().addString('resource', 'r0').addUint8Array('token', Buffer.alloc(16, 1)).addUint64('resuid', 1n),
    );
    assert.equal((await wrongReply)?.nv.getString('errmsg'), "Token doesn't match.");
    assert.equal(f.started, 0);

    const second = await connectPeer();
    assert.ok(token !== undefined);
    sendNv(
      second.c,
      new NvList()
        .addString('resource', 'r0')
        .addUint8Array('token', token)
        .addUint64('resuid', 99n)
        .addUint64('localcnt', 3n)
        .addUint64('remotecnt', 2n),
    );
    assert.equal((await second.outcome).kind, 'second');
    assert.equal(f.started, 1);
    assert.deepEqual(
      f.sent.map((s) => s.msg),
      [
        { type: 'peer-socket', which: 'in' },
        {
          type: 'peer-socket',
          which: 'out',
          first: {
            version: 1,
            virgin: false,
            resuid: '99',
            localCnt: '3',
            remoteCnt: '2',
            peerAddr: f.sent[1]?.msg.type === 'peer-socket' ? (f.sent[1].msg.first?.peerAddr ?? '') : '',
          },
        },
      ],
    );
    assert.ok(
      f.sent.every((s) => s.handle !== undefined),
      'both sockets handed over',
    );
  });

  test('closes a connection whose header is empty (nv length 0)', async (t) => {
    const f = fakeParent(t, 'secondary');
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const { c, outcome } = await connectPeer();
    c.write(Buffer.from([2, 0, 0, 0, 0]));
    assert.equal((await outcome).kind, 'closed');
  });

  test('closes a connection that sends garbage', async (t) => {
    const f = fakeParent(t, 'secondary');
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const { c, outcome } = await connectPeer();
    c.write(Buffer.from([9, 9, 9, 9, 9, 9, 9, 9]));
    assert.equal((await outcome).kind, 'closed');
  });

  test('closes a connection announcing an oversized header', async (t) => {
    const f = fakeParent(t, 'secondary');
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const { c, outcome } = await connectPeer();
    c.write(Buffer.from([2, 0xff, 0xff, 0xff, 0x0f]));
    const o = await outcome;
    assert.equal(o.kind, 'closed');
    assert.match(o.kind === 'closed' ? o.reason : '', /Header too large/);
  });
});
