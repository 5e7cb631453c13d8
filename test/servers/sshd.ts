/**
 * A real OpenSSH sshd for the SFTP tests: installs `openssh-server` with apt-get when
 * `/usr/sbin/sshd` is missing, writes its own config, host key and client key into `workDir`,
 * listens on 127.0.0.1 on a free port, and is stopped by the PID it was started with.
 *
 * Tests read `OFFSITE_TEST_SFTP` (JSON, see `SftpTestServer`). When root, it also sets up an
 * SFTP-only account without a shell (`offsite-sftp`, `ForceCommand internal-sftp`).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readdirSync, readFileSync, writeFileSync, rmSync, chownSync, chmodSync } from 'node:fs';
import { freePort, portOpen } from './net.js';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import type { ServerHandle, ServerSpec } from './index.js';
import { aptInstall, sh } from './shell.js';

const SSHD = '/usr/sbin/sshd';
const SFTP_ONLY_USER = 'offsite-sftp';
/** SFTP requests the SFTP-only account is refused (`sftp-server -P`). */
const SFTP_ONLY_DENIED = 'copy-data,posix-rename,fsync';

/** What the SFTP tests receive in `OFFSITE_TEST_SFTP`. */
export interface SftpTestServer {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  /** Path of an unencrypted ed25519 client key that the server accepts. */
  readonly privateKey: string;
  /** An ed25519 client key encrypted with `encryptedKeyPassphrase`, also accepted. */
  readonly encryptedPrivateKey: string;
  readonly encryptedKeyPassphrase: string;
  /** The host key's fingerprint as `ssh-keygen -lf` prints it (`SHA256:...`). */
  readonly hostKeyFingerprint: string;
  /** A known_hosts file with a plain `[127.0.0.1]:PORT` entry for the host key. */
  readonly knownHostsFile: string;
  /** The host key's public line (`ssh-ed25519 AAAA...`). */
  readonly hostPublicKey: string;
  /**
   * The server's second host key, RSA (`ssh-rsa AAAA...`) and its fingerprint: ssh2 negotiates
   * ed25519 first, so pinning this one tests that a pin of another type is still found.
   */
  readonly rsaHostPublicKey: string;
  readonly rsaHostKeyFingerprint: string;
  /** A folder on the server that `username` may write to. */
  readonly root: string;
  /**
   * An account restricted to internal-sftp (no shell), when it could be created. Its server is
   * refused `sftpOnlyDeniedRequests` (OpenSSH's `sftp-server -P`), like an older server.
   */
  readonly sftpOnlyUsername?: string;
  readonly sftpOnlyDeniedRequests?: string;
  /** A folder that `sftpOnlyUsername` may write to. */
  readonly sftpOnlyRoot?: string;
}


async function ensureSshdInstalled(): Promise<void> {
  await aptInstall(['openssh-server'], [SSHD]);
}


/** Creates the shell-less SFTP-only account once; needs root. Returns false when it cannot. */
async function ensureSftpOnlyUser(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  try {
    try {
      await sh('id', ['-u', SFTP_ONLY_USER]);
    } catch {
      await sh('useradd', ['-M', '-s', '/usr/sbin/nologin', SFTP_ONLY_USER]);
    }
    // useradd leaves the account locked ('!'), which sshd refuses even for key logins.
    await sh('usermod', ['-p', '*', SFTP_ONLY_USER]);
    return true;
  } catch {
    return false;
  }
}

async function fingerprint(publicKeyFile: string): Promise<string> {
  const out = await sh('ssh-keygen', ['-l', '-E', 'sha256', '-f', publicKeyFile]);
  const match = /SHA256:[A-Za-z0-9+/]+/.exec(out);
  if (!match) throw new Error(`unexpected ssh-keygen -l output: ${out.trim()}`);
  return match[0];
}

