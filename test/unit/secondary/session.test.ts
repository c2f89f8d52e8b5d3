// Secondary session over loopback sockets: handshake reply per HAST-SPEC §6.3 step 7 / §7.2, then
// framed requests (§6.4) applied to a file component; garbage on the wire ends the session (§8).
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { ResourceConfig } from '../../../src/config/types.js';
import type { HookEvent } from '../../../src/daemon/worker-ipc.js';
import { HIO_CMD } from '../../../src/secondary/apply.js';
import { decideSecondary } from '../../../src/secondary/handshake.js';
import { openComponent } from '../../../src/component/open.js';
import { openLocal, readMd, type SecondaryMetadata, writeMd } from '../../../src/secondary/local.js';
import { SecondarySession } from '../../../src/secondary/session.js';
import { decodePayload, encodeRequest, type Frame, FrameReader } from '../../../src/secondary/wire.js';
import { tmpDir } from '../../harness/tools.js';

const EXTENT = 65536;
const LOCALOFF = 4096 + 512;
const DATASIZE = 64 * EXTENT;
const NONE = { compression: 'none', checksum: 'none' } as const;

const CFG: ResourceConfig = {
  name: 'r0', provName: 'r0', localPath: '', remoteAddr: '127.0.0.1', sourceAddr: null,
  replication: 'memsync', checksum: 'crc32', compression: 'hole', timeout: 20, exec: '',
  metaFlush: true, exportAddr: '', device: 'none',
};

function baseMd(over: Partial<SecondaryMetadata> = {}): SecondaryMetadata {
  return {
    resource: 'r0', dataSize: DATASIZE, extentSize: EXTENT, keepDirty: 64, localOff: LOCALOFF,
    resuid: 0n, localCnt: 0n, remoteCnt: 0n, prevRole: 'init', ...over,
  };
}

/** A connected loopback pair: [the primary's end, the secondary's end]. */
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
  return [client, s];
}

/** Collects frames arriving on a socket. */
function frames(sock: Socket): { next(): Promise<Frame>; closed: Promise<void> } {
  const reader = new FrameReader({ maxNv: 1 << 16, maxPayload: 2 << 20 });
  const queue: Frame[] = [];
  let wake: (() => void) | null = null;
  sock.on('data', (c: Buffer) => {
    reader.push(c);
    for (let f = reader.next(); f !== null; f = reader.next()) queue.push(f);
    wake?.();
  });
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  sock.on('error', () => undefined);
  return {
    async next(): Promise<Frame> {
      while (queue.length === 0) await new Promise<void>((r) => { wake = r; });
      return queue.shift() as Frame;
    },
    closed,
  };
}

interface Rig {
  out: Socket;
  inn: Socket;
  events: HookEvent[];
  exits: number[];
  path: string;
  session: SecondarySession;
  started: Promise<boolean>;
}

async function rig(t: TestContext, md: SecondaryMetadata, first: { resuid: bigint; localCnt?: bigint; remoteCnt?: bigint; virgin?: boolean }): Promise<Rig> {
  const dir = tmpDir(t);
  const path = join(dir, 'disk');
  const fd = openSync(path, 'w');
  writeSync(fd, Buffer.alloc(LOCALOFF + DATASIZE), 0, LOCALOFF + DATASIZE, 0);
  writeSync(fd, Buffer.from([0x81]), 0, 1, 4096);
  closeSync(fd);
  const comp = await openLocal(path);
  t.after(() => comp.close());
  await writeMd(comp, md);
  const [out, secIn] = await pair(t);
  const [inn, secOut] = await pair(t);
  const events: HookEvent[] = [];
  const exits: number[] = [];
  const session = new SecondarySession({
    cfg: { ...CFG, localPath: path }, comp, md: await readMd(comp, 'r0'), inSock: secIn, outSock: secOut,
    first: {
      version: 2, virgin: first.virgin ?? false, resuid: first.resuid.toString(),
      localCnt: (first.localCnt ?? 0n).toString(), remoteCnt: (first.remoteCnt ?? 0n).toString(), peerAddr: 'tcp://127.0.0.1:1',
    },
    emit: async (e) => {
      events.push(e);
    },
    exit: (c) => exits.push(c),
    recvTimeoutMs: 60_000,
  });
  t.after(() => session.shutdown(0));
  return { out, inn, events, exits, path, session, started: session.start() };
}

