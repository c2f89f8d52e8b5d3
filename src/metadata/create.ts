// hastctl create: lay out a component and write fresh metadata and an all-zero bitmap. HAST-SPEC §2.2.
import { allOnes } from '../activemap/bitmap.js';
import type { Component } from '../component/component.js';
import { EX } from '../util/sysexits.js';
import { MetadataError } from './errors.js';
import { METADATA_SIZE, computeLayout } from './layout.js';
import { type Metadata, writeMetadata } from './metadata.js';

/** Upstream HAST_EXTENTSIZE and HAST_KEEPDIRTY. */
const DEFAULT_EXTENT_SIZE = 2 * 1024 * 1024;
const DEFAULT_KEEPDIRTY = 64;

function isPowerOf2(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

export interface CreateOptions {
  readonly component: Component;
  readonly resource: string;
  /** Bytes per extent; 0 or absent = 2 MiB. */
  readonly extentSize?: number;
  /** Size of the keepdirty LRU; 0 or absent = 64. */
  readonly keepDirty?: number;
  /** Bytes of the component to use; 0 or absent = the whole component. */
  readonly mediaSize?: number;
  /**
   * Ours (`hastctl create --full-sync`, issue 17): write an all-ones bitmap instead of an all-zero
   * one, so that the first connection copies the whole data area even when both nodes are fresh
   * (by default two fresh creates are declared in sync without copying: right for blank disks,
   * wrong for reused ones whose old contents differ).
   */
  readonly fullSync?: boolean;
}

/**
 * Initialise a resource's local component: validate sizes, compute the layout, write the metadata
 * block (resuid 0, counters 0, prevrole init) and an all-zero bitmap, then flush. User data is
 * not touched. No lock is taken (as upstream). Returns the metadata written.
 * Throws MetadataError with exitCode 65 (bad sizes) or 74 (write failure).
 */
export async function createResource(opts: CreateOptions): Promise<Metadata> {
  const comp = opts.component;
  let mediaSize = opts.mediaSize ?? 0;
  if (mediaSize === 0) mediaSize = comp.size;
  else if (mediaSize > comp.size) {
    throw new MetadataError(`Provided mediasize is larger than provider ${comp.path} size.`, EX.DATAERR);
  }
  const sectorSize = comp.sectorSize;
  if (!isPowerOf2(sectorSize)) {
    throw new MetadataError(`Sector size of provider ${comp.path} is not power of 2 (${sectorSize}).`, EX.DATAERR);
  }
  let extentSize = opts.extentSize ?? 0;
  if (extentSize === 0) extentSize = DEFAULT_EXTENT_SIZE;
  if (extentSize < sectorSize) {
    throw new MetadataError(`Extent size (${extentSize}) is less than sector size (${sectorSize}).`, EX.DATAERR);
  }
  if (extentSize % sectorSize !== 0) {
    throw new MetadataError(`Extent size (${extentSize}) is not multiple of sector size (${sectorSize}).`, EX.DATAERR);
  }
  // Upstream: not checked, and the bitmap code then aborts on an assertion (HAST-SPEC §11.14).
  if (!isPowerOf2(extentSize) || extentSize > 0xffff_ffff) {
    throw new MetadataError(`Extent size (${extentSize}) is not a power of 2 below 4G.`, EX.DATAERR);
  }
  let keepDirty = opts.keepDirty ?? 0;
  if (keepDirty === 0) keepDirty = DEFAULT_KEEPDIRTY;
  if (!Number.isSafeInteger(keepDirty) || keepDirty < 0 || keepDirty > 0xffff_ffff) {
    throw new MetadataError(`Keepdirty (${keepDirty}) does not fit 32 bits.`, EX.DATAERR);
  }
  const layout = computeLayout({ mediaSize, sectorSize, extentSize });
  const md: Metadata = {
    resource: opts.resource,
    dataSize: layout.dataSize,
    extentSize,
    keepDirty,
    localOff: layout.localOff,
    resuid: 0n,
    localCnt: 0n,
    remoteCnt: 0n,
    prevRole: 'init',
  };
  await writeMetadata(comp, md);
  try {
    const map = opts.fullSync === true ? allOnes(layout.nExtents, layout.mapSize) : Buffer.alloc(layout.mapSize);
    await comp.write([map], METADATA_SIZE);
  } catch (err) {
    throw new MetadataError(`Unable to store initial bitmap on ${comp.path}: ${(err as Error).message}`, EX.IOERR, {
      cause: err,
    });
  }
  try {
    await comp.flush();
  } catch (err) {
    throw new MetadataError(`Unable to flush ${comp.path}: ${(err as Error).message}`, EX.IOERR, { cause: err });
  }
  return md;
}
