// Two real hastd processes on 127.0.0.1 and 127.0.0.2 (one hast.conf, --node), file-backed
// components, a real NBD client writing to the primary: replication modes, outages, failover,
// split-brain and the listener's refusals (HAST-SPEC §6–§8).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { NbdClient } from '../../src/nbd/client.js';
import {
  dumpOf,
  hastctl,
  makePair,
  type Pair,
  startHastd,
  startRole,
  statusJson,
  workerOf,
  type NodeSpec,
  waitNodeInSync,
} from '../harness/cluster.js';
import { dataAreaHash } from '../harness/data-area.js';
import { sleep, waitFor } from '../harness/wait.js';

const MiB = 1 << 20;

function up(t: TestContext, p: Pair, node: NodeSpec, role: 'primary' | 'secondary'): ReturnType<typeof startRole> {
  return startRole(t, p.conf, node, p.res, role, p.sock(node));
}

async function assertIdentical(p: Pair): Promise<void> {
  const da = await dumpOf(p.conf, p.a.name);
  const db = await dumpOf(p.conf, p.b.name);
  assert.equal(da.dataSize, db.dataSize);
  const ha = await dataAreaHash(p.img(p.a), da.localOff, da.dataSize);
  const hb = await dataAreaHash(p.img(p.b), db.localOff, db.dataSize);
  assert.equal(ha, hb, 'the data areas of both components differ');
}

/**
 * Random writes of 4 KiB–256 KiB at 4 KiB-aligned offsets, up to 32 in flight (never two
 * overlapping at once, so the outcome is defined). Resolves when every write is acknowledged, with
 * the expected content: the last acknowledged write of each 4 KiB block written, by block offset.
 */
async function writeLoad(client: NbdClient, size: number, count: number, seed = 1): Promise<Map<number, Buffer>> {
  const written = new Map<number, Buffer>();
  let x = seed;
  const rnd = (n: number): number => {
    // Math.imul: a plain product exceeds 2^53 and loses the low bits (the load was 5 lengths, 3 MiB).
    x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff;
    return (x >>> 8) % n;
  };
  const jobs: Promise<void>[] = [];
  const inFlight: [number, number][] = [];
  for (let i = 0; i < count; i++) {
    const len = 4096 * (1 + rnd(64));
    const off = 4096 * rnd(Math.floor((size - len) / 4096));
    if (jobs.length >= 32 || inFlight.some(([o, l]) => off < o + l && o < off + len)) {
      await Promise.all(jobs.splice(0));
      inFlight.length = 0;
    }
    const buf = randomBytes(len);
    jobs.push(client.write(off, buf));
    inFlight.push([off, len]);
    for (let at = 0; at < len; at += 4096) written.set(off + at, buf.subarray(at, at + 4096));
  }
  await Promise.all(jobs);
  return written;
}

/** Read back every block of `expected` (as from writeLoad) through `client`, in contiguous runs. */
async function assertContent(client: NbdClient, expected: Map<number, Buffer>, where: string): Promise<void> {
  const offsets = [...expected.keys()].sort((a, b) => a - b);
  for (let i = 0; i < offsets.length; ) {
    let j = i + 1;
    while (j < offsets.length && offsets[j] === offsets[j - 1]! + 4096 && j - i < 256) j++;
    const start = offsets[i]!;
    const got = await client.read(start, (j - i) * 4096);
    for (let k = i; k < j; k++) {
      const at = offsets[k]!;
      if (!got.subarray(at - start, at - start + 4096).equals(expected.get(at)!))
        assert.fail(`${where}: block at ${at} differs from its last write`);
    }
    i = j;
  }
}

