// Issue 13 finding 1 with two real hastd: after a sync the counters are asymmetric (a = 1/0,
// b = 0/1); both nodes are then written as primary while apart. Before the fix a's promoted worker
// never bumped localcnt (it compared with the 0 of a worker that never connected), b's bump made
// the table read "secondary out of date" (rule 5), and b's sync overwrote a's acknowledged 0x44.
// Now each worker's first unreplicated write bumps localcnt durably: split-brain on both nodes.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, openSync, readFileSync, readSync, closeSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodeMetadata, encodeMetadata } from '../../src/metadata/metadata.js';
import { METADATA_SIZE } from '../../src/metadata/layout.js';
import { NbdClient } from '../../src/nbd/client.js';
import { dumpOf, hastctl, makePair, type NodeSpec, type Pair, startRole, waitNodeInSync } from '../harness/cluster.js';
import { waitFor } from '../harness/wait.js';

/** Rewrite a stopped node's counters (the state a real interrupted sync + failover leaves). */
function setCounters(path: string, localCnt: bigint, remoteCnt: bigint): void {
  const fd = openSync(path, 'r+');
  try {
    const buf = Buffer.alloc(METADATA_SIZE);
    readSync(fd, buf, 0, METADATA_SIZE, 0);
    const md = decodeMetadata(buf);
    writeSync(fd, encodeMetadata({ ...md, localCnt, remoteCnt }), 0, METADATA_SIZE, 0);
  } finally {
    closeSync(fd);
  }
}

async function readBlock(p: Pair, n: NodeSpec, offset: number): Promise<Buffer> {
  const d = await dumpOf(p.conf, n.name);
  const fd = openSync(p.img(n), 'r');
  try {
    const buf = Buffer.alloc(4096);
    readSync(fd, buf, 0, 4096, d.localOff + offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

async function writeAcked(p: Pair, n: NodeSpec, byte: number): Promise<void> {
  await waitFor(`export on ${n.name}`, () => existsSync(p.sock(n)));
  const c = await NbdClient.connect({ path: p.sock(n) });
  await c.write(0, Buffer.alloc(4096, byte));
  await c.flush();
  await c.disconnect();
}

test('finding 1: asymmetric counters, both written as primary while apart → split-brain on both, 0x44 kept', async (t) => {
  const p = await makePair(t, { replication: 'fullsync', size: 8 << 20 });
  const hookLog = join(p.a.dir, '..', 'hooks.log');
  const hook = join(p.a.dir, '..', 'hook.sh');
  writeFileSync(hook, `#!/bin/sh\necho "$PPID $*" >> ${hookLog}\n`);
  chmodSync(hook, 0o755);
  writeFileSync(p.conf, readFileSync(p.conf, 'utf8').replace('resource r0 {', `resource r0 {\n  exec ${hook}`));

  // Pair and synchronise, then give the copies the asymmetric counters of issue 13.
  let b = await startRole(t, p.conf, p.b, p.res, 'secondary', p.sock(p.b));
  let a = await startRole(t, p.conf, p.a, p.res, 'primary', p.sock(p.a));
  await waitNodeInSync(p.conf, p.a.name);
  await a.stop();
  await b.stop();
  setCounters(p.img(p.a), 1n, 0n);
  setCounters(p.img(p.b), 0n, 1n);
  // b primary, a secondary: "in sync" (rule 4); b's counters stay 0/1.
  a = await startRole(t, p.conf, p.a, p.res, 'secondary', p.sock(p.a));
  b = await startRole(t, p.conf, p.b, p.res, 'primary', p.sock(p.b));
  await waitNodeInSync(p.conf, p.b.name);
  assert.deepEqual([(await dumpOf(p.conf, p.b.name)).localcnt, (await dumpOf(p.conf, p.b.name)).remotecnt], ['0', '1']);

  // b goes away; a is promoted (nothing answers, so not refused) and acknowledges 0x44.
  await b.stop();
  assert.equal((await hastctl(p.conf, p.a.name, ['role', 'primary', p.res])).code, 0);
  await writeAcked(p, p.a, 0x44);
  await a.stop();
  // b comes back alone as primary and acknowledges 0x55.
  b = await startRole(t, p.conf, p.b, p.res, 'primary', p.sock(p.b));
  await writeAcked(p, p.b, 0x55);
  // a returns as secondary: b's connection attempt must be refused as split-brain on both nodes.
  a = await startRole(t, p.conf, p.a, p.res, 'secondary', p.sock(p.a));
  await waitFor(
    'split-brain hook on both nodes',
    () => {
      const log = existsSync(hookLog) ? readFileSync(hookLog, 'utf8') : '';
      return log.includes(`${a.pid} split-brain r0\n`) && log.includes(`${b.pid} split-brain r0\n`);
    },
    40_000,
  );
  assert.match(a.output(), /Split-brain detected, exiting\./);
  assert.match(b.output(), /Split-brain detected\./);
  assert.equal((await readBlock(p, p.a, 0))[0], 0x44, "a's acknowledged write is not overwritten");
  assert.equal((await readBlock(p, p.b, 0))[0], 0x55);
});
