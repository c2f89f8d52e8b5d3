// Entry point of a resource worker process, forked by the hastd parent with an IPC channel.
import type { WorkerInit } from '../daemon/worker-ipc.js';
import { log, logInit, logPrefix } from '../log/log.js';
import { runPrimaryWorker } from '../primary/worker.js';
import { runSecondaryWorker } from '../secondary/worker.js';

process.once('message', (init: WorkerInit) => {
  if (init.type !== 'init') return;
  logInit({ foreground: init.foreground, debugLevel: init.debugLevel });
  logPrefix(init.resource.name, init.role);
  process.title = `hastd: ${init.resource.name} (${init.role})`;
  const run = init.role === 'primary' ? runPrimaryWorker : runSecondaryWorker;
  run(init).catch((err: unknown) => {
    log.error('Worker failed', err);
    process.exit(75);
  });
});