for (const mode of ['fullsync', 'memsync', 'async'] as const) {
  test(`${mode}: after writes and a complete sync both data areas are byte-identical`, async (t) => {
    const p = await makePair(t, { replication: mode });
    await up(t, p, p.b, 'secondary');
    await up(t, p, p.a, 'primary');
    await waitNodeInSync(p.conf, p.a.name);
    const client = await NbdClient.connect({ path: p.sock(p.a) });
    t.after(() => client.disconnect().catch(() => undefined));
    const expected = await writeLoad(client, client.size, 300, 7);
    assert.ok(expected.size > 4000, `the load wrote ${expected.size} distinct blocks`);
    await assertContent(client, expected, 'the primary after the load');
    await client.writeZeroes(3 * MiB, 2 * MiB);
    await client.trim(8 * MiB, MiB);
    await client.flush();
    const w = await waitNodeInSync(p.conf, p.a.name);
    assert.ok(w.stats.writes! >= 300);
    const sw = await workerOf(p.conf, p.b.name);
    assert.equal(sw?.status, 'complete');
    assert.ok((sw?.stats.writes ?? 0) >= 300, 'the secondary applied the writes');
    const sst = (await statusJson(p.conf, p.b.name, p.res)).worker as { extentSize: number; keepDirty: number };
    assert.equal(sst.extentSize, 2 * MiB, 'the secondary shows its metadata geometry');
    assert.equal(sst.keepDirty, 64);
    await assertIdentical(p);
  });
}

for (const [compression, checksum] of [
  ['lzf', 'sha256'],
  ['hole', 'crc32'],
] as const) {
  test(`compression ${compression} + checksum ${checksum}: compressible, zero and random writes replicate and resync identically`, async (t) => {
    const p = await makePair(t, {
      replication: 'fullsync',
      extra: `compression ${compression}\n  checksum ${checksum}`,
    });
    // Written before the secondary exists: these travel by the initial sync (READ on the primary, WRITE to the peer).
    const d = await up(t, p, p.a, 'primary');
    let client = await NbdClient.connect({ path: p.sock(p.a) });
    const text = Buffer.from('compressible text for lzf; '.repeat(40_000));
    await client.write(0, text);
    await client.write(4 * MiB, randomBytes(MiB));
    await client.flush();
    await client.disconnect();
    await up(t, p, p.b, 'secondary');
    await waitNodeInSync(p.conf, p.a.name);
    client = await NbdClient.connect({ path: p.sock(p.a) });
    t.after(() => client.disconnect().catch(() => undefined));
    // And these by regular replication.
    await client.write(8 * MiB, text);
    await client.writeZeroes(12 * MiB, MiB);
    const expected = await writeLoad(client, client.size, 100, 3);
    await client.flush();
    await assertContent(client, expected, 'the primary after the load');
    await waitNodeInSync(p.conf, p.a.name);
    await assertIdentical(p);
    assert.doesNotMatch(d.output(), /Hash mismatch|Unable to decompress/);
  });
}

test('secondary killed during writes: primary degrades and keeps serving; only dirty extents resync', async (t) => {
  const p = await makePair(t, { replication: 'memsync', size: 128 * MiB, createArgs: ['-e', '1M'] });
  const sec = await up(t, p, p.b, 'secondary');
  await up(t, p, p.a, 'primary');
  await waitNodeInSync(p.conf, p.a.name);
  const client = await NbdClient.connect({ path: p.sock(p.a) });
  t.after(() => client.disconnect().catch(() => undefined));
  const load = writeLoad(client, 16 * MiB, 400, 3);
  await sleep(100);
  await sec.kill();
  // Every write is still acknowledged, and reads back: the primary serves on alone.
  await assertContent(client, await load, 'the degraded primary');
  await waitFor('degraded', async () => (await workerOf(p.conf, p.a.name))?.status === 'degraded');
  // More writes while degraded, to known extents (20..29).
  for (let e = 20; e < 30; e++) await client.write(e * MiB + 4096, randomBytes(8192));
  await client.flush();
  const dirtyBefore = (await workerOf(p.conf, p.a.name))?.dirty ?? 0;
  assert.ok(dirtyBefore >= 10 * MiB, `dirty extents are tracked (${dirtyBefore})`);
  const total = (await dumpOf(p.conf, p.a.name)).dataSize;
  assert.ok(dirtyBefore < total / 2, 'not the whole disk is dirty');

  await up(t, p, p.b, 'secondary');
  const w = await waitNodeInSync(p.conf, p.a.name, 60_000);
  assert.ok(w.lastSync !== null, 'a sync ran');
  assert.equal(w.lastSync?.bytes, dirtyBefore, 'exactly the dirty extents were synchronized');
  await assertIdentical(p);
});

