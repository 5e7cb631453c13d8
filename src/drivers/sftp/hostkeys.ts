/**
 * SSH host key checking for the sftp driver: OpenSSH-style SHA256 fingerprints and known_hosts
 * files (plain, hashed `|1|salt|hash`, `[host]:port`, wildcards, negation, `@revoked`). Pure
 * functions on the raw key blob that ssh2 hands to `hostVerifier`; no IO.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** `SHA256:<unpadded base64>` of a raw public key blob, exactly as `ssh-keygen -lf` prints it. */
export function fingerprintOf(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type inside a raw key blob (`ssh-ed25519`, `ssh-rsa`, ...): its first SSH string. */
export function keyTypeOf(keyBlob: Buffer): string {
  if (keyBlob.length < 4) return 'unknown';
  const length = keyBlob.readUInt32BE(0);
  if (length > 64 || 4 + length > keyBlob.length) return 'unknown';
  return keyBlob.subarray(4, 4 + length).toString('latin1');
}

export interface KnownHostLine {
  readonly marker?: '@revoked' | '@cert-authority';
  /** The comma-separated host pattern field, as written. */
  readonly hosts: string;
  readonly keyType: string;
  readonly keyBlob: Buffer;
  /** 1-based line number, for messages. */
  readonly line: number;
}

/** Parses a known_hosts file; comments, blank and malformed lines are skipped. */
export function parseKnownHosts(text: string): KnownHostLine[] {
  const lines: KnownHostLine[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const fields = trimmed.split(/\s+/);
    let marker: KnownHostLine['marker'];
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as KnownHostLine['marker'];
    const [hosts, keyType, base64] = fields;
    if (!hosts || !keyType || !base64 || !/^[A-Za-z0-9+/]+=*$/.test(base64)) return;
    const keyBlob = Buffer.from(base64, 'base64');
    if (keyTypeOf(keyBlob) !== keyType) return;
    lines.push({ ...(marker ? { marker } : {}), hosts, keyType, keyBlob, line: index + 1 });
  });
  return lines;
}

/** The name OpenSSH looks up in known_hosts: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const lower = host.toLowerCase();
  return port === 22 ? lower : `[${lower}]:${port}`;
}

function globMatches(pattern: string, name: string): boolean {
  const regex = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${regex}$`, 'i').test(name);
}

function hashedMatches(entry: string, name: string): boolean {
  // |1|base64(salt)|base64(HMAC-SHA1(salt, name))
  const parts = entry.split('|');
  if (parts.length !== 4 || parts[1] !== '1' || !parts[2] || !parts[3]) return false;
  const salt = Buffer.from(parts[2], 'base64');
  const expected = Buffer.from(parts[3], 'base64');
  const actual = createHmac('sha1', salt).update(name).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** True when the host field of a known_hosts line covers `name` (see `knownHostsName`). */
export function hostFieldMatches(hosts: string, name: string): boolean {
  let matched = false;
  for (const entry of hosts.split(',')) {
    const negated = entry.startsWith('!');
    const pattern = negated ? entry.slice(1) : entry;
    const hit = pattern.startsWith('|') ? hashedMatches(pattern, name) : globMatches(pattern, name);
    if (hit && negated) return false;
    if (hit) matched = true;
  }
  return matched;
}

export type HostKeyVerdict =
  | { readonly trusted: true }
  | { readonly trusted: false; readonly reason: 'unknown' | 'changed' | 'revoked'; readonly detail: string };

export interface HostKeyPolicy {
  readonly host: string;
  readonly port: number;
  /** Pinned `SHA256:...` fingerprints. */
  readonly hostKeys: readonly string[];
  /** Parsed known_hosts lines and where they came from (for messages). */
  readonly knownHosts?: { readonly path: string; readonly lines: readonly KnownHostLine[] };
}

/**
 * Decides whether `keyBlob` (offered by the server) is trusted: it must match a pinned
 * fingerprint or a known_hosts line for this host and port, and must not be `@revoked`.
 * `changed` means the host is known but with other keys (of the same type, or of any type when
 * the host has no key of the offered type); `unknown` means nothing is recorded for it.
 */
export function judgeHostKey(keyBlob: Buffer, policy: HostKeyPolicy): HostKeyVerdict {
  const offered = fingerprintOf(keyBlob);
  const name = knownHostsName(policy.host, policy.port);
  const forHost = (policy.knownHosts?.lines ?? []).filter((line) => hostFieldMatches(line.hosts, name));
  const revoked = forHost.some((line) => line.marker === '@revoked' && line.keyBlob.equals(keyBlob));
  if (revoked) return { trusted: false, reason: 'revoked', detail: `it is marked @revoked in ${policy.knownHosts?.path}` };
  if (policy.hostKeys.includes(offered)) return { trusted: true };
  const plain = forHost.filter((line) => line.marker === undefined);
  if (plain.some((line) => line.keyBlob.equals(keyBlob))) return { trusted: true };

  const expected: string[] = [];
  if (policy.hostKeys.length > 0) expected.push(`hostKey pins ${policy.hostKeys.join(', ')}`);
  if (plain.length > 0 && policy.knownHosts) {
    const lineNumbers = plain.map((line) => line.line).join(', ');
    expected.push(`${policy.knownHosts.path} has other keys for ${name} (line ${lineNumbers})`);
  }
  if (expected.length > 0) return { trusted: false, reason: 'changed', detail: expected.join('; ') };
  const where = policy.knownHosts ? `${name} is not in ${policy.knownHosts.path}` : 'no key is pinned';
  return { trusted: false, reason: 'unknown', detail: where };
}

/** Host key algorithms ssh2 offers, in its default order. */
const DEFAULT_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

/** The key type an algorithm signs with: the RSA SHA-2 algorithms use `ssh-rsa` keys. */
function keyTypeOfAlgorithm(algorithm: string): string {
  return algorithm.startsWith('rsa-sha2-') ? 'ssh-rsa' : algorithm;
}

/**
 * The host key algorithms to offer, those whose keys known_hosts holds for this host (or
 * `knownTypes`, e.g. the type a pinned fingerprint turned out to have) first, as OpenSSH does, so
 * that a host recorded with only its RSA key is not reported as changed just because the server
 * would rather show its ed25519 key. `undefined` = ssh2's default.
 */
export function preferredHostKeyAlgorithms(policy: HostKeyPolicy, knownTypes: readonly string[] = []): string[] | undefined {
  const name = knownHostsName(policy.host, policy.port);
  const types = new Set([
    ...knownTypes,
    ...(policy.knownHosts?.lines ?? []).filter((line) => line.marker === undefined && hostFieldMatches(line.hosts, name)).map((line) => line.keyType),
  ]);
  if (types.size === 0) return undefined;
  const preferred = DEFAULT_HOST_KEY_ALGORITHMS.filter((algorithm) => types.has(keyTypeOfAlgorithm(algorithm)));
  return [...preferred, ...DEFAULT_HOST_KEY_ALGORITHMS.filter((algorithm) => !preferred.includes(algorithm))];
}

/**
 * `algorithms` (ssh2's default when `undefined`) without those for keys of `refusedTypes`: what
 * to offer on the next handshake when a server showed a key that is not the pinned one. A server
 * has one key per type, so the pinned key, if it has it, is one of another type.
 */
export function withoutKeyTypes(algorithms: readonly string[] | undefined, refusedTypes: ReadonlySet<string>): string[] {
  return (algorithms ?? DEFAULT_HOST_KEY_ALGORITHMS).filter((algorithm) => !refusedTypes.has(keyTypeOfAlgorithm(algorithm)));
}
