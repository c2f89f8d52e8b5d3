// Automatic failover with keepalived (VRRP, unicast, nopreempt, advert_int 0.2 s): contrib/keepalived's
// hast-notify.sh and hast-check.sh on both hosts. A public-network partition makes two VRRP masters
// but never two HAST primaries; power off the master, the backup promotes and mounts; the old master
// returns as secondary, is resynchronised and does not preempt.
// HASTD_KEEPALIVED_RUNS=N repeats the power-off cycle N times and prints min/median/max and the parts
// (CI: once).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createHosts, type Host, type Hosts, PRIVATE_IF, PUBLIC_IF, REPO } from '../harness/netns.js';
import { HASTCTL } from '../harness/process.js';
import { requires } from '../harness/tools.js';
import { sleep, waitFor } from '../harness/wait.js';
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
} from './fs-helpers.js';

const VIP = '192.0.2.100';
const KEEPALIVED = join(REPO, 'contrib', 'keepalived');
const RUNS = Math.max(1, Number(process.env.HASTD_KEEPALIVED_RUNS ?? '1') || 1);

/**
 * The HAST link is a crossover cable: when the peer loses power the carrier goes, and with
 * ignore_routes_with_linkdown a connection to the peer fails at once (ENETUNREACH) instead of after
 * the neighbour discovery times out (~3 s). hastd's probe of a connected-but-silent primary and the new
 * primary's first connection attempt (which the device waits for) both end at once. README: "Failover
 * with keepalived". HASTD_KEEPALIVED_LINKDOWN=0 leaves the kernel default, for comparison.
 */
async function linkdownRoutes(h: Host): Promise<void> {
  if (process.env.HASTD_KEEPALIVED_LINKDOWN === '0') return;
  const r = await h.exec('sysctl', ['-q', '-w', `net.ipv4.conf.${PRIVATE_IF}.ignore_routes_with_linkdown=1`]);
  assert.equal(r.code, 0, r.stderr);
}

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** keepalived.conf for h, as contrib/keepalived/keepalived.conf with the test's paths and addresses. */
function keepalivedConf(hs: Hosts, h: Host, priority: number): string {
  const other = hs.hosts.find((x) => x !== h);
  if (other === undefined) throw new Error('two hosts needed');
  const path = join(h.dir, 'keepalived.conf');
  writeFileSync(
    path,
    `global_defs {
\trouter_id ${h.name}
\tscript_user root
}
vrrp_script hast_check {
\tscript "${join(KEEPALIVED, 'hast-check.sh')}"
\tinterval 2
\ttimeout 5
\tfall 2
\trise 1
}
vrrp_instance hast {
\tversion 3
\tstate BACKUP
\tnopreempt
\tinterface ${PUBLIC_IF}
\tvirtual_router_id 42
\tpriority ${priority}
\tadvert_int 0.2
\tunicast_src_ip ${h.publicAddr}
\tunicast_peer {
\t\t${other.publicAddr}
\t}
\tvirtual_ipaddress {
\t\t${VIP}/24 dev ${PUBLIC_IF}
\t}
\ttrack_script {
\t\thast_check
\t}
\tnotify "${join(KEEPALIVED, 'hast-notify.sh')}"
}
`,
  );
  return path;
}

/** Milliseconds since midnight (local time, as `date +%H:%M:%S.%N` prints) of a log line's stamp. */
function stampMs(line: string): number {
  const m = /^(\d\d):(\d\d):(\d\d)\.(\d{3})/.exec(line);
  if (m === null) return NaN;
  return ((Number(m[1]) * 60 + Number(m[2])) * 60 + Number(m[3])) * 1000 + Number(m[4]);
}

function msOfDay(t: number): number {
  const d = new Date(t);
  return ((d.getHours() * 60 + d.getMinutes()) * 60 + d.getSeconds()) * 1000 + d.getMilliseconds();
}

interface Parts {
  vrrp: number;
  promote: number;
  mount: number;
}

