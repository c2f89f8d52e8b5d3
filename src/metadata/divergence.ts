// Ours (issue 17): the divergence record of the metadata block — the extents both copies still agree
// on since they diverged, so that a split-brain recovery (--discard-my-data) can leave them out of
// what the activemap would resynchronise (README "Split-brain recovery (ours)").
//
// Two extra elements at the end of the metadata nv list, only while a record exists:
//   agreedcnt  uint64 array [localcnt, remotecnt]: the generation, the counters the record was
//              written with (a block whose counters differ carries a stale record: ignored)
//   agreed     uint32 array: extent numbers, ascending, each < ceil(datasize / extentsize)
// FreeBSD's hastd reads the block by field name (metadata.c, nv_get_*) and ignores them; it rebuilds
// the block from its own fields when it writes it, so the record disappears, and with it nothing but
// the saving: without a record the activemap alone counts, as before.
//
// The record only ever takes extents away from the activemap, so any subset of the agreed extents is
// safe. A record larger than the room the block leaves is cut (its first extents are kept): the
// recovery then moves more, never less. The keepdirty LRU bounds it (64 extents by default; about
// 900 fit next to a short resource name).
import { clearBit } from '../activemap/bitmap.js';
import { type NvList, NV_TYPE, nvEncodedSize } from '../nv/codec.js';
import { METADATA_SIZE } from './layout.js';

const GEN = 'agreedcnt';
const LIST = 'agreed';
/** Bytes of one nv element header: type, name size, data size (HAST-SPEC §3.1). */
const NV_HEADER = 6;

function roundup8(n: number): number {
  return n + ((8 - (n % 8)) % 8);
}

/** Encoded bytes of an element named `name` carrying `dataSize` bytes. */
function elementSize(name: string, dataSize: number): number {
  return NV_HEADER + roundup8(name.length + 1) + roundup8(dataSize);
}

/** How many extent numbers fit after the elements already in `nv` (the block must stay under 4096 bytes). */
export function agreedCapacity(nv: NvList): number {
  const room = METADATA_SIZE - 1 - nvEncodedSize(nv) - elementSize(GEN, 16) - elementSize(LIST, 0);
  // The array is padded to 8 bytes: two extent numbers per 8.
  return room < 8 ? 0 : Math.floor(room / 8) * 2;
}

/** A divergence record: the agreed extents, and the counters (generation) it is valid for. */
export interface AgreedRecord {
  readonly localCnt: bigint;
  readonly remoteCnt: bigint;
  /** Extent numbers, ascending. */
  readonly extents: readonly number[];
}

/**
 * Append the record to a metadata list being built (after the upstream fields); nothing when it
 * names no extent. Cut to the room left (see the header).
 */
export function addAgreed(nv: NvList, rec: AgreedRecord): void {
  const n = Math.min(rec.extents.length, agreedCapacity(nv));
  if (n === 0) return;
  nv.addUint64Array(GEN, BigUint64Array.of(rec.localCnt, rec.remoteCnt));
  nv.addUint32Array(LIST, Uint32Array.from(rec.extents.slice(0, n)));
}

/**
 * The record of a decoded metadata list, or undefined when there is none that counts: absent, of
 * another type, of another generation than the block's counters, not ascending, or naming an
 * extent past the end. In doubt there is no record, and the activemap alone decides.
 */
export function readAgreed(
  nv: NvList,
  md: { readonly localCnt: bigint; readonly remoteCnt: bigint; readonly nExtents: number },
): AgreedRecord | undefined {
  const gen = nv.get(GEN, NV_TYPE.UINT64_ARRAY);
  const list = nv.get(LIST, NV_TYPE.UINT32_ARRAY);
  if (gen === undefined || list === undefined || gen.length !== 2) return undefined;
  if (gen[0] !== md.localCnt || gen[1] !== md.remoteCnt) return undefined;
  const extents: number[] = [];
  for (const e of list) {
    if (e >= md.nExtents || (extents.length > 0 && e <= (extents[extents.length - 1] ?? -1))) return undefined;
    extents.push(e);
  }
  return extents.length > 0 ? { localCnt: md.localCnt, remoteCnt: md.remoteCnt, extents } : undefined;
}

/** A copy of an activemap image without the agreed extents' bits (what a recovery resyncs). */
export function withoutAgreed(map: Uint8Array, agreed: readonly number[]): Buffer {
  const out = Buffer.from(map);
  for (const e of agreed) clearBit(out, e);
  return out;
}
