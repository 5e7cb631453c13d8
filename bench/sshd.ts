/**
 * OpenSSH sshd helpers for the benchmarks that start the server of test/servers/sshd.ts
 * (bench/sftp-cli.ts, bench/reuse.ts, bench/slow-destination.ts): the destination section that
 * points at it and a known_hosts file for OpenSSH's client and rclone.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sshdServer, type SftpTestServer } from '../test/servers/sshd.js';
import { reapedChildrenCpuOf } from './lib.js';

export interface BenchSshd {
  readonly server: SftpTestServer;
  /**
   * CPU seconds of the sshd processes that served connections so far and have exited (every
   * connection is served by processes forked from the listening sshd, which reaps them: their
   * time adds up in its own `cutime` + `cstime`). Waits up to 5 s for the connections still
   * being served to end first, so call it once a client has exited.
   */
  servedCpuSeconds(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts sshd in `dir` (its own port and keys, 127.0.0.1). */
export async function startSshd(dir: string): Promise<BenchSshd> {
  const handle = await sshdServer.start(dir);
  // test/servers/sshd.ts keeps the listener's PID in its run folder.
  const pid = Number(readFileSync(join(dir, `run-${process.pid}`, 'sshd.child-pid'), 'utf8').trim());
  const servedCpuSeconds = async (): Promise<number> => {
    for (let i = 0; i < 50 && readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim() !== ''; i++) await new Promise((r) => setTimeout(r, 100));
    return reapedChildrenCpuOf(pid);
  };
  return { server: JSON.parse(handle.env['OFFSITE_TEST_SFTP'] as string) as SftpTestServer, servedCpuSeconds, stop: () => handle.stop() };
}

/** A `type: sftp` destination as a YAML flow mapping, at `root`, through `port` (a proxy's) when given. */
export function sftpConfigSection(server: SftpTestServer, root: string, port = server.port): string {
  return `{ type: sftp, host: ${server.host}, port: ${port}, username: ${JSON.stringify(server.username)}, ` +
    `privateKey: ${JSON.stringify(server.privateKey)}, hostKey: ${JSON.stringify(server.hostKeyFingerprint)}, root: ${JSON.stringify(root)} }`;
}

/**
 * Writes a known_hosts file with every host key of the server (ed25519 and RSA), as ssh-keyscan
 * would list them, for `host:port` (entries name the port: a proxy's differs): rclone may
 * negotiate the RSA key and then refuses a file that lists only the other one.
 */
export function writeKnownHosts(file: string, server: SftpTestServer, port = server.port): string {
  writeFileSync(file, `[${server.host}]:${port} ${server.hostPublicKey}\n[${server.host}]:${port} ${server.rsaHostPublicKey}\n`);
  return file;
}
