/**
 * Running the programs the test servers need, and installing their Debian packages on demand.
 * Shared by test/servers/sshd.ts, test/servers/rgw.ts and test/helpers/chromium.ts.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Runs `file args`, resolving with its stdout; rejects with the last lines of its stderr. */
export async function sh(file: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await run(file, [...args], { env, maxBuffer: 16 * 1024 * 1024, timeout: timeoutMs });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const detail = (e.stderr ?? '').trim().split('\n').filter((l) => l.trim() !== '').slice(-3).join(' | ');
    throw new Error(`${file} ${args.join(' ')} failed: ${detail || e.message}`, { cause: err });
  }
}

/**
 * Installs Debian `packages` unless every one of `binaries` exists: noninteractive, waiting for
 * the dpkg lock (another test may be installing at the same moment), and with `apt-get update`
 * first when the install fails (a fresh machine has no package lists yet).
 */
export async function aptInstall(packages: readonly string[], binaries: readonly string[], timeoutMs = 600_000): Promise<void> {
  if (binaries.every((b) => existsSync(b))) return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const lock = ['-o', 'DPkg::Lock::Timeout=300'];
  const install = [...lock, 'install', '-y', '--no-install-recommends', ...packages];
  try {
    await sh('apt-get', install, env, timeoutMs);
  } catch {
    await sh('apt-get', [...lock, 'update'], env, timeoutMs);
    await sh('apt-get', install, env, timeoutMs);
  }
  const missing = binaries.filter((b) => !existsSync(b));
  if (missing.length > 0) throw new Error(`${packages.join(' ')} installed but ${missing.join(', ')} missing`);
}
