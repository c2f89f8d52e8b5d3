// ByteQueue: runs inside one chunk are subarrays (no copy), runs across chunks one copy, peeks do
// not consume, and a record stream parses the same at every split.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ByteQueue } from '../../../src/util/byte-queue.js';
import { assertSameAtEverySplit } from './split.js';

/** True when `part` is a view into `chunk`'s memory (it was not copied). */
function isViewOf(part: Buffer, chunk: Buffer): boolean {
  return (
    part.buffer === chunk.buffer &&
    part.byteOffset >= chunk.byteOffset &&
    part.byteOffset + part.length <= chunk.byteOffset + chunk.length
  );
}

/*
 * A toy record stream exercising every consuming call: u8 how, u16 length, u32 tag, then
 * `length` bytes taken by read / readRun / readInto / skip / peek+skip according to `how`.
 */
function record(how: number, tag: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(7);
  h.writeUInt8(how, 0);
  h.writeUInt16BE(payload.length, 1);
  h.writeUInt32BE(tag, 3);
  return Buffer.concat([h, payload]);
}

function parseRecords(chunks: readonly Buffer[]): string[] {
  const q = new ByteQueue();
  const out: string[] = [];
  let head: { how: number; len: number; tag: number } | null = null;
  for (const c of chunks) {
    q.push(c);
    for (;;) {
      if (head === null) {
        if (q.length < 7) break;
        head = { how: q.peekUInt8(0), len: q.peekUInt16BE(1), tag: q.peekUInt32BE(3) };
        q.skip(7);
      }
      const { how, len, tag } = head;
      let data: Buffer | null;
      if (how === 1) {
        data = q.readRun(len);
      } else if (q.length < len) {
        data = null;
      } else if (how === 0) {
        data = q.read(len);
      } else if (how === 2) {
        data = Buffer.alloc(len + 2);
        q.readInto(data, 1, len);
        data = data.subarray(1, 1 + len);
      } else if (how === 3) {
        q.skip(len);
        data = Buffer.from('skipped');
      } else {
        data = Buffer.from(q.peek(len));
        q.skip(len);
      }
      if (data === null) break;
      out.push(`${how}:${tag.toString(16)}:${data.toString('hex')}`);
      head = null;
    }
  }
  assert.equal(q.buffered, 0, 'everything consumed');
  return out;
}

