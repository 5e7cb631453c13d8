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
import { boolean, contextFor, custom, integer, path, readSection, refuse, secret, sectionError, shown, string, type SectionContext } from '../../config/schema.js';
import { sftpLocation, type ConfiguredPlace } from '../location.js';
import { MAX_NAME_BYTES, overlongName } from '../toolkit/index.js';

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
   * How `copyWithin` copies inside the server: `auto` = OpenSSH's `copy-data`, else through this
   * machine, and a hard link first when the destination's `reuse: link` asks for one; `copy` =
   * never a hard link (copies only, whatever `reuse` says); `false` = no server-side copy at all
   * (capability off). @default 'auto'
   */
  readonly serverSideCopy: 'auto' | 'copy' | false;
}


/** `SHA256:` + unpadded base64 of a 32-byte digest (43 characters). */
const FINGERPRINT = /^SHA256:([A-Za-z0-9+/]{43})=?$/;

/**
 * A host name or address without a port: `nas.lan`, `10.0.0.5`, `::1` or `[::1]`. `nas.lan:22`
 * is refused (the port has its own key), as are URLs and `user@host`.
 */
function hostProblem(host: string): string | undefined {
  if (/^\[[0-9a-f:.]+\]$/i.test(host) || /^[0-9a-f]*:[0-9a-f:.]*:[0-9a-f:.]*$/i.test(host)) return undefined;
  const withPort = /^(.*):(\d+)$/.exec(host);
  if (withPort) return `got ${JSON.stringify(host)}: a host name without the port, which has its own key ("host: ${withPort[1]}" and "port: ${withPort[2]}")`;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(host)) return `got ${JSON.stringify(host)}: give the host name only, without a scheme`;
  if (host.includes('@')) return `got ${JSON.stringify(host)}: the user name goes in "username"`;
  if (/[\s/:]/.test(host)) return `got ${JSON.stringify(host)}`;
  return undefined;
}

/** The config keys of `type: sftp` (read by src/config/schema.ts). */
export const SFTP_SCHEMA = {
  host: string({ required: true, check: hostProblem }),
  port: integer({ default: 22, min: 1, max: 65535 }),
  username: string({ required: true }),
  privateKey: path({ expected: 'the path of a private key file' }),
  passphrase: secret(),
  agent: custom({ expected: 'true or the path of the ssh-agent socket' }, (value, context): true | string | false => {
    if (value === true || value === false) return value;
    if (typeof value === 'string' && /^\s*(true|false)\s*$/i.test(value)) return value.trim().toLowerCase() === 'true';
    if (typeof value === 'string' && value.trim() !== '' && !value.includes('\0')) return expandPath(value.trim(), context.baseDir);
    return refuse();
  }),
  password: secret(),
  root: string({ required: true }),
  hostKey: custom({ expected: 'a SHA256 fingerprint as printed by "ssh-keygen -lf KEY.pub" (SHA256: followed by 43 base64 characters), or a list of them' },
    (value): string[] => {
      const list = Array.isArray(value) ? value : [value];
      if (list.length === 0) refuse();
      return list.map((one) => {
        const match = typeof one === 'string' ? FINGERPRINT.exec(one.trim()) : null;
        return match ? `SHA256:${match[1]}` : refuse(`got ${shown(one)}`);
      });
    }),
  knownHosts: path({ expected: 'the path of a known_hosts file' }),
  insecureAcceptAnyHostKey: boolean({ default: false }),
  readyTimeoutMs: integer({ default: 20_000, min: 100, max: 600_000 }),
  concurrencyPerFile: integer({ default: 16, min: 1, max: 256 }),
  requestBytes: integer({ default: 261_120, min: 1024, max: 4 * 1024 * 1024 }),
  connections: integer({ default: 2, min: 1, max: 16 }),
  maxConcurrency: integer({ default: 8, min: 1, max: 256 }),
  serverSideCopy: custom({ expected: 'auto, copy or false', default: 'auto' as SftpOptions['serverSideCopy'] }, (value): SftpOptions['serverSideCopy'] => {
    if (value === false || (typeof value === 'string' && value.trim().toLowerCase() === 'false')) return false;
    if (value === 'auto' || value === 'copy') return value;
    return refuse();
  }),
};

