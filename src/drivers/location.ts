/**
 * Where a driver points, as data: its `Location` (what the config says, normalised) and its
 * `Identity` (that plus the real thing underneath, found by asking the storage). Overlap checks
 * compare these, never the human `description`: two spellings of one place (`/x` and `/x/`,
 * `localhost` and `127.0.0.1`, a `minio` and an `s3` driver on one bucket) are one place, and a
 * folder reached through a symlink or a bind mount is the folder it reaches.
 *
 * Everything here is pure (no IO) except `thisMachineHosts`, which reads the host name and the
 * network interfaces once. The IO that finds identities lives with each driver (`identify`), and
 * the refusals built on the comparison live in ./overlap.ts.
 */
import { networkInterfaces, hostname } from 'node:os';
import { posix } from 'node:path';

export type LocationKind = 'filesystem' | 'sftp' | 'object-store';

/**
 * Where a driver's objects live, normalised so that equal places compare equal:
 * - `filesystem`: `root` is an absolute path with `.` and `..` resolved and no trailing `/`
 *   (`/` itself stays `/`); `host` is `localhost` (this machine).
 * - `sftp`: `host` lower-cased (every name of this machine reads `localhost`), `port` filled in
 *   (22); `root` absolute and normalised like a folder path, or, for a root relative to the login
 *   folder, `~USER/rel` (so two users' relative roots are different places).
 * - `object-store`: `scheme`, `host` and `port` of the service endpoint (defaults filled in; every
 *   AWS S3 endpoint reads `s3.amazonaws.com`), `bucket`, and `root` the prefix inside the bucket
 *   without leading or trailing `/` (`''` for the whole bucket): `backup`, `backup/` and
 *   `/backup/` are one prefix.
 */
export interface Location {
  readonly kind: LocationKind;
  /** `file`, `sftp`, `http` or `https`. */
  readonly scheme: string;
  readonly host: string;
  /** 0 for `filesystem`. */
  readonly port: number;
  /** Object stores only. */
  readonly bucket?: string;
  readonly root: string;
}

/**
 * Where a config section points and how messages name it: a driver's `location` and
 * `description`, computed from its options alone (each driver's options.ts `*Place`), by the driver
 * and by the registry (src/drivers/index.ts) without building the driver.
 */
export interface ConfiguredPlace {
  readonly description: string;
  readonly location: Location;
}

/** One file-system node: what a bind mount or a symlink cannot disguise. Decimal strings (64-bit). */
export interface FileNode {
  readonly dev: string;
  readonly ino: string;
}

/**
 * A location plus what the storage says it really is. Found by a driver's `identify`; for
 * drivers without one (object stores) it is the location alone.
 */
export interface Identity {
  readonly location: Location;
  /**
   * The root with symlinks resolved: the local real path, or the SFTP server's REALPATH. A root
   * that does not exist yet is its deepest existing folder's real path plus the missing rest.
   */
  readonly realRoot?: string;
  /** Local roots: the root's node, when the root exists. */
  readonly rootNode?: FileNode;
  /** Local roots: the nodes of every existing folder above the root, nearest first, up to `/`. */
  readonly ancestorNodes?: readonly FileNode[];
  /**
   * Local roots on Linux: the file system (`major:minor`) and the root's path inside it, from
   * /proc/self/mountinfo. A bind mount of a folder inside another root shows here as a path
   * inside that root's path, which device/inode chains cannot show.
   */
  readonly inFilesystem?: { readonly device: string; readonly path: string };
}

/** How place `a` relates to place `b`. */
export type Relation = 'same' | 'inside' | 'contains' | 'apart';

const LOOPBACK = /^(localhost|localhost\.localdomain|ip6-localhost|ip6-loopback|127(\.\d{1,3}){3}|::1|0:0:0:0:0:0:0:1|::ffff:127(\.\d{1,3}){3}|0\.0\.0\.0|::)$/;

let ownNames: ReadonlySet<string> | undefined;

