// Primary worker process: opens the component (flock), loads metadata and the activemap, serves the
// data area over NBD at `export`, attaches /dev/hast/<provname>, and replicates (HAST-SPEC §5.2, §5.5).
import { mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { openComponent } from '../component/open.js';
import { parseExportAddress } from '../config/index.js';
import type { ResourceConfig } from '../config/types.js';
import type { WorkerStatus } from '../control/messages.js';
import { attachDevice, cleanupStaleDevice, type AttachedDevice } from '../daemon/device/index.js';
import type { ParentToWorker, WorkerInit, WorkerToParent } from '../daemon/worker-ipc.js';
import { WORKER_EXIT } from '../daemon/worker-ipc.js';
import { log } from '../log/log.js';
import { readMetadata } from '../metadata/metadata.js';
import { createNbdServer, type NbdBackend } from '../nbd/server.js';
import { MAXPHYS } from '../peer/constants.js';
import { PrimaryResource } from './resource.js';
import { startReplication, type Replication } from './replicate.js';

/** Request slots per worker (upstream HAST_HIO_MAX): bounds memory whatever the client does. */
const SLOTS = 256;

function send(msg: WorkerToParent): void {
  // Once the parent is gone the channel is closed: the message has nowhere to go, and without a
  // callback ERR_IPC_CHANNEL_CLOSED is thrown as an unhandled 'error' event in mid-shutdown.
  if (process.send === undefined || !process.connected) return;
  process.send(msg, undefined, {}, () => undefined);
}

/**
 * The NBD backend over the data path. Requests wait for `ready`: no I/O is served before the first
 * connection attempt to the peer (and the startup wait while it is still primary) is over
 * (HAST-SPEC §5.5); the export and the device exist already, so I/O issued meanwhile just blocks.
 */
function backendOf(res: PrimaryResource, ready: Promise<void>): NbdBackend {
  let open = false;
  void ready.then(() => {
    open = true;
  });
  const gate = <T>(op: () => Promise<T>): Promise<T> => (open ? op() : ready.then(op));
  return {
    size: res.size,
    readOnly: false,
    // All connections go through this one worker: they see each other's writes, and a FLUSH
    // flushes everything completed before it.
    canMultiConn: true,
    canFastZero: false,
    read: (offset, length) => gate(() => res.read(offset, length)),
    write: (offset, data, fua) => gate(() => res.write(offset, data, fua)),
    flush: () => gate(() => res.flush()),
    trim: (offset, length, fua) => gate(() => res.trim(offset, length, fua)),
    writeZeroes: (offset, length, opts) => gate(() => res.writeZeroes(offset, length, opts.fua)),
  };
}

export async function runPrimaryWorker(init: WorkerInit): Promise<void> {
  let cfg: ResourceConfig = init.resource;
  let comp;
  try {
    comp = await openComponent(cfg.localPath, { lock: true });
  } catch (err) {
    log.error(`Unable to open ${cfg.localPath}`, err);
    process.exit(WORKER_EXIT.NOINPUT);
  }
  let res: PrimaryResource;
  try {
    const md = await readMetadata(comp, cfg.name);
    res = await PrimaryResource.open(cfg, comp, md);
  } catch (err) {
    log.error('Unable to read metadata', err);
    process.exit(WORKER_EXIT.NOINPUT);
  }

  const repl: Replication | null = cfg.remoteAddr === 'none' ? null : startReplication(res, cfg, send);
  const exp = parseExportAddress(cfg.exportAddr);
  const nbd = createNbdServer(backendOf(res, repl?.ready ?? Promise.resolve()), {
    exportName: cfg.provName,
    description: `HAST resource ${cfg.name}`,
    maxInFlight: SLOTS,
    maxBlockSize: MAXPHYS,
    log: (level, msg) => (level === 'error' ? log.error(msg) : level === 'warning' ? log.warning(msg) : log.debug(1, msg)),
  });
  try {
    if (exp.kind === 'unix') {
      mkdirSync(dirname(exp.path), { recursive: true });
      await nbd.listen({ kind: 'unix', path: exp.path });
    } else {
      await nbd.listen({ kind: 'tcp', host: exp.host, port: exp.port });
    }
  } catch (err) {
    log.error(`Unable to serve NBD at ${cfg.exportAddr}`, err);
    process.exit(WORKER_EXIT.OSERR);
  }

  let device: AttachedDevice | null = null;
  if (cfg.device !== 'none') {
    try {
      if (exp.kind !== 'unix') throw new Error('a kernel device needs a unix-socket export (export uds:///path)');
      await cleanupStaleDevice(cfg.provName, init.stateDir);
      device = await attachDevice({ provName: cfg.provName, socketPath: exp.path, mode: cfg.device, stateDir: init.stateDir });
      if (device !== null) log.info(`Device ${device.devicePath} created (${device.blockDevice}).`);
    } catch (err) {
      log.error(`Unable to create /dev/hast/${cfg.provName}`, err);
      await nbd.close();
      process.exit(WORKER_EXIT.OSERR);
    }
  }


  const status = (): WorkerStatus => ({
    status: res.remote !== null ? 'complete' : 'degraded',
    dirty: res.amap.dirtyBytes,
    extentSize: res.md.extentSize,
    keepDirty: res.md.keepDirty,
    stats: { ...res.stats, localQueue: res.inFlight, idleQueue: Math.max(0, SLOTS - res.inFlight), ...(repl?.queueStats() ?? {}) },
    sync: res.sync,
    lastSync: repl?.lastSync() ?? null,
    exportAddr: cfg.exportAddr,
    device: device?.devicePath ?? null,
  });

  let exiting = false;
  const shutdown = async (): Promise<void> => {
    if (exiting) return;
    exiting = true;
    log.info('Termination signal received, exiting.');
    if (device !== null) {
      try {
        await device.detach();
      } catch (err) {
        log.error(`Unable to remove ${device.devicePath}`, err);
      }
    }
    await nbd.close();
    await repl?.stop();
    await res.close();
    try {
      await res.comp.flush();
    } catch (err) {
      log.warning('Unable to flush the local component', err);
    }
    await res.comp.close();
    if (exp.kind === 'unix') {
      try {
        unlinkSync(exp.path);
      } catch {
        // Already removed by the NBD server.
      }
    }
    process.exit(WORKER_EXIT.OK);
  };
  process.on('SIGTERM', () => void shutdown());
  process.on('SIGINT', () => void shutdown());
  process.on('disconnect', () => void shutdown());
  process.on('message', (m: ParentToWorker) => {
    if (m.type === 'status') send({ type: 'status-reply', id: m.id, status: status() });
    else if (m.type === 'reload') {
      cfg = m.resource;
      repl?.reload(cfg);
    }
  });
  send({ type: 'ready' });
}
