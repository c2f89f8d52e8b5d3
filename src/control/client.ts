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
