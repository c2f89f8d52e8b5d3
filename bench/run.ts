#!/usr/bin/env node
// `npm run bench`: fio over NBD against nbdkit, a C replicator (qemu-nbd quorum) and hastd (alone
// and replicating); fio on block devices (loop, nbdfuse + loop over nbdkit, /dev/hast; root only);
// full and reconnect resync beside nbdcopy, peak RSS at QD128. Backing files on tmpfs. Prints a table of ratios (ours ÷ anchor) with the raw
// figures and writes the same as JSON. Everything it starts is ended by pid, even on SIGINT.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setupBacking } from './backing.js';
import { DEVICE_TOOLS, type DevicePhaseResult, devicePhase } from './device.js';
import { type IoPhaseResult, ioPhase } from './io.js';
import { type BenchOptions, parseOptions, USAGE, UsageError } from './options.js';
import { type BenchReport, buildReport, type PhaseError, renderTable } from './report.js';
import { type ResyncPhaseResult, resyncPhase } from './resync.js';
import { type RecoveryPhaseResult, recoveryPhase } from './recovery.js';
import { type ChecksumSyncPhaseResult, checksumSyncPhase } from './csums.js';
import { type RssRow, rssPhase } from './rss.js';
import { checkPrerequisites, MissingPrerequisite } from './prerequisites.js';
import { Scope } from './scope.js';
import { progress } from './stats.js';
import { isRoot } from '../test/harness/tools.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Run `fn` as phase `name`; a failure is printed and recorded, and the run goes on with the next
 * phase, so that a long run still reports what it measured.
 */
async function phase<T>(name: string, errors: PhaseError[], fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn();
  } catch (err) {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`bench: phase ${name} failed: ${message}\n`);
    errors.push({ phase: name, message: err instanceof Error ? err.message : String(err) });
    return null;
  }
}

/** Why the device phase cannot run here, or null. */
function deviceBlocker(): string | null {
  return isRoot()
    ? null
    : 'it needs root (loop devices, FUSE mounts, /dev/hast); run the bench as root to measure /dev/hast';
}

/** Run the chosen phases inside `scope`; return the JSON-ready report. */
async function bench(scope: Scope, opts: BenchOptions, tools: Record<string, string>): Promise<BenchReport> {
  const want = new Set(opts.phases);
  const backing = setupBacking(scope);
  progress(`backing files on ${backing.description}`);
  const loadBefore = loadavg()[0] ?? 0;
  const errors: PhaseError[] = [];
  let io: IoPhaseResult | null = null;
  let device: DevicePhaseResult | null = null;
  let deviceSkipped: string | null = null;
  let resync: ResyncPhaseResult | null = null;
  let rss: RssRow[] | null = null;
  if (want.has('io')) io = await phase('io', errors, () => ioPhase(scope, opts));
  if (want.has('device')) {
    deviceSkipped = deviceBlocker();
    if (deviceSkipped === null) device = await phase('device', errors, () => devicePhase(scope, opts));
    else process.stderr.write(`bench: skipping the block-device phase: ${deviceSkipped}\n`);
  }
  if (want.has('resync') || want.has('reconnect')) {
    resync = await phase('resync', errors, () => resyncPhase(scope, opts, want.has('resync'), want.has('reconnect')));
  }
  if (want.has('rss')) rss = await phase('rss', errors, () => rssPhase(scope, opts));
  let recovery: RecoveryPhaseResult | null = null;
  if (want.has('recovery')) recovery = await phase('recovery', errors, () => recoveryPhase(scope, opts));
  let checksumSync: ChecksumSyncPhaseResult | null = null;
  if (want.has('csums')) checksumSync = await phase('csums', errors, () => checksumSyncPhase(scope, opts));
  const why = (p: string, ran: boolean): string =>
    errors.some((e) => e.phase === p) ? 'phase failed' : ran ? 'no rows' : 'phase not chosen';
  const meta = {
    date: new Date().toISOString(),
    host: hostname(),
    cpus: cpus().length,
    node: process.version,
    tools,
    options: opts,
    exportSize: io?.exportSize ?? null,
    backing: backing.description,
    deviceSize: device?.deviceSize ?? null,
    hastDevice: device?.hastDevice ?? null,
    loadAvg: { before: loadBefore, after: loadavg()[0] ?? 0 },
  };
  const notRun = {
    io: why('io', want.has('io')),
    device: deviceSkipped !== null ? 'not root' : why('device', want.has('device')),
    resync: why('resync', want.has('resync')),
    rss: why('rss', want.has('rss')),
  };
  return buildReport(
    meta,
    { io, device, deviceSkipped, resync, rss: rss ?? [], recovery, checksumSync, notRun },
    errors,
  );
}

/** Where the JSON goes when --json is not given: bench/results/<timestamp>.json (gitignored). */
function defaultJsonPath(date: string): string {
  return join(REPO, 'bench', 'results', `${date.replace(/[:.]/g, '-')}.json`);
}

async function main(argv: readonly string[]): Promise<number> {
  let opts: BenchOptions | 'help';
  try {
    opts = parseOptions(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n${USAGE}\n`);
    return 64;
  }
  if (opts === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const scope = new Scope();
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`bench: ${sig}, stopping everything it started\n`);
    void scope.close().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const tools = await checkPrerequisites(
      opts.phases.includes('device') && deviceBlocker() === null ? DEVICE_TOOLS : [],
    );
    const report = await bench(scope, opts, tools);
    process.stdout.write(renderTable(report));
    const path = opts.json ?? defaultJsonPath(report.meta.date);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
    process.stderr.write(`bench: results written to ${path}\n`);
    return report.errors.length === 0 ? 0 : 1;
  } catch (err) {
    if (err instanceof MissingPrerequisite) {
      process.stderr.write(`bench: refusing to run: ${err.message}\n`);
      return 69;
    }
    process.stderr.write(`bench: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  } finally {
    await scope.close();
  }
}

// Explicit exit: Node 20 can spin in its exit-time handle cleanup (nodejs/node#47748).
process.exit(await main(process.argv.slice(2)));
