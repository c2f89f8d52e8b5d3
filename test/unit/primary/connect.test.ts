// The primary's handshake (src/primary/connect.ts) against a fake secondary on loopback: what the
// checksumsync setting puts on the wire and what the secondary's answer decides (issue 17).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openComponent } from '../../../src/component/open.js';
import type { ResourceConfig } from '../../../src/config/types.js';
import { type Metadata, writeMetadata } from '../../../src/metadata/metadata.js';
import type { NvList } from '../../../src/nv/codec.js';
import { encodeMessage, MessageReader } from '../../../src/peer/framing.js';
import { buildSyncReply } from '../../../src/peer/messages.js';
import { connectToSecondary } from '../../../src/primary/connect.js';
import { PrimaryResource } from '../../../src/primary/resource.js';
import { firstReply, PLAIN } from '../../harness/fake-secondary.js';
import { tmpDir } from '../../harness/tools.js';
import { resourceConfig } from '../../harness/resource-config.js';

const EXTENT = 65536;
const DATASIZE = 16 * EXTENT;

/** The next message on `sock`. */
function nextMessage(sock: Socket): Promise<NvList> {
  const reader = new MessageReader({ maxPayload: 0 });
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => {
      const [msg] = reader.push(chunk);
      if (msg === undefined) return;
      sock.off('data', onData);
      resolve(msg.nv);
    };
    sock.on('data', onData);
  });
}

/**
 * A fake secondary answering one handshake: `echo` decides whether its final reply carries
 * `csums` 1 (ours with checksumsync on) or not (FreeBSD's, or ours with it off). Resolves the
 * primary's second connect message.
 */
async function fakeSecondary(t: TestContext, echo: boolean): Promise<{ port: number; second: Promise<NvList> }> {
  const server = createServer();
  const socks: Socket[] = [];
  t.after(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const second = new Promise<NvList>((resolve) => {
    server.on('connection', (sock) => {
      sock.on('error', () => undefined);
      socks.push(sock);
      void (async () => {
        const hello = await nextMessage(sock);
        if (!hello.has('token')) {
          sock.write(firstReply());
          return;
        }
        resolve(hello);
        const reply = buildSyncReply({
          dataSize: DATASIZE,
          extentSize: EXTENT,
          localCnt: 0n,
          remoteCnt: 0n,
          virgin: true,
          syncSrc: 'primary',
          mapSize: 0,
          consistency: true,
          ...(echo ? { csums: 1 } : {}),
        });
        for (const b of encodeMessage(reply, undefined, PLAIN)) socks[0]?.write(b);
      })();
    });
  });
  return { port: (server.address() as { port: number }).port, second };
}

async function primary(t: TestContext, port: number, checksumSync: boolean): Promise<PrimaryResource> {
  const path = join(tmpDir(t), 'disk.img');
  writeFileSync(path, Buffer.alloc(8192 + DATASIZE));
  const comp = await openComponent(path, { lock: false });
  t.after(() => comp.close());
  const md: Metadata = {
    resource: 'r0',
    dataSize: DATASIZE,
    extentSize: EXTENT,
    keepDirty: 4,
    localOff: 8192,
    resuid: 0n,
    localCnt: 0n,
    remoteCnt: 0n,
    prevRole: 'init',
  };
  await writeMetadata(comp, md);
  const cfg: ResourceConfig = resourceConfig({
    localPath: path,
    remoteAddr: `tcp4://127.0.0.1:${port}`,
    replication: 'memsync',
    timeout: 5,
    metaFlush: true,
    ...(checksumSync ? { checksumSync: true } : {}),
  });
  const res = await PrimaryResource.open(cfg, comp, md);
  t.after(() => res.close());
  return res;
}

for (const [mine, echo, agreed] of [
  [true, true, true],
  [true, false, false],
  [false, true, false],
  [false, false, false],
] as const) {
  test(`checksumsync ${mine ? 'on' : 'off'} here, a secondary that ${echo ? 'echoes' : 'does not echo'} csums: ${agreed ? 'agreed' : 'plain sync'}`, async (t) => {
    const fake = await fakeSecondary(t, echo);
    const res = await primary(t, fake.port, mine);
    const session = await connectToSecondary(res, res.cfg, () => undefined);
    assert.equal(session.kind, 'connected');
    if (session.kind !== 'connected') return;
    t.after(() => {
      session.out.close();
      session.in.close();
    });
    const second = await fake.second;
    // Off: the second connect message is the one before the extension (no field at all).
    assert.equal(second.getUint8('csums'), mine ? 1 : undefined);
    assert.equal(second.has('csums'), mine);
    assert.equal(session.csums, agreed);
  });
}
