// Secondary session over loopback sockets: handshake reply per HAST-SPEC §6.3 step 7 / §7.2, then
// framed requests (§6.4) applied to a file component; garbage on the wire ends the session (§8).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import type { ResourceConfig } from '../../../src/config/types.js';
import type { HookEvent } from '../../../src/daemon/worker-ipc.js';
import { openComponent } from '../../../src/component/open.js';
import {
  type Metadata as SecondaryMetadata,
  readMetadata as readMd,
  writeMetadata as writeMd,
} from '../../../src/metadata/metadata.js';
import { HIO, type HioCmd } from '../../../src/peer/constants.js';
import { encodeMessage, MessageReader, type PeerMessage as Frame } from '../../../src/peer/framing.js';
import { buildCsumRequest, buildRequest, buildSyncStateRequest } from '../../../src/peer/messages.js';
import { NvList } from '../../../src/nv/codec.js';
import { SecondarySession } from '../../../src/secondary/session.js';
import { tmpDir } from '../../harness/tools.js';
import { resourceConfig } from '../../harness/resource-config.js';

const EXTENT = 65536;
const LOCALOFF = 4096 + 512;
const DATASIZE = 64 * EXTENT;
const CFG: ResourceConfig = resourceConfig({
  replication: 'memsync',
  checksum: 'crc32',
  compression: 'hole',
  metaFlush: true,
});

