// What the benchmark needs before it starts: fio with its nbd engine, nbdkit, nbdcopy, qemu-nbd
// (with the quorum driver) and a built hastd; for the device phase (as root) nbdfuse and losetup. It refuses to run, saying what to install, rather than fail half-way.
import { existsSync } from 'node:fs';
import { hasTool } from '../test/harness/tools.js';
import { HASTD, run } from '../test/harness/process.js';

/** The external programs the benchmark drives; it refuses to start without them. */
export const REQUIRED_TOOLS = ['fio', 'nbdkit', 'nbdcopy', 'qemu-nbd'] as const;

/** Thrown when a prerequisite is missing; exits 69 (EX_UNAVAILABLE) with the message. */
export class MissingPrerequisite extends Error {
  override readonly name = 'MissingPrerequisite';
}

/**
 * Refuse to run, saying what to install, unless fio (with its nbd engine), nbdkit, nbdcopy and
 * qemu-nbd exist, and, when the device phase will run (`deviceTools`), nbdfuse, losetup and fusermount3.
 */
export async function checkPrerequisites(deviceTools: readonly string[] = []): Promise<Record<string, string>> {
  const missing = REQUIRED_TOOLS.filter((t) => !hasTool(t));
  if (missing.length > 0) {
    throw new MissingPrerequisite(
      `the benchmark needs ${missing.join(', ')} on PATH (Debian: apt-get install fio nbdkit libnbd-bin qemu-utils)`,
    );
  }
  const missingDev = deviceTools.filter((t) => !hasTool(t));
  if (missingDev.length > 0) {
    throw new MissingPrerequisite(
      `the device phase needs ${missingDev.join(', ')} on PATH (Debian: apt-get install libnbd-bin fuse3 mount); or leave it out with --phases`,
    );
  }
  const eng = await run('fio', ['--enghelp=nbd']);
  if (eng.code !== 0 || !eng.stdout.includes('uri'))
    throw new MissingPrerequisite('this fio has no nbd ioengine (Debian fio ≥ 3.20 has it)');
  if (!existsSync(HASTD)) throw new MissingPrerequisite(`${HASTD} is missing: run npm run build first`);
  const versions: Record<string, string> = {};
  for (const tool of [...REQUIRED_TOOLS, ...(deviceTools.includes('nbdfuse') ? ['nbdfuse'] : [])]) {
    const r = await run(tool, ['--version']);
    versions[tool] = (r.stdout.split('\n')[0] ?? '').trim();
  }
  return versions;
}
