// On-disk layout of a local component: metadata block, activemap bitmap, user data. HAST-SPEC §3.3.
//
//   [0, 4096)                         metadata block (nv list, zero-padded)
//   [4096, localoff)                  activemap bitmap, one bit per extent, rounded up to a sector
//   [localoff, localoff + datasize)   user data
import { MetadataError } from './errors.js';

/** Size of the metadata block, fixed whatever the sector size (HAST-SPEC §3.2, §11.8). */
export const METADATA_SIZE = 4096;

/** Component layout decided at create time. */
export interface Layout {
  readonly nExtents: number;
  /** Bytes reserved for the bitmap (a multiple of the sector size). */
  readonly mapSize: number;
  readonly dataSize: number;
  /** Byte offset of user data = METADATA_SIZE + mapSize. */
  readonly localOff: number;
}

function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

function roundUp(n: number, to: number): number {
  return ceilDiv(n, to) * to;
}

/**
 * Bitmap bytes for `dataSize` bytes of data at run time: ceil(ceil(dataSize / extentSize) / 8)
 * rounded up to `sectorSize` (upstream activemap_calc_ondisk_size).
 */
export function mapSizeFor(dataSize: number, extentSize: number, sectorSize: number): number {
  if (!(extentSize > 0) || !(sectorSize > 0)) {
    throw new MetadataError(`Invalid extent size (${extentSize}) or sector size (${sectorSize})`);
  }
  return roundUp(ceilDiv(ceilDiv(dataSize, extentSize), 8), sectorSize);
}

/**
 * Layout chosen by `hastctl create` for `mediaSize` bytes (HAST-SPEC §3.3):
 * nextents = ceil((mediasize − 4096) / extentsize), mapsize = roundup(ceil(nextents / 8), sectorsize),
 * datasize = mediasize − 4096 − mapsize, localoff = 4096 + mapsize.
 * Throws MetadataError when nothing is left for data.
 */
export function computeLayout(opts: { mediaSize: number; sectorSize: number; extentSize: number }): Layout {
  const { mediaSize, sectorSize, extentSize } = opts;
  if (!Number.isSafeInteger(mediaSize) || mediaSize <= METADATA_SIZE) {
    throw new MetadataError(`Media size (${mediaSize}) is too small for the metadata block`);
  }
  const nExtents = ceilDiv(mediaSize - METADATA_SIZE, extentSize);
  const mapSize = mapSizeFor(mediaSize - METADATA_SIZE, extentSize, sectorSize);
  const dataSize = mediaSize - METADATA_SIZE - mapSize;
  if (dataSize <= 0) {
    throw new MetadataError(`Media size (${mediaSize}) leaves no room for data after metadata and bitmap`);
  }
  return { nExtents, mapSize, dataSize, localOff: METADATA_SIZE + mapSize };
}
