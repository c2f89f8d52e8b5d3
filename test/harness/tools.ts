// Test prerequisites: a missing tool or privilege skips a test only outside CI; under CI it fails.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';

export function hasTool(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * Returns true when every requirement is met. Otherwise: under CI, throws (the test fails);
 * outside CI, marks the test skipped with the reason and returns false.
 */
export function requires(t: TestContext, needs: { tools?: readonly string[]; root?: boolean }): boolean {
  const missing: string[] = [];
  for (const tool of needs.tools ?? []) if (!hasTool(tool)) missing.push(tool);
  if (needs.root === true && !isRoot()) missing.push('root privileges');
  if (missing.length === 0) return true;
  const reason = `requires ${missing.join(', ')}`;
  if (IN_CI) throw new Error(`${reason} (CI=true: missing prerequisites are failures)`);
  t.skip(reason);
  return false;
}

/** A fresh temporary directory removed when the test ends. */
export function tmpDir(t: TestContext, prefix = 'hastd-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
