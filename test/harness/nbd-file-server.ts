// Runnable NBD file server for tests: `node dist/test/harness/nbd-file-server.js <file> <socket>`.
// Prints "ready" on stdout once listening; exits 0 on SIGTERM/SIGINT after closing connections.
import { createNbdServer } from '../../src/nbd/server.js';
import { FileBackend } from './nbd-file-backend.js';

async function main(): Promise<void> {
  const [file, socket] = process.argv.slice(2);
  if (file === undefined || socket === undefined) {
    process.stderr.write('usage: nbd-file-server <file> <socket>\n');
    process.exit(64);
  }
  const backend = await FileBackend.open(file);
  const server = createNbdServer(backend, {
    description: `file ${file}`,
    log: (level, msg) => {
      if (level !== 'debug') process.stderr.write(`[${level}] ${msg}\n`);
    },
  });
  await server.listen({ kind: 'unix', path: socket });
  process.stdout.write('ready\n');
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void server
      .close()
      .then(() => backend.close())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`nbd-file-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