for (const mode of ['fullsync', 'memsync'] as const) {
  test(`${mode}: primary killed during writes; the secondary takes over with every acknowledged write`, async (t) => {
    const p = await makePair(t, { replication: mode, size: 64 * MiB });
    await up(t, p, p.b, 'secondary');
    const prim = await up(t, p, p.a, 'primary');
    await waitNodeInSync(p.conf, p.a.name);
    const client = await NbdClient.connect({ path: p.sock(p.a) });
    // Each block 0..N gets generations; we remember the last acknowledged content per block.
    const acked = new Map<number, Buffer>();
    let stop = false;
    const lanes = Array.from({ length: 8 }, async (_, lane) => {
      for (let gen = 0; !stop; gen++) {
        const block = lane * 64 + (gen % 64);
        const buf = Buffer.alloc(4096, (lane * 31 + gen) & 0xff);
        buf.writeUInt32LE(gen, 0);
        buf.writeUInt32LE(block, 4);
        try {
          await client.write(block * 4096, buf);
        } catch {
          return;
        }
        acked.set(block, buf);
      }
    });
    await sleep(500);
    await prim.kill();
    stop = true;
    await Promise.allSettled(lanes);
    assert.ok(acked.size > 0, 'writes were acknowledged before the kill');
    // Failover: promote the secondary.
    assert.equal((await hastctl(p.conf, p.b.name, ['role', 'primary', p.res])).code, 0);
    await waitFor('export on node b', () => existsSync(p.sock(p.b)));
    const c2 = await NbdClient.connect({ path: p.sock(p.b) });
    t.after(() => c2.disconnect().catch(() => undefined));
    for (const [block, buf] of acked) {
      const got = await c2.read(block * 4096, 4096);
      // The acknowledged write or a later one (higher generation) of the same block.
      assert.equal(got.readUInt32LE(4), block, `block ${block} holds foreign content`);
      assert.ok(got.readUInt32LE(0) >= buf.readUInt32LE(0), `block ${block} lost an acknowledged write`);
    }
    // The old primary returns as secondary and is synchronised from the new primary.
    await up(t, p, p.a, 'secondary');
    await waitNodeInSync(p.conf, p.b.name, 60_000);
    await assertIdentical(p);
  });
}

describe('startup wait while the peer is still primary (HAST-SPEC §6.3)', () => {
  test('I/O waits until the peer gives up primary, then the new primary connects and replicates', async (t) => {
    const p = await makePair(t, { replication: 'fullsync', extra: 'timeout 15' });
    await up(t, p, p.b, 'primary');
    const a = await startHastd(t, p.conf, p.a);
    // `role primary` returns when the startup wait is over: b demotes while it waits.
    const promote = hastctl(p.conf, p.a.name, ['role', 'primary', p.res]);
    await waitFor('export socket of a', () => existsSync(p.sock(p.a)));
    const client = await NbdClient.connect({ path: p.sock(p.a) });
    t.after(() => client.disconnect().catch(() => undefined));
    let done = false;
    const write = client.write(0, Buffer.alloc(4096, 0x5a)).then(() => {
      done = true;
    });
    await waitFor(
      'node a told that b is still primary',
      () => /acts as primary for the resource/.test(a.output()) || done,
      10_000,
    );
    await sleep(1500);
    assert.equal(done, false, 'no I/O is served while the startup wait lasts');
    assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);
    const promoted = await promote;
    assert.equal(promoted.code, 0, promoted.stderr);
    await write;
    await waitNodeInSync(p.conf, p.a.name);
    assert.match(a.output(), /Connected to tcp4:\/\/127\.0\.0\.2/);
    assert.doesNotMatch(a.output(), /starting anyway/);
    await assertIdentical(p);
  });

  test('a peer that stays primary: after `timeout` seconds role primary is refused (exit 69), role back to init', async (t) => {
    // Issue 13 finding 2: upstream "starts anyway" and both nodes accept writes.
    const p = await makePair(t, { replication: 'memsync', extra: 'timeout 3' });
    await up(t, p, p.b, 'primary');
    const cb = await NbdClient.connect({ path: p.sock(p.b) });
    await cb.write(0, Buffer.alloc(4096, 0x55));
    await cb.flush();
    await cb.disconnect();
    const db = await dumpOf(p.conf, p.b.name);
    const before = await dataAreaHash(p.img(p.b), db.localOff, db.dataSize);
    const a = await startHastd(t, p.conf, p.a);
    const promote = hastctl(p.conf, p.a.name, ['role', 'primary', p.res]);
    await waitFor('export socket of a', () => existsSync(p.sock(p.a)));
    // A write issued during the wait is never served: the peer is the primary.
    const client = await NbdClient.connect({ path: p.sock(p.a) });
    t.after(() => client.disconnect().catch(() => undefined));
    const w = client.write(0, Buffer.alloc(4096, 0x44)).then(
      () => 'acknowledged',
      () => 'failed',
    );
    const refused = await promote;
    assert.equal(refused.code, 69, 'hastctl role primary exits EX_UNAVAILABLE');
    assert.match(refused.stderr, /Remote node is primary for r0: demote it first/);
    assert.equal((await statusJson(p.conf, p.a.name, p.res)).role, 'init');
    assert.equal(await w, 'failed');
    assert.match(
      a.output(),
      /Remote node is primary for r0: demote it first \('hastctl role secondary r0' on the other node\), or use 'hastctl role primary --force r0'\./,
    );
    assert.match(a.output(), /Changing resource role back to init/);
    assert.doesNotMatch(a.output(), /starting anyway/);
    assert.equal((await statusJson(p.conf, p.b.name, p.res)).role, 'primary');
    assert.equal(await dataAreaHash(p.img(p.b), db.localOff, db.dataSize), before, "b's data is untouched");
    const da = await dumpOf(p.conf, p.a.name);
    assert.equal(da.localcnt, '0', 'the refused node did not count a divergence');
  });
});

