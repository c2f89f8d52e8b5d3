// The server side of TLS over a socket that is already connected and partly used (the HAST peer
// link after its plain handshake, an NBD connection after NBD_OPT_STARTTLS). A tls.Server that
// never listens is handed the socket: unlike a bare TLSSocket it checks a client certificate
// (authorized/authorizationError) when one is requested.
import type { Duplex } from 'node:stream';
import { createServer, type TLSSocket, type TlsOptions } from 'node:tls';

/**
 * Run TLS 1.3 as the server over `sock`.
 * @throws the TLS error, or Error('timed out') after `timeoutMs`
 */
export function serveTls(sock: Duplex, options: TlsOptions, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const srv = createServer({ minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ...options });
    let tls: TLSSocket | null = null;
    const timer = setTimeout(() => fail(new Error('timed out')), timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      tls?.destroy();
      sock.destroy();
      reject(err);
    };
    srv.once('tlsClientError', fail);
    srv.once('secureConnection', (t: TLSSocket) => {
      clearTimeout(timer);
      tls = t;
      resolve(t);
    });
    srv.emit('connection', sock);
  });
}
