// Local component over files and block devices (HAST-SPEC §3.2 lock, §8/§12 flush and delete).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { openComponent } from '../../../src/component/open.js';
import type { HastIo } from '../../../src/component/native.js';
import { nativeAddon, requires, tmpDir, unmet } from '../../harness/tools.js';

const MiB = 1024 * 1024;
/** statfs f_type of tmpfs. */
const TMPFS_MAGIC = 0x01021994;

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function fileOf(t: TestContext, size: number, fill?: Buffer): string {
  const path = join(tmpDir(t), 'disk.img');
  writeFileSync(path, fill ?? Buffer.alloc(0));
  if (fill === undefined) execFileSync('truncate', ['-s', String(size), path]);
  return path;
}

describe('file component', () => {
  test('openComponent() reports a file size and a 512-byte sector', async (t) => {
    const comp = await openComponent(fileOf(t, 3 * MiB), { lock: false });
    t.after(() => comp.close());
    assert.equal(comp.size, 3 * MiB);
    assert.equal(comp.sectorSize, 512);
    assert.equal(comp.isBlockDevice, false);
  });

  test('write() of several buffers lands contiguously and read() returns it', async (t) => {
    const path = fileOf(t, MiB);
    const comp = await openComponent(path, { lock: false });
    t.after(() => comp.close());
    const a = pattern(1000, 1);
    const b = pattern(5000, 2);
    const c = pattern(3, 3);
    await comp.write([a, Buffer.alloc(0), b, c], 4096);
    await comp.flush();
    const back = Buffer.alloc(6003);
    await comp.read(back, 4096);
    assert.deepEqual(back, Buffer.concat([a, b, c]));
    assert.deepEqual(readFileSync(path).subarray(4096, 4096 + 6003), Buffer.concat([a, b, c]));
  });

  test('write() of more buffers than IOV_MAX is complete and in order', async (t) => {
    const comp = await openComponent(fileOf(t, MiB), { lock: false });
    t.after(() => comp.close());
    const bufs = Array.from({ length: 1500 }, (_, i) => Buffer.from([i & 0xff, i >> 8]));
    await comp.write(bufs, 10);
    const back = Buffer.alloc(3000);
    await comp.read(back, 10);
    assert.deepEqual(back, Buffer.concat(bufs));
  });

  test('read() past the end of the file fails with EIO', async (t) => {
    const comp = await openComponent(fileOf(t, 8192), { lock: false });
    t.after(() => comp.close());
    await assert.rejects(comp.read(Buffer.alloc(4096), 6144), { code: 'EIO' });
  });

  test('discard() punches a hole that reads back as zeroes and frees blocks', async (t) => {
    if (!requires(t, { native: true })) return;
    const path = fileOf(t, 0, pattern(8 * MiB, 7));
    const comp = await openComponent(path, { lock: false });
    t.after(() => comp.close());
    await comp.flush();
    const before = statSync(path).blocks;
    await comp.discard(MiB, 4 * MiB);
    const after = statSync(path);
    assert.ok(after.blocks < before, `blocks ${after.blocks} < ${before}`);
    assert.equal(after.size, 8 * MiB);
    const back = Buffer.alloc(4 * MiB);
    await comp.read(back, MiB);
    assert.ok(back.every((x) => x === 0));
    const edge = Buffer.alloc(1);
    await comp.read(edge, MiB - 1);
    assert.equal(edge[0], pattern(MiB, 7)[MiB - 1]);
  });

  test('writeZeroes() of an unaligned range zeroes exactly that range', async (t) => {
    const path = fileOf(t, 0, pattern(64 * 1024, 9));
    const comp = await openComponent(path, { lock: false });
    t.after(() => comp.close());
    await comp.writeZeroes(1001, 20000);
    const expected = pattern(64 * 1024, 9);
    expected.fill(0, 1001, 21001);
    assert.deepEqual(readFileSync(path), expected);
  });

  test('without the addon, discard() and writeZeroes() write zeroes in pieces', async (t) => {
    const path = fileOf(t, 0, pattern(3 * MiB, 5));
    const comp = await openComponent(path, { lock: false, native: null });
    t.after(() => comp.close());
    await comp.discard(100, 2 * MiB + 50);
    await comp.writeZeroes(3 * MiB - 10, 10);
    const expected = pattern(3 * MiB, 5);
    expected.fill(0, 100, 100 + 2 * MiB + 50);
    expected.fill(0, 3 * MiB - 10);
    assert.deepEqual(readFileSync(path), expected);
  });

  test('an addon answering "not supported" falls back to zeroes and is not asked again', async (t) => {
    let calls = 0;
    const refuse = async (): Promise<void> => {
      calls++;
      throw Object.assign(new Error('fallocate: Operation not supported'), { code: 'EOPNOTSUPP' });
    };
    const fake: HastIo = {
      flock: () => {},
      punchHole: refuse,
      blkDiscard: refuse,
      blkZeroOut: refuse,
      blkGetSize64: () => 0,
      blkSszGet: () => 512,
    };
    const path = fileOf(t, 0, pattern(8192, 1));
    const comp = await openComponent(path, { lock: true, native: fake });
    t.after(() => comp.close());
    await comp.discard(0, 4096);
    await comp.discard(4096, 4096);
    assert.equal(calls, 1);
    assert.ok(readFileSync(path).every((x) => x === 0));
  });

  test('an addon I/O error from discard() is reported, not papered over', async (t) => {
    const fake: HastIo = {
      flock: () => {},
      punchHole: async () => {
        throw Object.assign(new Error('fallocate: Input/output error'), { code: 'EIO' });
      },
      blkDiscard: async () => {},
      blkZeroOut: async () => {},
      blkGetSize64: () => 0,
      blkSszGet: () => 512,
    };
    const comp = await openComponent(fileOf(t, 8192), { lock: false, native: fake });
    t.after(() => comp.close());
    await assert.rejects(comp.discard(0, 4096), { code: 'EIO' });
  });

  test('openComponent() refuses an empty file, a directory and a missing path', async (t) => {
    const dir = tmpDir(t);
    writeFileSync(join(dir, 'empty'), '');
    mkdirSync(join(dir, 'sub'));
    await assert.rejects(openComponent(join(dir, 'empty'), { lock: false }), /size 0/);
    await assert.rejects(openComponent(join(dir, 'sub'), { lock: false, readOnly: true }), (err: unknown) => {
      return err instanceof Error && 'code' in err && (err.code === 'EISDIR' || err.code === 'EINVAL');
    });
    await assert.rejects(openComponent(join(dir, 'nope'), { lock: false }), { code: 'ENOENT' });
  });

  test('a read-only component reads but refuses writes', async (t) => {
    const path = fileOf(t, 0, pattern(4096, 3));
    const comp = await openComponent(path, { lock: false, readOnly: true });
    t.after(() => comp.close());
    const back = Buffer.alloc(4096);
    await comp.read(back, 0);
    assert.deepEqual(back, pattern(4096, 3));
    await assert.rejects(comp.write([Buffer.alloc(1)], 0));
  });
});