test('split-brain: both primaries written while apart are refused on reconnect, hooks fire, recovery by create', async (t) => {
  const p = await makePair(t, { replication: 'memsync' });
  const hookLog = join(p.a.dir, '..', 'hooks.log');
  const hook = join(p.a.dir, '..', 'hook.sh');
  // $PPID is the hastd parent that ran the hook: it tells the nodes apart.
  writeFileSync(hook, `#!/bin/sh\necho "$PPID $*" >> ${hookLog}\n`);
  chmodSync(hook, 0o755);
  // Re-create the pair's config with an exec hook.
  const confText = readFileSync(p.conf, 'utf8').replace('resource r0 {', `resource r0 {\n  exec ${hook}`);
  writeFileSync(p.conf, confText);

  const sec = await up(t, p, p.b, 'secondary');
  const prim = await up(t, p, p.a, 'primary');
  const A1 = prim.pid;
  await waitNodeInSync(p.conf, p.a.name);
  const ca = await NbdClient.connect({ path: p.sock(p.a) });
  t.after(() => ca.disconnect().catch(() => undefined));
  await ca.write(0, Buffer.alloc(4096, 1));
  await waitNodeInSync(p.conf, p.a.name);
  // Partition: stop node b, write on a alone; then a goes down and b is made primary on its own
  // (a peer that answers as primary would be refused, issue 13) and written there.
  await sec.stop();
  await ca.write(MiB, Buffer.alloc(4096, 2));
  await waitFor('degraded', async () => (await workerOf(p.conf, p.a.name))?.status === 'degraded');
  await ca.disconnect();
  await prim.stop();
  const secB = await startHastd(t, p.conf, p.b);
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'primary', p.res])).code, 0);
  await waitFor('export on b', () => existsSync(p.sock(p.b)));
  const cb = await NbdClient.connect({ path: p.sock(p.b) });
  await cb.write(2 * MiB, Buffer.alloc(4096, 3));
  await cb.flush();
  await cb.disconnect();
  const bData = await dataAreaHash(p.img(p.b), (await dumpOf(p.conf, p.b.name)).localOff, 4 * MiB);
  // b becomes secondary again, a comes back as primary: its connect attempt must detect split-brain.
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);
  const B = secB.pid;
  const A = (await up(t, p, p.a, 'primary')).pid;
  await waitFor(
    'split-brain hook on both nodes',
    () => {
      const log = existsSync(hookLog) ? readFileSync(hookLog, 'utf8') : '';
      return log.includes(`${A} split-brain r0\n`) && log.includes(`${B} split-brain r0\n`);
    },
    40_000,
  );
  // No data moved: b's data area is what b wrote.
  assert.equal(await dataAreaHash(p.img(p.b), (await dumpOf(p.conf, p.b.name)).localOff, 4 * MiB), bData);
  assert.equal((await workerOf(p.conf, p.a.name))?.status, 'degraded');
  // Recovery: discard b's data.
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'init', p.res])).code, 0);
  assert.equal((await hastctl(p.conf, p.b.name, ['create', p.res])).code, 0);
  assert.equal((await hastctl(p.conf, p.b.name, ['role', 'secondary', p.res])).code, 0);
  const w = await waitNodeInSync(p.conf, p.a.name, 60_000);
  assert.equal(w.lastSync?.bytes, (await dumpOf(p.conf, p.a.name)).dataSize, 'a full sync');
  await assertIdentical(p);
  const log = readFileSync(hookLog, 'utf8');
  for (const line of ['role r0 init primary', 'connect r0', 'disconnect r0', 'syncstart r0', 'syncdone r0']) {
    assert.ok(
      log.includes(`${A} ${line}\n`) || log.includes(`${A1} ${line}\n`),
      `node a's hook got "${line}":\n${log}`,
    );
  }
  assert.ok(log.includes(`${B} role r0 init primary\n`));
  assert.ok(log.includes(`${B} connect r0\n`), 'the secondary fires connect too');
});

