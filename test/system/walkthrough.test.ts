// The seed's walkthrough (shared/seed/000_*.txt) on two hosts in namespaces, a file system on
// /dev/hast/mirror: create, roles, status, reboots, failover, power loss, split-brain (HAST-SPEC §5, §7).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createHosts } from '../harness/netns.js';
import { requires } from '../harness/tools.js';
import {
  assertFiles,
  bringUp,
  copyIn,
  dataHash,
  DEV,
  layout,
  makePayload,
  MNT,
  mkfs,
  mount,
  RES,
  role,
  umount,
  waitDevice,
  waitHostInSync,
  walkthroughConf,
  worker,
} from './fs-helpers.js';
import { sleep, waitFor } from '../harness/wait.js';

const TOOLS = ['ip', 'nsenter', 'unshare', 'nbdfuse', 'fusermount3', 'losetup', 'mount', 'sha256sum'] as const;

/** Steps share one cluster; once a step fails the later ones are skipped, not failed again. */
function stepper(t: TestContext, onFail: () => void): (name: string, fn: () => Promise<void>) => Promise<void> {
  let broken = '';
  return async (name, fn) => {
    await t.test(name, async (st) => {
      if (broken !== '') {
        st.skip(`an earlier step failed: ${broken}`);
        return;
      }
      try {
        await fn();
      } catch (err) {
        broken = name;
        onFail();
        throw err;
      }
    });
  };
}

