// Which `on <node>` blocks are about this host. HAST-SPEC §1.5.
// Linux mapping: full and short hostname from os.hostname(); the host UUID is the contents of
// /etc/machine-id (32 hex digits, compared case-insensitively like kern.hostuuid); hostid<N> uses
// /etc/hostid (4 bytes, little-endian as glibc writes it on x86/arm), skipped when absent.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

const MACHINE_ID_FILE = '/etc/machine-id';
const HOSTID_FILE = '/etc/hostid';

/** A UUID or machine id: compared without regard to case (upstream: strcasecmp on kern.hostuuid). */
const UUID_LIKE = /^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

function readOrNull(path: string): Buffer | null {
  try {
    return readFileSync(path);
  } catch {
    // Absent or unreadable: that identity simply is not offered (HAST-SPEC §1.5 allows either).
    return null;
  }
}

/**
 * Names this host answers to, in upstream's message order: short hostname (only when the hostname
 * has a dot), full hostname, machine id, hostid<N>.
 */
export function acceptableNodeNames(): string[] {
  return nodeNamesFrom(hostname(), readOrNull(MACHINE_ID_FILE), readOrNull(HOSTID_FILE));
}

/** The pure part of acceptableNodeNames(): names from the hostname and the two files' bytes. */
export function nodeNamesFrom(full: string, machineId: Buffer | null, hostid: Buffer | null): string[] {
  const names: string[] = [];
  const dot = full.indexOf('.');
  if (dot > 0) names.push(full.slice(0, dot));
  if (full !== '') names.push(full);
  const id = machineId?.toString('latin1').trim() ?? '';
  if (id !== '') names.push(id);
  // glibc's sethostid() writes a 4-byte int in host order; every Linux target we run on is LE.
  if (hostid !== null && hostid.length >= 4) names.push(`hostid${hostid.readUInt32LE(0)}`);
  return names;
}

/**
 * True when `node` (an `on` block's name) designates this host, given the names it answers to.
 * Exact comparison, except UUID-shaped names, which compare case-insensitively.
 */
export function isThisNode(node: string, names: readonly string[]): boolean {
  for (const name of names) {
    if (name === node) return true;
    if (UUID_LIKE.test(name) && name.toLowerCase() === node.toLowerCase()) return true;
  }
  return false;
}
