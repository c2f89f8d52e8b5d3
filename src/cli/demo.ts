#!/usr/bin/env node
// `npm run demo`: a local two-node HAST cluster on loopback (no root needed): file-backed components,
// two hastd processes sharing one hast.conf (--node), one primary and one secondary. It writes through
// the primary's NBD export, shows `hastctl status` on both nodes and that the data arrived on the
// secondary's component, then keeps running until Ctrl-C (or exits at once with --exit).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  closeSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NbdClient } from '../nbd/client.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const HASTD = join(HERE, 'hastd.js');
const HASTCTL = join(HERE, 'hastctl.js');
const SIZE = 64 << 20;

function freePort(host: string): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, host, () => {
      const a = s.address();
      s.close(() => done(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

function ctl(conf: string, node: string, args: string[]): string {
  const [sub, ...rest] = args;
  return execFileSync(process.execPath, [HASTCTL, sub ?? '', '-c', conf, '--node', node, ...rest], {
    encoding: 'utf8',
  });
}

/** Copy a daemon's log to our stderr with `prefix` before every line (chunks may hold several). */
function prefixLines(stream: NodeJS.ReadableStream | null, prefix: string): void {
  let partial = '';
  stream?.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) process.stderr.write(`${prefix}${line}\n`);
  });
  stream?.on('end', () => {
    if (partial !== '') process.stderr.write(`${prefix}${partial}\n`);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function dataHash(path: string, offset: number, length: number): string {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return createHash('sha256').update(buf).digest('hex').slice(0, 16);
  } finally {
    closeSync(fd);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, exit: { type: 'boolean' } }, strict: true });
  const dir = values.dir !== undefined ? resolve(values.dir) : mkdtempSync(join(tmpdir(), 'hastd-demo-'));
  mkdirSync(dir, { recursive: true });
  const nodes = [
    { name: 'demo-a', host: '127.0.0.1', port: await freePort('127.0.0.1') },
    { name: 'demo-b', host: '127.0.0.2', port: 0 },
  ];
  const b = nodes[1];
  if (b !== undefined) b.port = await freePort('127.0.0.2');
  let conf = '# hastd demo: two nodes on loopback, file-backed components\n';
  for (const n of nodes) {
    mkdirSync(join(dir, n.name), { recursive: true });
    conf += `on ${n.name} {\n\tcontrol uds://${dir}/${n.name}/control.sock\n\tpidfile ${dir}/${n.name}/hastd.pid\n\tlisten tcp4://${n.host}:${n.port}\n}\n`;
  }
  conf += 'resource demo {\n\treplication memsync\n\tdevice none\n';
  for (const n of nodes) {
    const other = nodes.find((o) => o !== n);
    conf += `\ton ${n.name} {\n\t\tlocal ${dir}/${n.name}/disk.img\n\t\texport uds://${dir}/${n.name}/demo.sock\n\t\tremote tcp4://${other?.host}:${other?.port}\n\t\tsource tcp4://${n.host}\n\t}\n`;
  }
  conf += '}\n';
  const confPath = join(dir, 'hast.conf');
  writeFileSync(confPath, conf);
  console.log(`# demo directory: ${dir}\n# ${confPath}:\n${conf}`);

  const procs: ChildProcess[] = [];
  const cleanup = (): void => {
    for (const p of procs) if (p.pid !== undefined && p.exitCode === null) p.kill('SIGTERM');
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      cleanup();
      process.exit(0);
    });
  }
  try {
    for (const n of nodes) {
      const img = join(dir, n.name, 'disk.img');
      writeFileSync(img, '');
      truncateSync(img, SIZE);
      console.log(`$ hastctl create demo   # on ${n.name}`);
      ctl(confPath, n.name, ['create', 'demo']);
      const p = spawn(process.execPath, [HASTD, '-F', '-c', confPath, '--node', n.name], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      prefixLines(p.stderr, `[${n.name}] `);
      procs.push(p);
    }
    for (const n of nodes) {
      for (let i = 0; i < 100 && !existsSync(join(dir, n.name, 'control.sock')); i++) await sleep(100);
    }
    console.log('$ hastctl role primary demo     # on demo-a');
    ctl(confPath, 'demo-a', ['role', 'primary', 'demo']);
    console.log('$ hastctl role secondary demo   # on demo-b');
    ctl(confPath, 'demo-b', ['role', 'secondary', 'demo']);
    const sock = join(dir, 'demo-a', 'demo.sock');
    for (let i = 0; i < 100 && !existsSync(sock); i++) await sleep(100);
    for (let i = 0; i < 150; i++) {
      if (ctl(confPath, 'demo-a', ['status', 'demo']).includes('status: complete')) break;
      await sleep(200);
    }
    const client = await NbdClient.connect({ path: sock });
    const payload = Buffer.alloc(1 << 20, 'hastd demo: replicated block\n');
    console.log('# writing 1 MiB at offset 0 through the primary NBD export');
    await client.write(0, payload);
    await client.flush();
    await client.disconnect();
    for (let i = 0; i < 50 && !ctl(confPath, 'demo-a', ['status', 'demo']).includes('dirty: 0 (0B)'); i++)
      await sleep(200);
    for (const n of nodes) {
      console.log(`$ hastctl status demo   # on ${n.name}`);
      process.stdout.write(ctl(confPath, n.name, ['status', 'demo']));
    }
    const dump = ctl(confPath, 'demo-b', ['dump', 'demo']);
    const localoff = Number(/localoff: (\d+)/.exec(dump)?.[1] ?? '0');
    const want = createHash('sha256').update(payload).digest('hex').slice(0, 16);
    console.log(`# sha256 of the written MiB: ${want}`);
    for (const n of nodes) {
      console.log(
        `# sha256 of ${n.name}'s component at localoff ${localoff}: ${dataHash(join(dir, n.name, 'disk.img'), localoff, payload.length)}`,
      );
    }
    if (values.exit === true) {
      cleanup();
      if (values.dir === undefined) rmSync(dir, { recursive: true, force: true });
      return;
    }
    console.log(`\n# the cluster keeps running; try: node ${HASTCTL} status -c ${confPath} --node demo-a`);
    console.log('# press Ctrl-C to stop it');
    await new Promise(() => undefined);
  } catch (err) {
    cleanup();
    throw err;
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
