// The secondary's local component and metadata access (HAST-SPEC §3.2–3.3). Interim: until
// src/component/open.ts and src/metadata/metadata.ts land, a minimal file/device component and
// metadata block reader/writer live here; only this file changes when they do.
import { type FileHandle, open } from 'node:fs/promises';
import type { Component } from '../component/component.js';
import { decodeNvList, encodeNvList, nvString, nvU32, nvU64 } from './wire.js';

/** Size of the metadata block at offset 0 (HAST-SPEC §3.2). */
export const METADATA_SIZE = 4096;

export interface SecondaryMetadata {
  resource: string;
  dataSize: number;
  extentSize: number;
  keepDirty: number;
  localOff: number;
  resuid: bigint;
  localCnt: bigint;
  remoteCnt: bigint;
  prevRole: string;
}

/** The bitmap bytes the primary uses for this datasize: round-up(ceil(nextents / 8), sector). */
export function mapSize(md: SecondaryMetadata, sectorSize: number): number {
  const nextents = Math.ceil(md.dataSize / md.extentSize);
  const bytes = Math.ceil(nextents / 8);
  return Math.ceil(bytes / sectorSize) * sectorSize;
}

/** Open the component read-write. */
export async function openLocal(path: string): Promise<Component> {
  const fh: FileHandle = await open(path, 'r+');
  const st = await fh.stat();
  const size = st.isBlockDevice() ? await blockSize(fh) : st.size;
  return {
    path,
    size,
    sectorSize: 512,
    isBlockDevice: st.isBlockDevice(),
    async read(buf, position) {
      let done = 0;
      while (done < buf.length) {
        const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
        if (bytesRead === 0) throw Object.assign(new Error('Short read'), { code: 'EIO' });
        done += bytesRead;
      }
    },
    async write(bufs, position) {
      await fh.writev([...bufs], position);
    },
    async flush() {
      await fh.datasync();
    },
    async discard(position, length) {
      await zero(fh, position, length);
    },
    async writeZeroes(position, length) {
      await zero(fh, position, length);
    },
    async close() {
      await fh.close();
    },
  };
}

async function blockSize(fh: FileHandle): Promise<number> {
  const buf = Buffer.alloc(1);
  let lo = 0;
  let hi = 2 ** 50;
  while (lo + 1 < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const { bytesRead } = await fh.read(buf, 0, 1, mid - 1);
    if (bytesRead === 1) lo = mid;
    else hi = mid;
  }
  return lo;
}

async function zero(fh: FileHandle, position: number, length: number): Promise<void> {
  const chunk = Buffer.alloc(Math.min(length, 1 << 20));
  for (let at = 0; at < length; at += chunk.length) {
    const n = Math.min(chunk.length, length - at);
    await fh.write(chunk, 0, n, position + at);
  }
}

/** Read and check the metadata block; throws with upstream's messages. */
export async function readMd(comp: Component, resource: string): Promise<SecondaryMetadata> {
  const buf = Buffer.alloc(METADATA_SIZE);
  await comp.read(buf, 0);
  const nv = decodeNvList(buf);
  const res = nv.string('resource');
  const u64 = (name: string): bigint => {
    const v = nv.int(name, 8);
    if (v === null) throw new Error(`Metadata block has no '${name}' field`);
    return v;
  };
  const u32 = (name: string): number => {
    const v = nv.int(name, 6);
    if (v === null) throw new Error(`Metadata block has no '${name}' field`);
    return Number(v);
  };
  if (res === null) throw new Error("Metadata block has no 'resource' field");
  if (res !== resource) throw new Error(`Provider ${comp.path} is not part of resource ${resource}`);
  return {
    resource: res,
    dataSize: Number(u64('datasize')),
    extentSize: u32('extentsize'),
    keepDirty: u32('keepdirty'),
    localOff: Number(u64('offset')),
    resuid: u64('resuid'),
    localCnt: u64('localcnt'),
    remoteCnt: u64('remotecnt'),
    prevRole: nv.string('prevrole') ?? 'init',
  };
}

/** Rewrite the whole 4096-byte metadata block. */
export async function writeMd(comp: Component, md: SecondaryMetadata): Promise<void> {
  const nv = encodeNvList([
    nvString('resource', md.resource),
    nvU64('datasize', BigInt(md.dataSize)),
    nvU32('extentsize', md.extentSize),
    nvU32('keepdirty', md.keepDirty),
    nvU64('offset', BigInt(md.localOff)),
    nvU64('resuid', md.resuid),
    nvU64('localcnt', md.localCnt),
    nvU64('remotecnt', md.remoteCnt),
    nvString('prevrole', md.prevRole),
  ]);
  const block = Buffer.alloc(METADATA_SIZE);
  nv.copy(block);
  await comp.write([block], 0);
}

/** Read the on-disk bitmap as the primary sizes it. */
export async function readMap(comp: Component, md: SecondaryMetadata): Promise<Buffer> {
  const buf = Buffer.alloc(Math.min(mapSize(md, comp.sectorSize), md.localOff - METADATA_SIZE));
  if (buf.length > 0) await comp.read(buf, METADATA_SIZE);
  return buf;
}

/** Zero the whole reserved bitmap area, derived from the stored offset (fix of HAST-SPEC §11.10). */
export async function clearMap(comp: Component, md: SecondaryMetadata): Promise<void> {
  const len = md.localOff - METADATA_SIZE;
  if (len > 0) await comp.write([Buffer.alloc(len)], METADATA_SIZE);
}
