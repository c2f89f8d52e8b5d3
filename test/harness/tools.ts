// Test prerequisites: a missing tool, privilege or the native addon skips a test only outside CI;
// under CI it fails. Every test that needs something from the host asks here, so the rule is one.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type HastIo, loadNative } from '../../src/component/native.js';

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
 * A prerequisite is missing: under CI, throws (the test fails); outside CI, marks the test skipped
 * with the reason. Returns false, for `if (!…) return`.
 */
export function unmet(t: TestContext, reason: string): false {
  if (IN_CI) throw new Error(`${reason} (CI=true: missing prerequisites are failures)`);
  t.skip(reason);
  return false;
}

/** What `requires` says is missing when the native addon does not load. */
const NATIVE_ADDON =
  'the native addon native/build/Release/hastio.node (npm install builds it with scripts/build-native.mjs; HASTD_NO_NATIVE=1 turns it off)';

/**
 * Returns true when every requirement is met; otherwise `unmet` with all that is missing.
 * `native`: the optional addon (src/component/native.ts) must load.
 */
export function requires(
  t: TestContext,
  needs: { tools?: readonly string[]; root?: boolean; native?: boolean },
): boolean {
  const missing: string[] = [];
  for (const tool of needs.tools ?? []) if (!hasTool(tool)) missing.push(tool);
  if (needs.root === true && !isRoot()) missing.push('root privileges');
  if (needs.native === true && loadNative() === null) missing.push(NATIVE_ADDON);
  if (missing.length === 0) return true;
  return unmet(t, `requires ${missing.join(', ')}`);
}

/** The native addon for a test that exercises it, or null when `requires` skipped the test. */
export function nativeAddon(t: TestContext): HastIo | null {
  return requires(t, { native: true }) ? loadNative() : null;
}

/** A fresh temporary directory removed when the test ends. */
export function tmpDir(t: TestContext, prefix = 'hastd-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
