// Security of the replication link with real hastd processes on loopback (issue 18): `authkey`
// pairs and replicates; a wrong secret or a missing answer is refused and logged on both sides;
// without `authkey` the primary's first bytes are FreeBSD's; a rogue at the peer address cannot
// tear down a running session; a connection flood from a stranger neither fills the log nor keeps
// the real primary out; under umask 000 what hastd creates is 0700/0755/0600.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import { NvList } from '../../src/nv/codec.js';
import { encodeMessage, MessageReader, type PeerMessage as Frame } from '../../src/peer/framing.js';
import {
  addNodeLines,
  dumpOf,
  freePort,
  hastctl,
  makePair,
  type NodeSpec,
  type Pair,
  startHastd,
  startRole,
  statusJson,
  waitNodeInSync,
  workerOf,
} from '../harness/cluster.js';
import { dataAreaHash } from '../harness/data-area.js';
import { fingerprint, issue, makeCa, tlsLines } from '../harness/certs.js';
import { run } from '../harness/process.js';
import { requires, tmpDir } from '../harness/tools.js';
import { sleep, waitFor } from '../harness/wait.js';

const MiB = 1 << 20;
const PLAIN = { compression: 'none', checksum: 'none' } as const;

function up(t: TestContext, p: Pair, node: NodeSpec, role: 'primary' | 'secondary'): ReturnType<typeof startRole> {
  return startRole(t, p.conf, node, p.res, role, p.sock(node));
}

/** A 0600 secret file. */
function keyFile(dir: string, name: string, secret: string): string {
  const path = join(dir, name);
  writeFileSync(path, `${secret}\n`);
  chmodSync(path, 0o600);
  return path;
}

/** Give each node its own `authkey` (undefined: none). */
function setAuthKeys(p: Pair, keys: { a?: string; b?: string }): void {
  addNodeLines(p, {
    ...(keys.a !== undefined ? { a: `authkey ${keys.a}` } : {}),
    ...(keys.b !== undefined ? { b: `authkey ${keys.b}` } : {}),
  });
}

async function assertIdentical(p: Pair): Promise<void> {
  const da = await dumpOf(p.conf, p.a.name);
  const db = await dumpOf(p.conf, p.b.name);
  assert.equal(
    await dataAreaHash(p.img(p.a), da.localOff, da.dataSize),
    await dataAreaHash(p.img(p.b), db.localOff, db.dataSize),
  );
}

async function writeSome(p: Pair): Promise<void> {
  const client = await NbdClient.connect({ path: p.sock(p.a) });
  await client.write(0, randomBytes(MiB));
  await client.write(5 * MiB, randomBytes(256 * 1024));
  await client.flush();
  await client.disconnect();
}

