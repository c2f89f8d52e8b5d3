// Helpers shared by the system tests: the walkthrough's hast.conf, waiting for the device and for
// sync, and file checks through a mounted /dev/hast/<name> (HAST-SPEC §5.5, §7).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dataAreaHash, parseDump } from '../harness/data-area.js';
import { type Host, type Hosts, PUBLIC_IF, REPO, type StatusView } from '../harness/netns.js';
import { waitFor, waitInSync } from '../harness/wait.js';

export const RES = 'mirror';
export const DEV = `/dev/hast/${RES}`;
export const MNT = '/mnt/failover';
export const IMAGE_SIZE = 512 << 20; // mkfs.xfs needs more than 300 MB

/** What a namespace host running hastd with `device fuse` needs (for `requires`). */
export const HAST_HOST_TOOLS = ['ip', 'nsenter', 'unshare', 'nbdfuse', 'fusermount3', 'losetup'] as const;

/**
 * The seed's hast.conf, corrected: closed braces, `remote` lines on the private crossover link, and
 * our `device fuse` (no nbd module here). `timeout 5` (a FreeBSD keyword) keeps dead-peer detection
 * short. The hook logs `<hostname> <event...>` and then runs contrib/ucarp/hast-hook.sh.
 */
export function walkthroughConf(hs: Hosts, opts: { replication?: string } = {}): string {
  const s1 = hs.get('skunk1');
  const s2 = hs.get('skunk2');
  const hook = join(hs.root, 'hook.sh');
  writeFileSync(
    hook,
    `#!/bin/sh\necho "$(hostname) $*" >> ${join(hs.root, 'hooks.log')}\nexec ${join(REPO, 'contrib', 'ucarp', 'hast-hook.sh')} "$@"\n`,
  );
  chmodSync(hook, 0o755);
  const img1 = hs.makeImage(s1, 'da0s2.img', IMAGE_SIZE);
  const img2 = hs.makeImage(s2, 'da0s2.img', IMAGE_SIZE);
  const text = `# /etc/hast.conf: identical on skunk1 and skunk2
timeout 5
resource ${RES} {
\texec ${hook}
\tdevice fuse
${opts.replication !== undefined ? `\treplication ${opts.replication}\n` : ''}\ton skunk1 {
\t\tlocal ${img1}
\t\tremote ${s2.privateAddr}
\t}
\ton skunk2 {
\t\tlocal ${img2}
\t\tremote ${s1.privateAddr}
\t}
}
`;
  hs.writeConf(text);
  return text;
}

/** `hastctl create mirror` + hastd on both hosts, skunk1 primary, skunk2 secondary, initial sync done. */
export async function bringUp(_hs: Hosts, primary: Host, secondary: Host): Promise<void> {
  for (const h of [primary, secondary]) {
    const r = await h.hastctl('create', RES);
    assert.equal(r.code, 0, `${h.name}: hastctl create: ${r.stderr}`);
    await h.startHastd();
  }
  await role(primary, 'primary');
  await role(secondary, 'secondary');
  await waitDevice(primary);
  await waitHostInSync(primary);
}

export async function role(h: Host, r: 'init' | 'primary' | 'secondary'): Promise<void> {
  const res = await h.hastctl('role', r, RES);
  assert.equal(res.code, 0, `${h.name}: hastctl role ${r} ${RES}: ${res.stderr}${res.stdout}`);
}

/** Wait until /dev/hast/mirror is a block device on h. */
export async function waitDevice(h: Host, timeoutMs = 30_000): Promise<void> {
  await waitFor(`${h.name}: ${DEV}`, async () => (await h.sh(`test -b ${DEV}`)).code === 0, timeoutMs, 100);
}

export async function worker(h: Host): Promise<NonNullable<StatusView['worker']> | null> {
  return (await h.status(RES)).worker ?? null;
}

/** Wait until the primary h reports `complete`, dirty 0 and no sync running. */
export function waitHostInSync(h: Host, timeoutMs = 60_000): Promise<NonNullable<StatusView['worker']>> {
  return waitInSync(h.name, () => worker(h), { timeoutMs, everyMs: 250 });
}

export async function mkfs(h: Host, fs: string): Promise<void> {
  const args = fs === 'btrfs' ? ['-f', '-q'] : fs === 'xfs' ? ['-f', '-q'] : ['-F', '-q'];
  const r = await h.exec(`mkfs.${fs}`, [...args, DEV], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `${h.name}: mkfs.${fs}: ${r.stderr}`);
}