test('the seed walkthrough with btrfs on /dev/hast/mirror', { timeout: 420_000 }, async (t) => {
  if (!requires(t, { root: true, tools: [...TOOLS, 'mkfs.btrfs', 'btrfs'] })) return;
  const hs = await createHosts(t);
  const s1 = hs.get('skunk1');
  const s2 = hs.get('skunk2');
  const hooksLog = join(hs.root, 'hooks.log');
  const hooks = (): string => {
    try {
      return readFileSync(hooksLog, 'utf8');
    } catch {
      return '';
    }
  };
  // On failure the daemons' own words are the best diagnosis.
  const step = stepper(t, () => {
    for (const h of hs.hosts) console.log(`--- ${h.name} hastd log ---\n${h.hastdLog().slice(-6000)}`);
    console.log(`--- hooks ---\n${hooks()}`);
  });
  const first = makePayload(hs, 'first');

  await step('1. identical hast.conf, hastctl create, hastd, roles; status complete with the seed fields', async () => {
    const text = walkthroughConf(hs);
    assert.match(text, /on skunk1 \{[^}]*remote 198\.51\.100\.2[^}]*\}/);
    await bringUp(hs, s1, s2);
    const r = await s1.hastctl('status', RES);
    assert.equal(r.code, 0);
    for (const re of [
      /^ {2}role: primary$/m,
      /^ {2}provname: mirror$/m,
      new RegExp(`^ {2}localpath: ${join(s1.dir, 'da0s2.img')}$`, 'm'),
      /^ {2}extentsize: 2097152 \(2\.0MB\)$/m,
      /^ {2}keepdirty: 64$/m,
      /^ {2}replication: memsync$/m,
      /^ {2}status: complete$/m,
      /^ {2}dirty: 0 \(0B\)$/m,
    ]) {
      assert.match(r.stdout, re);
    }
    const r2 = await s2.hastctl('status', RES);
    assert.match(r2.stdout, /^ {2}role: secondary$/m);
    // The device exists on the primary only.
    assert.equal((await s2.sh(`test -e ${DEV}`)).code, 1);
  });

  await step('2. on the primary only: mkfs.btrfs /dev/hast/mirror, mount, copy files, df shows it', async () => {
    await mkfs(s1, 'btrfs');
    await mount(s1, 'btrfs');
    await copyIn(s1, first);
    await assertFiles(s1, first);
    const df = await s1.exec('df', ['-h', MNT]);
    assert.equal(df.code, 0);
    const loop = (await s1.exec('readlink', ['-f', DEV])).stdout.trim();
    assert.match(df.stdout, new RegExp(`^${loop}\\s.*${MNT}$`, 'm'), df.stdout);
  });

  await step(
    '3. reboot of the primary: /dev/hast/mirror absent, role init; role primary brings it back; files intact',
    async () => {
      await umount(s1);
      await s1.stopHastd();
      await s1.powerOff();
      await s1.boot();
      assert.equal((await s1.status(RES)).role, 'init');
      assert.equal((await s1.sh(`ls /dev/hast`)).stdout.trim(), '', 'nothing in /dev/hast after the reboot');
      await role(s1, 'primary');
      await waitDevice(s1);
      await mount(s1, 'btrfs');
      await assertFiles(s1, first);
      const df = await s1.exec('df', [MNT]);
      assert.match(df.stdout, new RegExp(`${MNT}$`, 'm'));
      await waitHostInSync(s1);
    },
  );

  await step(
    '4. manual failover: umount, role secondary on skunk1, role primary on skunk2, mount there: files present',
    async () => {
      await umount(s1);
      await role(s1, 'secondary');
      assert.equal((await s1.sh(`test -e ${DEV}`)).code, 1, 'device gone from the new secondary');
      await role(s2, 'primary');
      await waitDevice(s2);
      await mount(s2, 'btrfs');
      await assertFiles(s2, first);
      const df = await s2.exec('df', ['-h', MNT]);
      assert.match(df.stdout, new RegExp(`${MNT}$`, 'm'));
      await waitHostInSync(s2);
    },
  );

  const during = makePayload(hs, 'during');
  await step(
    '5. secondary reboot while the primary writes: degraded, then role secondary resyncs dirty extents only',
    async () => {
      await s1.stopHastd();
      await s1.powerOff();
      await copyIn(s2, during);
      const w = await waitFor(
        'skunk2 degraded',
        async () => {
          const x = await worker(s2);
          return x?.status === 'degraded' ? x : null;
        },
        20_000,
      );
      assert.ok(w.dirty > 0, `dirty extents while degraded (dirty ${w.dirty})`);
      await s1.boot();
      assert.equal((await s1.status(RES)).role, 'init');
      // Nothing happens until the operator says so (the seed: "I have to log in and run ...").
      await sleep(1500);
      assert.equal((await worker(s2))?.status, 'degraded');
      await role(s1, 'secondary');
      const done = await waitHostInSync(s2);
      const ls = done.lastSync ?? null;
      const { dataSize } = await layout(s2);
      assert.ok(
        ls !== null && ls.bytes > 0 && ls.bytes < dataSize,
        `only dirty extents moved: ${JSON.stringify(ls)} of ${dataSize}`,
      );
      const text = await s2.hastctl('status', RES);
      assert.match(text.stdout, /^ {2}status: complete$/m);
      assert.match(text.stdout, /^ {2}dirty: 0 \(0B\)$/m);
    },
  );

  const last = makePayload(hs, 'last');
  await step(
    '6. power loss of the primary: promote skunk1, mount (no fsck), files intact; old primary resyncs as secondary',
    async () => {
      await copyIn(s2, last);
      await waitHostInSync(s2);
      await s2.powerOff();
      await role(s1, 'primary');
      await waitDevice(s1);
      await mount(s1, 'btrfs');
      for (const p of [first, during, last]) await assertFiles(s1, p);
      await s2.boot();
      assert.equal((await s2.status(RES)).role, 'init');
      await role(s2, 'secondary');
      await waitHostInSync(s1);
    },
  );

  const onS1 = makePayload(hs, 'apart-skunk1');
  const onS2 = makePayload(hs, 'apart-skunk2');
  await step(
    '7. split-brain: both primary and written while partitioned; detected on reconnect, hook fired; recovered by create; copies identical',
    async () => {
      await hs.partition();
      await copyIn(s1, onS1);
      await waitFor('skunk1 degraded', async () => (await worker(s1))?.status === 'degraded', 30_000);
      // skunk2 is promoted by mistake while cut off, mounts and writes too. Both hosts share one
      // kernel here, so skunk2's copy of the file system (same fsid, mounted on skunk1) mounts
      // under a temporary fsid; on real hosts each has its own kernel.
      await role(s2, 'primary');
      await waitDevice(s2);
      await mount(s2, 'btrfs');
      await copyIn(s2, onS2);
      await umount(s2);
      await hs.heal();
      // skunk2 steps back: skunk1's next connection attempt meets a secondary whose data diverged.
      await role(s2, 'secondary');
      await waitFor(
        'split-brain hook fired on both hosts',
        () => {
          const h = hooks();
          return h.includes('skunk1 split-brain mirror\n') && h.includes('skunk2 split-brain mirror\n');
        },
        60_000,
        250,
      );
      assert.match(s1.hastdLog(), /Split-brain detected/);
      assert.match(s2.hastdLog(), /Split-brain detected/);
      // hast-hook.sh (run after the line in hooks.log) leaves its marker: vip-up.sh would refuse to mount.
      for (const h of [s1, s2]) {
        await waitFor(
          `${h.name}: split-brain marker`,
          async () => (await h.sh(`test -e /var/run/hastd/${RES}.split-brain`)).code === 0,
          10_000,
        );
      }
      assert.equal((await worker(s1))?.status, 'degraded');

      // Recovery as documented, on the node whose data is discarded (skunk2).
      await role(s2, 'init');
      const c = await s2.hastctl('create', RES);
      assert.equal(c.code, 0, c.stderr);
      await role(s2, 'secondary');
      const done = await waitHostInSync(s1, 180_000);
      const { dataSize } = await layout(s1);
      assert.equal(done.lastSync?.bytes, dataSize, 'a full synchronisation');
      await waitFor(
        'connect removed the marker',
        async () => (await s1.sh(`test -e /var/run/hastd/${RES}.split-brain`)).code === 1,
        10_000,
      );

      // Identical copies: compare the data areas with the file system unmounted (nothing in flight).
      await umount(s1);
      await waitHostInSync(s1);
      assert.equal(await dataHash(s2), await dataHash(s1), 'the data areas are identical');
      // And the surviving primary mounts it (stale btrfs devices forgotten first): its files only.
      await mount(s1, 'btrfs');
      for (const p of [first, during, last, onS1]) await assertFiles(s1, p);
      const gone = await s1.sh(`test -e ${MNT}/notes-apart-skunk2.txt`);
      assert.equal(gone.code, 1, "skunk2's writes while apart were discarded");
    },
  );
});

