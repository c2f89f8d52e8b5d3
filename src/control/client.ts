// hastctl's side of the control socket: connect, send one request, read one reply.
import { createConnection } from 'node:net';
import type { ControlReply, ControlRequest } from './messages.js';
import { readLine } from './wire.js';

export class ControlConnectError extends Error {
  override readonly name = 'ControlConnectError';
}

export async function controlRequest(path: string, req: ControlRequest): Promise<ControlReply> {
  const sock = createConnection({ path });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', (err) =>
      reject(new ControlConnectError(`Unable to connect to hastd via ${path}: ${err.message}`)),
    );
  });
  try {
    const replyP = readLine(sock);
    sock.write(`${JSON.stringify(req)}\n`);
    const line = await replyP;
    return JSON.parse(line) as ControlReply;
  } finally {
    sock.destroy();
  }
}

/**
 * Send one request and hand every line of the answer to `onLine` until hastd closes the connection
 * (`hastctl events`). Rejects with ControlConnectError when nobody accepts.
 */
export async function controlStream(path: string, req: ControlRequest, onLine: (line: string) => void): Promise<void> {
  const sock = createConnection({ path });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', (err) =>
      reject(new ControlConnectError(`Unable to connect to hastd via ${path}: ${err.message}`)),
    );
  });
  sock.write(`${JSON.stringify(req)}\n`);
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    sock.once('end', resolve);
    sock.once('error', reject);
  });
  sock.destroy();
}