export async function mount(h: Host, fs: string): Promise<void> {
  // btrfs keeps a kernel-wide device registry; both hosts share one kernel here, so forget stale
  // entries (the other host's loop device carries the same fsid) before mounting.
  if (fs === 'btrfs') await h.exec('btrfs', ['device', 'scan', '--forget'], { timeoutMs: 10_000 });
  const r = await h.sh(`mkdir -p ${MNT} && mount -t ${fs} ${DEV} ${MNT}`, { timeoutMs: 60_000 });
  if (r.code !== 0) {
    // What the kernel and the superblock say is the diagnosis.
    const why = await h.sh(
      `dmesg | tail -n 15; ls -l /dev/hast; losetup -l; ` +
        `echo "direct read of the superblock area:"; timeout 10 dd if=${DEV} bs=4096 skip=16 count=1 iflag=direct 2>&1 | od -A d -c | head -n 6; ` +
        `echo "buffered:"; timeout 10 dd if=${DEV} bs=4096 skip=16 count=1 2>&1 | od -A d -c | head -n 6; ` +
        `timeout 10 blkid -p ${DEV}; echo "blkid: $?"`,
      { timeoutMs: 60_000 },
    );
    assert.fail(`${h.name}: mount: ${r.stderr}\n${why.stdout}${why.stderr}`);
  }
}

export async function umount(h: Host): Promise<void> {
  const r = await h.exec('umount', [MNT], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `${h.name}: umount: ${r.stderr}`);
}

/** Files to copy onto the mirror: name → content; written once under root/payload-<tag>. */
export function makePayload(hs: Hosts, tag: string): { dir: string; sums: Map<string, string> } {
  const dir = join(hs.root, `payload-${tag}`);
  mkdirSync(join(dir, 'sub'), { recursive: true });
  const files: Record<string, Buffer> = {
    [`big-${tag}.bin`]: randomBytes(3 << 20),
    [`notes-${tag}.txt`]: Buffer.from(`skunkworks ${tag}\n`.repeat(100)),
    [`sub/small-${tag}.bin`]: randomBytes(5000),
  };
  const sums = new Map<string, string>();
  for (const [name, data] of Object.entries(files)) {
    writeFileSync(join(dir, name), data);
    sums.set(name, createHash('sha256').update(data).digest('hex'));
  }
  return { dir, sums };
}

/** Copy a payload into the mounted file system and make it durable (sync). */
export async function copyIn(h: Host, payload: { dir: string }): Promise<void> {
  const r = await h.sh(`cp -r ${payload.dir}/. ${MNT}/ && sync`, { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `${h.name}: cp: ${r.stderr}`);
}

/** Assert every file of the payload is on h's mounted file system with the same content. */
export async function assertFiles(h: Host, payload: { sums: Map<string, string> }): Promise<void> {
  const names = [...payload.sums.keys()];
  const r = await h.sh(`cd ${MNT} && sha256sum ${names.join(' ')}`, { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `${h.name}: sha256sum: ${r.stderr}`);
  const got = new Map<string, string>();
  for (const line of r.stdout.trim().split('\n')) {
    const [sum, name] = line.split(/\s+/);
    if (sum !== undefined && name !== undefined) got.set(name, sum);
  }
  for (const [name, sum] of payload.sums) assert.equal(got.get(name), sum, `${h.name}: ${MNT}/${name} differs`);
}

/** Data area of h's component as `hastctl dump` reports it. */
export async function layout(h: Host): Promise<{ localOff: number; dataSize: number; localPath: string }> {
  const r = await h.hastctl('dump', RES);
  assert.equal(r.code, 0, `${h.name}: hastctl dump: ${r.stderr}`);
  const { localOff, dataSize } = parseDump(r.stdout);
  const st = await h.status(RES);
  return { localOff, dataSize, localPath: st.localpath ?? '' };
}

/** sha256 of h's data area (read from the real file system, outside the namespaces). */
export async function dataHash(h: Host): Promise<string> {
  const { localOff, dataSize, localPath } = await layout(h);
  return dataAreaHash(localPath, localOff, dataSize);
}

/** True while a file system is mounted on mnt (default MNT) on h. */
export async function isMounted(h: Host, mnt = MNT): Promise<boolean> {
  return (await h.exec('mountpoint', ['-q', mnt], { timeoutMs: 5_000 })).code === 0;
}

/** True while h holds the (service) address addr on its public interface. */
export async function hasAddr(h: Host, addr: string): Promise<boolean> {
  const r = await h.exec('ip', ['-o', 'addr', 'show', 'dev', PUBLIC_IF], { timeoutMs: 5_000 });
  return r.stdout.includes(` ${addr}/`);
}
