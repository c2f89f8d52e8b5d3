// Command line for the verifying workload: write over NBD and keep the log in a file, then verify a
// device (over NBD) or a component file against it, possibly after a crash and a failover.
//
//   node dist/src/tools/verify-workload-cli.js run --socket PATH [--blocks N] [--first-block B]
//        [--seconds S] [--lanes L] [--seed N] --log FILE
//   node dist/src/tools/verify-workload-cli.js verify --log FILE (--socket PATH | --component FILE)
//        [--require durable|acked|none]
// Exit status: 0 verified, 1 damage found (lost, foreign or torn blocks), 64 usage.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { NbdClient } from '../nbd/client.js';
import {
  formatReport,
  type Requirement,
  reportOk,
  startWorkload,
  verify,
  verifyComponent,
  WorkloadLog,
} from './verify-workload.js';

const USAGE = `usage: verify-workload-cli run --socket PATH --log FILE [--blocks N] [--first-block B] [--seconds S] [--lanes L] [--seed N]
       verify-workload-cli verify --log FILE (--socket PATH | --component FILE) [--require durable|acked|none]
`;

function usage(msg?: string): never {
  if (msg !== undefined) process.stderr.write(`${msg}\n`);
  process.stderr.write(USAGE);
  process.exit(64);
}

async function main(): Promise<number> {
  const [cmd, ...rest] = process.argv.slice(2);
  const { values } = parseArgs({
    args: rest,
    strict: true,
    options: {
      socket: { type: 'string' },
      component: { type: 'string' },
      log: { type: 'string' },
      blocks: { type: 'string' },
      'first-block': { type: 'string' },
      seconds: { type: 'string' },
      lanes: { type: 'string' },
      seed: { type: 'string' },
      require: { type: 'string' },
    },
  });
  if (values.log === undefined) usage('--log is required');
  if (cmd === 'run') {
    if (values.socket === undefined) usage('run needs --socket');
    const client = await NbdClient.connect({ path: values.socket });
    const blocks = Number(values.blocks ?? Math.min(4096, Math.floor(client.size / 4096)));
    const wl = startWorkload(client, {
      seed: Number(values.seed ?? Math.floor(Math.random() * 2 ** 31)),
      blocks,
      firstBlock: Number(values['first-block'] ?? 0),
      lanes: Number(values.lanes ?? 8),
    });
    const save = (): void => writeFileSync(values.log as string, JSON.stringify(wl.log.toJSON()));
    // Saved every 500 ms as well as at the end (also when the server dies and the run stops). If
    // this process itself is killed, writes issued after the last save are missing from the log
    // and their blocks would read as "never issued": verify only logs of runs that ended.
    const saver = setInterval(save, 500);
    const stop = setTimeout(() => wl.stop(), Number(values.seconds ?? 10) * 1000);
    process.once('SIGINT', () => wl.stop());
    await wl.done;
    clearInterval(saver);
    clearTimeout(stop);
    save();
    if (wl.error === null) await client.disconnect();
    else client.destroy();
    const c = wl.log.counts();
    process.stdout.write(
      `issued ${c.issued}, acknowledged ${c.acked}, durable ${c.durable}, failed ${c.failed}, in flight ${c.inflight}${wl.error !== null ? ` (stopped by: ${wl.error.message})` : ''}\n`,
    );
    return 0;
  }
  if (cmd === 'verify') {
    const req = (values.require ?? 'durable') as Requirement;
    if (!['durable', 'acked', 'none'].includes(req)) usage(`bad --require ${req}`);
    const log = WorkloadLog.fromJSON(JSON.parse(readFileSync(values.log, 'utf8')));
    let report;
    if (values.component !== undefined) report = await verifyComponent(log, values.component, req);
    else if (values.socket !== undefined) {
      const client = await NbdClient.connect({ path: values.socket });
      try {
        report = await verify(log, (o, n) => client.read(o, n), req);
      } finally {
        await client.disconnect();
      }
    } else usage('verify needs --socket or --component');
    process.stdout.write(`${formatReport(report)}\n`);
    return reportOk(report) ? 0 : 1;
  }
  usage();
}

// Explicit exit: Node 20 can spin in its exit-time handle cleanup (nodejs/node#47748).
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
