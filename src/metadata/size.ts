// Size arguments of hastctl create (-e/-k/-m): FreeBSD expand_number(3) syntax. HAST-SPEC §2.1
// (freebsd-src:lib/libutil/expand_number.c).

/** Thrown for a size that is not a number, has an unknown unit, or overflows. */
export class SizeError extends RangeError {
  override readonly name = 'SizeError';
}

/** What a refusal tells the administrator to write. */
export const SIZE_FORMS =
  'Accepted: a number of bytes (decimal, 0x hex, 0 octal) with an optional unit k, m, g, t, p or e (powers of 1024), ' +
  'optionally followed by b or ib, in any case: 4096, 2M, 2MiB, 1G, 512kb.';

const SHIFT: Record<string, number> = { b: 0, k: 10, m: 20, g: 30, t: 40, p: 50, e: 60 };

/**
 * Parse "1048576", "2M", "1g", "512k", "4KB": a non-negative integer (strtoimax base 0: decimal,
 * 0x hex, leading-0 octal) and an optional case-insensitive unit b/k/m/g/t/p/e (powers of 1024),
 * optionally followed by "b". Results above 2^53 − 1 are refused as overflow (upstream's limit is
 * 2^63 − 1; no component is that large). Throws SizeError.
 */
export function parseSize(str: string): number {
  // `2MiB`: the IEC spelling of the same powers of 1024 (ours; expand_number has no `i`).
  const iec = /^(.*[kKmMgGtTpPeE])[iI]([bB])$/.exec(str);
  if (iec !== null) return parseSize(`${iec[1] ?? ''}${iec[2] ?? ''}`);
  const m = /^\s*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([bBkKmMgGtTpPeE]?)([bB]?)$/.exec(str);
  if (m === null) throw new SizeError(`Invalid size: ${JSON.stringify(str)}`);
  const digits = m[1] ?? '';
  const unit = (m[2] ?? '').toLowerCase();
  if (m[3] !== '' && (unit === '' || unit === 'b')) throw new SizeError(`Invalid size: ${JSON.stringify(str)}`);
  let n: bigint;
  if (/^0[xX]/.test(digits)) n = BigInt(digits);
  else if (digits.length > 1 && digits.startsWith('0')) n = BigInt(`0o${digits.slice(1)}`);
  else n = BigInt(digits);
  n <<= BigInt(SHIFT[unit] ?? 0);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new SizeError(`Size too large: ${JSON.stringify(str)}`);
  return Number(n);
}
