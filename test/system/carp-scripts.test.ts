// contrib/ucarp scripts under real ucarp in the netns hosts, with a stand-in hastctl (role/status kept
// in a file, /dev/hast/<res> a loop device): the CARP half of failover, tested without the daemon.
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createHosts, type Host, type HostProcess, PUBLIC_IF, REPO } from '../harness/netns.js';
import { requires } from '../harness/tools.js';
import { run } from '../harness/process.js';
import { waitFor } from '../harness/wait.js';
import { hasAddr, isMounted } from './fs-helpers.js';

const VIP = '192.0.2.100';
const MNT = '/mnt/failover';
const UCARP = join(REPO, 'contrib', 'ucarp');

const FAKE_HASTCTL = `#!/bin/sh
# Stand-in for hastctl: "role R res" and "status res" only; state per host in /var/run/fakehast.
sub=$1; shift
[ "$1" = -c ] && shift 2
st=/var/run/fakehast
mkdir -p "$st"
case "$sub" in
role)
	echo "$(hostname) $1" >> "$FAKE_LOG"
	echo "$1" > "$st/$2.role"
	if [ "$1" = primary ]; then mkdir -p /dev/hast; ln -sf "$(cat "$st/disk")" "/dev/hast/$2"; else rm -f "/dev/hast/$2"; fi
	;;
status)
	printf '%s:\\n  role: %s\\n  provname: %s\\n' "$1" "$(cat "$st/$1.role" 2>/dev/null || echo init)" "$1"
	;;
*) exit 64 ;;
esac
`;

function mounted(h: Host): Promise<boolean> {
  return isMounted(h, MNT);
}

function hasVip(h: Host): Promise<boolean> {
  return hasAddr(h, VIP);
}

async function fakeRole(h: Host): Promise<string> {
  return (await h.sh('cat /var/run/fakehast/mirror.role 2>/dev/null || echo init')).stdout.trim();
}

