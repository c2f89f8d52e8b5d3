// Our NBD server against real clients (nbdinfo, qemu-io, qemu-img, nbdcopy, fio) and against
// malformed input on a raw socket (NBD.md "Real clients here").
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { NbdClient } from '../../src/nbd/client.js';
import { createNbdServer, type NbdServer } from '../../src/nbd/server.js';
import { FileBackend } from '../harness/nbd-file-backend.js';
import { run } from '../harness/process.js';
import { requires, tmpDir, unmet } from '../harness/tools.js';

const MiB = 1024 * 1024;

interface Served {
  dir: string;
  img: string;
  sock: string;
  uri: string;
  server: NbdServer;
  logs: string[];
}

/** A file-backed export on a unix socket in a fresh temp dir, closed when the test ends. */
async function serve(t: TestContext, size = 64 * MiB, fill?: Buffer): Promise<Served> {
  const dir = tmpDir(t, 'hastd-nbd-');
  const img = join(dir, 'img');
  writeFileSync(img, fill ?? Buffer.alloc(0));
  if (fill === undefined) truncateSync(img, size);
  const backend = await FileBackend.open(img);
  const logs: string[] = [];
  const server = createNbdServer(backend, { log: (level, msg) => logs.push(`${level}: ${msg}`) });
  const sock = join(dir, 'nbd.sock');
  await server.listen({ kind: 'unix', path: sock });
  t.after(async () => {
    await server.close();
    await backend.close();
  });
  return { dir, img, sock, uri: `nbd+unix:///?socket=${sock}`, server, logs };
}

