// hastctl dump output and FreeBSD humanize_number() as hastd's "%N" renders it. HAST-SPEC §2.3
// (freebsd-src:sbin/hastctl/hastctl.c dump_one, lib/libpjdlog pjdlog_printf_render_humanized_number,
// lib/libutil/humanize_number.c).
import type { Metadata } from './metadata.js';

const PREFIXES = ['', 'K', 'M', 'G', 'T', 'P', 'E'] as const;
const MAXSCALE = 6;
const DIVISOR = 1024;
/** ceil(0.95 * 1024): from this remainder on, x.95+ rounds up and no longer fits "9.9". */
const DIVISORDECCUT = 973;

/**
 * humanize_number(buf, 5, n, "", HN_AUTOSCALE, HN_NOSPACE | HN_DECIMAL): base 1024, at most
 * four characters, one decimal when the scaled value is below 10 (e.g. 2097152 → "2.0M",
 * 512 → "512", 1000 → "1.0K", 10474291 → "10M"). No "B": callers append it, as upstream's "%NB".
 */
export function humanizeNumber(n: number): string {
  const len = 5;
  let quotient = Math.trunc(n);
  let sign = 1;
  let baselen = 1; // prefix letter
  if (quotient < 0) {
    sign = -1;
    quotient = -quotient;
    baselen += 2; // sign, digit
  } else {
    baselen += 1; // digit
  }
  let max = 1;
  for (let k = len - baselen; k > 0; k--) max *= 10;
  let remainder = 0;
  let i = 0;
  // Divide until it fits the columns; divide once more when rounding below would overflow them.
  while (
    (quotient >= max || (quotient === max - 1 && (remainder >= DIVISORDECCUT || remainder >= DIVISOR / 2))) &&
    i < MAXSCALE
  ) {
    remainder = quotient % DIVISOR;
    quotient = Math.floor(quotient / DIVISOR);
    i++;
  }
  const prefix = PREFIXES[i] ?? '';
  if (((quotient === 9 && remainder < DIVISORDECCUT) || quotient < 9) && i > 0) {
    const tenths = Math.floor((remainder * 10 + DIVISOR / 2) / DIVISOR);
    const s1 = quotient + Math.floor(tenths / 10);
    const s2 = tenths % 10;
    return `${sign * s1}.${s2}${prefix}`;
  }
  return `${sign * (quotient + Math.floor((remainder + DIVISOR / 2) / DIVISOR))}${prefix}`;
}

/** The `hastctl dump` text for one resource, newline-terminated (four-space indentation). */
export function formatDump(md: Metadata): string {
  return [
    `resource: ${md.resource}`,
    `    datasize: ${md.dataSize} (${humanizeNumber(md.dataSize)}B)`,
    `    extentsize: ${md.extentSize} (${humanizeNumber(md.extentSize)}B)`,
    `    keepdirty: ${md.keepDirty}`,
    `    localoff: ${md.localOff}`,
    `    resuid: ${md.resuid}`,
    `    localcnt: ${md.localCnt}`,
    `    remotecnt: ${md.remoteCnt}`,
    `    prevrole: ${md.prevRole}`,
    // Ours, only when set: FreeBSD's lines otherwise.
    ...(md.inconsistent === true ? ['    inconsistent: yes (unfinished synchronization)'] : []),
    ...(md.agreed !== undefined
      ? [`    divergence record: ${md.agreed.extents.length} extents both copies hold alike`]
      : []),
    '',
  ].join('\n');
}