/** This machine's host name and interface addresses (lower-cased), read once. */
export function thisMachineHosts(): ReadonlySet<string> {
  if (ownNames) return ownNames;
  const names = new Set<string>();
  try {
    const name = hostname().toLowerCase();
    if (name !== '') names.add(name);
    for (const list of Object.values(networkInterfaces())) for (const address of list ?? []) names.add(address.address.toLowerCase().replace(/%.*$/, ''));
  } catch {
    // No names beyond the loopback ones: a place on this machine spelled by its address is then not recognised statically.
  }
  ownNames = names;
  return names;
}

/**
 * A host name as places are compared: lower-case, without `[]` or a trailing `.`; every name of
 * this machine (`localhost`, `127.0.0.1`, `::1`, its host name and interface addresses) is
 * `localhost`. Names are not looked up in DNS: two names of one remote server are two hosts
 * here (an SFTP identity's real path cannot tell them apart either).
 */
export function normaliseHost(host: string, own: ReadonlySet<string> = thisMachineHosts()): string {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
  if (LOOPBACK.test(h) || own.has(h)) return 'localhost';
  return h;
}

const DEFAULT_PORTS: Readonly<Record<string, number>> = { http: 80, https: 443, sftp: 22 };

/** Every AWS S3 endpoint (global, regional, dual-stack, FIPS) names the one global bucket namespace. */
const AWS_S3_HOST = /^(?:[a-z0-9-]+\.)?s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(\.cn)?$/;

/** A local folder (`root` absolute). */
export function filesystemLocation(root: string): Location {
  return { kind: 'filesystem', scheme: 'file', host: 'localhost', port: 0, root: posix.resolve('/', root) };
}

/** A folder on an SSH server; `root` absolute or relative to `username`'s login folder. */
export function sftpLocation(options: { host: string; port?: number; username: string; root: string }): Location {
  const relative = !options.root.startsWith('/');
  const path = posix.normalize(options.root).replace(/\/+$/, '');
  const root = relative ? (path === '.' || path === '' ? `~${options.username}` : `~${options.username}/${path}`) : path === '' ? '/' : path;
  return { kind: 'sftp', scheme: 'sftp', host: normaliseHost(options.host), port: options.port ?? DEFAULT_PORTS['sftp'] as number, root };
}

/**
 * A bucket and prefix behind an S3-compatible endpoint (`http(s)://host[:port]`). No endpoint:
 * AWS S3.
 */
export function objectStoreLocation(options: { endpoint?: string; bucket: string; prefix: string }): Location {
  const url = new URL(options.endpoint ?? 'https://s3.amazonaws.com');
  const scheme = url.protocol.replace(/:$/, '');
  let host = normaliseHost(url.hostname);
  const cn = AWS_S3_HOST.exec(host);
  if (cn) host = `s3.amazonaws.com${cn[1] ?? ''}`;
  const port = url.port === '' ? DEFAULT_PORTS[scheme] ?? 0 : Number(url.port);
  return { kind: 'object-store', scheme, host, port, bucket: options.bucket, root: trimSlashes(options.prefix) };
}

/** `/a//b/` -> `a/b`. */
function trimSlashes(path: string): string {
  return path.split('/').filter((s) => s !== '').join('/');
}

/** Segments of a path, for prefix comparison: `/a/b` and `a/b` -> [a, b]; `~u/a` -> [~u, a]. */
function segments(path: string): string[] {
  return path.split('/').filter((s) => s !== '' && s !== '.');
}

/** How path `a` relates to path `b` (both normalised, both absolute or both relative). */
export function pathRelation(a: string, b: string): Relation {
  const x = segments(a);
  const y = segments(b);
  const common = Math.min(x.length, y.length);
  for (let i = 0; i < common; i++) if (x[i] !== y[i]) return 'apart';
  return x.length === y.length ? 'same' : x.length > y.length ? 'inside' : 'contains';
}

