// The kernel nbd device: `nbd-client -unix <sock> /dev/nbdN`. Preferred when the nbd module is
// available (one less copy than FUSE + loop). DESIGN.md "The device on Linux".
// Not exercised by our tests (no nbd module on the build hosts); kept small on purpose.
import { existsSync, readdirSync } from 'node:fs';
import { log } from '../../log/log.js';
import { assertNotBusy } from './fuse.js';
import { DeviceError, findTool, requireTool, run } from './sys.js';

/** True when the kernel's nbd driver is loaded or its devices exist. */
export function nbdModuleUsable(): boolean {
  return existsSync('/sys/module/nbd') || existsSync('/dev/nbd0');
}

/** The first /dev/nbdN with no client attached (/sys/block/nbdN/pid absent). */
function freeNbdDevice(): string | null {
  let names: string[];
  try {
    names = readdirSync('/sys/block').filter((n) => /^nbd\d+$/.test(n));
  } catch {
    return null;
  }
  names.sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  const free = names.find((n) => !existsSync(`/sys/block/${n}/pid`));
  return free === undefined ? null : `/dev/${free}`;
}

export interface NbdDevice {
  readonly blockDevice: string;
  detach(force: boolean, label: string): Promise<void>;
}

/** Connect a free /dev/nbdN to the export on `socketPath`. */
export async function attachNbd(opts: { socketPath: string; blockSize: number }): Promise<NbdDevice> {
  const client = requireTool('nbd-client', 'device nbd');
  if (!nbdModuleUsable()) {
    const modprobe = findTool('modprobe');
    if (modprobe !== null) await run(modprobe, ['nbd']).catch(() => undefined);
    if (!nbdModuleUsable())
      throw new DeviceError('the kernel nbd module is not available (modprobe nbd failed); use device fuse');
  }
  const dev = freeNbdDevice();
  if (dev === null) throw new DeviceError('no free /dev/nbdN device (all have a client attached)');
  await run(client, ['-unix', opts.socketPath, dev, '-b', String(opts.blockSize)]);
  let detached = false;
  return {
    blockDevice: dev,
    async detach(force: boolean, label: string): Promise<void> {
      if (detached) return;
      assertNotBusy(dev, label, force);
      try {
        await run(client, ['-d', dev]);
      } catch (err) {
        if (!force)
          throw new DeviceError(`Unable to disconnect ${dev}: ${err instanceof Error ? err.message : String(err)}`, {
            cause: err,
          });
        log.warning(`Unable to disconnect ${dev}`, err);
      }
      detached = true;
    },
  };
}
