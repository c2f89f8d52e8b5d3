// Primary worker process: opens the component (flock), loads metadata and the activemap, serves the
// data area over NBD at `export`, attaches /dev/hast/<provname>, and replicates (HAST-SPEC §5.2, §5.5).
import { unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { openComponent } from '../component/open.js';
import { isLoopbackHost } from '../config/address.js';
import { parseExportAddress } from '../config/index.js';
import type { ResourceConfig } from '../config/types.js';
import { syncedPercent, type WorkerStatus } from '../control/messages.js';
import { DeviceError, attachDevice, cleanupStaleDevice, type AttachedDevice } from '../daemon/device/index.js';
import type {
  ParentToWorker,
  WorkerCommand,
  WorkerCommandReply,
  WorkerInit,
  WorkerToParent,
} from '../daemon/worker-ipc.js';
import { WORKER_EXIT } from '../daemon/worker-ipc.js';
import { log } from '../log/log.js';
import { readMetadata } from '../metadata/metadata.js';
import { createNbdServer, type NbdBackend } from '../nbd/server.js';
import { MAXPHYS } from '../peer/constants.js';
import { makeDirs, PRIVATE_DIR_MODE } from '../util/dirs.js';
import { ErrnoError } from '../util/errno.js';
import { forgetKeepDirtyOnCleanStop } from './clean-stop.js';
import { verifyBounds } from './verify.js';
import { PrimaryResource } from './resource.js';
import { peerPrimaryMessage, startReplication, type Replication, type StartOutcome } from './replicate.js';

/** Request slots per worker (upstream HAST_HIO_MAX): bounds memory whatever the client does. */
const SLOTS = 256;

function send(msg: WorkerToParent): void {
  // Once the parent is gone the channel is closed: the message has nowhere to go, and without a
  // callback ERR_IPC_CHANNEL_CLOSED is thrown as an unhandled 'error' event in mid-shutdown.
  if (process.send === undefined || !process.connected) return;
  process.send(msg, undefined, {}, () => undefined);
}

/** How often a shutdown refused by a busy device looks again whether it was unmounted. */
const BUSY_POLL_MS = 1000;

/**
 * Log the failure, tell the parent why (so `hastctl role primary` can print it and `hastctl status`
 * show it), then exit with `code`. The exit waits for the message to leave the IPC channel.
 */
async function fail(message: string, err: unknown, code: number): Promise<never> {
  log.error(message, err);
  const detail = err instanceof Error ? err.message : err === undefined ? '' : String(err);
  const reason = detail === '' ? message : `${message.replace(/\.$/, '')}: ${detail}`;
  if (process.send !== undefined && process.connected) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      process.send?.({ type: 'failed', reason, code } satisfies WorkerToParent, undefined, {}, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  process.exit(code);
}

/**
 * The NBD backend over the data path. Requests wait for `ready`: no I/O is served before the first
 * connection attempt to the peer (and the startup wait while it is still primary) is over
 * (HAST-SPEC §5.5); the export and the device exist already, so I/O issued meanwhile just blocks.
 */
function backendOf(res: PrimaryResource, ready: Promise<StartOutcome>): NbdBackend {
  let open = false;
  void ready.then((outcome) => {
    open = outcome === 'started';
  });
  // A refused start serves nothing: the peer is the primary.
  const refused = (): never => {
    throw new ErrnoError('EIO', 'the remote node is primary');
  };
  const gate = <T>(op: () => Promise<T>): Promise<T> =>
    open ? op() : ready.then((o) => (o === 'started' ? op() : refused()));
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

/** What `hastctl role primary` on an inconsistent copy says (the worker's log and failure reason). */
function inconsistentMessage(name: string): string {
  return (
    `Local copy of ${name} is inconsistent (an interrupted synchronization from the peer): connect it as ` +
    `secondary to finish the synchronization, or use 'hastctl role primary --force ${name}' to promote ` +
    'it anyway (data may be missing).'
  );
}

/**
 * Never serve a half-synchronised copy (issue 13) unless forced: exit with WORKER_EXIT.INCONSISTENT.
 * Forced, the administrator has declared this copy the one to keep: the flag is cleared (written by
 * PrimaryResource.open with the prevrole), so that a later worker restart is not refused again.
 */
async function refuseInconsistent(name: string, md: { inconsistent?: boolean }, force: boolean): Promise<void> {
  if (!force) await fail(inconsistentMessage(name), undefined, WORKER_EXIT.INCONSISTENT);
  log.warning(`Local copy of ${name} is inconsistent; promoted anyway (--force): data may be missing.`);
  md.inconsistent = false;
}

/** `hastctl sync pause|resume` and `hastctl verify` (ours, issue 17). */
async function runCommand(
  repl: Replication | null,
  name: string,
  dataSize: number,
  cmd: WorkerCommand,
): Promise<WorkerCommandReply> {
  if (repl === null) {
    const what = cmd.kind === 'sync' ? `no synchronization to ${cmd.action}` : 'no other copy to verify against';
    return { ok: false, reason: `Resource ${name} has no remote node (remote none): there is ${what}.` };
  }
  if (cmd.kind === 'sync') {
    repl.pauseSync(cmd.action === 'pause');
    return { ok: true };
  }
  const range = verifyBounds(dataSize, cmd.start, cmd.stop);
  const report = await repl.verify({ ...range, mark: cmd.mark });
  return typeof report === 'string' ? { ok: false, reason: report } : { ok: true, verify: report };
}

export async function runPrimaryWorker(init: WorkerInit): Promise<void> {
  let cfg: ResourceConfig = init.resource;
  let comp;
  try {
    comp = await openComponent(cfg.localPath, { lock: true });
  } catch (err) {
    return fail(`Unable to open ${cfg.localPath}`, err, WORKER_EXIT.NOINPUT);
  }
  let res: PrimaryResource;
  try {
    const md = await readMetadata(comp, cfg.name);
    if (md.inconsistent === true) await refuseInconsistent(cfg.name, md, init.force === true);
    res = await PrimaryResource.open(cfg, comp, md);
  } catch (err) {
    return fail(`Unable to read metadata from ${cfg.localPath}`, err, WORKER_EXIT.NOINPUT);
  }

  const repl: Replication | null =
    cfg.remoteAddr === 'none' ? null : startReplication(res, cfg, send, init.force === true);
  const ready: Promise<StartOutcome> = repl?.ready ?? Promise.resolve('started');
  const exp = parseExportAddress(cfg.exportAddr);
  const nbd = createNbdServer(backendOf(res, ready), {
    exportName: cfg.provName,
    description: `HAST resource ${cfg.name}`,
    maxInFlight: SLOTS,
    maxBlockSize: MAXPHYS,
    // A TCP export of a resource with tlscert/tlskey requires NBD STARTTLS with that certificate.
    ...(exp.kind === 'tcp' && cfg.tlsCert !== undefined && cfg.tlsKey !== undefined
      ? { tls: { cert: cfg.tlsCert, key: cfg.tlsKey } }
      : {}),
    log: (level, msg) =>
      level === 'error' ? log.error(msg) : level === 'warning' ? log.warning(msg) : log.debug(1, msg),
  });
  try {
    if (exp.kind === 'unix') {
      makeDirs(dirname(exp.path), PRIVATE_DIR_MODE);
      await nbd.listen({ kind: 'unix', path: exp.path });
    } else {
      await nbd.listen({ kind: 'tcp', host: exp.host, port: exp.port });
      if (!isLoopbackHost(exp.host) && cfg.tlsCert === undefined) {
        log.warning(
          `NBD export ${cfg.exportAddr} is plain TCP on a non-loopback address: whoever reaches it reads and writes the resource (no TLS).`,
        );
      }
    }
  } catch (err) {
    return fail(`Unable to serve NBD at ${cfg.exportAddr}`, err, WORKER_EXIT.OSERR);
  }

  let device: AttachedDevice | null = null;
  if (cfg.device !== 'none') {
    try {
      if (exp.kind !== 'unix') throw new Error('a kernel device needs a unix-socket export (export uds:///path)');
      await cleanupStaleDevice(cfg.provName, init.stateDir);
      device = await attachDevice({
        provName: cfg.provName,
        socketPath: exp.path,
        mode: cfg.device,
        stateDir: init.stateDir,
      });
      if (device !== null) log.info(`Device ${device.devicePath} created (${device.blockDevice}).`);
    } catch (err) {
      await nbd.close();
      return fail(`Unable to create /dev/hast/${cfg.provName}`, err, WORKER_EXIT.OSERR);
    }
  }

  const status = (): WorkerStatus => ({
    status: res.remote !== null ? 'complete' : 'degraded',
    dirty: res.amap.dirtyBytes,
    extentSize: res.md.extentSize,
    keepDirty: res.md.keepDirty,
    stats: {
      ...res.stats,
      localQueue: res.inFlight,
      idleQueue: Math.max(0, SLOTS - res.inFlight),
      ...(repl?.queueStats() ?? {}),
    },
    sync: res.sync,
    lastSync: repl?.lastSync() ?? null,
    exportAddr: cfg.exportAddr,
    device: device?.devicePath ?? null,
    disk: {
      consistent: res.md.inconsistent !== true,
      synchronized:
        res.md.inconsistent === true && res.sync?.direction === 'secondary'
          ? syncedPercent(res.sync.totalBytes, res.sync.leftBytes)
          : null,
    },
    peerDisk: repl?.peerDisk() ?? null,
    latency: { local: res.latency.local.snapshot(), remote: res.latency.remote.snapshot() },
    ...(repl !== null ? { peer: repl.peerStatus() } : {}),
    ...(cfg.replication === 'async' ? { asyncBacklog: res.asyncBudget.snapshot() } : {}),
    ...(repl !== null
      ? (() => {
          const changed = res.changedExtents();
          return {
            syncControl: repl.syncControl(),
            verify: repl.verifyStatus(),
            changedExtents: changed.count,
            changedExtentsBy: changed.by,
          };
        })()
      : {}),
  });

  /**
   * Remove the device, refusing (DeviceError, nothing removed) while it is mounted or held open
   * unless `force`. Used by the parent's 'release' before a demotion and by our own shutdown.
   */
  const releaseDevice = async (force: boolean): Promise<void> => {
    if (device === null) return;
    await device.detach(force);
    log.info(`Device ${device.devicePath} removed.`);
  };

  let exiting = false;
  /** A second termination signal while the device is busy: remove it anyway. */
  let forceExit = false;
  const shutdown = async (code: number = WORKER_EXIT.OK): Promise<void> => {
    if (exiting) {
      if (!forceExit && device !== null) {
        forceExit = true;
        log.warning(`Second termination signal: removing ${device.devicePath} even if it is in use.`);
      }
      return;
    }
    exiting = true;
    if (code === WORKER_EXIT.OK) log.info('Termination signal received, exiting.');
    // A refused start removes its device whatever holds it: this node must not serve it.
    if (code !== WORKER_EXIT.OK) forceExit = true;
    // Safe order: the device goes first, and only when nothing uses it. While a file system is
    // mounted on it we keep serving (the file system keeps working) and look again every second;
    // a second signal forces the removal (as upstream's forced gate destroy).
    let warned = false;
    for (;;) {
      try {
        await releaseDevice(forceExit);
        break;
      } catch (err) {
        if (!(err instanceof DeviceError) || !err.busy) {
          log.error(`Unable to remove ${device?.devicePath ?? 'the device'}`, err);
          break;
        }
        if (!warned) {
          log.warning(`${err.message}; still serving until it is unmounted (send the signal again to force)`);
          warned = true;
        }
        await new Promise((r) => setTimeout(r, BUSY_POLL_MS));
      }
    }
    await nbd.close();
    // A clean demotion while in sync leaves nothing for the next primary to copy (issue 17).
    if (code === WORKER_EXIT.OK) await forgetKeepDirtyOnCleanStop(res, repl);
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
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown());
  process.on('SIGINT', () => void shutdown());
  process.on('disconnect', () => void shutdown());
  process.on('message', (m: ParentToWorker) => {
    if (m.type === 'status') send({ type: 'status-reply', id: m.id, status: status() });
    else if (m.type === 'release') {
      releaseDevice(m.force).then(
        () => send({ type: 'release-reply', id: m.id, ok: true }),
        (err: unknown) => {
          const reason = err instanceof Error ? err.message : String(err);
          log.notice(`Not removing ${device?.devicePath ?? 'the device'}: ${reason}`);
          send({ type: 'release-reply', id: m.id, ok: false, busy: err instanceof DeviceError && err.busy, reason });
        },
      );
    } else if (m.type === 'reload') {
      cfg = m.resource;
      repl?.reload(cfg);
    } else if (m.type === 'command') {
      void runCommand(repl, cfg.name, res.size, m.command).then((reply) =>
        send({ type: 'command-reply', id: m.id, reply }),
      );
    }
  });
  // `hastctl role primary` returns once the first connection attempt is over: a refusal (the peer
  // stayed primary and the role change was not forced) reaches the administrator as its exit status.
  if ((await ready) === 'refused') {
    send({ type: 'failed', reason: peerPrimaryMessage(cfg.name), code: WORKER_EXIT.PEER_PRIMARY });
    await shutdown(WORKER_EXIT.PEER_PRIMARY);
    return;
  }
  send({ type: 'ready' });
}