describe('peer authentication (authkey)', () => {
  test('two nodes with the same secret pair and replicate', async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    const secret = randomBytes(32).toString('hex');
    setAuthKeys(p, { a: keyFile(p.a.dir, 'a.key', secret), b: keyFile(p.b.dir, 'b.key', secret) });
    await up(t, p, p.b, 'secondary');
    const a = await up(t, p, p.a, 'primary');
    await waitNodeInSync(p.conf, p.a.name);
    await writeSome(p);
    await waitNodeInSync(p.conf, p.a.name);
    await assertIdentical(p);
    assert.doesNotMatch(a.output(), /authentication/i);
  });

  test('a wrong secret is refused, with a log line on both sides', async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    setAuthKeys(p, {
      a: keyFile(p.a.dir, 'a.key', randomBytes(32).toString('hex')),
      b: keyFile(p.b.dir, 'b.key', randomBytes(32).toString('hex')),
    });
    const b = await up(t, p, p.b, 'secondary');
    const a = await up(t, p, p.a, 'primary');
    await waitFor(
      'both refusals logged',
      () =>
        /failed authentication \(wrong authkey\?\)/.test(a.output()) &&
        /failed authentication \(wrong authkey\?\)/.test(b.output()),
    );
    assert.equal((await workerOf(p.conf, p.a.name))?.status, 'degraded');
    assert.ok(!(await statusJson(p.conf, p.b.name, p.res)).workerpid, 'no secondary worker was started');
  });

  test('a peer that does not answer the challenge is refused, with a log line on both sides', async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    // Only the primary has a secret: the secondary does not answer.
    setAuthKeys(p, { a: keyFile(p.a.dir, 'a.key', randomBytes(32).toString('hex')) });
    const b = await up(t, p, p.b, 'secondary');
    const a = await up(t, p, p.a, 'primary');
    await waitFor(
      'both sides logged',
      () =>
        /did not answer the authentication challenge/.test(a.output()) &&
        /asks for authentication, but no authkey is configured/.test(b.output()),
    );
    await a.stop();
    await b.stop();
  });

  test('a primary without the secret is refused by a secondary that has one, both sides say so', async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    setAuthKeys(p, { b: keyFile(p.b.dir, 'b.key', randomBytes(32).toString('hex')) });
    const b = await up(t, p, p.b, 'secondary');
    const a = await up(t, p, p.a, 'primary');
    await waitFor(
      'both sides logged',
      () =>
        /Remote node refused the connection: Authentication required/.test(a.output()) &&
        /did not offer authentication, but authkey is configured/.test(b.output()),
    );
    assert.equal((await workerOf(p.conf, p.a.name))?.status, 'degraded');
  });

  test('hastd refuses to start with a group-readable secret, naming file:line', async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    const key = keyFile(p.a.dir, 'a.key', randomBytes(32).toString('hex'));
    chmodSync(key, 0o640);
    setAuthKeys(p, { a: key });
    const line =
      readFileSync(p.conf, 'utf8')
        .split('\n')
        .findIndex((l) => l.includes(`authkey ${key}`)) + 1;
    await assert.rejects(startHastd(t, p.conf, p.a), (e: Error) => {
      assert.match(e.message, /hastd exited with 78/);
      assert.ok(
        e.message.includes(`${p.conf}:${line}: Secret file ${key} is accessible by group or others (mode 0640)`),
        e.message,
      );
      return true;
    });
  });
});

/** The first frame a real primary sends to a fake secondary listening at its remote address. */
async function firstBytesOfPrimary(t: TestContext, p: Pair): Promise<Buffer> {
  const [host, port] = p.b.addr.split(':');
  let resolveBytes: (b: Buffer) => void = () => undefined;
  const got = new Promise<Buffer>((r) => {
    resolveBytes = r;
  });
  const server = createServer((s) => {
    let buf = Buffer.alloc(0);
    const reader = new MessageReader({ maxPayload: 0 });
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      try {
        if (reader.push(d).length > 0) resolveBytes(buf);
      } catch {
        // Not ours to judge here.
      }
      s.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(Number(port), host, r));
  t.after(() => server.close());
  await up(t, p, p.a, 'primary');
  return got;
}

describe('hostile authentication fields against a running hastd', () => {
  test('wrong lengths, a truncated MAC and a replayed nonce: each connection closed with a reason, the daemon lives, the real primary pairs', async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    const secret = randomBytes(32).toString('hex');
    setAuthKeys(p, { a: keyFile(p.a.dir, 'a.key', secret), b: keyFile(p.b.dir, 'b.key', secret) });
    const b = await up(t, p, p.b, 'secondary');
    const hello = (nonce: Uint8Array): NvList =>
      new NvList().addString('resource', 'r0').addUint8('version', 2).addUint8Array('authnonce', nonce);
    const replayed = randomBytes(32);
    const cases: { name: string; first: NvList; mac?: Uint8Array }[] = [
      { name: 'short nonce', first: hello(randomBytes(31)) },
      { name: 'long nonce', first: hello(randomBytes(33)) },
      { name: 'nonce of the wrong type', first: new NvList().addString('resource', 'r0').addString('authnonce', 'x') },
      { name: 'truncated MAC', first: hello(randomBytes(32)), mac: randomBytes(16) },
      { name: 'first use of a nonce', first: hello(replayed), mac: randomBytes(32) },
      { name: 'replayed nonce', first: hello(replayed), mac: randomBytes(32) },
    ];
    for (const c of cases) {
      const c1 = await dial(p.b.addr, '127.0.0.1');
      t.after(() => c1.destroy());
      const r1 = oneFrame(c1);
      send(c1, c.first);
      const reply = await r1;
      const token = reply?.nv.getUint8Array('token');
      if (token !== undefined && c.mac !== undefined) {
        const c2 = await dial(p.b.addr, '127.0.0.1');
        t.after(() => c2.destroy());
        const r2 = oneFrame(c2);
        send(
          c2,
          new NvList()
            .addString('resource', 'r0')
            .addUint8Array('token', token)
            .addUint64('resuid', 1n)
            .addUint64('localcnt', 0n)
            .addUint64('remotecnt', 0n)
            .addUint8Array('authmac', c.mac),
        );
        assert.equal((await r2)?.nv.getString('errmsg'), 'Authentication failed.', c.name);
      } else {
        assert.ok(reply === null || reply.nv.getString('errmsg') !== undefined, `${c.name}: ${JSON.stringify(reply)}`);
      }
    }
    const out = b.output();
    assert.match(out, /'authnonce' of invalid size \(31, expected 32\)/);
    assert.match(out, /'authnonce' of invalid size \(33, expected 32\)/);
    assert.match(out, /'authnonce' of invalid type/);
    assert.match(out, /'authmac' of invalid size \(16, expected 32\)/);
    assert.match(out, /Replayed authentication nonce from tcp:\/\/127\.0\.0\.1:\d+: refused/);
    assert.ok(!(await statusJson(p.conf, p.b.name, p.res)).workerpid, 'no worker for any of them');
    await up(t, p, p.a, 'primary');
    await waitNodeInSync(p.conf, p.a.name);
  });
});

