// Peer listener routing (HAST-SPEC §6.3 steps 2, 3, 6) with a fake parent, over loopback sockets.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { HastConfig } from '../../../src/config/types.js';
import type { Role } from '../../../src/control/messages.js';
import { type AcceptOutcome, normalizeIp, PeerAcceptor } from '../../../src/daemon/listen.js';
import { type PeerParent, ResourceState } from '../../../src/daemon/resource-state.js';
import type { ParentToWorker } from '../../../src/daemon/worker-ipc.js';
import { NvList } from '../../../src/nv/codec.js';
import fc from 'fast-check';
import { RefusalLog } from '../../../src/daemon/refusal-log.js';
import { addAuthMac, addAuthNonce, authMac, macMatches, newNonce } from '../../../src/peer/auth.js';
import { encodeMessage, MessageReader, type PeerMessage as Frame } from '../../../src/peer/framing.js';
import { resourceConfig } from '../../harness/resource-config.js';
import { tmpDir } from '../../harness/tools.js';

const RES = resourceConfig({
  localPath: '/dev/null',
  remoteAddr: 'tcp://127.0.0.1:8457',
  replication: 'memsync',
  compression: 'hole',
  metaFlush: true,
});

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

describe('PeerAcceptor hardening', () => {
  /** First connection: send `nv`, return the reply's token and fields. */
  async function firstOf(connectPeer: () => Promise<{ c: Socket; outcome: Promise<AcceptOutcome> }>, nv: NvList) {
    const first = await connectPeer();
    const reply = oneFrame(first.c);
    sendNv(first.c, nv);
    return { ...first, reply: await reply };
  }
  const hello = (): NvList => new NvList().addString('resource', 'r0').addUint8('version', 2);
  const second = (token: Uint8Array, resuid = 99n): NvList =>
    new NvList()
      .addString('resource', 'r0')
      .addUint8Array('token', token)
      .addUint64('resuid', resuid)
      .addUint64('localcnt', 0n)
      .addUint64('remotecnt', 0n);

  test("a stranger's first connection does not drop the real one: both wait, by token", async (t) => {
    const f = fakeParent(t, 'secondary');
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const real = await firstOf(connectPeer, hello());
    const stranger = await firstOf(connectPeer, hello());
    assert.equal((await stranger.outcome).kind, 'first');
    const token = real.reply?.nv.getUint8Array('token');
    assert.ok(token !== undefined);
    const s = await connectPeer();
    sendNv(s.c, second(token));
    assert.equal((await s.outcome).kind, 'second', 'the real primary still pairs');
    assert.equal(f.started, 1);
  });

  test('a running session is kept when a second connection names another resource unique ID', async (t) => {
    const f = fakeParent(t, 'secondary');
    let stopped = 0;
    const worker = { pid: 4242 } as ChildProcess;
    f.parent = {
      ...f.parent,
      startWorker: () => {
        f.started++;
        f.res.worker = worker;
        return worker;
      },
      stopWorker: async () => {
        stopped++;
        f.res.worker = null;
      },
    };
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const a = await firstOf(connectPeer, hello());
    const s1 = await connectPeer();
    sendNv(s1.c, second(a.reply?.nv.getUint8Array('token') ?? Buffer.alloc(16), 99n));
    assert.equal((await s1.outcome).kind, 'second');
    // A rogue at the peer address completes a handshake of its own, with another resuid.
    const rogue = await firstOf(connectPeer, hello());
    const s2 = await connectPeer();
    const refusal = oneFrame(s2.c);
    sendNv(s2.c, second(rogue.reply?.nv.getUint8Array('token') ?? Buffer.alloc(16), 7n));
    const o = await s2.outcome;
    assert.equal(o.kind, 'refused');
    assert.match(
      (await refusal)?.nv.getString('errmsg') ?? '',
      /^Resource unique ID mismatch \(primary=7, secondary=99\)\.$/,
    );
    assert.equal(stopped, 0, 'the running worker was not stopped');
    assert.equal(f.started, 1);
    assert.equal(f.res.worker, worker);
  });
});