describe('RWF_NOWAIT fast path', () => {
  /** An addon whose NOWAIT calls answer from `answers` in turn (then -1), counting calls. */
  function scripted(readAnswers: number[], writeAnswers: number[]): HastIo & { reads: number; writes: number } {
    const fake = {
      reads: 0,
      writes: 0,
      flock: () => {},
      punchHole: async () => {},
      blkDiscard: async () => {},
      blkZeroOut: async () => {},
      blkGetSize64: () => 0,
      blkSszGet: () => 512,
      preadNoWait(fd: number, buf: Buffer, position: number): number {
        fake.reads++;
        const n = readAnswers.shift() ?? -1;
        // A positive answer really transfers that many bytes (a plain pread: no addon needed).
        if (n > 0) {
          const got = readSync(fd, buf, 0, n, position);
          if (got !== n) throw new Error(`setup: pread gave ${got}`);
        }
        return n;
      },
      pwriteNoWait(_fd: number, _buf: Buffer, _position: number): number {
        fake.writes++;
        return writeAnswers.shift() ?? -1;
      },
    };
    return fake;
  }

  test('the real addon reads cached data inline and writes or declines; the data is right either way', async (t) => {
    const native = nativeAddon(t);
    if (native === null) return;
    assert.equal(typeof native.preadNoWait, 'function');
    const path = fileOf(t, 0, pattern(MiB, 9));
    const comp = await openComponent(path, { lock: false, inlineIo: false });
    t.after(() => comp.close());
    const a = Buffer.alloc(4096);
    await comp.read(a, 8192);
    assert.deepEqual(a, pattern(MiB, 9).subarray(8192, 8192 + 4096));
    // 64 KiB + 1: over the inline limit, so through the pool; same bytes.
    const big = Buffer.alloc(64 * 1024 + 1);
    await comp.read(big, 1000);
    assert.deepEqual(big, pattern(MiB, 9).subarray(1000, 1000 + big.length));
    const w = pattern(4096, 77);
    await comp.write([w], 12288);
    const back = Buffer.alloc(4096);
    await comp.read(back, 12288);
    assert.deepEqual(back, w);
    assert.deepEqual(readFileSync(path).subarray(12288, 12288 + 4096), w);
    // The kernel's own answer: a cached read is complete; an unsupported write says -2, not an error.
    const fd = openSync(path, 'r+');
    t.after(() => closeSync(fd));
    assert.equal(native.preadNoWait?.(fd, Buffer.alloc(512), 0), 512);
    assert.ok([-2, -1, 512].includes(native.pwriteNoWait?.(fd, Buffer.alloc(512, 1), 0) ?? NaN));
  });

  test('a partial inline read is completed by the pool; "would block" falls back; "unsupported" stops asking', async (t) => {
    const path = fileOf(t, 0, pattern(MiB, 4));
    const fake = scripted([1000, -1, -2], []);
    const comp = await openComponent(path, { lock: false, native: fake, inlineIo: false });
    t.after(() => comp.close());
    for (const at of [0, 4096, 8192, 12288]) {
      const b = Buffer.alloc(4096);
      await comp.read(b, at);
      assert.deepEqual(b, pattern(MiB, 4).subarray(at, at + 4096), `read at ${at}`);
    }
    // 1000 (partial), -1 (would block), -2 (unsupported): never asked for the fourth read.
    assert.equal(fake.reads, 3);
  });

  test('a read past the end still fails with EIO when the inline read returns 0', async (t) => {
    const path = fileOf(t, 0, pattern(8192, 1));
    const comp = await openComponent(path, { lock: false, native: scripted([0], []), inlineIo: false });
    t.after(() => comp.close());
    await assert.rejects(comp.read(Buffer.alloc(4096), 8192), { code: 'EIO' });
  });

  test('an inline write that stops short is finished by the pool; "unsupported" stops asking', async (t) => {
    const path = fileOf(t, 0, Buffer.alloc(MiB));
    // 1500 bytes "written" inline: the fake writes nothing, so the pool must write from byte 1500,
    // and the first 1500 bytes must then still be zero (proving the remainder offset is right).
    const fake = scripted([], [1500, -1, -2]);
    const comp = await openComponent(path, { lock: false, native: fake, inlineIo: false });
    t.after(() => comp.close());
    const data = pattern(4096, 3);
    await comp.write([data], 0);
    await comp.write([data], 8192);
    await comp.write([data], 16384);
    await comp.write([data], 24576);
    const file = readFileSync(path);
    assert.ok(file.subarray(0, 1500).every((x) => x === 0));
    assert.deepEqual(file.subarray(1500, 4096), data.subarray(1500));
    for (const at of [8192, 16384, 24576]) assert.deepEqual(file.subarray(at, at + 4096), data);
    assert.equal(fake.writes, 3);
  });

  test('writes that always "would block" (btrfs) stop being tried inline; one success keeps trying', async (t) => {
    const path = fileOf(t, 0, Buffer.alloc(MiB));
    const never = scripted([], []); // every answer -1
    const comp = await openComponent(path, { lock: false, native: never, inlineIo: false });
    t.after(() => comp.close());
    const data = pattern(4096, 5);
    for (let i = 0; i < 1100; i++) await comp.write([data], (i % 256) * 4096);
    assert.equal(never.writes, 1024, 'gave up after 1024 misses without a hit');
    assert.deepEqual(readFileSync(path).subarray(0, 4096), data);

    const path2 = fileOf(t, 0, Buffer.alloc(MiB));
    const once = scripted([], [4096]); // one success, then -1 for ever
    const comp2 = await openComponent(path2, { lock: false, native: once, inlineIo: false });
    t.after(() => comp2.close());
    for (let i = 0; i < 1100; i++) await comp2.write([data], (i % 256) * 4096);
    assert.equal(once.writes, 1100, 'a file system that once accepted a NOWAIT write is always asked');
  });
});