function baseMd(over: Partial<SecondaryMetadata> = {}): SecondaryMetadata {
  return {
    resource: 'r0',
    dataSize: DATASIZE,
    extentSize: EXTENT,
    keepDirty: 64,
    localOff: LOCALOFF,
    resuid: 0n,
    localCnt: 0n,
    remoteCnt: 0n,
    prevRole: 'init',
    ...over,
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
  const reader = new MessageReader({ maxPayload: 2 << 20 });
  const queue: Frame[] = [];
  let wake: (() => void) | null = null;
  sock.on('data', (c: Buffer) => {
    queue.push(...reader.push(c));
    wake?.();
  });
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  sock.on('error', () => undefined);
  return {
    async next(): Promise<Frame> {
      while (queue.length === 0)
        await new Promise<void>((r) => {
          wake = r;
        });
      return queue.shift() as Frame;
    },
    closed,
  };
}

interface Rig {
  out: Socket;
  inn: Socket;
  /** The secondary's end of the reply connection. */
  secOut: Socket;
  events: HookEvent[];
  exits: number[];
  path: string;
  session: SecondarySession;
  started: Promise<boolean>;
}

async function rig(
  t: TestContext,
  md: SecondaryMetadata,
  first: {
    resuid: bigint;
    localCnt?: bigint;
    remoteCnt?: bigint;
    virgin?: boolean;
    consistency?: boolean;
    csums?: number;
  },
  /** The first byte of the on-disk bitmap (0 = as `hastctl create` leaves it). */
  bitmapByte = 0x81,
  cfg: Partial<ResourceConfig> = {},
): Promise<Rig> {
  const dir = tmpDir(t);
  const path = join(dir, 'disk');
  const fd = openSync(path, 'w');
  writeSync(fd, Buffer.alloc(LOCALOFF + DATASIZE), 0, LOCALOFF + DATASIZE, 0);
  writeSync(fd, Buffer.from([bitmapByte]), 0, 1, 4096);
  closeSync(fd);
  const comp = await openComponent(path, { lock: true });
  t.after(() => comp.close());
  await writeMd(comp, md);
  const [out, secIn] = await pair(t);
  const [inn, secOut] = await pair(t);
  const events: HookEvent[] = [];
  const exits: number[] = [];
  const session = new SecondarySession({
    cfg: { ...CFG, ...cfg, localPath: path },
    comp,
    md: await readMd(comp, 'r0'),
    inSock: secIn,
    outSock: secOut,
    first: {
      version: 2,
      virgin: first.virgin ?? false,
      resuid: first.resuid.toString(),
      localCnt: (first.localCnt ?? 0n).toString(),
      remoteCnt: (first.remoteCnt ?? 0n).toString(),
      peerAddr: 'tcp://127.0.0.1:1',
      ...(first.consistency === true ? { consistency: true } : {}),
      ...(first.csums !== undefined ? { csums: first.csums } : {}),
    },
    emit: async (e) => {
      events.push(e);
    },
    exit: (c) => exits.push(c),
    recvTimeoutMs: 60_000,
  });
  t.after(() => session.shutdown(0));
  return { out, inn, secOut, events, exits, path, session, started: session.start() };
}

function send(
  sock: Socket,
  req: { cmd: HioCmd; seq: bigint; offset: number; length: number; memsync?: boolean; data?: Buffer },
): void {
  const nv = buildRequest(req.cmd, req.seq, req.offset, req.length, req.memsync === true);
  for (const b of encodeMessage(nv, req.data, { compression: 'hole', checksum: 'crc32' })) sock.write(b);
}

/**
 * The reply adopting a virgin primary as it was before any extension, laid out in spec order
 * (HAST-SPEC §6.3 step 7), with the all-ones bitmap: what a FreeBSD-like primary must get.
 */
function adoptReplyBefore(): Buffer {
  const nv = new NvList()
    .addInt64('datasize', BigInt(DATASIZE))
    .addInt32('extentsize', EXTENT)
    .addUint64('localcnt', 0n)
    .addUint64('remotecnt', 0n)
    .addInt8('virgin', 1)
    .addUint8('syncsrc', 1)
    .addUint32('mapsize', 512);
  return Buffer.concat(
    encodeMessage(nv, Buffer.alloc(512, 0xff), { compression: 'hole', checksum: 'crc32', version: 2 }),
  );
}

// The §7.2 table itself is test/unit/peer/decide.test.ts; here, what the session does with it.
describe('SecondarySession', () => {
  test('adopts a virgin primary with its own bitmap when it is not all zero (create --full-sync)', async (t) => {
    const r = await rig(t, baseMd(), { resuid: 77n, virgin: true }, 0xff);
    const reply = await frames(r.out).next();
    assert.equal(await r.started, true);
    assert.equal(reply.nv.getInt8('virgin'), 1);
    assert.equal(reply.nv.getUint8('syncsrc'), 1);
    assert.ok((reply.nv.getUint32('mapsize') ?? 0) > 0, 'the bitmap is sent');
    assert.equal(reply.payload?.[0], 0xff);
  });

  test('adopts a virgin primary: writes resuid, replies virgin without a bitmap, fires connect', async (t) => {
    const r = await rig(t, baseMd(), { resuid: 77n, virgin: true }, 0);
    const reply = await frames(r.out).next();
    assert.equal(await r.started, true);
    assert.equal(reply.nv.getInt64('datasize'), BigInt(DATASIZE));
    assert.equal(reply.nv.getInt32('extentsize'), EXTENT);
    assert.equal(reply.nv.getInt8('virgin'), 1);
    assert.equal(reply.nv.getUint8('syncsrc'), 1);
    assert.equal(reply.nv.getUint32('mapsize'), 0);
    assert.equal(reply.payload, undefined);
    assert.deepEqual(r.events, ['connect']);
    // A second, unlocked handle: the session holds the component's exclusive lock.
    const comp = await openComponent(r.path, { lock: false });
    t.after(() => comp.close());
    assert.equal((await readMd(comp, 'r0')).resuid, 77n);
  });

  test('sends its own bitmap when the counters agree', async (t) => {
    const r = await rig(t, baseMd({ resuid: 9n, localCnt: 2n, remoteCnt: 1n }), {
      resuid: 9n,
      localCnt: 1n,
      remoteCnt: 2n,
    });
    const reply = await frames(r.out).next();
    assert.equal(reply.nv.getUint8('syncsrc'), 1);
    assert.equal(reply.nv.getUint32('mapsize'), 512);
    const map = reply.payload;
    assert.ok(map !== undefined);
    assert.equal(map[0], 0x81, 'the on-disk bitmap byte is sent as is');
  });

  test('refuses split-brain with the upstream errmsg, fires split-brain and exits 78', async (t) => {
    const r = await rig(t, baseMd({ resuid: 9n, localCnt: 4n, remoteCnt: 3n }), {
      resuid: 9n,
      localCnt: 4n,
      remoteCnt: 3n,
    });
    const reply = await frames(r.out).next();
    assert.equal(await r.started, false);
    assert.equal(reply.nv.getString('errmsg'), 'Split-brain condition!');
    assert.deepEqual(r.events, ['split-brain']);
    assert.deepEqual(r.exits, [78]);
  });

  test('applies framed requests: memsync double reply, read back, EINVAL, zeroed bitmap', async (t) => {
    const r = await rig(t, baseMd({ resuid: 9n }), { resuid: 9n });
    const fromOut = frames(r.out);
    const replies = frames(r.inn);
    await fromOut.next();
    await r.started;
    send(r.out, { cmd: HIO.WRITE, seq: 1n, offset: 0, length: 4096, memsync: true, data: Buffer.alloc(4096, 0x42) });
    const a = await replies.next();
    const b = await replies.next();
    assert.deepEqual([a.nv.getUint64('seq'), a.nv.getInt8('received')], [1n, 1], 'early ack first');
    assert.deepEqual([b.nv.getUint64('seq'), b.nv.has('received'), b.nv.has('error')], [1n, false, false]);
    send(r.out, { cmd: HIO.READ, seq: 2n, offset: 0, length: 4096 });
    const rd = await replies.next();
    assert.equal(rd.nv.getUint64('seq'), 2n);
    assert.deepEqual(rd.payload, Buffer.alloc(4096, 0x42));
    send(r.out, { cmd: HIO.READ, seq: 3n, offset: 100, length: 512 });
    const bad = await replies.next();
    assert.deepEqual([bad.nv.getUint64('seq'), bad.nv.getInt16('error')], [3n, 22]);
    send(r.out, { cmd: HIO.DELETE, seq: 4n, offset: 0, length: 4096 });
    send(r.out, { cmd: HIO.READ, seq: 5n, offset: 0, length: 512 });
    await replies.next();
    const z = await replies.next();
    assert.deepEqual(z.payload, Buffer.alloc(512), 'deleted range reads back zero');
    const fd = openSync(r.path, 'r');
    const bm = Buffer.alloc(512);
    readSync(fd, bm, 0, 512, 4096);
    const data = Buffer.alloc(4096);
    readSync(fd, data, 0, 4096, LOCALOFF);
    closeSync(fd);
    assert.deepEqual(bm, Buffer.alloc(512), 'bitmap zero-filled on the first request');
    assert.deepEqual(data, Buffer.alloc(4096), 'data at localoff');
  });

  test('a primary that stops reading replies stops the secondary reading requests (bounded reply memory)', async (t) => {
    const r = await rig(t, baseMd({ resuid: 9n }), { resuid: 9n });
    const fromOut = frames(r.out);
    await fromOut.next();
    await r.started;
    // Incompressible data first (hole compression would shrink zeroes to nothing).
    const w = frames(r.inn);
    for (let e = 0; e < 64; e++)
      send(r.out, {
        cmd: HIO.WRITE,
        seq: BigInt(100_000 + e),
        offset: e * EXTENT,
        length: EXTENT,
        data: randomBytes(EXTENT),
      });
    for (let e = 0; e < 64; e++) await w.next();
    r.inn.pause();
    // 2,000 READs of 64 KiB: 125 MiB of replies, none of which the primary reads for now.
    const n = 2000;
    for (let i = 1; i <= n; i++)
      send(r.out, { cmd: HIO.READ, seq: BigInt(i), offset: (i % 64) * EXTENT, length: EXTENT });
    let peak = 0;
    for (let i = 0; i < 30; i++) {
      await new Promise((res) => setTimeout(res, 50));
      peak = Math.max(peak, r.secOut.writableLength);
    }
    // Bounded by the engine's window (256 × 64 KiB) and one batch of replies, not by the 2,000.
    assert.ok(peak < 40 << 20, `the reply socket buffered ${peak} bytes`);
    r.inn.resume();
    for (let i = 1; i <= n; i++) assert.equal((await w.next()).nv.getUint64('seq'), BigInt(i));
    assert.deepEqual(r.exits, []);
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

  // Consistency extension (issue 13).
  const onDisk = async (t: TestContext, path: string): Promise<SecondaryMetadata> => {
    const comp = await openComponent(path, { lock: false });
    t.after(() => comp.close());
    return readMd(comp, 'r0');
  };

  test('a FreeBSD-like primary (no consistency) gets exactly the old reply bytes, and no flag is set', async (t) => {
    const r = await rig(t, baseMd(), { resuid: 77n });
    const raw: Buffer[] = [];
    r.out.on('data', (c: Buffer) => raw.push(c));
    const reply = await frames(r.out).next();
    assert.equal(await r.started, true);
    assert.deepEqual(Buffer.concat(raw), adoptReplyBefore());
    assert.equal(reply.nv.has('consistency'), false);
    assert.equal((await onDisk(t, r.path)).inconsistent, undefined, 'nobody would ever tell it the sync is done');
  });

  test('adopting with a full sync from a primary that speaks it: inconsistent on disk before the reply', async (t) => {
    const r = await rig(t, baseMd(), { resuid: 77n, consistency: true });
    const reply = await frames(r.out).next();
    assert.equal(reply.nv.getUint8('consistency'), 1);
    assert.equal(reply.nv.getUint8('inconsistent'), 1);
    assert.equal((await onDisk(t, r.path)).inconsistent, true);
    assert.equal(r.session.consistency().inconsistent, true);
  });

  test('sync target, then sync done: the flag is set before the first sync write and cleared after', async (t) => {
    const r = await rig(t, baseMd({ resuid: 9n }), { resuid: 9n, consistency: true });
    const fromOut = frames(r.out);
    const replies = frames(r.inn);
    const hs = await fromOut.next();
    assert.equal(hs.nv.has('inconsistent'), false);
    await r.started;
    const opts = { compression: 'hole', checksum: 'crc32' } as const;
    for (const b of encodeMessage(buildSyncStateRequest(1n, 'target', 8192), undefined, opts)) r.out.write(b);
    send(r.out, { cmd: HIO.WRITE, seq: 2n, offset: 0, length: 4096, data: Buffer.alloc(4096, 0x42) });
    assert.deepEqual(
      [(await replies.next()).nv.getUint64('seq'), (await replies.next()).nv.getUint64('seq')],
      [1n, 2n],
    );
    assert.equal((await onDisk(t, r.path)).inconsistent, true);
    assert.deepEqual(r.session.consistency(), { inconsistent: true, totalBytes: 8192, leftBytes: 8192 });
    for (const b of encodeMessage(buildSyncStateRequest(3n, 'done'), undefined, opts)) r.out.write(b);
    const done = await replies.next();
    assert.deepEqual([done.nv.getUint64('seq'), done.nv.has('error')], [3n, false]);
    assert.equal((await onDisk(t, r.path)).inconsistent, undefined);
    assert.equal(r.session.consistency().inconsistent, false);
  });
});

// Ours (issue 17): checksum-assisted sync, agreed in the handshake, refused otherwise.
describe('SecondarySession checksum sync', () => {
  const ON = { checksumSync: true } as const;
  const sendNv = (sock: Socket, nv: NvList, data?: Buffer): void => {
    for (const b of encodeMessage(nv, data, { compression: 'hole', checksum: 'crc32' })) sock.write(b);
  };

  test('offered and on here: echoed, and a csum READ is answered with the SHA-256 of the range', async (t) => {
    const r = await rig(t, baseMd({ resuid: 9n }), { resuid: 9n, consistency: true, csums: 1 }, 0x81, ON);
    const reply = await frames(r.out).next();
    assert.equal(await r.started, true);
    assert.equal(reply.nv.getUint8('csums'), 1);
    const replies = frames(r.inn);
    const data = randomBytes(8192);
    send(r.out, { cmd: HIO.WRITE, seq: 1n, offset: EXTENT, length: 8192, data });
    await replies.next();
    sendNv(r.out, buildCsumRequest(2n, EXTENT, 8192));
    const h = await replies.next();
    assert.equal(h.nv.getUint64('seq'), 2n);
    assert.deepEqual(h.payload, createHash('sha256').update(data).digest());
    send(r.out, { cmd: HIO.READ, seq: 3n, offset: EXTENT, length: 8192 });
    assert.deepEqual((await replies.next()).payload, data, 'a plain READ still returns the data');
    assert.deepEqual(r.exits, []);
  });

  for (const [what, first, cfg] of [
    ['offered, off here', { resuid: 9n, consistency: true, csums: 1 }, {}],
    ['on here, not offered (a FreeBSD-like or checksumsync-off primary)', { resuid: 9n, consistency: true }, ON],
  ] as const) {
    test(`${what}: the reply has no csums and a csum request closes the connection`, async (t) => {
      const r = await rig(t, baseMd({ resuid: 9n }), first, 0x81, cfg);
      const fromOut = frames(r.out);
      const fromIn = frames(r.inn);
      const reply = await fromOut.next();
      assert.equal(await r.started, true);
      assert.equal(reply.nv.has('csums'), false);
      sendNv(r.out, buildCsumRequest(1n, 0, 512));
      await fromIn.closed;
      while (r.exits.length === 0) await new Promise((res) => setImmediate(res));
      assert.deepEqual(r.events, ['connect', 'disconnect']);
      assert.deepEqual(r.exits, [75]);
    });
  }

  test('agreed, but csum on a WRITE or with an unknown algorithm: the connection is closed', async (t) => {
    for (const nv of [
      buildRequest(HIO.WRITE, 1n, 0, 512).addUint8('csum', 1),
      buildRequest(HIO.READ, 1n, 0, 512).addUint8('csum', 7),
    ]) {
      const r = await rig(t, baseMd({ resuid: 9n }), { resuid: 9n, consistency: true, csums: 1 }, 0x81, ON);
      const fromIn = frames(r.inn);
      await frames(r.out).next();
      assert.equal(await r.started, true);
      sendNv(r.out, nv, nv.getUint8('cmd') === HIO.WRITE ? Buffer.alloc(512) : undefined);
      await fromIn.closed;
      while (r.exits.length === 0) await new Promise((res) => setImmediate(res));
      assert.deepEqual(r.exits, [75]);
    }
  });

  test('a FreeBSD-like primary gets the old reply bytes when checksumsync is on here', async (t) => {
    const r = await rig(t, baseMd(), { resuid: 77n }, 0x81, ON);
    const bytes: Buffer[] = [];
    r.out.on('data', (c: Buffer) => bytes.push(c));
    await frames(r.out).next();
    assert.equal(await r.started, true);
    assert.deepEqual(Buffer.concat(bytes), adoptReplyBefore());
  });
});
