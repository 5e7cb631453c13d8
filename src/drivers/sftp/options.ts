/**
 * Options of the `sftp` driver (a NAS or any host reachable over SSH) and their validation from
 * a config section such as
 *
 *     nas: { type: sftp, host: nas.lan, username: backup, privateKey: ~/.ssh/id_ed25519,
 *            hostKey: "SHA256:...", root: /volume1/milvus }
 *
 * Host keys are always checked: one of `hostKey`, `knownHosts` or (explicitly, with a warning on
 * every connect) `insecureAcceptAnyHostKey: true` is required.
 */
import { expandPath } from '../../config/paths.js';
import { ConfigError } from '../../errors.js';

export interface SftpOptions {
  readonly host: string;
  /** @default 22 */
  readonly port: number;
  readonly username: string;
  /** Path of a private key file (`~` expanded), OpenSSH or PEM format. */
  readonly privateKey?: string;
  /** Passphrase of `privateKey`; put a `${ENV}` reference in the config, never the secret. */
  readonly passphrase?: string;
  /** ssh-agent socket path (`agent: true` means `$SSH_AUTH_SOCK`). */
  readonly agent?: string;
  /** Password authentication. Discouraged: prefer a key that only this host accepts. */
  readonly password?: string;
  /**
   * Folder on the server that holds the objects: absolute, or relative to the login folder.
   * Created (with its parents) on the first write. Never ends with `/` (except `/` itself).
   */
  readonly root: string;
  /** Pinned host key fingerprints, as `ssh-keygen -lf` prints them (`SHA256:<base64>`). */
  readonly hostKeys: readonly string[];
  /** A known_hosts file (plain, hashed `|1|...` and `[host]:port` entries are understood). */
  readonly knownHosts?: string;
  /** Accepts any host key, with a warning on stderr at every connect. Never the default. */
  readonly insecureAcceptAnyHostKey: boolean;
  /** Time allowed for TCP connect + SSH handshake + authentication. @default 20000 */
  readonly readyTimeoutMs: number;
  /**
   * Most SFTP read or write requests in flight for one file (over all of its parts). `1` makes
   * the driver write strictly in order, one request at a time, for servers that refuse
   * parallel or out-of-order writes; it also turns `parallelPartWrites` off. @default 16
   */
  readonly concurrencyPerFile: number;
  /**
   * Bytes per SFTP read/write request. OpenSSH accepts up to 261120 (its `limits@openssh.com`);
   * ssh2 splits larger requests for servers with smaller limits. @default 261120
   */
  readonly requestBytes: number;
  /** SSH connections the driver opens (lazily) and spreads files over. @default 2 */
  readonly connections: number;
  /** Files (or other operations) the engine should run at once against this host. @default 8 */
  readonly maxConcurrency: number;
  /**
   * How `copyWithin` copies inside the server: `auto` = OpenSSH's `copy-data`, else a hard link,
   * else through this machine; `copy` = never a hard link (copies only); `false` = no
   * server-side copy at all (capability off). @default 'auto'
   */
  readonly serverSideCopy: 'auto' | 'copy' | false;
}

const KNOWN_KEYS = new Set([
  'type', 'host', 'port', 'username', 'privateKey', 'passphrase', 'agent', 'password', 'root',
  'hostKey', 'knownHosts', 'insecureAcceptAnyHostKey', 'readyTimeoutMs', 'concurrencyPerFile',
  'requestBytes', 'connections', 'maxConcurrency', 'serverSideCopy',
]);

/** `SHA256:` + unpadded base64 of a 32-byte digest (43 characters). */
const FINGERPRINT = /^SHA256:([A-Za-z0-9+/]{43})=?$/;

/**
 * Validates a `type: sftp` config section. Throws `ConfigError` with a one-line message naming
 * the destination and the offending key; messages never repeat a secret. No IO (the key file
 * and known_hosts are read when connecting).
 */