/**
 * Validates a `type: sftp` config section. Throws `ConfigError` with a one-line message naming
 * the destination and the offending key; messages never repeat a secret. No IO (the key file
 * and known_hosts are read when connecting). `agent: true` takes `SSH_AUTH_SOCK` from `env`.
 */
export function parseSftpOptions(
  name: string,
  section: Readonly<Record<string, unknown>>,
  baseDir?: string,
  env: NodeJS.ProcessEnv = process.env,
  contextOverrides?: Partial<SectionContext>,
): SftpOptions {
  const context = contextFor(name, 'sftp', { ...(baseDir !== undefined ? { baseDir } : {}), ...contextOverrides });
  const v = readSection(SFTP_SCHEMA, section, context);
  const root = normalizeRoot(context, v.root);
  let agent: string | undefined;
  if (v.agent === true) {
    agent = env['SSH_AUTH_SOCK'];
    if (!agent) throw sectionError(context, '"agent: true" but SSH_AUTH_SOCK is not set (start ssh-agent, or give the socket path)');
  } else if (typeof v.agent === 'string') {
    agent = v.agent;
  }
  if (v.passphrase !== undefined && v.privateKey === undefined) throw sectionError(context, '"passphrase" is set but "privateKey" is not');
  if (v.privateKey === undefined && agent === undefined && v.password === undefined) {
    throw sectionError(context, 'no SSH credentials: set "privateKey" (a key file), "agent: true" (ssh-agent) or "password"');
  }
  const hostKeys = v.hostKey ?? [];
  if (hostKeys.length === 0 && v.knownHosts === undefined && !v.insecureAcceptAnyHostKey) {
    throw sectionError(context,
      `the SSH host key of ${v.host} must be checked: set "hostKey: SHA256:..." (run "ssh-keyscan -p ${v.port} ${v.host} | ssh-keygen -lf -"), ` +
        'or "knownHosts: ~/.ssh/known_hosts", or (insecure, for tests only) "insecureAcceptAnyHostKey: true"');
  }
  return {
    host: v.host.replace(/^\[(.*)\]$/, '$1'),
    port: v.port,
    username: v.username,
    ...(v.privateKey === undefined ? {} : { privateKey: v.privateKey }),
    ...(v.passphrase === undefined ? {} : { passphrase: v.passphrase }),
    ...(agent === undefined ? {} : { agent }),
    ...(v.password === undefined ? {} : { password: v.password }),
    root,
    hostKeys,
    ...(v.knownHosts === undefined ? {} : { knownHosts: v.knownHosts }),
    insecureAcceptAnyHostKey: v.insecureAcceptAnyHostKey,
    readyTimeoutMs: v.readyTimeoutMs,
    concurrencyPerFile: v.concurrencyPerFile,
    requestBytes: v.requestBytes,
    connections: v.connections,
    maxConcurrency: v.maxConcurrency,
    serverSideCopy: v.serverSideCopy,
  };
}

/** `/a/b/` -> `/a/b`; `..` segments are refused (say which folder). */
function normalizeRoot(context: SectionContext, root: string): string {
  if (root.includes('\0')) throw sectionError(context, '"root" contains a NUL byte');
  const trimmed = root.replace(/\/+$/, '');
  if (trimmed === '') return '/';
  if (trimmed.split('/').includes('..')) throw sectionError(context, `"root" must not contain ".." segments, got ${shown(root)}`);
  const overlong = overlongName(trimmed);
  if (overlong !== undefined) throw sectionError(context, `"root" has a folder name too long for the server's file system: ${overlong}, at most ${MAX_NAME_BYTES} are allowed; shorten it`);
  return trimmed;
}

/** `sftp://user@host[:port]/root` (`/~/root` for a root relative to the login folder): where the driver points, without credentials. */
export function describeSftp(options: Pick<SftpOptions, 'username' | 'host' | 'port' | 'root'>): string {
  return `sftp://${options.username}@${options.host}${options.port === 22 ? '' : `:${options.port}`}${options.root.startsWith('/') ? '' : '/~/'}${options.root}`;
}

/** Its description and location (../location.ts `ConfiguredPlace`). */
export function sftpPlace(options: Pick<SftpOptions, 'username' | 'host' | 'port' | 'root'>): ConfiguredPlace {
  return { description: describeSftp(options), location: sftpLocation(options) };
}
