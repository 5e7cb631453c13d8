/**
 * Refusing places that overlap: a destination that is the source, lies inside it or holds it,
 * and two destinations that are one place or nested (by any route: `..`, a trailing `/`,
 * `localhost` for `127.0.0.1`, a `minio` and an `s3` driver on one bucket, a symlink, a bind
 * mount). Writing there would put copies among the originals (and `prune` would delete backups
 * at the source), or count one copy twice.
 *
 * Two steps, both on data from ./location.ts, never on descriptions:
 * - `refuseOverlappingLocations`: the locations as configured. No IO; run before anything is
 *   read or written.
 * - `refuseOverlappingPlaces`: the identities (real paths, device/inode, the SFTP server's real
 *   path), for the places whose identity could differ from their location: local roots, and SFTP
 *   roots that share a host and port with another place (or are on this machine while a local
 *   root is configured). Object stores are their location. A place that cannot be identified
 *   (an SFTP server that cannot be reached) is compared by its location only, unless `strict`
 *   (prune, right before it deletes): then that is an error and nothing may be deleted there.
 */
import { ConfigError, errorMessage, OffsiteError } from '../errors.js';
import { compareIdentities, compareLocations, reverse, type Identity, type Location, type Relation } from './location.js';
import type { SignalOptions } from './types.js';

/** One configured place taking part in a command. */
export interface Place {
  /** `source`, `destination`, or `target` (pull's). */
  readonly role: 'source' | 'destination' | 'target';
  readonly name: string;
  readonly description: string;
  readonly location: Location;
  identify?(options?: SignalOptions): Promise<Identity>;
}

export interface PlaceCheckOptions {
  /** The config file, named at the start of the message. */
  readonly file?: string;
  readonly signal?: AbortSignal;
  /** A place that cannot be identified is an error instead of being compared by location only. */
  readonly strict?: boolean;
  /**
   * Without `strict`, how long identifying one place may take before it is compared by location
   * only (an unreachable SFTP server would otherwise hold the command for its whole connect
   * timeout and retries before its own operations meet the same error). @default 15000
   */
  readonly identifyTimeoutMs?: number;
  /**
   * Which pairs to compare; all pairs by default. Pull compares its target with the copy it
   * reads only (a pull into the source is what it is for).
   */
  readonly pairs?: (a: Place, b: Place) => boolean;
}

/** Thrown when two places overlap: a configuration error (exit 2). */
export class OverlapError extends ConfigError {}

function label(p: Place): string {
  if (p.role === 'source') return `the source (${p.description})`;
  return p.role === 'target' ? `the pull target (${p.description})` : `${p.role} "${p.name}" (${p.description})`;
}

const WHY_SOURCE = 'a destination must be a place of its own: copies written there would land among the originals, and prune would delete backups at the source';
const WHY_TWO = 'each destination must be a place of its own, or one copy would count as two (and pruning one would prune the other)';
const WHY_TARGET = 'pull must write to another place than the copy it reads';

function why(a: Place, b: Place): string {
  if (a.role === 'target' || b.role === 'target') return WHY_TARGET;
  return a.role === 'source' || b.role === 'source' ? WHY_SOURCE : WHY_TWO;
}

/** "X is inside Y" in words; the source is always named second and a pull target first. */
function overlapMessage(a: Place, b: Place, relation: Relation, route: string, options: PlaceCheckOptions): string {
  let [x, y, r] = [a, b, relation];
  if (x.role === 'source' || y.role === 'target') [x, y, r] = [b, a, reverse(relation)];
  const verb = r === 'same' ? 'is the same place as' : r === 'inside' ? 'is inside' : 'contains';
  const fix = x.role === 'target' ? 'pull into another folder or destination' : `point "${x.name}" elsewhere in ${options.file ?? 'the config'}`;
  return `${options.file ? `${options.file}: ` : ''}${label(x)} ${verb} ${label(y)}${route}; ${why(x, y)}: ${fix}`;
}

function pairsOf(places: readonly Place[], options: PlaceCheckOptions): [Place, Place][] {
  const out: [Place, Place][] = [];
  for (let i = 0; i < places.length; i++) {
    for (let j = i + 1; j < places.length; j++) {
      const a = places[i] as Place;
      const b = places[j] as Place;
      if (options.pairs ? options.pairs(a, b) : true) out.push([a, b]);
    }
  }
  return out;
}

/** Refuses the first pair of places whose configured locations overlap. No IO. */
export function refuseOverlappingLocations(places: readonly Place[], options: PlaceCheckOptions = {}): void {
  for (const [a, b] of pairsOf(places, options)) {
    const relation = compareLocations(a.location, b.location);
    if (relation !== 'apart') throw new OverlapError(overlapMessage(a, b, relation, '', options));
  }
}

/** True when `a`'s identity may show an overlap with `b` that their locations do not. */
function mayMeet(a: Location, b: Location): boolean {
  if (a.kind === 'object-store' || b.kind === 'object-store') return false;
  if (a.kind === 'filesystem' && b.kind === 'filesystem') return true;
  if (a.kind === 'sftp' && b.kind === 'sftp') return a.host === b.host && a.port === b.port;
  const sftp = a.kind === 'sftp' ? a : b;
  return sftp.host === 'localhost';
}

/** `promise`, or a rejection after `ms` (the promise goes on; its driver is closed by the command). */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms); });
  promise.catch(() => undefined);
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

function realPathNote(p: Place, identity: Identity | undefined): string {
  const real = identity?.realRoot;
  return real !== undefined && real !== p.location.root ? `${p.role === 'source' ? 'the source' : `"${p.name}"`} is really ${real}` : '';
}

/**
 * Refuses the first pair of places that overlap by location or by identity (see the file
 * comment). Identifies each place at most once, concurrently; only the places that need it.
 * Throws `OverlapError` (exit 2) for an overlap; with `strict`, an `OffsiteError` naming the
 * place that could not be identified.
 */
export async function refuseOverlappingPlaces(places: readonly Place[], options: PlaceCheckOptions = {}): Promise<void> {
  refuseOverlappingLocations(places, options);
  const pairs = pairsOf(places, options).filter(([a, b]) => mayMeet(a.location, b.location));
  const wanted = new Set(pairs.flat());
  const identities = new Map<Place, Identity | undefined>();
  await Promise.all([...wanted].map(async (p) => {
    if (!p.identify) return;
    try {
      const identity = p.identify({ signal: options.signal });
      identities.set(p, options.strict ? await identity : await withTimeout(identity, options.identifyTimeoutMs ?? 15_000));
    } catch (err) {
      if (options.signal?.aborted) throw err;
      if (options.strict) {
        throw new OffsiteError('E_IDENTITY', `${p.name}: could not tell whether ${label(p)} is another place than the others (${errorMessage(err)}); nothing is deleted there until it can`, { kind: 'permanent', cause: err });
      }
      // Compared by its location only; its own operations will meet the same error.
      identities.set(p, undefined);
    }
  }));
  for (const [a, b] of pairs) {
    const x = identities.get(a) ?? { location: a.location };
    const y = identities.get(b) ?? { location: b.location };
    const relation = compareIdentities(x, y);
    if (relation === 'apart') continue;
    const notes = [realPathNote(a, identities.get(a)), realPathNote(b, identities.get(b))].filter((n) => n !== '');
    const route = notes.length > 0 ? ` (through a symlink, a bind mount or another spelling: ${notes.join(', ')})` : ' (the same folder by device and inode: a bind mount?)';
    throw new OverlapError(overlapMessage(a, b, relation, route, options));
  }
}
