/**
 * A destination's other copies for reuse (issue 12): which complete copies there may be reused
 * from (`reusableCopies`), and the reuse index of them (`buildReuseIndex`, ./reuse-index.ts),
 * read one manifest at a time (streamed, through the local manifest cache where there is one); a
 * damaged or unreadable manifest adds nothing, so no file is ever reused from a copy that cannot
 * be trusted.
 */
import { backupTimeFromName, isValidBackupName } from '../backup/index.js';
import type { Driver, Entry, SignalOptions } from '../drivers/types.js';
import { errorKind, errorMessage } from '../errors.js';
import { manifestKey, OFFSITE_DIR, type ManifestFile } from '../manifest/manifest.js';
import { streamManifestAt, type ManifestReader, type ManifestSummary } from '../manifest/read.js';
import type { ManifestCache } from './manifest-cache.js';
import { createReuseIndex, type ReuseIndex, type ReuseIndexOptions } from './reuse-index.js';


export interface BuildReuseIndexOptions extends ReuseIndexOptions, SignalOptions {
  /**
   * Most complete copies indexed (newest first): each costs reading its manifest (tens of MB at
   * 100,000 files), and a nightly chain's newest copies hold nearly everything. @default 3
   */
  readonly maxCopies?: number;
  /** Told about a copy whose manifest is damaged or unreadable (it is left out, never reused from). */
  readonly onSkipped?: (backup: string, reason: string) => void;
  /**
   * Read the manifests through this local cache (./manifest-cache.ts), checked against their
   * entries in `listed` (`reusableCopies`'s `manifests`). @default every manifest read from the destination
   */
  readonly cache?: { readonly manifests: ManifestCache; readonly listed: ReadonlyMap<string, Entry> };
}

/**
 * Builds the index of `driver` (a destination) from the manifests of `backups`, given newest
 * first and excluding the backup being replicated; a backup without a manifest (incomplete copy)
 * is skipped, and so is one whose manifest is damaged (told to `onSkipped`: never reuse from a
 * copy that cannot be trusted). Reads one manifest at a time, at most `maxCopies` complete ones.
 */
export async function buildReuseIndex(driver: Driver, backups: readonly string[], options: BuildReuseIndexOptions = {}): Promise<ReuseIndex> {
  const index = await createReuseIndex(options);
  const maxCopies = options.maxCopies ?? 3;
  for (const backup of backups) {
    if (index.backups.length >= maxCopies) break;
    const key = manifestKey(backup);
    const listed = options.cache?.listed.get(backup);
    let cached = await options.cache?.manifests.open(driver, key, listed, { signal: options.signal });
    let read = await indexCopy(index, cached?.reader ?? driver, backup, options);
    if (cached?.hit === true && read.error !== undefined && errorKind(read.error) === 'integrity') {
      // The cached copy is what failed (damaged on this machine): dropped, read from the destination.
      await cached.settle(false);
      cached = await options.cache?.manifests.open(driver, key, listed, { signal: options.signal });
      read = await indexCopy(index, cached?.reader ?? driver, backup, options);
    }
    // A manifest read whole and valid is cached (a copy not indexed here may be next time).
    await cached?.settle(read.valid);
    if (read.error === undefined) continue;
    if (errorKind(read.error) !== 'integrity') throw read.error;
    // A copy known to be sealed otherwise was never going to be used: no warning about its signature.
    if (!read.foreign) options.onSkipped?.(backup, errorMessage(read.error));
  }
  return index;
}

/**
 * Reads the manifest of `backup` through `reader` into `index` (see `buildReuseIndex`): `valid`
 * when it was there and read whole with a good digest (and signature), `error` when it could
 * not be read or proved damaged (its records are taken out again), `foreign` when it is sealed
 * otherwise than this destination. A valid manifest of an incomplete or foreign copy adds nothing.
 */