describe('memory file system: small requests on the event loop', () => {
  /** A directory on tmpfs (/dev/shm), or null when the test is skipped (no tmpfs there). */
  async function shmDir(t: TestContext): Promise<string | null> {
    const fs = await statfs('/dev/shm').catch(() => null);
    if (fs?.type !== TMPFS_MAGIC) return unmet(t, 'requires /dev/shm on tmpfs') || null;
    const dir = mkdtempSync(join('/dev/shm', 'hastd-test-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  /** An addon that fails the test if a request reaches the thread pool or the NOWAIT path. */
  function noPool(t: TestContext): HastIo {
    const native = nativeAddon(t);
    if (native === null) throw new Error('setup: no addon');
    return {
      ...native,
      flock: native.flock.bind(native),
      blkGetSize64: native.blkGetSize64.bind(native),
      blkSszGet: native.blkSszGet.bind(native),
      preadNoWait: () => assert.fail('a tmpfs read went to the RWF_NOWAIT path'),
      pwriteNoWait: () => assert.fail('a tmpfs write went to the RWF_NOWAIT path'),
      ioBatch: () => assert.fail('a small tmpfs request went to the thread pool'),
    };
  }

  test('a tmpfs file reads and writes small requests inline (no pool task), big ones as before', async (t) => {
    if (!requires(t, { native: true })) return;
    const dir = await shmDir(t);
    if (dir === null) return;
    const path = join(dir, 'disk.img');
    writeFileSync(path, pattern(MiB, 6));
    const comp = await openComponent(path, { lock: false, native: noPool(t) });
    t.after(() => comp.close());
    assert.equal(comp.inlineIo, true);
    const w = pattern(4096, 42);
    await comp.write([w], 4608);
    await comp.writeDurable?.([pattern(512, 43)], 0);
    const back = Buffer.alloc(4096);
    await comp.read(back, 4608);
    assert.deepEqual(back, w);
    const file = readFileSync(path);
    assert.deepEqual(file.subarray(4608, 4608 + 4096), w);
    assert.deepEqual(file.subarray(0, 512), pattern(512, 43));
    // Over the inline limit: the ordinary fs path (not the batch either: > 64 KiB), same bytes.
    const big = pattern(64 * 1024 + 1, 44);
    await comp.write([big], 100_000);
    const bigBack = Buffer.alloc(big.length);
    await comp.read(bigBack, 100_000);
    assert.deepEqual(bigBack, big);
  });

  test('inline errors are reported as before: end of file is EIO, a read-only file refuses writes', async (t) => {
    const dir = await shmDir(t);
    if (dir === null) return;
    const path = join(dir, 'disk.img');
    writeFileSync(path, pattern(8192, 1));
    const comp = await openComponent(path, { lock: false, native: null });
    t.after(() => comp.close());
    assert.equal(comp.inlineIo, true);
    await assert.rejects(comp.read(Buffer.alloc(4096), 8192), { code: 'EIO' });
    // A read that ends past the end of the file: the first half inline, then EIO.
    await assert.rejects(comp.read(Buffer.alloc(4096), 6144), { code: 'EIO' });
    const ro = await openComponent(path, { lock: false, readOnly: true, native: null });
    t.after(() => ro.close());
    assert.equal(ro.inlineIo, true);
    await assert.rejects(ro.write([Buffer.alloc(512)], 0), { code: 'EBADF' });
    assert.deepEqual(readFileSync(path), pattern(8192, 1));
  });

  test('inlineIo false (HASTD_NO_INLINE_IO=1) keeps a tmpfs file on the pool; other file systems never inline', async (t) => {
    const native = nativeAddon(t);
    if (native === null) return;
    const dir = await shmDir(t);
    if (dir === null) return;
    const path = join(dir, 'disk.img');
    writeFileSync(path, Buffer.alloc(MiB));
    let tasks = 0;
    const counting: HastIo = {
      ...native,
      flock: native.flock.bind(native),
      ioBatch: (ops, bufs, done) => {
        tasks++;
        native.ioBatch?.(ops, bufs, done);
      },
    };
    const comp = await openComponent(path, { lock: false, native: counting, inlineIo: false });
    t.after(() => comp.close());
    assert.equal(comp.inlineIo, false);
    await comp.write([pattern(4096, 8)], 0);
    assert.equal(tasks, 1);
    assert.deepEqual(readFileSync(path).subarray(0, 4096), pattern(4096, 8));
    const saved = process.env.HASTD_NO_INLINE_IO;
    process.env.HASTD_NO_INLINE_IO = '1';
    try {
      const viaEnv = await openComponent(path, { lock: false, native: counting });
      t.after(() => viaEnv.close());
      assert.equal(viaEnv.inlineIo, false);
    } finally {
      if (saved === undefined) delete process.env.HASTD_NO_INLINE_IO;
      else process.env.HASTD_NO_INLINE_IO = saved;
    }
    const other = fileOf(t, MiB);
    if ((await statfs(other)).type !== TMPFS_MAGIC) {
      const onDisk = await openComponent(other, { lock: false, native: counting });
      t.after(() => onDisk.close());
      assert.equal(onDisk.inlineIo, false);
    }
  });
});

describe('component lock', () => {
  test('a second locked open fails with EBUSY and the upstream message; close releases it', async (t) => {
    if (!requires(t, { native: true })) return;
    const path = fileOf(t, MiB);
    const first = await openComponent(path, { lock: true });
    let firstOpen = true;
    t.after(async () => {
      if (firstOpen) await first.close();
    });
    await assert.rejects(openComponent(path, { lock: true }), {
      code: 'EBUSY',
      message: `Unable to lock ${path} (already in use?)`,
    });
    // hastctl dump does not lock and still works while a worker holds the lock.
    const reader = await openComponent(path, { lock: false, readOnly: true });
    await reader.close();
    await first.close();
    firstOpen = false;
    const again = await openComponent(path, { lock: true });
    await again.close();
  });

  test('without the addon a locked open only warns and succeeds', async (t) => {
    const path = fileOf(t, MiB);
    const a = await openComponent(path, { lock: true, native: null });
    t.after(() => a.close());
    const b = await openComponent(path, { lock: true, native: null });
    t.after(() => b.close());
    assert.equal(b.size, MiB);
  });

  test('a lock answered "operation not supported" only warns', async (t) => {
    const fake: HastIo = {
      flock: () => {
        throw Object.assign(new Error('flock: Operation not supported'), { code: 'EOPNOTSUPP' });
      },
      punchHole: async () => {},
      blkDiscard: async () => {},
      blkZeroOut: async () => {},
      blkGetSize64: () => 0,
      blkSszGet: () => 512,
    };
    const comp = await openComponent(fileOf(t, MiB), { lock: true, native: fake });
    t.after(() => comp.close());
    assert.equal(comp.size, MiB);
  });
});

describe('block device component', () => {
  /** A loop device over a fresh 8 MiB file with the given logical sector size; detached after the test. */
  function loopDevice(t: TestContext, sectorSize: number): string {
    const path = fileOf(t, 0, pattern(8 * MiB, 11));
    const dev = execFileSync('losetup', ['-f', '--show', '--sector-size', String(sectorSize), path], {
      encoding: 'utf8',
    }).trim();
    t.after(() => {
      execFileSync('losetup', ['-d', dev]);
    });
    return dev;
  }

  for (const mode of ['addon', 'sysfs'] as const) {
    test(`openComponent() of a loop device reports its size and 4096-byte sector (${mode})`, async (t) => {
      if (!requires(t, { tools: ['losetup'], root: true, native: mode === 'addon' })) return;
      const dev = loopDevice(t, 4096);
      const comp = await openComponent(dev, { lock: false, ...(mode === 'sysfs' ? { native: null } : {}) });
      t.after(() => comp.close());
      assert.equal(comp.isBlockDevice, true);
      assert.equal(comp.size, 8 * MiB);
      assert.equal(comp.sectorSize, 4096);
    });
  }

  test('a loop device component reads, writes, zeroes and discards', async (t) => {
    if (!requires(t, { tools: ['losetup'], root: true })) return;
    const dev = loopDevice(t, 512);
    const comp = await openComponent(dev, { lock: true });
    t.after(() => comp.close());
    const head = Buffer.alloc(4096);
    await comp.read(head, 0);
    assert.deepEqual(head, pattern(8 * MiB, 11).subarray(0, 4096));
    await comp.write([pattern(8192, 99)], MiB);
    await comp.flush();
    const back = Buffer.alloc(8192);
    await comp.read(back, MiB);
    assert.deepEqual(back, pattern(8192, 99));
    await comp.writeZeroes(MiB, 8192);
    await comp.read(back, MiB);
    assert.ok(back.every((x) => x === 0));
    await comp.discard(2 * MiB, MiB);
    await assert.rejects(comp.read(Buffer.alloc(1024), 8 * MiB - 512), { code: 'EIO' });
  });
});