describe('the FreeBSD-compatible handshake without authkey', () => {
  test("the primary's first message is byte-identical to FreeBSD hastd's (golden)", async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    const bytes = await firstBytesOfPrimary(t, p);
    // {resource: "r0", version: uint8 2} framed with version 2, as FreeBSD hastd sends it.
    const golden =
      '02340000001109030000007265736f757263650000000000000000723000000000000002080100000076657273696f6e000200000000000000';
    assert.equal(bytes.toString('hex'), golden);
  });

  test("with authkey the same message carries a 32-byte authnonce after FreeBSD's fields", async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    setAuthKeys(p, { a: keyFile(p.a.dir, 'a.key', randomBytes(32).toString('hex')) });
    const bytes = await firstBytesOfPrimary(t, p);
    const [frame] = new MessageReader({ maxPayload: 0 }).push(bytes);
    assert.deepEqual(
      frame?.nv.elements.map((e) => e.name),
      ['resource', 'version', 'authnonce'],
    );
    assert.equal(frame?.nv.getUint8Array('authnonce')?.length, 32);
  });
});

/** Open a TCP connection to `addr` from `localAddress`. */
function dial(addr: string, localAddress: string): Promise<Socket> {
  const [host, port] = addr.split(':');
  return new Promise((done, fail) => {
    const s = connect({ host: host as string, port: Number(port), localAddress }, () => done(s));
    s.once('error', fail);
  });
}

function oneFrame(s: Socket): Promise<Frame | null> {
  const reader = new MessageReader({ maxPayload: 0 });
  return new Promise((resolve) => {
    s.on('data', (d: Buffer) => {
      try {
        const [f] = reader.push(d);
        if (f !== undefined) resolve(f);
      } catch {
        resolve(null);
      }
    });
    s.on('close', () => resolve(null));
    s.on('error', () => undefined);
  });
}

const send = (s: Socket, nv: NvList): void => {
  for (const b of encodeMessage(nv, undefined, PLAIN)) s.write(b);
};

