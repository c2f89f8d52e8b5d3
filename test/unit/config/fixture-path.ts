// Locates test/fixtures/config/<name>: walks up from the compiled test file (dist/ builds), then
// falls back to the current directory (builds into another --outDir, run from the repo root).
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export function fixturePath(name: string): string {
  const rel = join('test', 'fixtures', 'config', name);
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, rel))) return join(dir, rel);
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return resolve(process.cwd(), rel);
}
