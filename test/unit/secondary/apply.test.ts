// Secondary apply engine: validation (HAST-SPEC §6.4), overlap ordering, memsync double reply (§6.6),
// bitmap zero-fill before the first request (§4.5). Uses a file-backed component in a temp dir.
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Component } from '../../../src/component/component.js';
import { HIO, MAXPHYS } from '../../../src/peer/constants.js';
import { ApplyEngine, checkHio, type HioReply, type HioRequest } from '../../../src/secondary/apply.js';
import { tmpDir } from '../../harness/tools.js';

const LOCALOFF = 8192;
const DATASIZE = 1 << 20;

/** Minimal file component; `gate(offset)` holds the write at that component offset until released. */
async function fileComponent(path: string): Promise<Component & { gate(pos: number): () => void; fh: FileHandle }> {
  const fd = openSync(path, 'w');
  writeSync(fd, Buffer.alloc(LOCALOFF + DATASIZE, 0xee), 0, LOCALOFF + DATASIZE, 0);
  closeSync(fd);
  const fh = await open(path, 'r+');
  const gates = new Map<number, Promise<void>>();
  return {
    fh,
    path,
    size: LOCALOFF + DATASIZE,
    sectorSize: 512,
    isBlockDevice: false,
    gate(pos: number): () => void {
      let release = (): void => undefined;
      gates.set(
        pos,
        new Promise<void>((r) => {
          release = r;
        }),
      );
      return () => release();
    },
    async read(buf, position) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, position);
      if (bytesRead !== buf.length) throw Object.assign(new Error('short read'), { code: 'EIO' });
    },
    async write(bufs, position) {
      const g = gates.get(position);
      if (g !== undefined) {
        gates.delete(position);
        await g;
      }
      await fh.writev([...bufs], position);
    },
    async flush() {
      await fh.datasync();
    },
    async discard(position, length) {
      await fh.write(Buffer.alloc(length), 0, length, position);
    },
    async writeZeroes(position, length) {
      await fh.write(Buffer.alloc(length), 0, length, position);
    },
    async close() {
      await fh.close();
    },
  };
}

function req(
  cmd: number,
  seq: number,
  offset: number | null,
  length: number | null,
  data: Buffer | null = null,
  memsync = false,
): HioRequest {
  return {
    cmd,
    seq: BigInt(seq),
    // A missing field reads as -1, as peer/messages readRequest() reports it.
    offset: offset ?? -1,
    length: length ?? -1,
    memsync,
    data,
  };
}

function readFile(path: string, pos: number, len: number): Buffer {
  const fd = openSync(path, 'r');
  const b = Buffer.alloc(len);
  readSync(fd, b, 0, len, pos);
  closeSync(fd);
  return b;
}

describe('checkHio()', () => {
  const ok = (r: HioRequest): boolean => checkHio(r, DATASIZE, 512).ok;
  test('accepts a sector-aligned write inside the data area', () => {
    assert.equal(ok(req(HIO.WRITE, 1, 512, 512, Buffer.alloc(512))), true);
  });
  test('refuses what requnpack() refuses', () => {
    assert.equal(ok(req(0, 1, 0, 512)), false, 'no cmd');
    assert.equal(ok(req(9, 1, 0, 512)), false, 'unknown cmd');
    assert.equal(ok(req(HIO.READ, 0, 0, 512)), false, 'seq 0');
    assert.equal(ok(req(HIO.READ, 1, null, 512)), false, 'no offset');
    assert.equal(ok(req(HIO.READ, 1, 0, null)), false, 'no length');
    assert.equal(ok(req(HIO.READ, 1, 0, 0)), false, 'zero length');
    assert.equal(ok(req(HIO.READ, 1, 0, MAXPHYS + 512)), false, 'above MAXPHYS');
    assert.equal(ok(req(HIO.READ, 1, 100, 512)), false, 'unaligned offset');
    assert.equal(ok(req(HIO.READ, 1, 0, 100)), false, 'unaligned length');
    assert.equal(ok(req(HIO.READ, 1, DATASIZE - 512, 1024)), false, 'past datasize');
    assert.equal(ok(req(HIO.WRITE, 1, 0, 1024, Buffer.alloc(512))), false, 'data size differs');
  });
  test('lets DELETE exceed MAXPHYS and KEEPALIVE carry no seq', () => {
    assert.equal(ok(req(HIO.DELETE, 1, 0, DATASIZE)), true);
    const k = checkHio(req(HIO.KEEPALIVE, 0, null, null), DATASIZE, 512);
    assert.deepEqual(k, { ok: true, hio: null });
  });
});

