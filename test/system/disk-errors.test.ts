// A failing local disk on the primary: the component is a real kernel block device (nbdkit with
// its error filter, under nbdfuse + loop) that returns EIO while a trigger file exists. Reads are
// served by the secondary, errors are counted in `hastctl status`, and no acknowledged write is
// lost, not even one whose local writeback failed (HAST-SPEC §8, and our fixes to it).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { attachFuse } from '../../src/daemon/device/fuse.js';
import { NbdClient } from '../../src/nbd/client.js';
import { killPid } from '../harness/cleanup.js';
import {
  dumpOf,
  type HastdProcess,
  hastctl,
  makePair,
  type NodeSpec,
  type Pair,
  startHastd,
  workerOf,
  waitNodeInSync,
} from '../harness/cluster.js';
import { requires } from '../harness/tools.js';
import { waitFor } from '../harness/wait.js';

const MiB = 1 << 20;

/** Drop clean page-cache pages so the next reads really reach the (failing) device. */
function dropCaches(): void {
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

/** Read [offset, offset+length) of a node's data area straight from its component. */
async function readDataArea(p: Pair, node: NodeSpec, offset: number, length: number): Promise<Buffer> {
  const { localOff } = await dumpOf(p.conf, node.name);
  const fd = openSync(p.img(node), 'r');
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, localOff + offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/**
 * Replace node a's image file by a block device over nbdkit's error filter. Returns the trigger
 * files and a teardown (loop → FUSE → nbdfuse → nbdkit) to run once hastd has stopped; it is also
 * registered with t.after, but after-hooks run in registration order, after makePair's removal of
 * the directory, so the test calls it itself first.
 */
async function failingComponent(
  t: TestContext,
  p: Pair,
): Promise<{ reads: string; writes: string; teardown: () => Promise<void> }> {
  const dir = p.a.dir;
  const backing = join(dir, 'backing.img');
  renameSync(p.img(p.a), backing);
  const sock = join(dir, 'disk.sock');
  const reads = join(dir, 'fail-reads');
  const writes = join(dir, 'fail-writes');
  const nbdkit = spawn(
    'nbdkit',
    [
      '-U',
      sock,
      '--foreground',
      '--filter=error',
      'file',
      backing,
      'error=EIO',
      'error-pread-rate=100%',
      `error-pread-file=${reads}`,
      'error-pwrite-rate=100%',
      `error-pwrite-file=${writes}`,
    ],
    { stdio: 'ignore' },
  );
  let done = false;
  let dev: Awaited<ReturnType<typeof attachFuse>> | null = null;
  const teardown = async (): Promise<void> => {
    if (done) return;
    done = true;
    await dev?.detach(true, 'disk-errors test');
    await killPid(nbdkit.pid);
  };
  t.after(teardown);
  await waitFor('nbdkit socket', () => existsSync(sock), 10_000);
  dev = await attachFuse({
    provName: `hastd-diskerr-${process.pid}`,
    socketPath: sock,
    stateDir: join(dir, 'fuse'),
    sectorSize: 512,
  });
  symlinkSync(dev.blockDevice, p.img(p.a));
  return { reads, writes, teardown };
}

test('failing local disk on the primary: reads served by the peer, errors counted, no acknowledged write lost', async (t) => {
  if (!requires(t, { root: true, tools: ['nbdkit', 'nbdfuse', 'losetup', 'fusermount3'] })) return;
  const p = await makePair(t, { replication: 'fullsync', size: 64 * MiB });
  const trig = await failingComponent(t, p);
  const b = await startHastd(t, p.conf, p.b);
  const a = await startHastd(t, p.conf, p.a);
  try {
    await scenario(t, p, a, trig);
  } finally {
    await a.stop();
    await b.stop();
    await trig.teardown();
  }
});

async function scenario(
  t: TestContext,
  p: Pair,
  a: HastdProcess,
  trig: { reads: string; writes: string },
): Promise<void> {
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);
  assert.equal((await hastctl(p.conf, p.a.name, ['role', 'primary', p.res])).code, 0);
  await waitFor('export socket', () => existsSync(p.sock(p.a)));
  await waitNodeInSync(p.conf, p.a.name);
  const client = await NbdClient.connect({ path: p.sock(p.a) });
  t.after(() => client.disconnect().catch(() => undefined));

  // 1. Healthy: write 8 MiB, flush.
  const d1 = randomBytes(8 * MiB);
  for (let off = 0; off < d1.length; off += MiB) await client.write(off, d1.subarray(off, off + MiB));
  await client.flush();
  await waitNodeInSync(p.conf, p.a.name);

  // 2. The disk stops reading: every read is served by the secondary.
  writeFileSync(trig.reads, '');
  dropCaches();
  for (let off = 0; off < d1.length; off += MiB) {
    assert.deepEqual(await client.read(off, MiB), d1.subarray(off, off + MiB), `data at ${off} while local reads fail`);
  }
  const w1 = await workerOf(p.conf, p.a.name);
  assert.ok((w1?.stats.readErrors ?? 0) > 0, 'local read errors are counted');
  assert.match((await hastctl(p.conf, p.a.name, ['status', p.res])).stdout, /local errors: read: [1-9]/);
  assert.match(a.output(), /Local request failed \(.*\), trying remote node\./);
  rmSync(trig.reads);

  // 3. The disk stops writing: the buffered write is acknowledged (the peer has it), the flush
  // finds the failed writeback; afterwards no local byte is trusted and reads come from the peer.
  writeFileSync(trig.writes, '');
  const d2 = randomBytes(MiB);
  await client.write(16 * MiB, d2);
  await client.flush();
  rmSync(trig.writes);
  dropCaches();
  assert.deepEqual(
    await client.read(16 * MiB, MiB),
    d2,
    'the acknowledged write reads back after a failed local writeback',
  );
  assert.deepEqual(await client.read(0, MiB), d1.subarray(0, MiB));
  const w2 = await workerOf(p.conf, p.a.name);
  assert.ok((w2?.stats.flushErrors ?? 0) + (w2?.stats.writeErrors ?? 0) > 0, 'the failed writeback is counted');

  // 4. Every acknowledged write is on the secondary's disk.
  assert.deepEqual(await readDataArea(p, p.b, 0, 8 * MiB), d1);
  assert.deepEqual(await readDataArea(p, p.b, 16 * MiB, MiB), d2);
}
