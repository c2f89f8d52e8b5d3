// Primary side of replication (HAST-SPEC §6): connects to the secondary, runs the handshake,
// provides the remote leg of the data path and drives resync. (Filled in by the replication work.)
import type { ResourceConfig } from '../config/types.js';
import type { WorkerStats } from '../control/messages.js';
import type { WorkerToParent } from '../daemon/worker-ipc.js';
import type { PrimaryResource } from './resource.js';

export interface Replication {
  stop(): Promise<void>;
  reload(cfg: ResourceConfig): void;
  queueStats(): Partial<WorkerStats>;
}

export function startReplication(
  _res: PrimaryResource,
  _cfg: ResourceConfig,
  _send: (msg: WorkerToParent) => void,
): Replication {
  return {
    stop: async () => undefined,
    reload: () => undefined,
    queueStats: () => ({}),
  };
}