describe('listener hardening', () => {
  test('a rogue at the peer address cannot tear down the running secondary session', async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    const b = await up(t, p, p.b, 'secondary');
    await up(t, p, p.a, 'primary');
    await waitNodeInSync(p.conf, p.a.name);
    const pid = (await statusJson(p.conf, p.b.name, p.res)).workerpid;
    assert.ok(typeof pid === 'number');
    // The rogue speaks from node a's address and completes both halves of a handshake.
    const c1 = await dial(p.b.addr, '127.0.0.1');
    t.after(() => c1.destroy());
    const r1 = oneFrame(c1);
    send(c1, new NvList().addString('resource', 'r0').addUint8('version', 2));
    const token = (await r1)?.nv.getUint8Array('token');
    assert.equal(token?.length, 16);
    const c2 = await dial(p.b.addr, '127.0.0.1');
    t.after(() => c2.destroy());
    const r2 = oneFrame(c2);
    send(
      c2,
      new NvList()
        .addString('resource', 'r0')
        .addUint8Array('token', token ?? Buffer.alloc(16))
        .addUint64('resuid', 12345n)
        .addUint64('localcnt', 9n)
        .addUint64('remotecnt', 9n),
    );
    assert.match((await r2)?.nv.getString('errmsg') ?? '', /^Resource unique ID mismatch \(primary=12345, /);
    assert.match(b.output(), /is not the running session's .*: refused, session kept/);
    assert.equal((await statusJson(p.conf, p.b.name, p.res)).workerpid, pid, 'the secondary worker still runs');
    // And it still replicates.
    await writeSome(p);
    await waitNodeInSync(p.conf, p.a.name);
    await assertIdentical(p);
  });

  test('a connection flood from a stranger: the real primary reconnects, the log stays short', async (t) => {
    const p = await makePair(t, { size: 16 * MiB });
    let b = await up(t, p, p.b, 'secondary');
    await up(t, p, p.a, 'primary');
    await waitNodeInSync(p.conf, p.a.name);
    // Take the secondary away, then flood its address from 127.0.0.3 while it comes back.
    await b.stop();
    await waitFor('primary degraded', async () => (await workerOf(p.conf, p.a.name))?.status === 'degraded');
    let flooding = true;
    let opened = 0;
    const flooder = async (): Promise<void> => {
      while (flooding) {
        try {
          const s = await dial(p.b.addr, '127.0.0.3');
          opened++;
          s.on('error', () => undefined);
          s.write(Buffer.alloc(64, 0x41));
          s.destroy();
        } catch {
          await sleep(5);
        }
      }
    };
    const floods = Array.from({ length: 8 }, () => flooder());
    t.after(async () => {
      flooding = false;
      await Promise.all(floods);
    });
    b = await up(t, p, p.b, 'secondary');
    // The primary's guard retries every 10 s: give it three tries.
    await waitNodeInSync(p.conf, p.a.name, 45_000);
    flooding = false;
    await Promise.all(floods);
    assert.ok(opened > 100, `the flood opened ${opened} connections`);
    const unknown = b.output().match(/Client tcp:\/\/127\.0\.0\.3:\d+ isn't known\./g) ?? [];
    // Rate-limited: a burst per window and a count of the rest, never a line per connection.
    assert.ok(
      unknown.length > 0 && unknown.length * 10 < opened,
      `${unknown.length} refusal lines for ${opened} connections`,
    );
    assert.match(
      b.output(),
      /\d+ more refused connection\(s\) not logged in the last 10 s \(last: Client tcp:\/\/127\.0\.0\.3:/,
    );
    assert.doesNotMatch(b.output(), /tcp:\/\/:0/);
  });

  test('a plain-TCP NBD export on a non-loopback address warns at start, on loopback it does not', async (t) => {
    for (const [host, warns] of [
      ['0.0.0.0', true],
      ['127.0.0.1', false],
    ] as const) {
      const root = tmpDir(t);
      const node: NodeSpec = { name: 'solo', addr: `127.0.0.1:${await freePort('127.0.0.1')}`, dir: root };
      const img = join(root, 'r0.img');
      writeFileSync(img, '');
      truncateSync(img, 16 * MiB);
      const port = await freePort('127.0.0.1');
      const conf = join(root, 'hast.conf');
      writeFileSync(
        conf,
        `on solo {\n  control uds://${root}/control.sock\n  listen tcp4://${node.addr}\n}\n` +
          `resource r0 {\n  on solo {\n    local ${img}\n    export tcp://${host}:${port}\n    device none\n    remote none\n  }\n}\n`,
      );
      assert.equal((await hastctl(conf, 'solo', ['create', 'r0'])).code, 0);
      const d = await startHastd(t, conf, node);
      assert.equal((await hastctl(conf, 'solo', ['role', 'primary', 'r0'])).code, 0);
      const client = await waitFor('NBD export', () =>
        NbdClient.connect({ host: '127.0.0.1', port }, { exportName: 'r0' }).then(
          (c) => c,
          () => null,
        ),
      );
      await client.disconnect();
      const warned = /NBD export tcp:\/\/[^ ]+ is plain TCP on a non-loopback address/.test(d.output());
      assert.equal(warned, warns, `${host}: ${d.output()}`);
      await d.stop();
    }
  });

  test('under umask 000, hastd creates its directories 0700/0755 and its control socket 0600', async (t) => {
    const root = tmpDir(t);
    const node: NodeSpec = {
      name: 'solo',
      addr: `127.0.0.1:${await freePort('127.0.0.1')}`,
      dir: join(root, 'run', 'hast'),
    };
    const img = join(root, 'r0.img');
    writeFileSync(img, '');
    truncateSync(img, 16 * MiB);
    const exp = join(root, 'exports', 'sub', 'r0.sock');
    const pid = join(root, 'pid', 'sub', 'hastd.pid');
    const conf = join(root, 'hast.conf');
    writeFileSync(
      conf,
      `on solo {\n  control uds://${node.dir}/control.sock\n  listen tcp4://${node.addr}\n}\n` +
        `resource r0 {\n  on solo {\n    local ${img}\n    export uds://${exp}\n    device none\n    remote none\n  }\n}\n`,
    );
    assert.equal((await hastctl(conf, 'solo', ['create', 'r0'])).code, 0);
    const old = process.umask(0);
    let d: Awaited<ReturnType<typeof startHastd>>;
    try {
      d = await startHastd(t, conf, node, ['-P', pid]);
    } finally {
      process.umask(old);
    }
    const r = await hastctl(conf, 'solo', ['role', 'primary', 'r0']);
    assert.equal(r.code, 0, r.stderr);
    await waitFor('export socket', () => existsSync(exp));
    const mode = (path: string): string => (statSync(path).mode & 0o7777).toString(8);
    assert.equal(mode(join(root, 'run')), '700', 'control socket directories');
    assert.equal(mode(node.dir), '700');
    assert.equal(mode(join(node.dir, 'control.sock')), '600');
    assert.equal(mode(join(root, 'exports')), '700', 'export socket directories');
    assert.equal(mode(join(root, 'exports', 'sub')), '700');
    assert.equal(mode(exp), '600');
    assert.equal(mode(join(root, 'pid')), '755', 'pidfile directories');
    assert.equal(mode(join(root, 'pid', 'sub')), '755');
    assert.equal(mode(pid), '600');
    await d.stop();
  });
});

describe('TLS on the replication link', () => {
  test('pairs and replicates with certificates from one CA, and with pinned fingerprints', async (t) => {
    if (!requires(t, { tools: ['openssl'] })) return;
    for (const mode of ['ca', 'pin'] as const) {
      const p = await makePair(t, { size: 16 * MiB });
      const ca = makeCa(p.a.dir, 'ca');
      const ca2 = issue(ca, 'node-a');
      const cb = issue(ca, 'node-b');
      addNodeLines(p, {
        a: tlsLines(ca2, mode === 'ca' ? { ca: ca.cert } : { peer: fingerprint(cb.cert) }),
        b: tlsLines(cb, mode === 'ca' ? { ca: ca.cert } : { peer: fingerprint(ca2.cert) }),
      });
      const b = await up(t, p, p.b, 'secondary');
      const a = await up(t, p, p.a, 'primary');
      await waitNodeInSync(p.conf, p.a.name);
      await writeSome(p);
      await waitNodeInSync(p.conf, p.a.name);
      await assertIdentical(p);
      assert.doesNotMatch(a.output() + b.output(), /TLS/, mode);
      await a.stop();
      await b.stop();
    }
  });

  for (const [what, bad, reason] of [
    ['a certificate from another CA', 'other-ca', /TLS refused: the peer's certificate is not accepted/],
    ['an expired certificate', 'expired', /TLS refused: the peer's certificate is not accepted: .*expired/i],
  ] as const) {
    test(`refuses ${what}`, async (t) => {
      if (!requires(t, { tools: ['openssl'] })) return;
      const p = await makePair(t, { size: 16 * MiB });
      const ca = makeCa(p.a.dir, 'ca');
      const ca2 = issue(ca, 'node-a');
      const cb =
        bad === 'other-ca' ? issue(makeCa(p.b.dir, 'rogue-ca'), 'node-b') : issue(ca, 'node-b', { expired: true });
      addNodeLines(p, { a: tlsLines(ca2, { ca: ca.cert }), b: tlsLines(cb, { ca: ca.cert }) });
      const b = await up(t, p, p.b, 'secondary');
      const a = await up(t, p, p.a, 'primary');
      await waitFor(
        'the refusal on both sides',
        () => reason.test(a.output()) && /Unable to secure the connection/.test(b.output()),
      );
      assert.equal((await workerOf(p.conf, p.a.name))?.status, 'degraded');
    });
  }

  test('refuses a plain-TCP peer, both sides say so', async (t) => {
    if (!requires(t, { tools: ['openssl'] })) return;
    const p = await makePair(t, { size: 16 * MiB });
    const ca = makeCa(p.b.dir, 'ca');
    addNodeLines(p, { b: tlsLines(issue(ca, 'node-b'), { ca: ca.cert }) });
    const b = await up(t, p, p.b, 'secondary');
    const a = await up(t, p, p.a, 'primary');
    await waitFor(
      'both sides logged',
      () =>
        /Remote node refused the connection: TLS required/.test(a.output()) &&
        /did not offer TLS, but tlscert is configured: refused/.test(b.output()),
    );
    assert.equal((await workerOf(p.conf, p.a.name))?.status, 'degraded');
  });
});

describe('NBD STARTTLS on a TCP export', () => {
  test('nbdinfo reads the export over nbds:// with the test CA, nbdcopy writes and reads it; plain nbd:// is refused', async (t) => {
    if (!requires(t, { tools: ['openssl', 'nbdinfo', 'nbdcopy'] })) return;
    const root = tmpDir(t);
    const node: NodeSpec = { name: 'solo', addr: `127.0.0.1:${await freePort('127.0.0.1')}`, dir: root };
    const img = join(root, 'r0.img');
    writeFileSync(img, '');
    truncateSync(img, 16 * MiB);
    const ca = makeCa(root, 'ca');
    const cert = issue(ca, 'solo', { san: 'IP:127.0.0.1' });
    const port = await freePort('127.0.0.1');
    const conf = join(root, 'hast.conf');
    writeFileSync(
      conf,
      `on solo {\n  control uds://${root}/control.sock\n  listen tcp4://${node.addr}\n}\n` +
        `resource r0 {\n  on solo {\n    local ${img}\n    export tcp://127.0.0.1:${port}\n    device none\n    remote none\n` +
        `    ${tlsLines(cert, { ca: ca.cert })}\n  }\n}\n`,
    );
    assert.equal((await hastctl(conf, 'solo', ['create', 'r0'])).code, 0);
    const d = await startHastd(t, conf, node);
    assert.equal((await hastctl(conf, 'solo', ['role', 'primary', 'r0'])).code, 0);
    // libnbd takes a directory holding ca-cert.pem.
    const certs = join(root, 'client');
    mkdirSync(certs);
    copyFileSync(ca.cert, join(certs, 'ca-cert.pem'));
    const uri = `nbds://127.0.0.1:${port}/r0?tls-certificates=${certs}`;
    const info = await waitFor('nbdinfo over TLS', async () => {
      const r = await run('nbdinfo', ['--json', uri]);
      return r.code === 0 ? r.stdout : null;
    });
    const json = JSON.parse(info) as { exports: { 'export-size': number }[] };
    const size = json.exports[0]?.['export-size'] ?? 0;
    assert.ok(size > 0 && size <= 16 * MiB, info);
    // Written through TLS, read back through TLS.
    const src = join(root, 'src.bin');
    const back = join(root, 'back.bin');
    const data = randomBytes(size);
    writeFileSync(src, data);
    const w = await run('nbdcopy', [src, uri]);
    assert.equal(w.code, 0, w.stderr);
    const r = await run('nbdcopy', [uri, back]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(back).equals(data), 'nbdcopy read back what it wrote');
    const plain = await run('nbdinfo', [`nbd://127.0.0.1:${port}/r0`]);
    assert.notEqual(plain.code, 0, 'a plain client is refused');
    assert.doesNotMatch(d.output(), /plain TCP/);
  });
});