function send(sock: Socket, req: Parameters<typeof encodeRequest>[1]): void {
  for (const b of encodeRequest(2, req, { compression: 'hole', checksum: 'crc32' })) sock.write(b);
}

describe('decideSecondary()', () => {
  const S = (resuid: bigint, l: bigint, r: bigint) => ({ resuid, localCnt: l, remoteCnt: r });
  const P = (resuid: bigint, l: bigint, r: bigint, virgin = false) => ({ resuid, localCnt: l, remoteCnt: r, virgin });
  test('follows the §7.2 table row by row', () => {
    assert.deepEqual(decideSecondary(S(0n, 0n, 0n), P(5n, 0n, 0n, true)), { kind: 'adopt', syncSrc: 'primary', bitmap: 'none' });
    assert.deepEqual(decideSecondary(S(0n, 0n, 0n), P(5n, 1n, 0n)), { kind: 'adopt', syncSrc: 'primary', bitmap: 'ones' });
    assert.equal(decideSecondary(S(6n, 0n, 0n), P(5n, 0n, 0n)).kind, 'mismatch');
    assert.deepEqual(decideSecondary(S(5n, 4n, 3n), P(5n, 3n, 3n)), { kind: 'sync', syncSrc: 'secondary', bitmap: 'own' });
    assert.deepEqual(decideSecondary(S(5n, 3n, 3n), P(5n, 3n, 3n)), { kind: 'sync', syncSrc: 'primary', bitmap: 'own' });
    assert.deepEqual(decideSecondary(S(5n, 3n, 3n), P(5n, 4n, 3n)), { kind: 'sync', syncSrc: 'primary', bitmap: 'own' });
    assert.deepEqual(decideSecondary(S(5n, 4n, 3n), P(5n, 4n, 3n)), { kind: 'split-brain' });
    const never = decideSecondary(S(5n, 2n, 3n), P(5n, 3n, 3n));
    assert.equal(never.kind, 'never');
    assert.equal(never.kind === 'never' && never.syncSrc, 'primary');
  });
  test('names both resuids in the mismatch errmsg', () => {
    const d = decideSecondary(S(6n, 0n, 0n), P(5n, 0n, 0n));
    assert.deepEqual(d, { kind: 'mismatch', errmsg: 'Resource unique ID mismatch (primary=5, secondary=6).' });
  });
});

