// LZF (liblzf stream format) compressor and bounds-checked decompressor, as used by HAST's
// `compression lzf` (HAST-SPEC §6.2). Our own implementation of the published stream format.
//
// Stream format: a sequence of chunks, each starting with a control byte `c`:
//
//   c < 0x20   literal run:   000LLLLL, then L + 1 literal bytes (1..32)
//   c >= 0x20  back reference: LLLooooo [extra] oooooooo
//              length field L = c >> 5 (1..7); when L = 7 one extra byte follows and is added;
//              bytes to copy  = L + 2 (3..264; L = 0 is not a reference but a literal run);
//              distance       = ((c & 0x1f) << 8 | last byte) + 1, counted back from the current
//              output position (1..8192). Source and destination may overlap (runs).

/** Longest literal run one control byte can describe. */
const MAX_LIT = 32;
/** Farthest back reference: 13 bits of offset, plus one. */
const MAX_OFF = 1 << 13;
/** Longest back reference: (7 + 255) + 2 bytes. */
const MAX_REF = (1 << 8) + (1 << 3);

/** log2 of the compressor's hash table size. */
const HLOG = 14;
/** Hash table: position + 1 of the last 3-byte sequence with that hash (0 = empty). Reused. */
const table = new Int32Array(1 << HLOG);

/** Why an LZF stream was rejected. */
export class LzfError extends Error {
  override readonly name = 'LzfError';
}

function hash3(buf: Uint8Array, at: number): number {
  const v = ((buf[at] as number) << 16) | ((buf[at + 1] as number) << 8) | (buf[at + 2] as number);
  return Math.imul(v, 0x9e3779b1) >>> (32 - HLOG);
}

/**
 * Compress `input` into `out` as a standard LZF stream.
 * Returns the number of bytes written, or 0 when the stream would not fit in `out` (the caller
 * then sends the data uncompressed, as liblzf's callers do) or when `input` is empty.
 */
export function lzfCompress(input: Uint8Array, out: Uint8Array): number {
  const n = input.length;
  const outEnd = out.length;
  if (n === 0) return 0;
  table.fill(0);

  let ip = 0;
  let op = 0;
  /** Bytes in the open literal run, and where its control byte sits in `out`. */
  let lit = 0;
  let litAt = 0;

  while (ip + 2 < n) {
    const h = hash3(input, ip);
    const ref = (table[h] as number) - 1;
    table[h] = ip + 1;
    const dist = ip - ref;
    if (
      ref >= 0 &&
      dist <= MAX_OFF &&
      input[ref] === input[ip] &&
      input[ref + 1] === input[ip + 1] &&
      input[ref + 2] === input[ip + 2]
    ) {
      const maxLen = Math.min(MAX_REF, n - ip);
      let len = 3;
      while (len < maxLen && input[ref + len] === input[ip + len]) len++;

      // Close the open literal run before the reference.
      if (lit > 0) {
        out[litAt] = lit - 1;
        lit = 0;
      }
      const field = len - 2;
      const off = dist - 1;
      if (op + (field < 7 ? 2 : 3) > outEnd) return 0;
      if (field < 7) {
        out[op++] = (field << 5) | (off >>> 8);
      } else {
        out[op++] = (7 << 5) | (off >>> 8);
        out[op++] = field - 7;
      }
      out[op++] = off & 0xff;

      // Index the positions inside the match too: better ratios on repetitive data.
      const end = ip + len;
      for (let p = ip + 1; p < end && p + 2 < n; p++) table[hash3(input, p)] = p + 1;
      ip = end;
      continue;
    }

    if (lit === 0) {
      if (op >= outEnd) return 0;
      litAt = op++;
    }
    if (op >= outEnd) return 0;
    out[op++] = input[ip++] as number;
    if (++lit === MAX_LIT) {
      out[litAt] = MAX_LIT - 1;
      lit = 0;
    }
  }

  // The last one or two bytes cannot start a match.
  while (ip < n) {
    if (lit === 0) {
      if (op >= outEnd) return 0;
      litAt = op++;
    }
    if (op >= outEnd) return 0;
    out[op++] = input[ip++] as number;
    if (++lit === MAX_LIT) {
      out[litAt] = MAX_LIT - 1;
      lit = 0;
    }
  }
  if (lit > 0) out[litAt] = lit - 1;
  return op;
}

/**
 * Decompress a standard LZF stream into `out`. Never writes past `out.length`.
 * Returns the number of bytes produced.
 * @throws LzfError on a truncated stream, an output overflow or a back reference before the
 *   start of the output.
 */
export function lzfDecompress(input: Uint8Array, out: Uint8Array): number {
  const inLen = input.length;
  const outLen = out.length;
  let ip = 0;
  let op = 0;

  while (ip < inLen) {
    const ctrl = input[ip++] as number;
    if (ctrl < 0x20) {
      const len = ctrl + 1;
      if (ip + len > inLen) throw new LzfError(`truncated literal run at input offset ${ip - 1}`);
      if (op + len > outLen) throw new LzfError(`output overflow: literal run exceeds ${outLen} bytes`);
      if (len > 8) out.set(input.subarray(ip, ip + len), op);
      else for (let i = 0; i < len; i++) out[op + i] = input[ip + i] as number;
      ip += len;
      op += len;
      continue;
    }

    let len = ctrl >>> 5;
    if (len === 7) {
      if (ip >= inLen) throw new LzfError(`truncated back reference at input offset ${ip - 1}`);
      len += input[ip++] as number;
    }
    if (ip >= inLen) throw new LzfError(`truncated back reference at input offset ${ip - 1}`);
    const ref = op - (((ctrl & 0x1f) << 8) | (input[ip++] as number)) - 1;
    len += 2;
    if (ref < 0) throw new LzfError(`back reference before the start of the output at output offset ${op}`);
    if (op + len > outLen) throw new LzfError(`output overflow: back reference exceeds ${outLen} bytes`);
    if (ref + len <= op && len > 8) {
      out.copyWithin(op, ref, ref + len);
      op += len;
    } else {
      // Short or overlapping copy: byte by byte, so a run repeats what it has just written.
      for (let i = 0; i < len; i++) out[op++] = out[ref + i] as number;
    }
  }
  return op;
}
