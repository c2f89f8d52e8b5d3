// A real Pacemaker + Corosync cluster in the netns hosts: corosync, corosync-qdevice and pacemaker on
// skunk1 and skunk2, corosync-qnetd on a third host (the quorum witness), a fence agent of the test's
// own that powers a host off through the harness, the OCF agent contrib/pacemaker/hast as a
// promotable clone and a Filesystem resource colocated with the promoted instance. Power off the
// promoted node: it is fenced, the other promotes and mounts, files intact. Cut skunk1 off the public
// network (from skunk2 and the witness): it loses quorum and keeps no primary.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createHosts, type Host, type Hosts, REPO, WITH_WITNESS } from '../harness/netns.js';
import { HASTCTL } from '../harness/process.js';
import { requires } from '../harness/tools.js';
import { sleep, waitFor } from '../harness/wait.js';
import {
  assertFiles,
  bringUp,
  HAST_HOST_TOOLS,
  copyIn,
  isMounted,
  makePayload,
  MNT,
  mkfs,
  RES,
  walkthroughConf,
} from './fs-helpers.js';

const AGENT = join(REPO, 'contrib', 'pacemaker', 'hast');
/** State directories each cluster node keeps on its own "disk" (bind-mounted in its mount namespace). */
const STATE = ['/etc/corosync', '/var/lib/corosync', '/var/lib/pacemaker', '/var/log/pacemaker'];

function corosyncConf(hs: Hosts): string {
  const nodes = hs.hosts
    .filter((h) => h.name !== 'witness')
    .map((h, i) => `\tnode {\n\t\tring0_addr: ${h.publicAddr}\n\t\tname: ${h.name}\n\t\tnodeid: ${i + 1}\n\t}`)
    .join('\n');
  return `totem {
\tversion: 2
\tcluster_name: skunks
\ttransport: knet
\tcrypto_cipher: none
\tcrypto_hash: none
\ttoken: 1000
}
nodelist {
${nodes}
}
quorum {
\tprovider: corosync_votequorum
\tdevice {
\t\tmodel: net
\t\tvotes: 1
\t\tnet {
\t\t\thost: ${hs.get('witness').publicAddr}
\t\t\talgorithm: ffsplit
\t\t\ttls: off
\t\t}
\t}
}
logging {
\tto_stderr: yes
\tto_syslog: no
\tto_logfile: no
}
`;
}

/** fence_dummy's name, our body: "off"/"reboot" asks the test to power the host off and waits. */
function fenceAgent(reqDir: string): string {
  return `#!/bin/sh
action=; plug=
if [ $# -gt 0 ]; then
	while [ $# -gt 0 ]; do case "$1" in -o) action=$2; shift ;; -n|-p|--plug) plug=$2; shift ;; esac; shift; done
else
	while IFS='=' read -r k v; do case "$k" in action|option) action=$v ;; port|plug|nodename) [ -n "$plug" ] || plug=$v ;; esac; done
fi
case "$action" in
metadata)
	cat <<'END'
<?xml version="1.0" ?>
<resource-agent name="fence_dummy" shortdesc="Test fence agent: powers a namespace host off">
<longdesc>Asks the test harness to power a host off.</longdesc>
<parameters>
<parameter name="action" unique="0" required="1"><getopt mixed="-o"/><content type="string" default="reboot"/><shortdesc lang="en">Action</shortdesc></parameter>
<parameter name="plug" unique="0" required="0"><getopt mixed="-n"/><content type="string"/><shortdesc lang="en">Host</shortdesc></parameter>
<parameter name="port" unique="0" required="0" obsoletes="plug"><getopt mixed="-n"/><content type="string"/><shortdesc lang="en">Host</shortdesc></parameter>
</parameters>
<actions>
<action name="on"/><action name="off"/><action name="reboot"/><action name="status"/><action name="list"/><action name="monitor"/><action name="metadata"/>
</actions>
</resource-agent>
END
	;;
monitor | status | on) exit 0 ;;
list) printf 'skunk1\\nskunk2\\n' ;;
off | reboot)
	echo "$(hostname)" >"${reqDir}/$plug.req"
	i=0
	while [ ! -e "${reqDir}/$plug.done" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
	[ -e "${reqDir}/$plug.done" ] && rm -f "${reqDir}/$plug.done" && exit 0
	exit 1
	;;
*) exit 1 ;;
esac
`;
}