export function parseSftpOptions(
  name: string,
  section: Readonly<Record<string, unknown>>,
  baseDir?: string,
  env: NodeJS.ProcessEnv = process.env,
): SftpOptions {
  for (const key of Object.keys(section)) {
    if (!KNOWN_KEYS.has(key)) {
      const known = [...KNOWN_KEYS].filter((k) => k !== 'type').join(', ');
      throw new ConfigError(`${name}: unknown key "${key}" for type sftp (known: ${known})`);
    }
  }
  const host = requiredString(name, section, 'host');
  const username = requiredString(name, section, 'username');
  const root = normalizeRoot(name, requiredString(name, section, 'root'));
  const port = integer(name, section, 'port', 22, 1, 65535);

  const privateKeyPath = optionalString(name, section, 'privateKey');
  const passphrase = optionalString(name, section, 'passphrase', true);
  const password = optionalString(name, section, 'password', true);
  let agent: string | undefined;
  const agentValue = section['agent'];
  if (agentValue === true) {
    agent = env['SSH_AUTH_SOCK'];
    if (!agent) throw new ConfigError(`${name}: "agent: true" but SSH_AUTH_SOCK is not set (start ssh-agent, or give the socket path)`);
  } else if (typeof agentValue === 'string' && agentValue !== '') {
    agent = agentValue;
  } else if (agentValue !== undefined && agentValue !== false) {
    throw new ConfigError(`${name}: "agent" must be true or a socket path, got ${describe(agentValue)}`);
  }
  if (passphrase !== undefined && privateKeyPath === undefined) {
    throw new ConfigError(`${name}: "passphrase" is set but "privateKey" is not`);
  }
  if (privateKeyPath === undefined && agent === undefined && password === undefined) {
    throw new ConfigError(`${name}: no SSH credentials: set "privateKey" (a key file), "agent: true" (ssh-agent) or "password"`);
  }

  const hostKeyValue = section['hostKey'];
  const hostKeys: string[] = [];
  for (const value of hostKeyValue === undefined ? [] : Array.isArray(hostKeyValue) ? hostKeyValue : [hostKeyValue]) {
    const match = typeof value === 'string' ? FINGERPRINT.exec(value.trim()) : null;
    if (!match) {
      throw new ConfigError(
        `${name}: "hostKey" must be a SHA256 fingerprint as printed by "ssh-keygen -lf KEY.pub" (SHA256: followed by 43 base64 characters), got ${describe(value)}`,
      );
    }
    hostKeys.push(`SHA256:${match[1]}`);
  }
  const knownHostsPath = optionalString(name, section, 'knownHosts');
  const insecure = section['insecureAcceptAnyHostKey'] ?? false;
  if (typeof insecure !== 'boolean') {
    throw new ConfigError(`${name}: "insecureAcceptAnyHostKey" must be true or false, got ${describe(insecure)}`);
  }
  if (hostKeys.length === 0 && knownHostsPath === undefined && !insecure) {
    throw new ConfigError(
      `${name}: the SSH host key of ${host} must be checked: set "hostKey: SHA256:..." (run "ssh-keyscan -p ${port} ${host} | ssh-keygen -lf -"), ` +
        `or "knownHosts: ~/.ssh/known_hosts", or (insecure, for tests only) "insecureAcceptAnyHostKey: true"`,
    );
  }

  const concurrencyPerFile = integer(name, section, 'concurrencyPerFile', 16, 1, 256);
  const serverSideCopy = section['serverSideCopy'] ?? 'auto';
  if (serverSideCopy !== 'auto' && serverSideCopy !== 'copy' && serverSideCopy !== false) {
    throw new ConfigError(`${name}: "serverSideCopy" must be auto, copy or false, got ${describe(serverSideCopy)}`);
  }
  return {
    host,
    port,
    username,
    ...(privateKeyPath === undefined ? {} : { privateKey: expandPath(privateKeyPath, baseDir) }),
    ...(passphrase === undefined ? {} : { passphrase }),
    ...(agent === undefined ? {} : { agent }),
    ...(password === undefined ? {} : { password }),
    root,
    hostKeys,
    ...(knownHostsPath === undefined ? {} : { knownHosts: expandPath(knownHostsPath, baseDir) }),
    insecureAcceptAnyHostKey: insecure,
    readyTimeoutMs: integer(name, section, 'readyTimeoutMs', 20_000, 100, 600_000),
    concurrencyPerFile,
    requestBytes: integer(name, section, 'requestBytes', 261_120, 1024, 4 * 1024 * 1024),
    connections: integer(name, section, 'connections', 2, 1, 16),
    maxConcurrency: integer(name, section, 'maxConcurrency', 8, 1, 256),
    serverSideCopy,
  };
}

/** `/a/b/` -> `/a/b`; `''` and `.` are refused (say which folder). */
function normalizeRoot(name: string, root: string): string {
  if (root.includes('\0')) throw new ConfigError(`${name}: "root" contains a NUL byte`);
  const trimmed = root.replace(/\/+$/, '');
  if (trimmed === '') return '/';
  if (trimmed.split('/').includes('..')) throw new ConfigError(`${name}: "root" must not contain ".." segments, got ${describe(root)}`);
  return trimmed;
}

function requiredString(name: string, section: Readonly<Record<string, unknown>>, key: string): string {
  const value = section[key];
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ConfigError(`${name}: "${key}" must be a non-empty string, got ${describe(value)}`);
  }
  return value.trim();
}

function optionalString(name: string, section: Readonly<Record<string, unknown>>, key: string, secret = false): string | undefined {
  const value = section[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '') {
    throw new ConfigError(`${name}: "${key}" must be a non-empty string, got ${secret ? typeof value : describe(value)}`);
  }
  return value;
}

function integer(name: string, section: Readonly<Record<string, unknown>>, key: string, fallback: number, min: number, max: number): number {
  const value = section[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name}: "${key}" must be an integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  return typeof value === 'string' ? JSON.stringify(value) : `${typeof value} ${JSON.stringify(value)}`;
}
