// A component's data area as the tests see it from outside the daemon: where it lies (from
// `hastctl dump`) and a hash of its bytes, for "both copies are identical" checks.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** The fields of `hastctl dump` the tests use. */
export interface DumpLayout {
  readonly dataSize: number;
  readonly localOff: number;
  readonly extentSize: number;
  readonly resuid: string;
  readonly localcnt: string;
  readonly remotecnt: string;
}

/** Parse `hastctl dump` output (one resource); throws naming a field it does not find. */
export function parseDump(text: string): DumpLayout {
  const field = (k: string): string => {
    const v = new RegExp(`${k}: (\\d+)`).exec(text)?.[1];
    if (v === undefined) throw new Error(`hastctl dump without ${k}:\n${text}`);
    return v;
  };
  return {
    dataSize: Number(field('datasize')),
    localOff: Number(field('localoff')),
    extentSize: Number(field('extentsize')),
    resuid: field('resuid'),
    localcnt: field('localcnt'),
    remotecnt: field('remotecnt'),
  };
}

/** sha256 (hex) of [localOff, localOff + dataSize) of the component file or device at `path`. */
export async function dataAreaHash(path: string, localOff: number, dataSize: number): Promise<string> {
  if (!(dataSize > 0)) throw new Error(`dataAreaHash(${path}): data size ${dataSize}`);
  const h = createHash('sha256');
  await new Promise<void>((done, fail) => {
    createReadStream(path, { start: localOff, end: localOff + dataSize - 1 })
      .on('data', (d) => h.update(d))
      .on('end', () => done())
      .on('error', fail);
  });
  return h.digest('hex');
}