describe('listener refusals', () => {
  test('resuid mismatch is refused and nothing is synchronised', async (t) => {
    const p = await makePair(t);
    // Pair a with b, then re-create a's metadata and pair it alone once so it gets a new resuid.
    await up(t, p, p.b, 'secondary');
    const pa = await up(t, p, p.a, 'primary');
    await waitNodeInSync(p.conf, p.a.name);
    await pa.stop();
    // Re-created metadata: resuid 0, so a's next connect makes a new resuid that b does not know.
    assert.equal((await hastctl(p.conf, p.a.name, ['create', p.res])).code, 0);
    await startHastd(t, p.conf, p.a);
    assert.equal((await hastctl(p.conf, p.a.name, ['role', 'primary', p.res])).code, 0);
    await waitFor('refused', async () => (await workerOf(p.conf, p.a.name))?.status === 'degraded', 10_000);
    await sleep(1500);
    assert.equal((await workerOf(p.conf, p.a.name))?.status, 'degraded');
    const db = await dumpOf(p.conf, p.b.name);
    const da = await dumpOf(p.conf, p.a.name);
    assert.notEqual(da.resuid, db.resuid);
  });

  test('garbage on the listen port closes that connection and the daemon keeps serving', async (t) => {
    const p = await makePair(t);
    const sec = await up(t, p, p.b, 'secondary');
    const [host, port] = p.b.addr.split(':');
    for (const junk of [
      Buffer.from('GET / HTTP/1.0\r\n\r\n'),
      Buffer.from([2, 0xff, 0xff, 0xff, 0x7f]),
      randomBytes(4096),
    ]) {
      await new Promise<void>((done) => {
        // Connect from 127.0.0.1 = node a's address, so the address check passes and the parser sees the bytes.
        const s = connect({ host: host!, port: Number(port), localAddress: '127.0.0.1' }, () => s.end(junk));
        s.on('error', () => done());
        s.on('close', () => done());
        s.resume();
      });
    }
    assert.equal(sec.proc.exitCode, null, 'the secondary hastd is still running');
    await up(t, p, p.a, 'primary');
    // The primary connects and synchronises: the listener still accepts a real peer.
    await waitNodeInSync(p.conf, p.a.name);
  });

  test('a connection from an address that is not a configured remote is refused', async (t) => {
    const p = await makePair(t);
    await up(t, p, p.b, 'secondary');
    const [host, port] = p.b.addr.split(':');
    const closed = await new Promise<boolean>((done) => {
      const s = connect({ host: host!, port: Number(port), localAddress: '127.0.0.3' });
      s.on('error', () => done(true));
      s.on('close', () => done(true));
      s.resume();
      setTimeout(() => done(false), 5000);
    });
    assert.equal(closed, true, 'the listener closed the unknown client');
  });
});
