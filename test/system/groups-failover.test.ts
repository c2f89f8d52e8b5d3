// The seed commenters' layouts, failed over through the shared glue (contrib/common/hast-failover.sh,
// driven by contrib/keepalived/hast-notify.sh run by hand as keepalived would): a btrfs RAID1 (data and
// metadata) over four HAST resources as one group, and a HAST resource whose component is itself a
// block device built on a volume (a loop device over an image file).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createHosts, type Host, type Hosts, PRIVATE_IF, REPO } from '../harness/netns.js';
import { HASTCTL, run } from '../harness/process.js';
import { requires } from '../harness/tools.js';
import { waitFor, waitInSync } from '../harness/wait.js';
import { assertFiles, copyIn, HAST_HOST_TOOLS, isMounted, makePayload, MNT } from './fs-helpers.js';
import { dataAreaHash, parseDump } from '../harness/data-area.js';

const NOTIFY = join(REPO, 'contrib', 'keepalived', 'hast-notify.sh');
const HOOK = join(REPO, 'contrib', 'ucarp', 'hast-hook.sh');
const TOOLS = [...HAST_HOST_TOOLS, 'flock', 'mountpoint', 'sysctl'];

/** hast.conf with one block per resource; local(h, name) is the component of name on h. */
function groupConf(hs: Hosts, names: readonly string[], local: (h: Host, name: string) => string): void {
  const [a, b] = hs.hosts;
  if (a === undefined || b === undefined) throw new Error('two hosts needed');
  let text = 'timeout 5\n';
  for (const n of names) {
    text += `resource ${n} {\n\texec ${HOOK}\n\tdevice fuse\n`;
    for (const [h, peer] of [
      [a, b],
      [b, a],
    ] as const)
      text += `\ton ${h.name} {\n\t\tlocal ${local(h, n)}\n\t\tremote ${peer.privateAddr}\n\t}\n`;
    text += '}\n';
  }
  hs.writeConf(text);
}

/** Settings for hast-notify.sh: one group entry. */
function settings(hs: Hosts, entry: string): Record<string, string> {
  const path = join(hs.root, 'hast-keepalived.conf');
  writeFileSync(
    path,
    [
      `HAST_RESOURCES="${entry}"`,
      `HASTCTL="${process.execPath} ${HASTCTL}"`,
      `HASTCTL_ARGS="-c ${hs.conf}"`,
      'PEER_WAIT=2',
      'KILL_USERS=yes',
      '',
    ].join('\n'),
  );
  return { ...process.env, HAST_KEEPALIVED_CONF: path } as Record<string, string>;
}

/** hast-notify.sh INSTANCE hast STATE on h, as keepalived calls it; its log is the failure message. */
async function notify(h: Host, env: Record<string, string>, state: string): Promise<{ code: number; log: string }> {
  const r = await h.exec(NOTIFY, ['INSTANCE', 'hast', state, '100'], { env, timeoutMs: 120_000 });
  return { code: r.code, log: r.stderr };
}

async function roles(h: Host, names: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) out.push((await h.status(n)).role ?? 'init');
  return out;
}

async function inSync(h: Host, names: readonly string[]): Promise<void> {
  for (const n of names) await waitInSync(`${h.name} ${n}`, async () => (await h.status(n)).worker ?? null);
}

/** Both hosts up: create, hastd, primary on p (devices up), secondary on s, initial sync done. */
async function bringUpAll(p: Host, s: Host, names: readonly string[]): Promise<void> {
  for (const h of [p, s]) {
    for (const n of names) assert.equal((await h.hastctl('create', n)).code, 0, `${h.name}: create ${n}`);
    // The HAST link is a crossover cable: a dead peer's carrier loss fails connections at once.
    assert.equal(
      (await h.exec('sysctl', ['-q', '-w', `net.ipv4.conf.${PRIVATE_IF}.ignore_routes_with_linkdown=1`])).code,
      0,
    );
    await h.startHastd();
  }
  assert.equal((await p.hastctl('role', 'primary', ...names)).code, 0);
  assert.equal((await s.hastctl('role', 'secondary', ...names)).code, 0);
  for (const n of names)
    await waitFor(`${p.name}: /dev/hast/${n}`, async () => (await p.sh(`test -b /dev/hast/${n}`)).code === 0, 30_000);
  await inSync(p, names);
}

