// Line framing for the control socket: one JSON document per line, bounded in size.
import type { Socket } from 'node:net';

/** Control messages are small; anything larger is refused before it is buffered further. */
const MAX_CONTROL_MESSAGE = 1 << 20;

/** Read one line from the socket (without the newline) or reject on close/oversize. */
export function readLine(sock: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
      sock.off('close', onEnd);
    };
    const onData = (chunk: Buffer): void => {
      const nl = chunk.indexOf(10);
      if (nl >= 0) {
        chunks.push(chunk.subarray(0, nl));
        cleanup();
        resolve(Buffer.concat(chunks).toString('utf8'));
        return;
      }
      size += chunk.length;
      if (size > MAX_CONTROL_MESSAGE) {
        cleanup();
        reject(new Error('control message too large'));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error('connection closed before a complete message'));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('close', onEnd);
    sock.on('error', onError);
  });
}
