// The 4096-byte metadata block and the bitmap area of a local component. HAST-SPEC §3.2–3.3
// (freebsd-src:sbin/hastd/metadata.c).
//
// The block is an nv list zero-padded to 4096 bytes, elements in this order:
//   resource (string), datasize (uint64), extentsize (uint32), keepdirty (uint32),
//   offset (uint64, "localoff"), resuid (uint64), localcnt (uint64), remotecnt (uint64),
//   prevrole (string: init|primary|secondary),
// and ours, only while the copy is an unfinished sync target: inconsistent (uint8 1); only while a
// primary has diverged from its peer: agreedcnt, agreed (./divergence.ts). FreeBSD reads its fields
// by name and ignores them; a consistent copy's block without a record is byte-identical to FreeBSD's.
import type { Component } from '../component/component.js';
import { NvError, NvList, decodeNv, encodeNv, nvEncodedSize } from '../nv/codec.js';
import { EX } from '../util/sysexits.js';
import { type AgreedRecord, addAgreed, readAgreed } from './divergence.js';
import { MetadataError } from './errors.js';
import { METADATA_SIZE, mapSizeFor } from './layout.js';

export { MetadataError } from './errors.js';

export type Role = 'init' | 'primary' | 'secondary';

/** Decoded metadata; sizes are numbers (checked ≤ 2^53 − 1), identity and counters bigints. */
export interface Metadata {
  resource: string;
  dataSize: number;
  extentSize: number;
  keepDirty: number;
  localOff: number;
  resuid: bigint;
  localCnt: bigint;
  remoteCnt: bigint;
  prevRole: Role;
  /**
   * The copy is (or was, when interrupted) the target of an unfinished synchronisation: some of its
   * extents may be older than the rest (HAST-SPEC §4.4, DESIGN.md "Sync"). Absent = consistent.
   */
  inconsistent?: boolean;
  /**
   * Ours (issue 17): the extents both copies still agree on since this primary diverged from its
   * peer (./divergence.ts). Present only when valid for these counters. Whoever writes the block
   * without maintaining the record (every writer but the primary's data path) must drop it.
   */
  agreed?: AgreedRecord;
}

const WHAT = 'Metadata';

/** Encode metadata as the exact 4096-byte block upstream metadata_write() produces. */
export function encodeMetadata(md: Metadata): Buffer {
  const nv = new NvList();
  try {
    nv.addString('resource', md.resource)
      .addUint64('datasize', BigInt(md.dataSize))
      .addUint32('extentsize', md.extentSize)
      .addUint32('keepdirty', md.keepDirty)
      .addUint64('offset', BigInt(md.localOff))
      .addUint64('resuid', md.resuid)
      .addUint64('localcnt', md.localCnt)
      .addUint64('remotecnt', md.remoteCnt)
      .addString('prevrole', md.prevRole);
    if (md.inconsistent === true) nv.addUint8('inconsistent', 1);
    if (md.agreed !== undefined) addAgreed(nv, md.agreed);
  } catch (err) {
    throw new MetadataError(`Unable to create metadata: ${(err as Error).message}`, EX.DATAERR, { cause: err });
  }
  // Upstream asserts the list is smaller than the block; a very long name is the only way to fail.
  if (nvEncodedSize(nv) >= METADATA_SIZE) throw new MetadataError('Unable to create metadata: too large');
  return encodeNv(nv, METADATA_SIZE);
}

function safeNumber(v: bigint, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new MetadataError(`Metadata field '${field}' is too large (${v})`);
  }
  return Number(v);
}

/**
 * Decode a metadata block. Every field is required with its exact type (upstream's sticky nv
 * error); an unknown prevrole reads as init, as upstream. Throws MetadataError.
 */
export function decodeMetadata(buf: Buffer): Metadata {
  let nv: NvList;
  try {
    nv = decodeNv(buf.subarray(0, METADATA_SIZE));
  } catch (err) {
    throw new MetadataError(`Metadata is invalid: ${(err as Error).message}`, EX.DATAERR, { cause: err });
  }
  try {
    const resource = nv.requireString('resource', WHAT);
    const dataSize = safeNumber(nv.requireUint64('datasize', WHAT), 'datasize');
    const extentSize = nv.requireUint32('extentsize', WHAT);
    const keepDirty = nv.requireUint32('keepdirty', WHAT);
    const localOff = safeNumber(nv.requireUint64('offset', WHAT), 'offset');
    const resuid = nv.requireUint64('resuid', WHAT);
    const localCnt = nv.requireUint64('localcnt', WHAT);
    const remoteCnt = nv.requireUint64('remotecnt', WHAT);
    const role = nv.requireString('prevrole', WHAT);
    const prevRole: Role = role === 'primary' || role === 'secondary' ? role : 'init';
    // Not checked upstream; without these the data path would divide by zero or overlap the block.
    if (extentSize === 0) throw new MetadataError("Metadata field 'extentsize' is 0");
    if (localOff < METADATA_SIZE)
      throw new MetadataError(`Metadata field 'offset' (${localOff}) is inside the metadata block`);
    // Ours and optional (absent on FreeBSD's blocks and on consistent copies); a non-zero value of
    // any integer type counts: in doubt, inconsistent.
    const flag = nv.find('inconsistent')?.value;
    const inconsistent = (typeof flag === 'number' || typeof flag === 'bigint') && Number(flag) !== 0;
    const md: Metadata = { resource, dataSize, extentSize, keepDirty, localOff, resuid, localCnt, remoteCnt, prevRole };
    if (inconsistent) md.inconsistent = true;
    const agreed = readAgreed(nv, { localCnt, remoteCnt, nExtents: Math.ceil(dataSize / extentSize) });
    if (agreed !== undefined) md.agreed = agreed;
    return md;
  } catch (err) {
    if (err instanceof NvError) throw new MetadataError(err.message, EX.DATAERR, { cause: err });
    throw err;
  }
}