test('btrfs RAID1 over four HAST resources fails over as one group; no resource left primary on the old node', {
  timeout: 300_000,
}, async (t) => {
  if (!requires(t, { root: true, tools: [...TOOLS, 'mkfs.btrfs', 'btrfs'] })) return;
  const hs = await createHosts(t);
  const s1 = hs.get('skunk1');
  const s2 = hs.get('skunk2');
  const names = ['r0', 'r1', 'r2', 'r3'];
  groupConf(hs, names, (h, n) => hs.makeImage(h, `${n}.img`, 256 << 20));
  const env = settings(hs, `${names.join(',')}:${MNT}:btrfs`);
  await bringUpAll(s1, s2, names);
  const devs = names.map((n) => `/dev/hast/${n}`);
  const mk = await s1.exec('mkfs.btrfs', ['-f', '-q', '-d', 'raid1', '-m', 'raid1', ...devs], { timeoutMs: 60_000 });
  assert.equal(mk.code, 0, mk.stderr);

  // skunk1 MASTER: the group is already primary; the glue mounts all four devices as one btrfs.
  let n = await notify(s1, env, 'MASTER');
  assert.equal(n.code, 0, n.log);
  assert.equal(await isMounted(s1), true);
  const df = await s1.exec('btrfs', ['filesystem', 'df', MNT]);
  assert.match(df.stdout, /^Data, RAID1/m);
  assert.match(df.stdout, /^Metadata, RAID1/m);
  const show = await s1.exec('btrfs', ['filesystem', 'show', MNT]);
  for (const n of names) assert.match(show.stdout, new RegExp(`/dev/(hast/${n}|loop\\d+)`));
  assert.equal((show.stdout.match(/devid/g) ?? []).length, 4, show.stdout);
  const payload = makePayload(hs, 'raid');
  await copyIn(s1, payload);
  await inSync(s1, names);

  // All or none: skunk1 keeps r3 primary (its file system unmounted first); skunk2's MASTER is refused
  // for r3, and the resources it did promote are demoted again; nothing mounted.
  n = await notify(s1, env, 'BACKUP');
  assert.equal(n.code, 0, n.log);
  assert.deepEqual(await roles(s1, names), ['secondary', 'secondary', 'secondary', 'secondary']);
  assert.equal((await s1.hastctl('role', 'primary', 'r3')).code, 0);
  n = await notify(s2, env, 'MASTER');
  assert.notEqual(n.code, 0, n.log);
  assert.match(n.log, /still primary after 2s, not promoting/);
  assert.deepEqual(await roles(s2, names), ['secondary', 'secondary', 'secondary', 'secondary'], n.log);
  assert.equal(await isMounted(s2), false);
  assert.equal((await s1.hastctl('role', 'secondary', 'r3')).code, 0);

  // Switch-over: skunk1 is BACKUP (nothing primary there), skunk2 MASTER mounts, every file intact.
  n = await notify(s2, env, 'MASTER');
  assert.equal(n.code, 0, n.log);
  assert.equal(await isMounted(s2), true);
  await assertFiles(s2, payload);
  assert.deepEqual(await roles(s1, names), ['secondary', 'secondary', 'secondary', 'secondary']);
  const extra = makePayload(hs, 'raid2');
  await copyIn(s2, extra);
  await inSync(s2, names);

  // Failover: power off skunk2; skunk1 takes the whole group and mounts it with every file.
  await s2.powerOff();
  n = await notify(s1, env, 'MASTER');
  assert.equal(n.code, 0, n.log);
  await assertFiles(s1, payload);
  await assertFiles(s1, extra);
  assert.deepEqual(await roles(s1, names), ['primary', 'primary', 'primary', 'primary']);
  // skunk2 returns: BACKUP turns init into secondary, the group resynchronises; nothing primary there.
  await s2.boot();
  n = await notify(s2, env, 'BACKUP');
  assert.equal(n.code, 0, n.log);
  assert.deepEqual(await roles(s2, names), ['secondary', 'secondary', 'secondary', 'secondary']);
  await inSync(s1, names);
  assert.equal(await isMounted(s2), false);
});

test('HAST over a volume: the component is a loop device over an image; create, sync, fail over, verify', {
  timeout: 180_000,
}, async (t) => {
  if (!requires(t, { root: true, tools: [...TOOLS, 'mkfs.ext4'] })) return;
  const hs = await createHosts(t);
  const s1 = hs.get('skunk1');
  const s2 = hs.get('skunk2');
  // Each host's "disk" is a block device over a volume: a loop device over an image in its directory
  // (createHosts' cleanup detaches loop devices backed by files under its root).
  const loops = new Map<Host, string>();
  for (const h of hs.hosts) {
    const img = hs.makeImage(h, 'volume.img', 256 << 20);
    const r = await run('losetup', ['-f', '--show', img]);
    assert.equal(r.code, 0, r.stderr);
    loops.set(h, r.stdout.trim());
  }
  groupConf(hs, ['vol'], (h) => loops.get(h) ?? '');
  const env = settings(hs, `vol:${MNT}:ext4`);
  await bringUpAll(s1, s2, ['vol']);
  assert.equal((await s1.status('vol')).localpath, loops.get(s1));
  const mk = await s1.exec('mkfs.ext4', ['-q', '-F', '/dev/hast/vol'], { timeoutMs: 60_000 });
  assert.equal(mk.code, 0, mk.stderr);
  let n = await notify(s1, env, 'MASTER');
  assert.equal(n.code, 0, n.log);
  const payload = makePayload(hs, 'vol');
  await copyIn(s1, payload);
  await inSync(s1, ['vol']);

  await s1.powerOff();
  n = await notify(s2, env, 'MASTER');
  assert.equal(n.code, 0, n.log);
  await assertFiles(s2, payload);
  // skunk1 returns as secondary and is resynchronised: the two loop devices' data areas are equal.
  await s1.boot();
  n = await notify(s1, env, 'BACKUP');
  assert.equal(n.code, 0, n.log);
  await inSync(s2, ['vol']);
  assert.equal((await s2.exec('umount', [MNT])).code, 0);
  await run('sync', []);
  const hashes: string[] = [];
  for (const h of [s2, s1]) {
    const d = await h.hastctl('dump', 'vol');
    assert.equal(d.code, 0, d.stderr);
    const { localOff, dataSize } = parseDump(d.stdout);
    hashes.push(await dataAreaHash(loops.get(h) ?? '', localOff, dataSize));
  }
  assert.equal(hashes[0], hashes[1], 'the resynchronised copy equals the primary');
});
