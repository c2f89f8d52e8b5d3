// Peer listeners of the parent (HAST-SPEC §6.1, §6.3): accept the primary's connections, check the
// peer address, resource, role and token, and hand the sockets to a secondary worker.
import { createServer, type Server } from 'node:net';
import { parsePeerAddress } from '../config/index.js';
import { log } from '../log/log.js';
import type { HastdParent } from './parent.js';

export async function startPeerListeners(parent: HastdParent): Promise<() => void> {
  const servers: Server[] = [];
  for (const addr of parent.cfg.listen) {
    const a = parsePeerAddress(addr);
    const server = createServer((sock) => {
      log.info(`Connection from tcp://${sock.remoteAddress}:${sock.remotePort} to tcp://${sock.localAddress}:${sock.localPort}.`);
      sock.destroy();
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: a.host, port: a.port, backlog: 8, ipv6Only: a.family === 6 }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      const code = (err as { code?: string }).code;
      // Upstream listens on tcp4 and tcp6 by default and only needs one of them.
      if (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL') {
        log.warning(`Unable to listen on address ${addr}`, err);
        continue;
      }
      for (const s of servers) s.close();
      throw new Error(`Unable to listen on address ${addr}: ${(err as Error).message}`);
    }
    log.info(`Listening on address ${addr}.`);
    servers.push(server);
  }
  if (servers.length === 0) throw new Error('No address to listen on.');
  return () => {
    for (const s of servers) s.close();
  };
}
