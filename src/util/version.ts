// The package version, read once from the package.json this build belongs to (hastd --version,
// hastctl --version, the metrics build info). dist/src/util/version.js → ../../../package.json.
import { readFileSync } from 'node:fs';

let cached: string | null = null;

/** "hastd 0.1.0" style version string of the installed package. */
export function packageVersion(): string {
  if (cached !== null) return cached;
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version?: unknown;
    };
    cached = typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    cached = 'unknown';
  }
  return cached;
}