describe('PeerAcceptor with authkey', () => {
  const SECRET = 'correct horse battery staple 0123456789';

  function authParent(t: TestContext, secret = SECRET): Fake {
    const f = fakeParent(t, 'secondary');
    const dir = tmpDir(t);
    const key = join(dir, 'hast.key');
    writeFileSync(key, `${secret}\n`, { mode: 0o600 });
    f.res.cfg = { ...f.res.cfg, authKey: key };
    return f;
  }

  /** A primary's side of the handshake, computing its answer with `secret` (or replaying `mac`). */
  async function handshake(
    connectPeer: () => Promise<{ c: Socket; outcome: Promise<AcceptOutcome> }>,
    opts: { secret?: string; nonce?: Uint8Array; mac?: (real: Buffer) => Uint8Array | null } = {},
  ): Promise<{ first: Frame | null; outcome: AcceptOutcome; reply: Frame | null; nonce: Uint8Array }> {
    const nonce = opts.nonce ?? newNonce();
    const c1 = await connectPeer();
    const r1 = oneFrame(c1.c);
    sendNv(c1.c, addAuthNonce(new NvList().addString('resource', 'r0').addUint8('version', 2), nonce));
    const first = await r1;
    const token = first?.nv.getUint8Array('token');
    if (token === undefined) return { first, outcome: await c1.outcome, reply: null, nonce };
    const ctx = {
      resource: 'r0',
      primaryNonce: nonce,
      secondaryNonce: first?.nv.getUint8Array('authnonce') ?? Buffer.alloc(32),
      token,
    };
    const real = authMac(Buffer.from(opts.secret ?? SECRET), 'primary', ctx);
    const mac = opts.mac === undefined ? real : opts.mac(real);
    const nv = new NvList()
      .addString('resource', 'r0')
      .addUint8Array('token', token)
      .addUint64('resuid', 1n)
      .addUint64('localcnt', 0n)
      .addUint64('remotecnt', 0n);
    if (mac !== null) addAuthMac(nv, mac);
    const c2 = await connectPeer();
    const r2 = oneFrame(c2.c);
    sendNv(c2.c, nv);
    const outcome = await c2.outcome;
    return { first, outcome, reply: outcome.kind === 'refused' ? await r2 : null, nonce };
  }

  test('a primary that answers with the secret pairs; the secondary proved itself first', async (t) => {
    const f = authParent(t);
    const h = await handshake(await listen(t, new PeerAcceptor(f.parent)));
    assert.equal(h.outcome.kind, 'second');
    assert.equal(f.started, 1);
    const ns = h.first?.nv.getUint8Array('authnonce');
    const token = h.first?.nv.getUint8Array('token');
    assert.ok(ns !== undefined && token !== undefined);
    const expected = authMac(Buffer.from(SECRET), 'secondary', {
      resource: 'r0',
      primaryNonce: h.nonce,
      secondaryNonce: ns,
      token,
    });
    assert.ok(macMatches(expected, h.first?.nv.getUint8Array('authmac') ?? Buffer.alloc(0)));
  });

  test('a primary without authnonce is refused with "Authentication required."', async (t) => {
    const f = authParent(t);
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const c = await connectPeer();
    const r = oneFrame(c.c);
    sendNv(c.c, new NvList().addString('resource', 'r0').addUint8('version', 2));
    assert.equal((await r)?.nv.getString('errmsg'), 'Authentication required.');
    assert.equal((await c.outcome).kind, 'refused');
  });

  for (const [what, secret, mac, reason] of [
    ['a wrong secret', 'wrong horse battery staple 0123456789', undefined, /failed authentication \(wrong authkey\?\)/],
    ['a missing answer', SECRET, () => null, /did not answer the authentication challenge/],
    ['a truncated MAC', SECRET, (m: Buffer) => m.subarray(0, 20), /'authmac' of invalid size \(20, expected 32\)/],
    ['a recorded MAC of another session', SECRET, () => Buffer.alloc(32, 0xab), /failed authentication/],
  ] as const) {
    test(`${what} is refused and starts no worker`, async (t) => {
      const f = authParent(t);
      const h = await handshake(await listen(t, new PeerAcceptor(f.parent)), {
        secret,
        ...(mac !== undefined ? { mac } : {}),
      });
      assert.equal(h.outcome.kind, 'refused');
      assert.match(h.outcome.kind === 'refused' ? h.outcome.reason : '', reason);
      assert.equal(h.reply?.nv.getString('errmsg'), 'Authentication failed.');
      assert.equal(f.started, 0);
    });
  }

  test('a replayed handshake (the same primary nonce and answer) is refused', async (t) => {
    const f = authParent(t);
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const ok = await handshake(connectPeer);
    assert.equal(ok.outcome.kind, 'second');
    const replay = await handshake(connectPeer, { nonce: ok.nonce });
    assert.equal(replay.first?.nv.getString('errmsg'), 'Authentication failed.');
    assert.equal(f.started, 1);
  });

  test('fuzz: any authnonce/authmac (type, length, replay) is refused or closed with a reason, never a worker', async (t) => {
    const f = authParent(t);
    const acceptor = new PeerAcceptor(f.parent, { refusals: new RefusalLog({ sink: () => undefined }) });
    const connectPeer = await listen(t, acceptor);
    const field = fc.oneof(
      fc.constant(null),
      fc.uint8Array({ minLength: 1, maxLength: 64 }).map((b) => ({ kind: 'bytes' as const, b })),
      fc.string({ maxLength: 8 }).map((s) => ({ kind: 'string' as const, s })),
      fc.integer({ min: 0, max: 255 }).map((n) => ({ kind: 'u8' as const, n })),
    );
    type Field = typeof field extends fc.Arbitrary<infer T> ? T : never;
    const put = (nv: NvList, name: string, v: Field): NvList => {
      if (v === null) return nv;
      if (v.kind === 'bytes') return nv.addUint8Array(name, v.b);
      if (v.kind === 'string') return nv.addString(name, v.s);
      return nv.addUint8(name, v.n);
    };
    const seen: Uint8Array[] = [];
    await fc.assert(
      fc.asyncProperty(field, field, fc.boolean(), async (nonce, mac, replay) => {
        const c1 = await connectPeer();
        const r1 = oneFrame(c1.c);
        const replayed = replay && seen.length > 0 ? seen[0] : undefined;
        const hello = new NvList().addString('resource', 'r0').addUint8('version', 2);
        sendNv(c1.c, replayed !== undefined ? addAuthNonce(hello, replayed) : put(hello, 'authnonce', nonce));
        const o1 = await c1.outcome;
        const first = await r1;
        if (o1.kind === 'first') {
          const sent = replayed ?? (nonce !== null && nonce.kind === 'bytes' ? nonce.b : undefined);
          assert.ok(sent !== undefined && sent.length === 32 && replayed === undefined, 'only a fresh 32-byte nonce');
          seen.push(sent);
          const token = first?.nv.getUint8Array('token') ?? Buffer.alloc(16);
          const c2 = await connectPeer();
          sendNv(c2.c, put(new NvList().addString('resource', 'r0').addUint8Array('token', token), 'authmac', mac));
          const o2 = await c2.outcome;
          assert.ok(o2.kind === 'refused', `second connection: ${JSON.stringify(o2)}`);
          assert.ok(o2.reason.length > 0);
        } else {
          assert.ok(o1.kind === 'refused' || o1.kind === 'closed', JSON.stringify(o1));
          assert.ok(o1.reason.length > 0);
        }
        assert.equal(f.started, 0, 'no worker for a stranger');
      }),
      { numRuns: 150 },
    );
  });

  test('an authnonce of the wrong length closes the connection with a reason', async (t) => {
    const f = authParent(t);
    const connectPeer = await listen(t, new PeerAcceptor(f.parent));
    const c = await connectPeer();
    sendNv(c.c, addAuthNonce(new NvList().addString('resource', 'r0'), Buffer.alloc(7)));
    const o = await c.outcome;
    assert.equal(o.kind, 'closed');
    assert.equal(o.kind === 'closed' ? o.reason : '', 'bad authentication field');
    assert.equal(await oneFrame(c.c), null);
  });
});