describe('ByteQueue', () => {
  test('a record stream using every read parses the same at every split', async () => {
    const bytes = Buffer.concat([
      record(0, 0xdeadbeef, Buffer.from('read')),
      record(1, 0x01020304, Buffer.from('a run that may span several chunks')),
      record(2, 0xffffffff, Buffer.from('readInto')),
      record(3, 7, Buffer.from('gone')),
      record(4, 8, Buffer.from('peeked')),
      record(1, 9, Buffer.alloc(0)),
      record(0, 10, Buffer.alloc(0)),
      record(1, 11, Buffer.from('last')),
    ]);
    const whole = await assertSameAtEverySplit(bytes, parseRecords);
    assert.deepEqual(whole, [
      `0:deadbeef:${Buffer.from('read').toString('hex')}`,
      `1:1020304:${Buffer.from('a run that may span several chunks').toString('hex')}`,
      `2:ffffffff:${Buffer.from('readInto').toString('hex')}`,
      `3:7:${Buffer.from('skipped').toString('hex')}`,
      `4:8:${Buffer.from('peeked').toString('hex')}`,
      '1:9:',
      '0:a:',
      `1:b:${Buffer.from('last').toString('hex')}`,
    ]);
  });

  test('read() inside one chunk is a subarray of it; across chunks a copy with the bytes in order', () => {
    const a = Buffer.from('0123456789');
    const b = Buffer.from('abcdef');
    const q = new ByteQueue();
    q.push(a);
    q.push(b);
    const inside = q.read(4);
    assert.ok(isViewOf(inside, a));
    assert.equal(inside.toString(), '0123');
    const across = q.read(8);
    assert.ok(!isViewOf(across, a) && !isViewOf(across, b));
    assert.equal(across.toString(), '456789ab');
    assert.equal(q.length, 4);
    assert.equal(q.contiguous, 4);
    assert.ok(isViewOf(q.readAll(), b));
    assert.equal(q.length, 0);
  });

  test('peek() and the peekUInt*() calls do not consume, also across chunk boundaries', () => {
    const q = new ByteQueue();
    q.push(Buffer.from([0x12]));
    q.push(Buffer.from([0x34, 0x56]));
    q.push(Buffer.from([0x78, 0x9a]));
    assert.equal(q.peekUInt32BE(0), 0x12345678);
    assert.equal(q.peekUInt32BE(1), 0x3456789a);
    assert.equal(q.peekUInt16BE(0), 0x1234);
    assert.equal(q.peekUInt16BE(1), 0x3456);
    assert.equal(q.peekUInt8(4), 0x9a);
    assert.deepEqual(q.peek(5), Buffer.from([0x12, 0x34, 0x56, 0x78, 0x9a]));
    assert.equal(q.length, 5);
    q.skip(1);
    assert.equal(q.peekUInt32BE(0), 0x3456789a);
    assert.equal(new ByteQueue().peek(0).length, 0);
  });

  test('a u32 with the top bit set peeks as an unsigned number across chunks', () => {
    const q = new ByteQueue();
    q.push(Buffer.from([0xff, 0xfe]));
    q.push(Buffer.from([0xfd, 0xfc]));
    assert.equal(q.peekUInt32BE(0), 0xfffefdfc);
  });

  test('readRun() hands on a run that arrives whole in a later chunk without copying it', () => {
    const q = new ByteQueue();
    assert.equal(q.readRun(6), null);
    assert.equal(q.buffered, 0);
    const chunk = Buffer.from('runnext');
    q.push(chunk);
    const run = q.readRun(6);
    assert.ok(run !== null && isViewOf(run, chunk));
    assert.equal(run.toString(), 'runnex');
    assert.equal(q.length, 1);
  });

  test('readRun() assembles a spanning run into one buffer as chunks arrive, releasing them', () => {
    const q = new ByteQueue();
    q.push(Buffer.from('ab'));
    assert.equal(q.readRun(7), null);
    assert.equal(q.length, 0, 'the chunk was consumed into the run');
    assert.equal(q.buffered, 2);
    q.push(Buffer.from('cde'));
    assert.equal(q.readRun(7), null);
    assert.equal(q.buffered, 5);
    q.push(Buffer.from('fgXY'));
    assert.equal(q.readRun(7)?.toString(), 'abcdefg');
    assert.equal(q.length, 2);
    assert.equal(q.buffered, 2);
  });

  test('clear() drops buffered bytes and an unfinished run', () => {
    const q = new ByteQueue();
    q.push(Buffer.from('abc'));
    assert.equal(q.readRun(10), null);
    q.push(Buffer.from('def'));
    q.clear();
    assert.equal(q.buffered, 0);
    q.push(Buffer.from('xyz'));
    assert.equal(q.readRun(3)?.toString(), 'xyz');
  });

  test('empty chunks are ignored and asking for more than is buffered is a RangeError', () => {
    const q = new ByteQueue();
    q.push(Buffer.alloc(0));
    assert.equal(q.contiguous, 0);
    q.push(Buffer.from('ab'));
    assert.throws(() => q.read(3), RangeError);
    assert.throws(() => q.skip(3), RangeError);
    assert.throws(() => q.peek(3), RangeError);
    assert.throws(() => q.peekUInt16BE(1), RangeError);
    assert.throws(() => q.readInto(Buffer.alloc(3), 0, 3), RangeError);
    assert.equal(q.read(0).length, 0);
    assert.equal(q.length, 2);
  });
});