/** The reverse relation: how `b` relates to `a`, given how `a` relates to `b`. */
export function reverse(relation: Relation): Relation {
  return relation === 'inside' ? 'contains' : relation === 'contains' ? 'inside' : relation;
}

/** A location's path on this machine's file system, when it has one (local roots, and SFTP roots on this machine given absolutely). */
function pathOnThisMachine(l: Location): string | undefined {
  if (l.kind === 'filesystem') return l.root;
  if (l.kind === 'sftp' && l.host === 'localhost' && l.root.startsWith('/')) return l.root;
  return undefined;
}

/**
 * How place `a` relates to place `b`, from their locations alone. Conservative where places
 * may meet: an object store's scheme is ignored (one host and port is one server), and an SFTP
 * root on this machine is compared with local roots by path. Where a location alone cannot
 * tell (an SFTP root relative to the login folder against an absolute one), the answer is
 * `apart` and identities decide.
 */
export function compareLocations(a: Location, b: Location): Relation {
  if (a.kind === 'object-store' || b.kind === 'object-store') {
    if (a.kind !== b.kind || a.host !== b.host || a.port !== b.port || a.bucket !== b.bucket) return 'apart';
    return pathRelation(a.root, b.root);
  }
  if (a.kind === 'sftp' && b.kind === 'sftp' && a.host === b.host && a.port === b.port) {
    return a.root.startsWith('/') === b.root.startsWith('/') ? pathRelation(a.root, b.root) : 'apart';
  }
  const x = pathOnThisMachine(a);
  const y = pathOnThisMachine(b);
  return x !== undefined && y !== undefined ? pathRelation(x, y) : 'apart';
}

function sameNode(a: FileNode, b: FileNode): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** The location with its root replaced by the real root, when known. */
function realLocation(identity: Identity): Location {
  const { location, realRoot } = identity;
  if (realRoot === undefined) return location;
  return { ...location, root: location.kind === 'object-store' ? realRoot : posix.resolve('/', realRoot) };
}

/** The closer of two relations (`same` beats nesting, nesting beats `apart`). */
function closer(a: Relation, b: Relation): Relation {
  const rank: Record<Relation, number> = { same: 3, inside: 2, contains: 2, apart: 0 };
  return rank[b] > rank[a] ? b : a;
}

/**
 * How place `a` relates to place `b`, by every route known: their locations as configured, their
 * real roots (symlinks resolved), and for local roots their (device, inode): `a` contains `b`
 * when `a`'s root node is `b`'s root node or the node of a folder above it (which is how a bind
 * mount of the other root or of a folder above it shows itself), and their paths inside one
 * file system (a bind mount of a folder inside the other root).
 */
export function compareIdentities(a: Identity, b: Identity): Relation {
  let relation = compareLocations(a.location, b.location);
  relation = closer(relation, compareLocations(realLocation(a), realLocation(b)));
  if (a.rootNode && b.rootNode && sameNode(a.rootNode, b.rootNode)) return 'same';
  if (a.rootNode && b.ancestorNodes?.some((n) => sameNode(n, a.rootNode as FileNode))) relation = closer(relation, 'contains');
  if (b.rootNode && a.ancestorNodes?.some((n) => sameNode(n, b.rootNode as FileNode))) relation = closer(relation, 'inside');
  if (a.inFilesystem && b.inFilesystem && a.inFilesystem.device === b.inFilesystem.device) {
    relation = closer(relation, pathRelation(a.inFilesystem.path, b.inFilesystem.path));
  }
  return relation;
}

/** `sftp://nas.lan:22/volume1/milvus`, `s3://bucket/prefix @ http://localhost:9000`: a location for messages. */
export function formatLocation(l: Location): string {
  if (l.kind === 'filesystem') return l.root;
  if (l.kind === 'sftp') return `sftp://${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}${l.root.startsWith('/') ? '' : '/'}${l.root}`;
  return `bucket ${l.bucket}${l.root === '' ? '' : `, prefix ${l.root}/`} at ${l.scheme}://${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
}