function cibXml(hs: Hosts): string {
  const hastctl = `${process.execPath} ${HASTCTL}`;
  return `<resources>
<primitive id="fence" class="stonith" type="fence_dummy">
 <instance_attributes id="fence-ia">
  <nvpair id="fence-hl" name="pcmk_host_list" value="skunk1 skunk2"/>
  <nvpair id="fence-hc" name="pcmk_host_check" value="static-list"/>
 </instance_attributes>
 <operations><op id="fence-mon" name="monitor" interval="60s"/></operations>
</primitive>
<clone id="hast-clone">
 <meta_attributes id="hast-clone-meta">
  <nvpair id="hc-p" name="promotable" value="true"/>
  <nvpair id="hc-pm" name="promoted-max" value="1"/>
  <nvpair id="hc-pnm" name="promoted-node-max" value="1"/>
  <nvpair id="hc-cm" name="clone-max" value="2"/>
  <nvpair id="hc-cnm" name="clone-node-max" value="1"/>
  <nvpair id="hc-n" name="notify" value="true"/>
 </meta_attributes>
 <primitive id="hast" class="ocf" provider="hastd" type="hast">
  <instance_attributes id="hast-ia">
   <nvpair id="hast-res" name="resource" value="${RES}"/>
   <nvpair id="hast-conf" name="config" value="${hs.conf}"/>
   <nvpair id="hast-ctl" name="hastctl" value="${hastctl}"/>
   <nvpair id="hast-pw" name="peer_wait" value="5"/>
  </instance_attributes>
  <operations>
   <op id="hast-mon-p" name="monitor" interval="3s" role="Promoted" timeout="30s"/>
   <op id="hast-mon-u" name="monitor" interval="4s" role="Unpromoted" timeout="30s"/>
   <op id="hast-promote" name="promote" interval="0" timeout="60s"/>
  </operations>
 </primitive>
</clone>
<primitive id="fs" class="ocf" provider="heartbeat" type="Filesystem">
 <instance_attributes id="fs-ia">
  <nvpair id="fs-dev" name="device" value="/dev/hast/${RES}"/>
  <nvpair id="fs-dir" name="directory" value="${MNT}"/>
  <nvpair id="fs-type" name="fstype" value="ext4"/>
 </instance_attributes>
 <operations><op id="fs-mon" name="monitor" interval="10s" timeout="40s"/></operations>
</primitive>
</resources>`;
}