/** Where the failover time went, from the new master's notify log after t0 (the power-off). */
function parts(log: string, t0: number): Parts | null {
  const from = msOfDay(t0);
  const lines = log.split('\n').filter((l) => stampMs(l) >= from);
  const at = (re: RegExp): number => stampMs(lines.find((l) => re.test(l)) ?? '');
  const master = at(/: INSTANCE hast: MASTER/);
  const ready = at(/: primary, devices .* ready/);
  const mounted = at(/ mounted on /);
  if (![master, ready, mounted].every(Number.isFinite)) return null;
  return { vrrp: master - from, promote: ready - master, mount: mounted - ready };
}

test('keepalived failover: public partition makes no second primary; power off the master, the backup promotes and mounts; no preemption on return', {
  timeout: 180_000 + RUNS * 120_000,
}, async (t) => {
  if (
    !requires(t, {
      root: true,
      tools: [
        ...HAST_HOST_TOOLS,
        'mkfs.btrfs',
        'btrfs',
        'keepalived',
        'jq',
        'flock',
        'mountpoint',
        'timeout',
        'sysctl',
      ],
    })
  )
    return;
  let passed = false;
  let dump = (): void => undefined;
  t.after(() => {
    if (!passed) dump();
  });
  const hs = await createHosts(t);
  const s1 = hs.get('skunk1');
  const s2 = hs.get('skunk2');
  walkthroughConf(hs);
  const settings = join(hs.root, 'hast-keepalived.conf');
  const notifyLog = (h: Host): string => join(h.dir, 'notify.log');
  writeFileSync(
    settings,
    [
      `HAST_RESOURCES="${RES}:${MNT}:btrfs"`,
      `HASTCTL="${process.execPath} ${HASTCTL}"`,
      `HASTCTL_ARGS="-c ${hs.conf}"`,
      'DEVICE_WAIT=30',
      'KILL_USERS=yes',
      // Short, so that the partition below shows the refusal and the retry cycle within seconds.
      'PEER_WAIT=3',
      // keepalived sends the scripts' output nowhere: keep it per host for the test.
      `exec 2>>"${hs.root}/$(hostname)/notify.log"`,
      '',
    ].join('\n'),
  );
  dump = () => {
    for (const h of hs.hosts) {
      console.log(`--- ${h.name} hastd log ---\n${h.hastdLog().slice(-5000)}`);
      console.log(`--- ${h.name} keepalived ---\n${readLog(join(h.dir, 'keepalived.log')).slice(-4000)}`);
      console.log(`--- ${h.name} notify/check ---\n${readLog(notifyLog(h)).slice(-6000)}`);
    }
  };
  const startKeepalived = (h: Host): void => {
    const conf = keepalivedConf(hs, h, h === s1 ? 100 : 90);
    // h.spawn: killed by pid at power off and at cleanup. Pidfiles in the host's own /run.
    h.spawn(
      'keepalived',
      ['-n', '-l', '-D', '-G', '-P', '-f', conf, '-p', '/run/keepalived.pid', '-r', '/run/keepalived-vrrp.pid'],
      { env: { ...process.env, HAST_KEEPALIVED_CONF: settings }, logFile: join(h.dir, 'keepalived.log') },
    );
  };
  const primaries = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const h of hs.hosts) if (h.running && (await h.status(RES)).role === 'primary') out.push(h.name);
    return out;
  };

  // The file system is made once by hand (as in the walkthrough), then keepalived takes over.
  await bringUp(hs, s1, s2);
  await mkfs(s1, 'btrfs');
  await mount(s1, 'btrfs');
  const payload = makePayload(hs, 'vrrp');
  await copyIn(s1, payload);
  await umount(s1);
  for (const h of hs.hosts) await linkdownRoutes(h);
  // skunk1 first: with nopreempt the first election goes to whoever times out first, and 0.2 s
  // adverts make two simultaneous starts a coin toss.
  startKeepalived(s1);
  await waitFor(
    'skunk1 MASTER with the file system mounted and the VIP',
    async () => (await isMounted(s1)) && (await hasAddr(s1, VIP)),
    60_000,
    200,
  );
  startKeepalived(s2);
  await waitFor('skunk2 secondary', async () => (await s2.status(RES)).role === 'secondary', 30_000, 250);
  await waitHostInSync(s1);
  assert.equal(await isMounted(s2), false);
  assert.equal(await hasAddr(s2, VIP), false);

  // Public network cut, HAST link up: skunk2 becomes VRRP MASTER, hastd refuses its promotion (skunk1's
  // primary answers on the HAST link), the notify script gives up after PEER_WAIT and the check script
  // sends it to FAULT, and again. Never two primaries meanwhile.
  await hs.partitionPublic(s2);
  const deadline = Date.now() + 12_000;
  while (Date.now() < deadline) {
    assert.deepEqual(await primaries(), ['skunk1'], 'never two primaries during the public partition');
    assert.equal(await isMounted(s2), false);
    await sleep(250);
  }
  assert.match(readLog(notifyLog(s2)), /INSTANCE hast: MASTER/, 'skunk2 became VRRP MASTER in the partition');
  assert.match(readLog(notifyLog(s2)), /still primary after 3s, not promoting/);
  await hs.healPublic(s2);
  await waitFor('skunk2 gives the VIP back', async () => !(await hasAddr(s2, VIP)), 20_000, 200);
  assert.deepEqual(await primaries(), ['skunk1']);
  assert.equal(await isMounted(s1), true);
  assert.equal(await hasAddr(s1, VIP), true);
  await assertFiles(s1, payload);

  const times: number[] = [];
  const allParts: Parts[] = [];
  let master = s1;
  let backup = s2;
  for (let i = 0; i < RUNS; i++) {
    const extra = makePayload(hs, `run${i}`);
    await copyIn(master, extra);
    await waitHostInSync(master);
    // The backup must be healthy (check passing) and BACKUP before the power-off.
    await waitFor(
      `${backup.name} healthy`,
      async () => (await backup.status(RES)).worker?.status === 'complete',
      30_000,
    );
    await sleep(2500);
    const t0 = Date.now();
    await master.powerOff();
    await waitFor(`${backup.name} mounted ${MNT}`, () => isMounted(backup), 60_000, 50);
    const ms = Date.now() - t0;
    times.push(ms);
    const p = parts(readLog(notifyLog(backup)), t0);
    if (p !== null) allParts.push(p);
    console.log(
      `failover ${i + 1}/${RUNS}: power off ${master.name} -> ${MNT} mounted on ${backup.name}: ${(ms / 1000).toFixed(2)} s` +
        (p === null ? '' : ` (VRRP ${p.vrrp} ms, promotion ${p.promote} ms, mount ${p.mount} ms)`),
    );
    assert.equal((await backup.status(RES)).role, 'primary');
    await assertFiles(backup, payload);
    await assertFiles(backup, extra);
    await waitFor(`${backup.name} holds the VIP`, () => hasAddr(backup, VIP), 10_000, 100);

    // The old master returns: hastd in init, keepalived BACKUP/FAULT -> secondary, resynchronised, no
    // preemption.
    await master.boot();
    await linkdownRoutes(master);
    startKeepalived(master);
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
    await sleep(3000);
    assert.equal(await isMounted(master), false);
    assert.equal(await hasAddr(master, VIP), false, 'no preemption: the returning node stays BACKUP');
    assert.equal(await isMounted(backup), true, 'no preemption: the new master keeps the file system');
    assert.deepEqual(await primaries(), [backup.name]);
    [master, backup] = [backup, master];
  }
  const sorted = [...times].sort((a, b) => a - b);
  const sec = (ms: number | undefined): string => ((ms ?? NaN) / 1000).toFixed(2);
  const med = (xs: number[]): number | undefined => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(
    `keepalived failover times over ${RUNS} run(s): min ${sec(sorted[0])} s, median ${sec(med(times))} s, max ${sec(sorted.at(-1))} s; ` +
      `median parts: VRRP ${med(allParts.map((p) => p.vrrp))} ms, promotion ${med(allParts.map((p) => p.promote))} ms, ` +
      `mount ${med(allParts.map((p) => p.mount))} ms`,
  );
  passed = true;
});
