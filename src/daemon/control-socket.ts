// The control socket's file system side (README "Security"): its directory made 0700 (0755 when a
// `controlgroup` must traverse it) whatever the umask, the socket bound under umask 0177 so that it
// is never wider than 0600 even for an instant, then 0600 root, or 0660 root:<controlgroup>.
import { chmodSync, chownSync, readFileSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { makeDirs, PRIVATE_DIR_MODE, SHARED_DIR_MODE } from '../util/dirs.js';

/** A group name (from /etc/group) or a numeric gid, as a gid. @throws when the name is unknown */
export function groupId(group: string, groupFile = '/etc/group'): number {
  if (/^\d+$/.test(group)) return Number(group);
  let text = '';
  try {
    text = readFileSync(groupFile, 'utf8');
  } catch {
    // No group file: only numeric groups can be used.
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new Error(`Unknown control group ${group}`);
}

/** Listen on the control socket at `path` with the modes above; a stale socket is replaced. */
export async function listenControlSocket(
  path: string,
  group: string | undefined,
  onConn: (s: Socket) => void,
): Promise<Server> {
  const gid = group === undefined ? null : groupId(group);
  makeDirs(dirname(path), gid === null ? PRIVATE_DIR_MODE : SHARED_DIR_MODE);
  try {
    unlinkSync(path);
  } catch {
    // No stale socket.
  }
  const server = createServer((sock) => onConn(sock));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // bind(2) of a unix socket happens inside listen(), synchronously: the umask covers it.
    const old = process.umask(0o177);
    try {
      server.listen({ path }, () => {
        server.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
  if (gid !== null) {
    chownSync(path, process.getuid?.() ?? 0, gid);
    chmodSync(path, 0o660);
  } else {
    chmodSync(path, 0o600);
  }
  return server;
}