/**
 * Read and decode the metadata block of a component. With `expectedResource`, a block naming
 * another resource is refused with upstream's "Provider P is not part of resource R.".
 */
export async function readMetadata(component: Component, expectedResource?: string): Promise<Metadata> {
  if (component.size < METADATA_SIZE) {
    throw new MetadataError(
      `Unable to read metadata from ${component.path}: provider is smaller than ${METADATA_SIZE} bytes`,
    );
  }
  const buf = Buffer.alloc(METADATA_SIZE);
  try {
    await component.read(buf, 0);
  } catch (err) {
    throw new MetadataError(`Unable to read metadata from ${component.path}: ${(err as Error).message}`, EX.IOERR, {
      cause: err,
    });
  }
  let md: Metadata;
  try {
    md = decodeMetadata(buf);
  } catch (err) {
    if (err instanceof MetadataError) {
      throw new MetadataError(`Metadata read from ${component.path} is invalid: ${err.message}`, err.exitCode, {
        cause: err,
      });
    }
    throw err;
  }
  if (expectedResource !== undefined && md.resource !== expectedResource) {
    throw new MetadataError(`Provider ${component.path} is not part of resource ${expectedResource}.`);
  }
  return md;
}

/**
 * Rewrite the whole 4096-byte metadata block at offset 0. `durable`: on stable storage when this
 * resolves (O_DSYNC on the block when the component has it, else write + flush).
 */
export async function writeMetadata(component: Component, md: Metadata, durable = false): Promise<void> {
  const buf = encodeMetadata(md);
  try {
    if (!durable) await component.write([buf], 0);
    else if (component.writeDurable !== undefined) await component.writeDurable([buf], 0);
    else {
      await component.write([buf], 0);
      await component.flush();
    }
  } catch (err) {
    throw new MetadataError(`Unable to write metadata to ${component.path}: ${(err as Error).message}`, EX.IOERR, {
      cause: err,
    });
  }
}

/** Bytes reserved for the bitmap by create: localoff − 4096. */
export function reservedMapSize(md: Metadata): number {
  return md.localOff - METADATA_SIZE;
}

/**
 * Bitmap bytes used at run time: sized from the stored datasize and extentsize (rounded to the
 * component's sector size), never more than what create reserved.
 * Upstream: the secondary sized it from the component size and could overwrite user data
 * (HAST-SPEC §3.3, §11.10); we derive it from the stored metadata only.
 */
export function bitmapSize(md: Metadata, sectorSize: number): number {
  return Math.min(mapSizeFor(md.dataSize, md.extentSize, sectorSize), reservedMapSize(md));
}

/** Read the on-disk activemap bitmap (bitmapSize bytes at offset 4096). */
export async function readBitmap(component: Component, md: Metadata): Promise<Buffer> {
  const size = bitmapSize(md, component.sectorSize);
  const buf = Buffer.alloc(size);
  if (size === 0) return buf;
  try {
    await component.read(buf, METADATA_SIZE);
  } catch (err) {
    throw new MetadataError(`Unable to read bitmap from ${component.path}: ${(err as Error).message}`, EX.IOERR, {
      cause: err,
    });
  }
  return buf;
}

/**
 * Write the activemap bitmap at offset 4096. Bytes past the reserved area are only sector
 * padding and are dropped; a bitmap whose meaningful bytes (one bit per extent of datasize) do
 * not fit the reserved area is refused, since writing it would overwrite user data.
 * `durable` (metaflush): the bitmap is on stable storage when this resolves — through the
 * component's O_DSYNC path when it has one, which leaves the rest of the dirty page cache alone.
 */
export async function writeBitmap(
  component: Component,
  md: Metadata,
  bitmap: Uint8Array,
  durable = false,
): Promise<void> {
  const reserved = reservedMapSize(md);
  const needed = mapSizeFor(md.dataSize, md.extentSize, 1);
  if (needed > reserved) {
    throw new MetadataError(
      `Bitmap of ${needed} bytes does not fit the ${reserved} bytes reserved on ${component.path}`,
    );
  }
  const len = Math.min(bitmap.length, reserved);
  if (len === 0) return;
  const view = Buffer.from(bitmap.buffer, bitmap.byteOffset, len);
  try {
    if (!durable) await component.write([view], METADATA_SIZE);
    else if (component.writeDurable !== undefined) await component.writeDurable([view], METADATA_SIZE);
    else {
      await component.write([view], METADATA_SIZE);
      await component.flush();
    }
  } catch (err) {
    throw new MetadataError(`Unable to write bitmap to ${component.path}: ${(err as Error).message}`, EX.IOERR, {
      cause: err,
    });
  }
}