describe('NBD conformance with real clients', () => {
  test('nbdinfo --json reports size, block sizes and capabilities; --list lists the export', async (t) => {
    if (!requires(t, { tools: ['nbdinfo'] })) return;
    const s = await serve(t, 32 * MiB);
    const r = await run('nbdinfo', ['--json', s.uri]);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { protocol: string; exports: Record<string, unknown>[] };
    assert.equal(info.protocol, 'newstyle-fixed');
    const e = info.exports[0] ?? {};
    assert.equal(e['export-size'], 32 * MiB);
    assert.equal(e.block_size_minimum, 1);
    assert.equal(e.block_size_preferred, 4096);
    assert.equal(e.block_size_maximum, MiB);
    assert.equal(e.can_flush, true);
    assert.equal(e.can_fua, true);
    assert.equal(e.can_trim, true);
    assert.equal(e.can_zero, true);
    assert.equal(e.is_read_only, false);
    assert.equal(e.can_multi_conn, true, 'FileBackend says canMultiConn');
    assert.deepEqual(e.contexts, ['base:allocation']);
    const l = await run('nbdinfo', ['--list', s.uri]);
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, /export="":/);
  });

  test('qemu-io write -P, read -P, write -z, discard and flush', async (t) => {
    if (!requires(t, { tools: ['qemu-io'] })) return;
    const s = await serve(t, 16 * MiB);
    const r = await run('qemu-io', [
      '-f',
      'raw',
      '-c',
      'write -P 0xab 0 1M',
      '-c',
      'read -P 0xab 0 1M',
      '-c',
      'write -P 0xcd 1536 5000',
      '-c',
      'read -P 0xcd 1536 5000',
      '-c',
      'write -z 2M 3M',
      '-c',
      'read -P 0 2M 3M',
      '-c',
      'write -P 0x11 8M 2M',
      '-c',
      'discard 8M 1M',
      '-c',
      'read -P 0 8M 1M',
      '-c',
      'read -P 0x11 9M 1M',
      '-c',
      'flush',
      s.uri,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /Pattern verification failed|error/i);
    const img = readFileSync(s.img);
    assert.ok(img.subarray(0, 1536).every((x) => x === 0xab));
    assert.ok(img.subarray(1536, 6536).every((x) => x === 0xcd));
    assert.ok(img.subarray(2 * MiB, 5 * MiB).every((x) => x === 0));
  });

  test('qemu-img convert to and from the export, then qemu-img compare', async (t) => {
    if (!requires(t, { tools: ['qemu-img'] })) return;
    const s = await serve(t, 16 * MiB);
    const src = join(s.dir, 'src.raw');
    const data = randomBytes(16 * MiB);
    data.fill(0, 4 * MiB, 6 * MiB);
    writeFileSync(src, data);
    const to = await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, s.uri]);
    assert.equal(to.code, 0, to.stderr);
    const back = join(s.dir, 'back.raw');
    const from = await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, back]);
    assert.equal(from.code, 0, from.stderr);
    assert.ok(readFileSync(back).equals(data));
    const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, s.uri]);
    assert.equal(cmp.code, 0, cmp.stdout + cmp.stderr);
  });

  test('nbdcopy both ways gives identical files', async (t) => {
    if (!requires(t, { tools: ['nbdcopy', 'cmp'] })) return;
    const s = await serve(t, 32 * MiB);
    const src = join(s.dir, 'src.raw');
    writeFileSync(src, randomBytes(32 * MiB));
    const up = await run('nbdcopy', [src, s.uri]);
    assert.equal(up.code, 0, up.stderr);
    const back = join(s.dir, 'back.raw');
    const down = await run('nbdcopy', [s.uri, back]);
    assert.equal(down.code, 0, down.stderr);
    const c = await run('cmp', [src, back]);
    assert.equal(c.code, 0, c.stdout);
    assert.ok(readFileSync(s.img).equals(readFileSync(src)));
  });

  test('fio --ioengine=nbd random writes verify', async (t) => {
    if (!requires(t, { tools: ['fio'] })) return;
    const help = await run('fio', ['--enghelp']);
    if (!/\bnbd\b/.test(help.stdout + help.stderr)) {
      unmet(t, 'requires a fio with the nbd engine');
      return;
    }
    const s = await serve(t, 32 * MiB);
    const r = await run('fio', [
      '--name=verify',
      '--ioengine=nbd',
      `--uri=${s.uri}`,
      '--rw=randwrite',
      '--bs=4k',
      '--iodepth=32',
      '--size=16M',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      `--directory=${s.dir}`,
      '--output-format=json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as {
      jobs: { error: number; write: { io_bytes: number } }[];
    };
    assert.equal(out.jobs[0]?.error, 0);
    assert.equal(out.jobs[0]?.write.io_bytes, 16 * MiB);
  });

  test('the runnable file server prints ready, serves, and exits on SIGTERM', async (t) => {
    if (!requires(t, { tools: ['nbdinfo'] })) return;
    const dir = tmpDir(t, 'hastd-nbd-');
    const img = join(dir, 'img');
    writeFileSync(img, Buffer.alloc(4 * MiB));
    const sock = join(dir, 's');
    const script = fileURLToPath(new URL('../harness/nbd-file-server.js', import.meta.url));
    const child = spawn(process.execPath, [script, img, sock], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => {
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        if (b.toString().includes('ready')) resolve();
      });
      child.on('exit', () => reject(new Error('server exited before ready')));
    });
    const r = await run('nbdinfo', ['--size', `nbd+unix:///?socket=${sock}`]);
    assert.equal(r.stdout.trim(), String(4 * MiB));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  });
});

/** A raw client socket past the handshake (EXPORT_NAME, no zeroes, simple replies). */
async function rawConnect(
  sock: string,
): Promise<{ s: Socket; read: (n: number) => Promise<Buffer>; closed: Promise<void> }> {
  const s = connect(sock);
  let buf = Buffer.alloc(0);
  let waiter: (() => void) | null = null;
  const closed = new Promise<void>((resolve) => s.on('close', () => resolve()));
  s.on('error', () => undefined);
  s.on('data', (b: Buffer) => {
    buf = Buffer.concat([buf, b]);
    waiter?.();
  });
  s.on('close', () => waiter?.());
  const read = async (n: number): Promise<Buffer> => {
    while (buf.length < n) {
      if (s.destroyed) throw new Error('closed');
      await new Promise<void>((r) => (waiter = r));
    }
    const out = buf.subarray(0, n);
    buf = buf.subarray(n);
    return out;
  };
  await read(18);
  const hs = Buffer.alloc(20);
  hs.writeUInt32BE(3, 0);
  hs.write('IHAVEOPT', 4);
  hs.writeUInt32BE(1, 12);
  s.write(hs);
  await read(10);
  return { s, read, closed };
}