describe('SecondarySession', () => {
  test('adopts a virgin primary: writes resuid, replies virgin without a bitmap, fires connect', async (t) => {
    const r = await rig(t, baseMd(), { resuid: 77n, virgin: true });
    const reply = await frames(r.out).next();
    assert.equal(await r.started, true);
    assert.equal(reply.nv.int('datasize', 7), BigInt(DATASIZE));
    assert.equal(reply.nv.int('extentsize', 5), BigInt(EXTENT));
    assert.equal(reply.nv.int('virgin', 1), 1n);
    assert.equal(reply.nv.int('syncsrc', 2), 1n);
    assert.equal(reply.nv.int('mapsize', 6), 0n);
    assert.equal(reply.payload, null);
    assert.deepEqual(r.events, ['connect']);
    // A second, unlocked handle: the session holds the component's exclusive lock.
    const comp = await openComponent(r.path, { lock: false });
    t.after(() => comp.close());
    assert.equal((await readMd(comp, 'r0')).resuid, 77n);
  });

  test('sends its own bitmap when the counters agree', async (t) => {
    const r = await rig(t, baseMd({ resuid: 9n, localCnt: 2n, remoteCnt: 1n }), { resuid: 9n, localCnt: 1n, remoteCnt: 2n });
    const reply = await frames(r.out).next();
    assert.equal(reply.nv.int('syncsrc', 2), 1n);
    assert.equal(reply.nv.int('mapsize', 6), 512n);
    assert.ok(reply.payload !== null);
    const map = decodePayload(reply.nv, reply.payload, 1 << 20);
    assert.equal(map[0], 0x81, 'the on-disk bitmap byte is sent as is');
  });

  test('refuses split-brain with the upstream errmsg, fires split-brain and exits 78', async (t) => {
    const r = await rig(t, baseMd({ resuid: 9n, localCnt: 4n, remoteCnt: 3n }), { resuid: 9n, localCnt: 4n, remoteCnt: 3n });
    const reply = await frames(r.out).next();
    assert.equal(await r.started, false);
    assert.equal(reply.nv.string('errmsg'), 'Split-brain condition!');
    assert.deepEqual(r.events, ['split-brain']);
    assert.deepEqual(r.exits, [78]);
  });

  test('applies framed requests: memsync double reply, read back, EINVAL, zeroed bitmap', async (t) => {
    const r = await rig(t, baseMd({ resuid: 9n }), { resuid: 9n });
    const fromOut = frames(r.out);
    const replies = frames(r.inn);
    await fromOut.next();
    await r.started;
    send(r.out, { cmd: HIO_CMD.WRITE, seq: 1n, offset: 0n, length: 4096n, memsync: true, data: Buffer.alloc(4096, 0x42) });
    const a = await replies.next();
    const b = await replies.next();
    assert.deepEqual([a.nv.int('seq', 8), a.nv.int('received', 1)], [1n, 1n], 'early ack first');
    assert.deepEqual([b.nv.int('seq', 8), b.nv.has('received'), b.nv.has('error')], [1n, false, false]);
    send(r.out, { cmd: HIO_CMD.READ, seq: 2n, offset: 0n, length: 4096n });
    const rd = await replies.next();
    assert.equal(rd.nv.int('seq', 8), 2n);
    assert.ok(rd.payload !== null);
    assert.deepEqual(decodePayload(rd.nv, rd.payload, 1 << 20), Buffer.alloc(4096, 0x42));
    send(r.out, { cmd: HIO_CMD.READ, seq: 3n, offset: 100n, length: 512n });
    const bad = await replies.next();
    assert.deepEqual([bad.nv.int('seq', 8), bad.nv.int('error', 3)], [3n, 22n]);
    send(r.out, { cmd: HIO_CMD.DELETE, seq: 4n, offset: 0n, length: 4096n });
    send(r.out, { cmd: HIO_CMD.READ, seq: 5n, offset: 0n, length: 512n });
    await replies.next();
    const z = await replies.next();
    assert.ok(z.payload !== null);
    assert.deepEqual(decodePayload(z.nv, z.payload, 1 << 20), Buffer.alloc(512), 'deleted range reads back zero');
    const fd = openSync(r.path, 'r');
    const bm = Buffer.alloc(512);
    readSync(fd, bm, 0, 512, 4096);
    const data = Buffer.alloc(4096);
    readSync(fd, data, 0, 4096, LOCALOFF);
    closeSync(fd);
    assert.deepEqual(bm, Buffer.alloc(512), 'bitmap zero-filled on the first request');
    assert.deepEqual(data, Buffer.alloc(4096), 'data at localoff');
  });

  test('garbage on the request connection closes both connections and fires disconnect', async (t) => {
    const r = await rig(t, baseMd({ resuid: 9n }), { resuid: 9n });
    const fromOut = frames(r.out);
    const fromIn = frames(r.inn);
    await fromOut.next();
    await r.started;
    r.out.write(Buffer.from([0x07, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]));
    await fromOut.closed;
    await fromIn.closed;
    while (r.exits.length === 0) await new Promise((res) => setImmediate(res));
    assert.deepEqual(r.events, ['connect', 'disconnect']);
    assert.deepEqual(r.exits, [75]);
  });
});
