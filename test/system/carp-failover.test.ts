// Automatic failover: ucarp on both public interfaces runs contrib/ucarp/vip-up.sh and vip-down.sh;
// power off the master, the backup promotes HAST and mounts; the old master returns as secondary.
// HASTD_CARP_RUNS=N repeats the power-off cycle N times and prints min/median/max (CI: once).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createHosts, type Host, PUBLIC_IF, REPO } from '../harness/netns.js';
import { requires } from '../harness/tools.js';
import {
  assertFiles,
  bringUp,
  copyIn,
  HAST_HOST_TOOLS,
  hasAddr,
  isMounted,
  makePayload,
  MNT,
  mkfs,
  mount,
  RES,
  umount,
  waitHostInSync,
  walkthroughConf,
  worker,
} from './fs-helpers.js';
import { HASTCTL } from '../harness/process.js';
import { waitFor } from '../harness/wait.js';

const VIP = '192.0.2.100';
const UCARP = join(REPO, 'contrib', 'ucarp');

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function mounted(h: Host): Promise<boolean> {
  return isMounted(h, MNT);
}

function hasVip(h: Host): Promise<boolean> {
  return hasAddr(h, VIP);
}

const RUNS = Math.max(1, Number(process.env.HASTD_CARP_RUNS ?? '1') || 1);

test('CARP failover with ucarp: power off the master, the backup promotes and mounts; no preemption on return', {
  timeout: 150_000 + RUNS * 120_000,
}, async (t) => {
  if (
    !requires(t, {
      root: true,
      tools: [...HAST_HOST_TOOLS, 'mkfs.btrfs', 'btrfs', 'ucarp', 'flock', 'mountpoint', 'bash', 'timeout'],
    })
  )
    return;
  const runs = RUNS;
  // Registered before the hosts, so it runs before their cleanup removes the logs.
  let passed = false;
  let dump = (): void => undefined;
  t.after(() => {
    if (!passed) dump();
  });
  const hs = await createHosts(t);
  const s1 = hs.get('skunk1');
  const s2 = hs.get('skunk2');
  walkthroughConf(hs);
  const carpConf = join(hs.root, 'hast-carp.conf');
  writeFileSync(
    carpConf,
    [
      `HAST_RESOURCES="${RES}:${MNT}:btrfs"`,
      `HASTCTL="${process.execPath} ${HASTCTL}"`,
      `HASTCTL_ARGS="-c ${hs.conf}"`,
      'DEVICE_WAIT=30',
      'KILL_USERS=yes',
      '',
    ].join('\n'),
  );
  dump = () => {
    for (const h of hs.hosts) {
      console.log(`--- ${h.name} hastd log ---\n${h.hastdLog().slice(-6000)}`);
      console.log(`--- ${h.name} ucarp and scripts ---\n${readLog(join(h.dir, 'ucarp.log')).slice(-6000)}`);
    }
  };
  const startUcarp = (h: Host, skew: number): void => {
    // No -P: a returning host must not preempt the master. advbase 1 s, deadratio 3 (default).
    // h.spawn: killed by pid at power off and at cleanup.
    h.spawn(
      'ucarp',
      [
        '-i',
        PUBLIC_IF,
        '-s',
        h.publicAddr,
        '-v',
        '42',
        '-p',
        'skunkpass',
        '-a',
        VIP,
        '-b',
        '1',
        '-k',
        String(skew),
        '-u',
        join(UCARP, 'vip-up.sh'),
        '-d',
        join(UCARP, 'vip-down.sh'),
        '-z',
      ],
      { env: { ...process.env, HAST_CARP_CONF: carpConf }, logFile: join(h.dir, 'ucarp.log') },
    );
  };

  // The file system is made once by hand (as in the walkthrough), then CARP takes over.
  await bringUp(hs, s1, s2);
  await mkfs(s1, 'btrfs');
  await mount(s1, 'btrfs');
  const payload = makePayload(hs, 'carp');
  await copyIn(s1, payload);
  await umount(s1);
  startUcarp(s1, 0);
  startUcarp(s2, 100);
  await waitFor(
    'skunk1 MASTER with the file system mounted and the VIP',
    async () => (await mounted(s1)) && (await hasVip(s1)),
    60_000,
    250,
  );
  // skunk2's start-time vip-down.sh runs detached: wait for it rather than race it.
  await waitFor('skunk2 secondary', async () => (await s2.status(RES)).role === 'secondary', 30_000, 250);
  await waitHostInSync(s1);
  assert.equal(await mounted(s2), false);
  assert.equal(await hasVip(s2), false);

  // Never two primaries: vip-up.sh on skunk2 while skunk1 is a live primary (as after a public-network
  // partition makes both MASTER) waits PEER_WAIT seconds for skunk1 to let go, then refuses.
  const up = await s2.exec(join(UCARP, 'vip-up.sh'), [PUBLIC_IF, VIP], {
    env: { ...process.env, HAST_CARP_CONF: carpConf, HAST_CARP_FOREGROUND: 'yes', PEER_WAIT: '3' },
    timeoutMs: 60_000,
  });
  assert.notEqual(up.code, 0, up.stderr);
  assert.match(up.stderr, /still primary after 3s, not promoting/);
  assert.equal((await s2.status(RES)).role, 'secondary');
  assert.equal(await mounted(s2), false);
  assert.equal(await hasVip(s2), false);
  assert.equal((await worker(s1))?.status, 'complete', 'skunk1 kept its secondary');

  const times: number[] = [];
  let master = s1;
  let backup = s2;
  for (let i = 0; i < runs; i++) {
    const extra = makePayload(hs, `run${i}`);
    await copyIn(master, extra);
    await waitHostInSync(master);
    const t0 = Date.now();
    await master.powerOff();
    await waitFor(`${backup.name} mounted ${MNT}`, () => mounted(backup), 60_000, 50);
    const ms = Date.now() - t0;
    times.push(ms);
    console.log(
      `failover ${i + 1}/${runs}: power off ${master.name} -> ${MNT} mounted on ${backup.name}: ${(ms / 1000).toFixed(2)} s`,
    );
    assert.equal((await backup.status(RES)).role, 'primary');
    await assertFiles(backup, payload);
    await assertFiles(backup, extra);
    await waitFor(`${backup.name} holds the VIP`, () => hasVip(backup), 10_000, 100);

    // The old master returns: BACKUP (no preemption), secondary, resynchronised.
    await master.boot();
    startUcarp(master, master === s1 ? 0 : 100);
    await waitFor(
      `${master.name} back as secondary`,
      async () => (await master.status(RES)).role === 'secondary',
      30_000,
      250,
    );
    await waitHostInSync(backup, 60_000);
    const text = await backup.hastctl('status', RES);
    assert.match(text.stdout, /^ {2}status: complete$/m);
    assert.match(text.stdout, /^ {2}dirty: 0 \(0B\)$/m);
    assert.equal(await mounted(master), false);
    assert.equal(await hasVip(master), false);
    assert.equal(await mounted(backup), true, 'no preemption: the new master keeps the file system');
    [master, backup] = [backup, master];
  }
  const sorted = [...times].sort((a, b) => a - b);
  const sec = (ms: number | undefined): string => ((ms ?? NaN) / 1000).toFixed(2);
  console.log(
    `failover times over ${runs} run(s): min ${sec(sorted[0])} s, median ${sec(sorted[Math.floor(sorted.length / 2)])} s, max ${sec(sorted.at(-1))} s`,
  );
  passed = true;
});