function req(type: number, cookie: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(0x25609513, 0);
  b.writeUInt16BE(type, 6);
  b.writeUInt32BE(cookie, 12);
  b.writeUInt32BE(Math.floor(offset / 2 ** 32), 16);
  b.writeUInt32BE(offset >>> 0, 20);
  b.writeUInt32BE(length, 24);
  return b;
}

describe('NBD server against malformed input', () => {
  test('bad magic closes that connection; a new connection still works', async (t) => {
    const s = await serve(t, 4 * MiB);
    const c = await rawConnect(s.sock);
    c.s.write(Buffer.alloc(28, 0xee));
    await c.closed;
    assert.ok(s.logs.some((l) => l.includes('bad request magic')));
    const client = await NbdClient.connect({ path: s.sock });
    await client.write(0, Buffer.from('still alive'));
    assert.equal((await client.read(0, 11)).toString(), 'still alive');
    await client.disconnect();
  });

  test('out-of-range read is EINVAL and the same connection still works', async (t) => {
    const s = await serve(t, 4 * MiB);
    const c = await rawConnect(s.sock);
    c.s.write(req(0, 1, 4 * MiB - 512, 1024));
    const r1 = await c.read(16);
    assert.equal(r1.readUInt32BE(4), 22);
    assert.equal(r1.readUInt32BE(12), 1);
    c.s.write(req(0, 2, 0, 512));
    const r2 = await c.read(16 + 512);
    assert.equal(r2.readUInt32BE(4), 0);
    assert.equal(r2.readUInt32BE(12), 2);
    c.s.destroy();
  });

  test('write past the end is ENOSPC with the payload drained', async (t) => {
    const s = await serve(t, 4 * MiB);
    const c = await rawConnect(s.sock);
    c.s.write(Buffer.concat([req(1, 1, 4 * MiB - 100, 64 * 1024), Buffer.alloc(64 * 1024, 0x77)]));
    const r1 = await c.read(16);
    assert.equal(r1.readUInt32BE(4), 28);
    c.s.write(Buffer.concat([req(1, 2, 0, 4), Buffer.from('okay')]));
    const r2 = await c.read(16);
    assert.equal(r2.readUInt32BE(4), 0);
    assert.equal(r2.readUInt32BE(12), 2);
    assert.equal(readFileSync(s.img).toString('utf8', 0, 4), 'okay');
    c.s.destroy();
  });

  test('a 64 MiB read closes the connection; the server survives', async (t) => {
    const s = await serve(t, 128 * MiB);
    const c = await rawConnect(s.sock);
    c.s.write(req(0, 1, 0, 64 * MiB));
    await c.closed;
    assert.ok(s.logs.some((l) => l.includes('exceeds the maximum block size')));
    const client = await NbdClient.connect({ path: s.sock });
    assert.equal(client.size, 128 * MiB);
    await client.disconnect();
  });

  test('an option length of 1 GiB is refused without allocating; the server survives', async (t) => {
    const s = await serve(t, 4 * MiB);
    const sock = connect(s.sock);
    sock.on('error', () => undefined);
    sock.resume();
    const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
    const opt = Buffer.alloc(20);
    opt.writeUInt32BE(3, 0);
    opt.write('IHAVEOPT', 4);
    opt.writeUInt32BE(7, 12);
    opt.writeUInt32BE(0x4000_0000, 16);
    sock.write(opt);
    const before = process.memoryUsage().arrayBuffers;
    sock.write(Buffer.alloc(4096));
    await closed;
    assert.ok(process.memoryUsage().arrayBuffers - before < 512 * MiB, 'no GiB-sized buffer');
    assert.ok(
      s.logs.some((l) => l.includes('too large')),
      s.logs.join('\n'),
    );
    const client = await NbdClient.connect({ path: s.sock });
    await client.flush();
    await client.disconnect();
  });
});