function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve) => {
    const tick = (): void => {
      try {
        process.kill(pid, 0);
      } catch {
        resolve(true);
        return;
      }
      if (Date.now() > deadline) resolve(false);
      else setTimeout(tick, 25);
    };
    tick();
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops the sshd of earlier test runs whose runner died without stopping it (killed, timed
 * out), and removes their folders. A run's folder is `run-<runner pid>`; only runs whose runner
 * is gone are touched (several people may run the tests in one checkout at once), and only a
 * process whose command line names that run's own config is signalled.
 */
function reapOrphans(baseDir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(baseDir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const runner = /^run-(\d+)$/.exec(entry);
    if (!runner || isAlive(Number(runner[1]))) continue;
    const runDir = join(baseDir, entry);
    try {
      const pid = Number(readFileSync(join(runDir, 'sshd.child-pid'), 'utf8').trim());
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (pid > 1 && cmdline.includes(join(runDir, 'sshd_config'))) process.kill(pid, 'SIGKILL');
    } catch {
      /* no pid file, or that process is gone */
    }
    rmSync(runDir, { recursive: true, force: true });
  }
}

async function start(baseDir: string): Promise<ServerHandle> {
  await ensureSshdInstalled();
  mkdirSync(baseDir, { recursive: true });
  reapOrphans(baseDir);
  // One folder per runner process: concurrent runs in the same checkout must not share keys.
  const workDir = join(baseDir, `run-${process.pid}`);
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  const hostKey = join(workDir, 'host_ed25519');
  const rsaHostKey = join(workDir, 'host_rsa');
  await sh('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-C', 'offsite-test-host-rsa', '-f', rsaHostKey]);
  const clientKey = join(workDir, 'client_ed25519');
  await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'offsite-test-host', '-f', hostKey]);
  await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'offsite-test-client', '-f', clientKey]);
  const encryptedKey = join(workDir, 'client_ed25519_encrypted');
  const encryptedKeyPassphrase = 'offsite test passphrase';
  await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', encryptedKeyPassphrase, '-C', 'offsite-test-encrypted', '-f', encryptedKey]);
  const authorizedKeys = join(workDir, 'authorized_keys');
  writeFileSync(authorizedKeys, Buffer.concat([readFileSync(`${clientKey}.pub`), readFileSync(`${encryptedKey}.pub`)]));
  chmodSync(authorizedKeys, 0o644);

  const root = join(workDir, 'data');
  mkdirSync(root, { recursive: true });
  const username = userInfo().username;

  const sftpOnly = await ensureSftpOnlyUser();
  const sftpOnlyRoot = join(workDir, 'sftp-only-data');
  if (sftpOnly) {
    mkdirSync(sftpOnlyRoot, { recursive: true });
    const uid = Number((await sh('id', ['-u', SFTP_ONLY_USER])).trim());
    const gid = Number((await sh('id', ['-g', SFTP_ONLY_USER])).trim());
    chownSync(sftpOnlyRoot, uid, gid);
  }

  const configFile = join(workDir, 'sshd_config');
  const pidFile = join(workDir, 'sshd.pid');
  const logFile = join(workDir, 'sshd.log');
  let lastError = '';
  // The free port can be taken between probing and binding: try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const lines = [
      `ListenAddress 127.0.0.1:${port}`,
      `HostKey ${hostKey}`,
      `HostKey ${rsaHostKey}`,
      `PidFile ${pidFile}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'UsePAM no',
      'StrictModes no',
      'X11Forwarding no',
      'AllowTcpForwarding no',
      'PrintMotd no',
      'UseDNS no',
      'MaxSessions 64',
      'MaxStartups 64:30:128',
      'LogLevel VERBOSE',
      'Subsystem sftp internal-sftp',
    ];
    // The SFTP-only account also stands for an older or stricter server: it is refused the
    // copy-data, posix-rename and fsync extensions, so the drivers' fallbacks get tested.
    if (sftpOnly) lines.push(`Match User ${SFTP_ONLY_USER}`, `  ForceCommand internal-sftp -P ${SFTP_ONLY_DENIED}`, '  PermitTTY no');
    writeFileSync(configFile, `${lines.join('\n')}\n`);
    await sh(SSHD, ['-t', '-f', configFile]);

    rmSync(pidFile, { force: true });
    const logFd = openSync(logFile, 'a');
    // detached = setsid(): sshd gets its own session and outlives nothing it should not.
    const child = spawn(SSHD, ['-f', configFile, '-D', '-e'], { detached: true, stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error('could not spawn sshd');
    writeFileSync(join(workDir, 'sshd.child-pid'), `${pid}\n`);
    let exited = false;
    child.once('exit', () => { exited = true; });

    const deadline = Date.now() + 10_000;
    while (!exited && Date.now() < deadline && !(await portOpen(port))) {
      await new Promise((r) => setTimeout(r, 20));
    }
    if (exited || !(await portOpen(port))) {
      if (!exited) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
      }
      lastError = readFileSync(logFile, 'utf8').trim().split('\n').slice(-3).join(' | ');
      continue;
    }

    const hostPublicKey = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
    const knownHostsFile = join(workDir, 'known_hosts');
    writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${hostPublicKey}\n`);
    const server: SftpTestServer = {
      host: '127.0.0.1',
      port,
      username,
      privateKey: clientKey,
      encryptedPrivateKey: encryptedKey,
      encryptedKeyPassphrase,
      hostKeyFingerprint: await fingerprint(`${hostKey}.pub`),
      knownHostsFile,
      hostPublicKey,
      rsaHostPublicKey: readFileSync(`${rsaHostKey}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' '),
      rsaHostKeyFingerprint: await fingerprint(`${rsaHostKey}.pub`),
      root,
      ...(sftpOnly ? { sftpOnlyUsername: SFTP_ONLY_USER, sftpOnlyRoot, sftpOnlyDeniedRequests: SFTP_ONLY_DENIED } : {}),
    };
    return {
      env: { OFFSITE_TEST_SFTP: JSON.stringify(server) },
      async stop(): Promise<void> {
        if (isAlive(pid)) {
          try { process.kill(pid, 'SIGTERM'); } catch { /* gone meanwhile */ }
          if (!(await waitForExit(pid, 3000))) {
            try { process.kill(pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
          }
        }
        rmSync(workDir, { recursive: true, force: true });
      },
    };
  }
  throw new Error(`sshd did not start: ${lastError || 'port never opened'} (log: ${logFile})`);
}

export const sshdServer: ServerSpec = {
  name: 'sshd',
  errorEnv: 'OFFSITE_TEST_SSHD_ERROR',
  neededBy: (testFile) => testFile.includes('sftp'),
  start,
};
