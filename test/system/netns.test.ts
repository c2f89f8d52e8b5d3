// The system-test hosts themselves (test/harness/netns.ts): names, links, private mounts, power off/boot.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createHosts, type Host } from '../harness/netns.js';
import { requires } from '../harness/tools.js';
import { sleep } from '../harness/wait.js';

const TOOLS = ['ip', 'nsenter', 'unshare'] as const;

/** True when `from` can open a TCP connection to addr:7000 within a second (ping is not installed). */
async function reach(from: Host, addr: string): Promise<boolean> {
  const js = `const s=require('net').connect(7000,'${addr}',()=>{process.exit(0)});s.on('error',()=>process.exit(1));setTimeout(()=>process.exit(2),1000)`;
  return (await from.exec(process.execPath, ['-e', js], { timeoutMs: 5000 })).code === 0;
}

const LISTEN = "require('net').createServer((s)=>s.end()).listen(7000)";

test('skunk1 and skunk2: own host names, both links, private /dev/hast and /var/run, power off and boot', async (t) => {
  if (!requires(t, { root: true, tools: TOOLS })) return;
  const hs = await createHosts(t);
  const s1 = hs.get('skunk1');
  const s2 = hs.get('skunk2');
  assert.equal((await s1.exec('hostname')).stdout.trim(), 'skunk1');
  assert.equal((await s2.exec('hostname')).stdout.trim(), 'skunk2');
  // Private crossover and public link both carry traffic.
  s1.spawn(process.execPath, ['-e', LISTEN]);
  s2.spawn(process.execPath, ['-e', LISTEN]);
  await sleep(300);
  assert.ok(await reach(s1, '198.51.100.2'));
  assert.ok(await reach(s2, '192.0.2.11'));
  // /dev/hast and /var/run are private per host.
  assert.equal((await s1.sh('touch /dev/hast/x /var/run/hastd.pid')).code, 0);
  assert.equal((await s2.sh('test -e /dev/hast/x || test -e /var/run/hastd.pid')).code, 1);
  // A partition cuts only the private link.
  await hs.partition();
  assert.ok(!(await reach(s1, '198.51.100.2')));
  assert.ok(await reach(s1, '192.0.2.12'));
  await hs.heal();
  // Power off kills everything in the host, including background processes.
  const bg = s1.spawn('sleep', ['1000']);
  await s1.powerOff();
  assert.equal(await bg.exited, null);
  assert.equal(s1.running, false);
  assert.equal(s1.hostPids().length, 0);
  assert.ok(!(await reach(s2, '198.51.100.1')));
  await s1.boot({ hastd: false });
  assert.equal((await s1.exec('hostname')).stdout.trim(), 'skunk1');
  // A boot starts from an empty /var/run and /dev/hast, as after a real reboot.
  assert.equal((await s1.sh('test -e /dev/hast/x || test -e /var/run/hastd.pid')).code, 1);
  s1.spawn(process.execPath, ['-e', LISTEN]);
  await sleep(300);
  assert.ok(await reach(s2, '198.51.100.1'));
});
