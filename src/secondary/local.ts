// The secondary's local component and metadata access (HAST-SPEC §3.2–3.3), on the same modules as
// the primary: src/component/open.ts (flock, punch hole / BLKDISCARD) and src/metadata/metadata.ts
// (byte-exact metadata block, bitmap sized from the stored metadata).
import type { Component } from '../component/component.js';
import { openComponent } from '../component/open.js';
import { METADATA_SIZE } from '../metadata/layout.js';
import { bitmapSize, type Metadata, readBitmap, readMetadata, reservedMapSize, writeMetadata } from '../metadata/metadata.js';

export { METADATA_SIZE };

/** The secondary keeps the whole metadata record; the name says who uses it. */
export type SecondaryMetadata = Metadata;

/** The bitmap bytes the primary uses for this datasize (see bitmapSize). */
export function mapSize(md: SecondaryMetadata, sectorSize: number): number {
  return bitmapSize(md, sectorSize);
}

/** Open the component read-write with an exclusive lock, as the primary does. */
export function openLocal(path: string): Promise<Component> {
  return openComponent(path, { lock: true });
}

/** Read and check the metadata block; throws MetadataError with upstream's messages. */
export function readMd(comp: Component, resource: string): Promise<SecondaryMetadata> {
  return readMetadata(comp, resource);
}

/** Rewrite the whole 4096-byte metadata block. */
export function writeMd(comp: Component, md: SecondaryMetadata): Promise<void> {
  return writeMetadata(comp, md);
}

/** Read the on-disk bitmap as the primary sizes it. */
export function readMap(comp: Component, md: SecondaryMetadata): Promise<Buffer> {
  return readBitmap(comp, md);
}

/** Zero the whole reserved bitmap area, derived from the stored offset (fix of HAST-SPEC §11.10). */
export async function clearMap(comp: Component, md: SecondaryMetadata): Promise<void> {
  const len = reservedMapSize(md);
  if (len > 0) await comp.write([Buffer.alloc(len)], METADATA_SIZE);
}