test('contrib/ucarp scripts under ucarp: master mounts, backup demotes, failover on power off, idempotent, split-brain refusal', {
  timeout: 120_000,
}, async (t) => {
  if (
    !requires(t, {
      root: true,
      tools: ['ip', 'nsenter', 'unshare', 'ucarp', 'losetup', 'mkfs.ext4', 'flock', 'mountpoint'],
    })
  )
    return;
  const hs = await createHosts(t);
  const s1 = hs.get('skunk1');
  const s2 = hs.get('skunk2');
  // One shared ext4 image; each host reaches it through its own loop device ("shared storage").
  const img = join(hs.root, 'shared.img');
  await run('truncate', ['-s', '64M', img]);
  assert.equal((await run('mkfs.ext4', ['-q', '-F', img])).code, 0);
  const loops: string[] = [];
  t.after(async () => {
    for (const l of loops) await run('losetup', ['-d', l]);
  });
  const attachDisk = async (h: Host): Promise<void> => {
    const r = await run('losetup', ['-f', '--show', img]);
    assert.equal(r.code, 0, r.stderr);
    const dev = r.stdout.trim();
    loops.push(dev);
    assert.equal((await h.sh(`mkdir -p /var/run/fakehast && echo ${dev} > /var/run/fakehast/disk`)).code, 0);
  };
  const fake = join(hs.root, 'fake-hastctl');
  writeFileSync(fake, FAKE_HASTCTL);
  chmodSync(fake, 0o755);
  const rolesLog = join(hs.root, 'roles.log');
  const carpConf = join(hs.root, 'hast-carp.conf');
  writeFileSync(
    carpConf,
    `HAST_RESOURCES="mirror:${MNT}:ext4"\nHASTCTL="${fake}"\nHASTCTL_ARGS="-c /nonexistent"\nDEVICE_WAIT=5\n`,
  );
  const env = { ...process.env, HAST_CARP_CONF: carpConf, FAKE_LOG: rolesLog };
  const ucarps = new Map<Host, HostProcess>();
  let passed = false;
  t.after(() => {
    if (!passed) for (const [h, p] of ucarps) console.log(`--- ${h.name} ucarp ---\n${p.output().slice(-4000)}`);
  });
  const startUcarp = (h: Host, skew: number): void => {
    ucarps.set(
      h,
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
        { env },
      ),
    );
  };
  // By hand the scripts run in the foreground (under ucarp they detach; see hast-carp-lib.sh).
  const script = (h: Host, name: string): Promise<{ code: number; stderr: string }> =>
    h.exec(join(UCARP, name), [PUBLIC_IF, VIP], { env: { ...env, HAST_CARP_FOREGROUND: 'yes' }, timeoutMs: 30_000 });

  await attachDisk(s1);
  await attachDisk(s2);
  startUcarp(s1, 0);
  startUcarp(s2, 100);
  await waitFor('skunk1 MASTER: mounted, VIP', async () => (await mounted(s1)) && (await hasVip(s1)), 30_000, 200);
  assert.equal(await fakeRole(s1), 'primary');
  assert.equal(await fakeRole(s2), 'secondary', 'the BACKUP ran vip-down.sh at start: init -> secondary');
  assert.equal(await mounted(s2), false);
  assert.equal(await hasVip(s2), false);

  // Idempotent: running either script again changes nothing.
  assert.equal((await script(s1, 'vip-up.sh')).code, 0);
  assert.equal((await s1.sh(`grep -c ' ${MNT} ' /proc/self/mounts`)).stdout.trim(), '1');
  assert.equal((await s1.exec('ip', ['-o', 'addr', 'show', 'dev', PUBLIC_IF])).stdout.split(` ${VIP}/`).length, 2);
  assert.equal((await script(s2, 'vip-down.sh')).code, 0);
  assert.equal((await script(s2, 'vip-down.sh')).code, 0);
  assert.equal(await fakeRole(s2), 'secondary');

  assert.equal((await s1.sh(`echo precious > ${MNT}/file && sync`)).code, 0);
  const t0 = Date.now();
  await s1.powerOff();
  await waitFor('skunk2 mounted', () => mounted(s2), 30_000, 50);
  console.log(`CARP-only failover (stand-in hastctl): ${((Date.now() - t0) / 1000).toFixed(2)} s`);
  assert.equal(await fakeRole(s2), 'primary');
  assert.equal((await s2.sh(`cat ${MNT}/file`)).stdout, 'precious\n');
  await waitFor('skunk2 holds the VIP', () => hasVip(s2), 10_000, 100);

  // skunk1 returns: BACKUP (no -P), secondary, nothing mounted.
  await s1.boot({ hastd: false });
  await attachDisk(s1);
  startUcarp(s1, 0);
  await waitFor('skunk1 secondary', async () => (await fakeRole(s1)) === 'secondary', 15_000, 200);
  await new Promise((r) => setTimeout(r, 4000));
  assert.equal(await mounted(s1), false, 'no preemption');
  assert.equal(await hasVip(s1), false);
  assert.equal(await mounted(s2), true);

  // A split-brain marker (left by hast-hook.sh) makes vip-up.sh refuse: no promotion, no mount, no VIP.
  const hook = await s1.exec(join(UCARP, 'hast-hook.sh'), ['split-brain', 'mirror'], { env });
  assert.equal(hook.code, 0);
  const up = await script(s1, 'vip-up.sh');
  assert.notEqual(up.code, 0);
  assert.match(up.stderr, /split-brain/);
  assert.equal(await fakeRole(s1), 'secondary');
  assert.equal(await mounted(s1), false);
  assert.equal(await hasVip(s1), false);
  // connect clears it.
  assert.equal((await s1.exec(join(UCARP, 'hast-hook.sh'), ['connect', 'mirror'], { env })).code, 0);
  assert.equal((await s1.sh('test -e /var/run/hastd/mirror.split-brain')).code, 1);
  passed = true;
});