test('Pacemaker + Corosync with qdevice: power off the promoted node, it is fenced, the other promotes and mounts; a node cut off loses quorum', {
  timeout: 420_000,
}, async (t) => {
  if (
    !requires(t, {
      root: true,
      tools: [
        ...HAST_HOST_TOOLS,
        'mkfs.ext4',
        'corosync',
        'corosync-qdevice',
        'corosync-qnetd',
        'pacemakerd',
        'cibadmin',
        'crm_mon',
        'crm_attribute',
        'sysctl',
      ],
    })
  )
    return;
  const hs = await createHosts(t, WITH_WITNESS);
  const s1 = hs.get('skunk1');
  const s2 = hs.get('skunk2');
  const w = hs.get('witness');
  walkthroughConf(hs);
  const reqDir = join(hs.root, 'fence-requests');
  mkdirSync(reqDir);
  const fence = join(hs.root, 'fence_dummy');
  writeFileSync(fence, fenceAgent(reqDir));
  chmodSync(fence, 0o755);
  const ccConf = corosyncConf(hs);
  let passed = false;
  t.after(() => {
    if (passed) return;
    for (const h of hs.hosts)
      for (const f of ['corosync', 'qdevice', 'pacemaker', 'qnetd'])
        if (existsSync(join(h.dir, `${f}.log`)))
          console.log(`--- ${h.name} ${f} ---\n${readFileSync(join(h.dir, `${f}.log`), 'utf8').slice(-4000)}`);
  });

  /** Private state dirs, the OCF directory with our agent, our fence agent: in h's mount namespace. */
  const prepare = async (h: Host): Promise<void> => {
    const ocf = join(h.dir, 'ocf');
    const lines = ['set -e', 'mount -t tmpfs tmpfs /dev/shm'];
    for (const d of STATE) {
      const own = join(h.dir, 'state', d.replaceAll('/', '_'));
      lines.push(`mkdir -p ${own}`, `mount --bind ${own} ${d}`);
    }
    lines.push(
      `printf '%s' '${ccConf.replaceAll("'", "'\\''")}' > /etc/corosync/corosync.conf`,
      'mkdir -p /var/lib/pacemaker/cib /var/lib/pacemaker/pengine /var/lib/pacemaker/blackbox /var/lib/pacemaker/cores',
      'chown -R hacluster:haclient /var/lib/pacemaker /var/log/pacemaker',
      'chmod 750 /var/lib/pacemaker/cib /var/lib/pacemaker/pengine',
      `mkdir -p ${ocf}/heartbeat ${ocf}/pacemaker ${ocf}/hastd`,
      `mount --bind /usr/lib/ocf/resource.d/heartbeat ${ocf}/heartbeat`,
      `mount --bind /usr/lib/ocf/resource.d/pacemaker ${ocf}/pacemaker`,
      `cp ${AGENT} ${ocf}/hastd/hast`,
      `mount --rbind ${ocf} /usr/lib/ocf/resource.d`,
      `mount --bind ${fence} /usr/sbin/fence_dummy`,
      'mkdir -p /run/corosync-qdevice /run/pacemaker',
    );
    // The agent finds hast-failover.sh through its library parameter default or ../common: give it
    // the tree's copy next to itself.
    lines.splice(
      lines.indexOf(`cp ${AGENT} ${ocf}/hastd/hast`) + 1,
      0,
      `cp ${join(REPO, 'contrib', 'common', 'hast-failover.sh')} ${ocf}/hastd/hast-failover.sh`,
    );
    const r = await h.sh(lines.join('\n'), { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `${h.name}: prepare: ${r.stderr}`);
  };
  const startCluster = async (h: Host): Promise<void> => {
    await prepare(h);
    h.spawn('corosync', ['-f'], { logFile: join(h.dir, 'corosync.log') });
    await waitFor(`${h.name} corosync`, async () => (await h.exec('corosync-cfgtool', ['-s'])).code === 0, 30_000, 250);
    h.spawn('corosync-qdevice', ['-f'], { logFile: join(h.dir, 'qdevice.log') });
    h.spawn('pacemakerd', [], {
      logFile: join(h.dir, 'pacemaker.log'),
      env: { ...process.env, PCMK_logfile: join(h.dir, 'pacemaker-detail.log') },
    });
  };
  const crm = (h: Host): Promise<string> =>
    h.exec('crm_mon', ['-1', '-r', '--output-as=text'], { timeoutMs: 20_000 }).then((r) => r.stdout);

  // The fence device: a request from a node's fenced powers the named host off (if still on).
  let fenced: string[] = [];
  let stopFencer = false;
  /** Hosts whose fencing waits (the test watches what they do meanwhile). */
  const hold = new Set<string>();
  const fencer = (async () => {
    while (!stopFencer) {
      for (const f of readdirSync(reqDir).filter((x) => x.endsWith('.req'))) {
        const name = f.slice(0, -4);
        if (hold.has(name)) continue;
        const victim = hs.get(name);
        if (victim.running) await victim.powerOff();
        fenced.push(name);
        rmSync(join(reqDir, f));
        writeFileSync(join(reqDir, `${name}.done`), '');
      }
      await sleep(200);
    }
  })();
  t.after(async () => {
    stopFencer = true;
    await fencer;
  });

  // HAST set up by hand (the walkthrough), then stopped: Pacemaker takes over from init.
  for (const h of [s1, s2]) {
    const r = await h.exec('sysctl', ['-q', '-w', 'net.ipv4.conf.priv0.ignore_routes_with_linkdown=1']);
    assert.equal(r.code, 0, r.stderr);
  }
  await bringUp(hs, s1, s2);
  await mkfs(s1, 'ext4');
  const payload = makePayload(hs, 'pcmk');
  assert.equal((await s1.sh(`mkdir -p ${MNT} && mount /dev/hast/${RES} ${MNT}`)).code, 0);
  await copyIn(s1, payload);
  assert.equal((await s1.exec('umount', [MNT])).code, 0);
  for (const h of [s1, s2]) assert.equal((await h.hastctl('role', 'init', RES)).code, 0);

  assert.equal((await w.sh('mkdir -p /run/corosync-qnetd')).code, 0);
  w.spawn('corosync-qnetd', ['-f', '-s', 'off'], { logFile: join(w.dir, 'qnetd.log') });
  const t0 = Date.now();
  await startCluster(s1);
  await startCluster(s2);
  await waitFor(
    'a DC, both nodes online',
    async () => /Online: \[ skunk1 skunk2 \]/.test(await crm(s1)),
    120_000,
    1000,
  );
  const cib = async (args: string[]): Promise<void> => {
    const r = await s1.exec('cibadmin', args, { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `cibadmin ${args.join(' ')}: ${r.stderr}`);
  };
  for (const [n, v] of [
    ['stonith-enabled', 'true'],
    ['no-quorum-policy', 'stop'],
    ['stonith-timeout', '60s'],
  ] as const) {
    const r = await s1.exec('crm_attribute', ['-t', 'crm_config', '-n', n, '-v', v]);
    assert.equal(r.code, 0, r.stderr);
  }
  await cib(['--replace', '-o', 'resources', '--xml-text', cibXml(hs)]);
  await cib([
    '--create',
    '-o',
    'constraints',
    '--xml-text',
    '<rsc_colocation id="fs-with-hast" rsc="fs" with-rsc="hast-clone" with-rsc-role="Promoted" score="INFINITY"/>',
  ]);
  await cib([
    '--create',
    '-o',
    'constraints',
    '--xml-text',
    '<rsc_order id="hast-before-fs" first="hast-clone" first-action="promote" then="fs" then-action="start"/>',
  ]);
  await waitFor(
    'the file system mounted on a promoted node',
    async () => (await isMounted(s1)) || (await isMounted(s2)),
    120_000,
    500,
  );
  console.log(`cluster up, promoted and mounted in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const [promoted, other] = (await isMounted(s1)) ? [s1, s2] : [s2, s1];
  assert.equal((await promoted.status(RES)).role, 'primary');
  assert.equal((await other.status(RES)).role, 'secondary');
  await assertFiles(promoted, payload);
  const extra = makePayload(hs, 'pcmk2');
  await copyIn(promoted, extra);

  // Power off the promoted node: fenced (our agent confirms), the other promotes and mounts.
  fenced = [];
  const t1 = Date.now();
  await promoted.powerOff();
  await waitFor(`${other.name} mounted`, () => isMounted(other), 120_000, 250);
  console.log(
    `power off ${promoted.name} -> fenced, ${other.name} promoted and mounted: ${((Date.now() - t1) / 1000).toFixed(2)} s`,
  );
  assert.ok(fenced.includes(promoted.name), `${promoted.name} was fenced (requests: ${fenced.join(',')})`);
  assert.equal((await other.status(RES)).role, 'primary');
  await assertFiles(other, payload);
  await assertFiles(other, extra);

  // The fenced node returns as secondary (no preemption: the service stays). Then cut the node that
  // holds the service off the public network (from its peer and the witness): it loses quorum, the
  // quorate side fences it and promotes; never two primaries meanwhile.
  await promoted.boot();
  assert.equal(
    (await promoted.exec('sysctl', ['-q', '-w', 'net.ipv4.conf.priv0.ignore_routes_with_linkdown=1'])).code,
    0,
  );
  await startCluster(promoted);
  await waitFor(
    `${promoted.name} back as secondary`,
    async () => (await promoted.status(RES)).role === 'secondary',
    120_000,
    1000,
  );
  assert.equal(await isMounted(other), true, 'no preemption');
  const [cut, quorate] = [other, promoted];
  fenced = [];
  // The fence of the cut node is held until it has shown what it does without quorum: stop its
  // resources by itself (no-quorum-policy=stop): unmount, demote, stop.
  hold.add(cut.name);
  const t2 = Date.now();
  await hs.partitionPublic(cut);
  const roleOf = (h: Host): Promise<string> =>
    h.status(RES).then(
      (st) => st.role ?? 'init',
      () => 'down',
    );
  const neverTwo = async (): Promise<void> => {
    const roles: string[] = [];
    // hastd answers, or the host is being fenced (its hastd already killed): no primary there.
    for (const h of [cut, quorate]) if (h.running) roles.push(await roleOf(h));
    assert.ok(roles.filter((r) => r === 'primary').length <= 1, `never two primaries (${roles.join(',')})`);
  };
  await waitFor(
    `${cut.name} without quorum`,
    async () => {
      await neverTwo();
      const q = await cut.exec('corosync-quorumtool', ['-s'], { timeoutMs: 5_000 });
      return /Quorate:\s+No/.test(q.stdout);
    },
    60_000,
    250,
  );
  const tq = Date.now();
  await waitFor(
    `${cut.name} stops its primary without quorum`,
    async () => {
      await neverTwo();
      return (await roleOf(cut)) !== 'primary' && !(await isMounted(cut));
    },
    90_000,
    250,
  );
  const ts = Date.now();
  assert.notEqual((await quorate.status(RES)).role, 'primary', 'no promotion before the fence is confirmed');
  hold.delete(cut.name);
  await waitFor(
    `${quorate.name} promoted and mounted`,
    async () => {
      await neverTwo();
      return isMounted(quorate);
    },
    120_000,
    250,
  );
  console.log(
    `cut ${cut.name} off the public network: quorum lost after ${((tq - t2) / 1000).toFixed(2)} s, its primary stopped ` +
      `after ${((ts - t2) / 1000).toFixed(2)} s (fence held meanwhile); fence released -> ${quorate.name} promoted and ` +
      `mounted after ${((Date.now() - ts) / 1000).toFixed(2)} s; fenced: ${fenced.join(',')}`,
  );
  assert.ok(fenced.includes(cut.name), `${cut.name} was fenced`);
  assert.equal((await quorate.status(RES)).role, 'primary');
  await assertFiles(quorate, payload);
  await assertFiles(quorate, extra);
  passed = true;
});