async function indexCopy(index: ReuseIndex, reader: ManifestReader, backup: string, options: BuildReuseIndexOptions): Promise<{ valid: boolean; foreign: boolean; error?: unknown }> {
  // Streamed: one record at a time, added as it comes and taken out again when the manifest
  // proves damaged at its end (or is no complete copy's after all).
  let copy: ReturnType<ReuseIndex['begin']> | undefined;
  /** Records of a manifest whose kind or chunk size come after its file list (never as offsite writes them). */
  let held: ManifestFile[] | undefined;
  let summary: ManifestSummary | undefined;
  const encrypted = options.encrypted;
  /** At an encrypted destination: a copy its manifest says is sealed otherwise (another format or key) is not indexed. */
  let foreign = false;
  try {
    summary = await streamManifestAt(reader, manifestKey(backup), {
      signal: options.signal,
      ...(encrypted ? { publicKey: encrypted.publicKey } : {}),
      onFile: (file, _, fields) => {
        if (copy === undefined && held === undefined && !foreign) {
          // Known here when the manifest states it before its files (as offsite streams them); else checked at the end.
          if (encrypted && fields.encryption !== undefined && (fields.encryption.scheme !== encrypted.scheme || fields.encryption.publicKey !== encrypted.publicKey)) foreign = true;
          else if (fields.kind === 'complete' && typeof fields.chunkBytes === 'number') copy = index.begin(backup, fields.chunkBytes);
          else if (fields.kind === undefined || fields.chunkBytes === undefined) held = [];
        }
        if (copy !== undefined) copy.add(file);
        else held?.push(file);
      },
    });
  } catch (err) {
    copy?.undo();
    return { valid: false, foreign, error: err };
  }
  if (summary?.kind !== 'complete' || foreign || (encrypted && (summary.encryption?.scheme !== encrypted.scheme || summary.encryption.publicKey !== encrypted.publicKey))) {
    copy?.undo();
    return { valid: summary !== undefined, foreign };
  }
  if (copy === undefined) index.add({ backup, chunkBytes: summary.chunkBytes, files: held ?? [] });
  return { valid: true, foreign };
}

/**
 * The other copies at `driver` that may be reused from when `backup` is replicated, in lookup
 * order: those made before it (by the UTC time in milvus-backup's default names, else by name)
 * newest first, then the later ones oldest first. Only copies with a manifest and not being
 * pruned (`.offsite/pruning.json`); the manifests themselves are checked by `buildReuseIndex`.
 * One listing of the destination, keys only (no stored hashes: on S3 no HEAD per object), that
 * the drivers walk into the copies' `.offsite/` folders only (sftp by folder, object stores by
 * level listings), never every key of every copy.
 */
export async function reusableCopies(driver: Driver, backup: string, options: SignalOptions & { readonly manifests?: Map<string, Entry> } = {}): Promise<string[]> {
  const withManifest = new Set<string>();
  const pruning = new Set<string>();
  // Only `NAME/.offsite/` matters: a driver that walks folders (sftp) need not open the rest.
  const descend = (folder: string): boolean => !folder.includes('/') || (folder.endsWith(`/${OFFSITE_DIR}`) && folder.indexOf('/') === folder.lastIndexOf('/'));
  for await (const entry of driver.list('', { signal: options.signal, onRefused: () => undefined, hashes: false, descend })) {
    const slash = entry.key.indexOf('/');
    if (slash <= 0) continue;
    const name = entry.key.slice(0, slash);
    if (name === backup || !isValidBackupName(name)) continue;
    const rest = entry.key.slice(slash + 1);
    if (rest === `${OFFSITE_DIR}/manifest.json`) {
      withManifest.add(name);
      options.manifests?.set(name, entry);
    }
    else if (rest === `${OFFSITE_DIR}/pruning.json`) pruning.add(name);
  }
  const when = (name: string): number => backupTimeFromName(name)?.getTime() ?? Number.NaN;
  const now = when(backup);
  const earlier = (name: string): boolean => (Number.isNaN(now) || Number.isNaN(when(name)) ? name < backup : when(name) <= now);
  const newestFirst = (a: string, b: string): number => (when(b) - when(a)) || (a < b ? 1 : a > b ? -1 : 0);
  const names = [...withManifest].filter((n) => !pruning.has(n));
  return [
    ...names.filter(earlier).sort(newestFirst),
    ...names.filter((n) => !earlier(n)).sort((a, b) => newestFirst(b, a)),
  ];
}