describe('ApplyEngine', () => {
  test('applies overlapping writes in arrival order while a disjoint write completes first', async (t) => {
    const dir = tmpDir(t);
    const comp = await fileComponent(join(dir, 'c'));
    t.after(() => comp.close());
    const replies: HioReply[] = [];
    const eng = new ApplyEngine({
      component: comp,
      localOff: LOCALOFF,
      dataSize: DATASIZE,
      sendReply: (r) => replies.push(r),
    });
    const release = comp.gate(LOCALOFF + 0);
    eng.submit(req(HIO.WRITE, 1, 0, 1024, Buffer.alloc(1024, 1)));
    eng.submit(req(HIO.WRITE, 2, 512, 1024, Buffer.alloc(1024, 2)));
    eng.submit(req(HIO.WRITE, 3, 8192, 512, Buffer.alloc(512, 3)));
    // Wait until the disjoint write has replied, then let the first one go.
    while (!replies.some((r) => r.seq === 3n)) await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      replies.map((r) => r.seq),
      [3n],
      'writes 1 and 2 must still be pending',
    );
    release();
    await eng.idle();
    assert.deepEqual(
      replies.map((r) => r.seq),
      [3n, 1n, 2n],
    );
    const data = readFile(comp.path, LOCALOFF, 1536);
    assert.deepEqual(data.subarray(0, 512), Buffer.alloc(512, 1));
    assert.deepEqual(data.subarray(512, 1536), Buffer.alloc(1024, 2), 'the later write wins on the overlap');
  });

  test('memsync write gets "received" before its disk write, then a final reply', async (t) => {
    const dir = tmpDir(t);
    const comp = await fileComponent(join(dir, 'c'));
    t.after(() => comp.close());
    const replies: HioReply[] = [];
    const eng = new ApplyEngine({
      component: comp,
      localOff: LOCALOFF,
      dataSize: DATASIZE,
      sendReply: (r) => replies.push(r),
    });
    const release = comp.gate(LOCALOFF + 4096);
    eng.submit(req(HIO.WRITE, 7, 4096, 512, Buffer.alloc(512, 7), true));
    assert.deepEqual(replies, [{ seq: 7n, received: true }], 'early ack before the disk write');
    assert.deepEqual(readFile(comp.path, LOCALOFF + 4096, 512), Buffer.alloc(512, 0xee), 'not yet on disk');
    release();
    await eng.idle();
    assert.deepEqual(replies, [{ seq: 7n, received: true }, { seq: 7n }]);
    assert.deepEqual(readFile(comp.path, LOCALOFF + 4096, 512), Buffer.alloc(512, 7));
  });

  test('replies EINVAL (22) to an invalid request and stays usable', async (t) => {
    const dir = tmpDir(t);
    const comp = await fileComponent(join(dir, 'c'));
    t.after(() => comp.close());
    const replies: HioReply[] = [];
    const eng = new ApplyEngine({
      component: comp,
      localOff: LOCALOFF,
      dataSize: DATASIZE,
      sendReply: (r) => replies.push(r),
    });
    eng.submit(req(HIO.READ, 5, 100, 512));
    eng.submit(req(HIO.READ, 6, 0, 512));
    await eng.idle();
    assert.deepEqual(replies[0], { seq: 5n, error: 22 });
    assert.equal(replies[1]?.seq, 6n);
    assert.equal(replies[1]?.error, undefined);
  });

  test('read returns the data, delete reads back zero, flush and keepalive behave', async (t) => {
    const dir = tmpDir(t);
    const comp = await fileComponent(join(dir, 'c'));
    t.after(() => comp.close());
    const replies: HioReply[] = [];
    const eng = new ApplyEngine({
      component: comp,
      localOff: LOCALOFF,
      dataSize: DATASIZE,
      sendReply: (r) => replies.push(r),
    });
    eng.submit(req(HIO.WRITE, 1, 1024, 1024, Buffer.alloc(1024, 0x5a)));
    eng.submit(req(HIO.READ, 2, 1024, 1024));
    eng.submit(req(HIO.DELETE, 3, 1024, 512));
    eng.submit(req(HIO.READ, 4, 1024, 1024));
    eng.submit(req(HIO.KEEPALIVE, 0, null, null));
    eng.submit(req(HIO.FLUSH, 5, 0, 0));
    await eng.idle();
    const bySeq = new Map(replies.map((r) => [r.seq, r]));
    assert.equal(replies.length, 5, 'keepalive gets no reply');
    assert.deepEqual(bySeq.get(2n)?.data, Buffer.alloc(1024, 0x5a));
    assert.deepEqual(bySeq.get(4n)?.data, Buffer.concat([Buffer.alloc(512), Buffer.alloc(512, 0x5a)]));
    assert.deepEqual(bySeq.get(5n), { seq: 5n });
    assert.equal(eng.stats.reads, 2);
    assert.equal(eng.stats.deletes, 1);
    assert.equal(eng.stats.flushes, 1);
  });

  test('runs the bitmap zero-fill once, before the first request touches the disk', async (t) => {
    const dir = tmpDir(t);
    const comp = await fileComponent(join(dir, 'c'));
    t.after(() => comp.close());
    const order: string[] = [];
    const eng = new ApplyEngine({
      component: comp,
      localOff: LOCALOFF,
      dataSize: DATASIZE,
      sendReply: (r) => order.push(`reply ${r.seq}`),
      onFirstRequest: async () => {
        order.push('zero-fill');
      },
    });
    eng.submit(req(HIO.READ, 1, 0, 512));
    eng.submit(req(HIO.READ, 2, 0, 512));
    await eng.idle();
    assert.equal(order[0], 'zero-fill');
    assert.equal(order.filter((s) => s === 'zero-fill').length, 1);
  });

  test('reports full at its in-flight bound and calls onAvailable when room frees', async (t) => {
    const dir = tmpDir(t);
    const comp = await fileComponent(join(dir, 'c'));
    t.after(() => comp.close());
    const eng = new ApplyEngine({
      component: comp,
      localOff: LOCALOFF,
      dataSize: DATASIZE,
      sendReply: () => undefined,
      maxInFlight: 2,
    });
    let available = 0;
    eng.onAvailable = () => available++;
    eng.submit(req(HIO.READ, 1, 0, 512));
    assert.equal(eng.full, false);
    eng.submit(req(HIO.READ, 2, 512, 512));
    assert.equal(eng.full, true);
    await eng.idle();
    assert.equal(eng.full, false);
    assert.equal(available, 1);
  });

  // Consistency extension (issue 13): a FLUSH carrying `syncstate`.
  const syncReq = (seq: number, state: 1 | 2, total = 0): HioRequest => ({
    ...req(HIO.FLUSH, seq, 0, 0),
    syncState: state,
    syncBytes: total,
  });

  test('a sync-target FLUSH is a barrier: no later request touches the disk before the flag is stored', async (t) => {
    const dir = tmpDir(t);
    const comp = await fileComponent(join(dir, 'c'));
    t.after(() => comp.close());
    const replies: HioReply[] = [];
    const calls: [string, number][] = [];
    let store = (): void => undefined;
    const eng = new ApplyEngine({
      component: comp,
      localOff: LOCALOFF,
      dataSize: DATASIZE,
      sendReply: (r) => replies.push(r),
      onSyncState: async (state, total) => {
        calls.push([state, total]);
        await new Promise<void>((r) => {
          store = r;
        });
      },
    });
    eng.submit(syncReq(1, 1, 4096));
    eng.submit(req(HIO.WRITE, 2, 0, 512, Buffer.alloc(512, 7)));
    eng.submit(req(HIO.WRITE, 3, 65536, 512, Buffer.alloc(512, 8)));
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(calls, [['target', 4096]]);
    assert.equal(replies.length, 0, 'nothing completes before the flag is durable');
    assert.deepEqual(readFile(comp.path, LOCALOFF, 512), Buffer.alloc(512, 0xee), 'no sync byte on disk yet');
    store();
    await eng.idle();
    // The FLUSH completes first; the two writes after it are independent (different ranges), so
    // their replies may come in either order.
    assert.deepEqual([replies[0]?.seq, replies[0]?.error], [1n, undefined]);
    assert.deepEqual(
      replies
        .slice(1)
        .map((r) => [r.seq, r.error])
        .sort((a, b) => Number(a[0]) - Number(b[0])),
      [
        [2n, undefined],
        [3n, undefined],
      ],
    );
    assert.deepEqual(readFile(comp.path, LOCALOFF, 512), Buffer.alloc(512, 7));
  });

  test('a failed sync-target FLUSH answers EIO and nothing after it touches the disk', async (t) => {
    const dir = tmpDir(t);
    const comp = await fileComponent(join(dir, 'c'));
    t.after(() => comp.close());
    const replies: HioReply[] = [];
    const eng = new ApplyEngine({
      component: comp,
      localOff: LOCALOFF,
      dataSize: DATASIZE,
      sendReply: (r) => replies.push(r),
      onSyncState: () => Promise.reject(new Error('metadata write failed')),
    });
    eng.submit(syncReq(1, 1));
    eng.submit(req(HIO.WRITE, 2, 0, 512, Buffer.alloc(512, 7)));
    await eng.idle();
    assert.deepEqual(
      replies.map((r) => [r.seq, r.error]),
      [
        [1n, 5],
        [2n, 5],
      ],
    );
    assert.deepEqual(readFile(comp.path, LOCALOFF, 512), Buffer.alloc(512, 0xee));
  });

  test('a sync-done FLUSH waits for earlier writes, flushes, then clears the state', async (t) => {
    const dir = tmpDir(t);
    const comp = await fileComponent(join(dir, 'c'));
    t.after(() => comp.close());
    const order: string[] = [];
    const flush = comp.flush.bind(comp);
    comp.flush = async () => {
      order.push('flush');
      await flush();
    };
    const replies: HioReply[] = [];
    const eng = new ApplyEngine({
      component: comp,
      localOff: LOCALOFF,
      dataSize: DATASIZE,
      sendReply: (r) => {
        order.push(`reply ${r.seq}`);
        replies.push(r);
      },
      onSyncState: async (state) => {
        order.push(state);
      },
    });
    const release = comp.gate(LOCALOFF);
    eng.submit(req(HIO.WRITE, 1, 0, 512, Buffer.alloc(512, 9)));
    eng.submit(syncReq(2, 2));
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, []);
    release();
    await eng.idle();
    assert.deepEqual(order, ['reply 1', 'flush', 'done', 'reply 2']);
  });

  test('a KEEPALIVE with syncleft reports progress and gets no reply', async (t) => {
    const dir = tmpDir(t);
    const comp = await fileComponent(join(dir, 'c'));
    t.after(() => comp.close());
    const replies: HioReply[] = [];
    const left: number[] = [];
    const eng = new ApplyEngine({
      component: comp,
      localOff: LOCALOFF,
      dataSize: DATASIZE,
      sendReply: (r) => replies.push(r),
      onSyncProgress: (n) => left.push(n),
    });
    eng.submit({ ...req(HIO.KEEPALIVE, 0, null, null), syncBytes: 12345 });
    await eng.idle();
    assert.deepEqual(left, [12345]);
    assert.deepEqual(replies, []);
  });
});
