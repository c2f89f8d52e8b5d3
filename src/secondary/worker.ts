// Secondary worker process: applies the primary's requests to the local component (HAST-SPEC §6.4).
import type { WorkerInit } from '../daemon/worker-ipc.js';
import { log } from '../log/log.js';

export async function runSecondaryWorker(_init: WorkerInit): Promise<void> {
  log.error('Secondary role is not implemented yet.');
  process.exit(78);
}