for (const fs of ['ext4', 'xfs'] as const) {
  test(`core steps with ${fs}: create, mkfs, mount, write, failover, mount on the other node, files intact`, {
    timeout: 120_000,
  }, async (t) => {
    if (!requires(t, { root: true, tools: [...TOOLS, `mkfs.${fs}`] })) return;
    const hs = await createHosts(t);
    const s1 = hs.get('skunk1');
    const s2 = hs.get('skunk2');
    walkthroughConf(hs);
    t.after(() => {
      if (!passed) for (const h of hs.hosts) console.log(`--- ${h.name} hastd log ---\n${h.hastdLog().slice(-4000)}`);
    });
    let passed = false;
    await bringUp(hs, s1, s2);
    await mkfs(s1, fs);
    await mount(s1, fs);
    const p = makePayload(hs, fs);
    await copyIn(s1, p);
    await umount(s1);
    await role(s1, 'secondary');
    await role(s2, 'primary');
    await waitDevice(s2);
    await mount(s2, fs);
    await assertFiles(s2, p);
    // And a power loss of the new primary: the journal replays on mount, files still there.
    const q = makePayload(hs, `${fs}-2`);
    await copyIn(s2, q);
    await waitHostInSync(s2);
    await s2.powerOff();
    await role(s1, 'primary');
    await waitDevice(s1);
    await mount(s1, fs);
    await assertFiles(s1, p);
    await assertFiles(s1, q);
    passed = true;
  });
}
