/**
 * What a destination holds for one backup before a replicate run plans it: its manifest, the
 * files present with their sizes and fingerprints, and its progress checkpoint with the journal
 * entries on top (used by ./replicate.ts and ./shard.ts); and the whole preparation of one
 * destination for a run (`prepareDestination`: read, plan, reuse index, lock, read again), which
 * every destination goes through on its own, so that one slow to answer or unreachable holds back
 * only itself.
 */
import type { ReusePolicy } from '../config/config.js';
import type { Driver } from '../drivers/types.js';
import { EncryptionKeyError } from '../crypto/keys.js';
import { eitherSignal, errorKind, errorMessage } from '../errors.js';
import { manifestKey, OFFSITE_DIR, readManifestAt, type Manifest, type ManifestFile } from '../manifest/manifest.js';
import { copyCheckpointKeys, type CheckpointKeys, type RunReuse } from './destination-run.js';
import type { HashAhead, HashCursor } from './hash-ahead.js';
import { acquireLock, type HeldLock, type LockOptions } from './lock.js';
import { planReplication, type DestinationPlan, type ReplicationPlan, type ReuseLookup, type DestinationState } from './plan.js';
import type { ReplicateEvent } from './replicate.js';
import type { EngineFile } from './run-files.js';
import type { ManifestCache } from './manifest-cache.js';
import { reuseIndexOf } from './reuse-file.js';
import type { ShardRun } from './shard.js';

/** What a destination holds for a backup, with the journal of its progress checkpoint. */
export interface DestinationHoldings extends DestinationState {
  readonly progressJournal: ProgressJournal;
}

export interface ProgressJournal {
  /** Files in `progress.json` when it is there and valid. */
  readonly baseFiles?: number;
  /** The newest journal number that `progress.json` includes (0 when it has none or is absent). */
  readonly includesThrough: number;
  /** The journal entries there, oldest first; `included` when `progress.json` already has their files. */
  readonly entries: readonly { readonly key: string; readonly sequence: number; readonly included: boolean; readonly files: number }[];
}

/**
 * Reads what a destination holds for `backup`. `progress` is `progress.json` with the journal
 * entries it does not include applied on top, in order (entries with another chunk size than the
 * newest one are left out: their hashes would not be usable).
 */
export async function readDestinationState(driver: Driver, backup: string, signal?: AbortSignal, keys: CheckpointKeys = copyCheckpointKeys(backup)): Promise<DestinationHoldings> {
  const present = new Map<string, number>();
  const presentFingerprints = new Map<string, string>();
  const prefix = `${backup}/`;
  const journal: { key: string; sequence: number }[] = [];
  const listing = async (): Promise<void> => {
    for await (const entry of driver.list(prefix, { signal })) {
      const path = entry.key.slice(prefix.length);
      if (path.startsWith(`${OFFSITE_DIR}/`)) {
        const sequence = keys.sequenceOf(entry.key);
        if (sequence !== undefined) journal.push({ key: entry.key, sequence });
        continue;
      }
      present.set(path, entry.size);
      if (entry.fingerprint !== undefined) presentFingerprints.set(path, entry.fingerprint);
    }
    journal.sort((a, b) => a.sequence - b.sequence);
  };
  let manifestProblem: string | undefined;
  const readManifest = async (): Promise<Manifest | undefined> => {
    try {
      return await readManifestAt(driver, manifestKey(backup), { signal });
    } catch (err) {
      if (errorKind(err) !== 'integrity') throw err;
      manifestProblem = errorMessage(err);
      return undefined;
    }
  };
  // A damaged checkpoint or journal entry only costs re-reading the files it recorded.
  const readQuietly = async (key: string): Promise<Manifest | undefined> => {
    try {
      return await readManifestAt(driver, key, { signal });
    } catch (err) {
      if (errorKind(err) !== 'integrity') throw err;
      return undefined;
    }
  };
  // The listing, the manifest and the checkpoint at once: on a distant object store each is a
  // round trip or more, and none needs another's answer (only the journal entries need both).
  // Reads only: one failing leaves the others to finish unobserved.
  const [, manifest, base] = await Promise.all([listing(), readManifest(), readQuietly(keys.progress)]);
  const through = base?.includesThrough ?? 0;
  const toRead = journal.filter((j) => j.sequence > through);
  const read = new Array<Manifest | undefined>(toRead.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(8, toRead.length) }, async () => {
    while (next < toRead.length) {
      const i = next++;
      read[i] = await readQuietly((toRead[i] as { key: string }).key);
    }
  }));
  const layers = [base, ...read].filter((m): m is Manifest => m !== undefined);
  const newest = layers[layers.length - 1];
  let progress: Manifest | undefined = base;
  if (newest !== undefined && newest !== base) {
    const files = new Map<string, ManifestFile>();
    for (const layer of layers) {
      // Records of another chunk size or another encryption format (an earlier offsite's) are not the newest's.
      if (layer.chunkBytes !== newest.chunkBytes || layer.encryption?.scheme !== newest.encryption?.scheme) continue;
      for (const f of layer.files) files.set(f.path, f);
    }
    let totalBytes = 0;
    for (const f of files.values()) totalBytes += f.size;
    progress = { ...newest, kind: 'progress', files: [...files.values()], fileCount: files.size, totalBytes };
  }
  const entries = journal.map((j) => {
    const i = toRead.indexOf(j);
    return { ...j, included: j.sequence <= through, files: i < 0 ? 0 : read[i]?.fileCount ?? 0 };
  });
  return { name: driver.name, manifest, manifestProblem, progress, present, presentFingerprints, progressJournal: { baseFiles: base?.fileCount, includesThrough: through, entries } };
}

/** What a run needs to prepare one destination (see `prepareDestination`). */
export interface PrepareContext {
  readonly backup: string;
  /**
   * The files the run copies (a shard's share with `shard`); may still be coming while the
   * destination is read (see `prepareDestination`).
   */
  readonly files: readonly EngineFile[] | PromiseLike<readonly EngineFile[]>;
  /**
   * Plans without an object per file (./plan.ts `compact`), once `files` are there: for a run (not
   * a dry run, not a shard) whose files are in the order of its paths (./destination-run.ts).
   */
  readonly compactPlans?: boolean | PromiseLike<boolean>;
  readonly chunkBytes: number;
  readonly shard?: ShardRun;
  /** Plan only: no lock. */
  readonly dryRun: boolean;
  readonly lock?: Omit<LockOptions, 'signal' | 'key'>;
  readonly emit: (event: ReplicateEvent) => void;
  readonly signal?: AbortSignal;
  /** The reuse index keeps what `ReuseIndex.known` needs (`ReplicateOptions.trustSourceEtags`). */
  readonly trustSourceEtags?: boolean;
  /** Earlier copies' manifests are read through this cache (`ReplicateOptions.manifestCacheDir`). */
  readonly manifestCache?: ManifestCache;
  /** Where a destination that may reuse has its likely kept files hashed ahead (./hash-ahead.ts). */
  readonly hashAhead?: HashAhead;
}

/** A destination ready for a run: its plan (as a one-destination `ReplicationPlan`), what it holds, its reuse index, and its lock unless up to date or a dry run. */
export interface PreparedDestination {
  readonly plan: ReplicationPlan & { readonly destinations: readonly [DestinationPlan] };
  readonly holdings: DestinationHoldings;
  readonly reuse?: RunReuse;
  /** Held from before the second read until the caller releases it. */
  readonly lock?: HeldLock;
  /** Its likely kept files hashed ahead (./hash-ahead.ts), with the lock; the caller closes it. */
  readonly hashAhead?: HashCursor;
}

/**
 * Prepares one destination for a run: reads what it holds and plans it; one with work to do
 * builds its reuse index (`reuse` policy) and, meanwhile, unless this is a dry run, takes its lock
 * and is read again, then planned (what another run did before the lock counts). Throws what the destination
 * throws (the lock is released then); the caller fails this destination alone.
 *
 * The source's files (`ctx.files`) may still be being listed: a destination without a manifest of
 * this backup has work to do whatever they are (a copy is up to date only with one), so its reuse
 * index (a listing and the earlier copies' manifests: round trips on a distant store) is built
 * meanwhile (issue 12: a reuse night's start). Its lock waits for the listing: a backup that is
 * not complete at the source (still being written, a mistyped name) takes no lock anywhere, and
 * leaves no `NAME/.offsite/` folder behind. With a manifest there the files are awaited first: an
 * up-to-date copy takes no lock either.
 */
export async function prepareDestination(driver: Driver, reusePolicy: ReusePolicy | undefined, ctx: PrepareContext): Promise<PreparedDestination> {
  const { backup, shard, chunkBytes, signal } = ctx;
  let files: readonly EngineFile[] | undefined;
  let compact = false;
  const listed = async (): Promise<readonly EngineFile[]> => {
    if (files === undefined) {
      const all = await ctx.files;
      compact = !ctx.dryRun && shard === undefined && (await ctx.compactPlans) === true;
      files = all;
    }
    return files;
  };
  const read = async (): Promise<DestinationHoldings> => {
    // A shard's reading of the destination checks its records against the shard's files.
    if (shard) await listed();
    const held = usableHoldings(driver, await readDestinationState(driver, backup, signal, shard?.checkpointKeys));
    return shard ? await shard.holdings(driver, held, chunkBytes, signal) : held;
  };
  const planOf = (state: DestinationState, reuse: RunReuse | undefined): PreparedDestination['plan'] => {
    const lookups = reuse ? new Map<string, ReuseLookup>([[driver.name, reuse.index]]) : undefined;
    return (shard ? shard.plan([state], chunkBytes, lookups) : planReplication(backup, files as readonly EngineFile[], [state], chunkBytes, lookups, { compact })) as PreparedDestination['plan'];
  };
  // The reuse index (a listing, then the earlier copies' manifests) is built while the destination
  // is read, its lock taken and it is read again: none needs another, and on a distant store each
  // is several round trips (the lock also waits to read itself back). Dropped when the copy turns
  // out to be up to date.
  const stopIndexing = new AbortController();
  const indexing = reuseIndexOf(driver, backup, reusePolicy, ctx.emit, eitherSignal(stopIndexing.signal, signal), ctx.trustSourceEtags === true, ctx.manifestCache);
  indexing.catch(() => undefined); // awaited below, or dropped
  const dropIndex = async (): Promise<void> => {
    stopIndexing.abort();
    await indexing.catch(() => undefined);
  };
  let first: DestinationHoldings;
  try {
    first = await read();
    if (first.manifest !== undefined) {
      await listed();
      const unreused = planOf(first, undefined);
      if (unreused.destinations[0].upToDate) {
        await dropIndex();
        return { plan: unreused, holdings: first };
      }
    }
  } catch (err) {
    await dropIndex();
    throw err;
  }
  if (ctx.dryRun) {
    try {
      const [reuse] = await Promise.all([indexing, listed()]);
      return { plan: planOf(first, reuse), holdings: first, ...(reuse ? { reuse } : {}) };
    } catch (err) {
      await dropIndex();
      throw err;
    }
  }
  // A destination with files to reuse opens what its copies need now, while its lock is taken
  // (`Driver.prepareCopies`: an SFTP server's copy connection), not at its first copy.
  indexing.then((reuse) => { if (reuse !== undefined) driver.prepareCopies?.(); }, () => undefined);
  // Its likely kept files are hashed ahead from the moment the index and the source listing are
  // there (./hash-ahead.ts): while the lock settles, and then ahead of its copies.
  const hashingAhead = hashAheadOf(driver, first, ctx, indexing, listed);
  hashingAhead.catch(() => undefined); // awaited below
  const locked = (async () => {
    await listed();
    // The destination is read again as soon as the lock is written, while the lock settles and is
    // read back: every earlier holder's writes landed before this run's lock did (a holder writes
    // nothing after its release; a live one refuses this run before it writes), and a racing run
    // that loses the lock writes nothing but its lock. Lost here: the read is dropped.
    let reading: Promise<DestinationHoldings> | undefined;
    const readAgain = (): Promise<DestinationHoldings> => {
      reading = read();
      reading.catch(() => undefined); // awaited below, unless the lock was not taken
      return reading;
    };
    const lock = await acquireLock(driver, backup, { ...ctx.lock, key: shard?.lockKey, signal, onWritten: () => { void readAgain(); } });
    try {
      return { lock, holdings: await (reading ?? readAgain()) };
    } catch (err) {
      await lock.release();
      throw err;
    }
  })();
  try {
    const [reuse, { lock, holdings }] = await Promise.all([indexing, locked]);
    const hashAhead = await hashingAhead;
    return { plan: planOf(holdings, reuse), holdings, lock, ...(reuse ? { reuse } : {}), ...(hashAhead ? { hashAhead } : {}) };
  } catch (err) {
    // Whichever failed first, the other is ended: the index dropped, a lock taken released, reads ahead given up.
    await dropIndex();
    (await hashingAhead.catch(() => undefined))?.close();
    await (await locked.catch(() => undefined))?.lock.release();
    throw err;
  }
}

/**
 * The cursor of a destination that may reuse over its likely kept files (./hash-ahead.ts), once
 * its index and the source listing are there: the files missing at its first read whose path the
 * newest earlier copy holds with the same size, except those the record of that copy gives the
 * hashes of (`ReuseIndex.known`). None for an encrypted destination (its match needs the shared
 * read, for a MAC of the plaintext).
 */
async function hashAheadOf(
  driver: Driver, first: DestinationHoldings, ctx: PrepareContext, indexing: Promise<RunReuse | undefined>, listed: () => Promise<readonly EngineFile[]>,
): Promise<HashCursor | undefined> {
  const ahead = ctx.hashAhead;
  if (ahead === undefined || driver.encryption !== undefined) return undefined;
  const [reuse, files] = await Promise.all([indexing, listed()]);
  if (reuse === undefined) return undefined;
  const { index } = reuse;
  return ahead.cursor(files, (file) => file.size > 0 && !first.present.has(file.path) && index.candidate(file.path, file.size) !== undefined &&
    index.known(file.path, file.size, file.fingerprint, ctx.chunkBytes) === undefined);
}

/**
 * What a destination holds, with the records that cannot serve this destination's encryption
 * setting left out: a plain copy's records at a destination that now encrypts (its files are sent
 * again, encrypted; records are left out by marking their manifest's chunk size unusable, so the
 * plan still removes that manifest first), and an encrypted copy's records made in another format
 * (`encryption.scheme`: a copy an earlier offsite started or finished). Their files are read back
 * and sealed again where they are in another format version (`encryption.inspect` does not adopt
 * them), so a manifest this offsite writes never lists a file its scheme does not describe, and
 * reuse, which trusts the scheme, never copies a file to where it does not open. Refused (kind `auth`): an encrypted copy made with
 * another key (mixing keys in one destination would leave copies no single key opens), and an
 * encrypted copy where no key is configured (writing would replace it with plaintext: an audit
 * host's `audit --repair`, or a config that lost its `encryption`).
 */
export function usableHoldings(driver: Driver, held: DestinationHoldings): DestinationHoldings {
  const publicKey = driver.encryption?.publicKey;
  const foreign = [held.manifest, held.progress].find((m) => m?.encryption !== undefined && publicKey !== undefined && m.encryption.publicKey !== publicKey);
  if (foreign) {
    throw new EncryptionKeyError(`destination "${driver.name}": its copy of ${foreign.backup} was encrypted with another key (public key ${foreign.encryption?.publicKey ?? ''}): configure that key for it, or delete that copy (offsite prune) before replicating with this one`);
  }
  const encrypted = [held.manifest, held.progress].find((m) => m?.encryption !== undefined);
  if (encrypted && publicKey === undefined) {
    throw new EncryptionKeyError(`destination "${driver.name}": its copy of ${encrypted.backup} is encrypted, and no encryption key is configured for it here: give it its key (encryption: { key: ... } or { keyFile: ... }); to replace the copy by a plain one, delete it first (offsite prune)`);
  }
  const scheme = driver.encryption?.scheme;
  const unusable = (m: Manifest | undefined): Manifest | undefined =>
    (m && publicKey !== undefined && (m.encryption === undefined || m.encryption.scheme !== scheme) ? { ...m, chunkBytes: -1 } : m);
  return { ...held, manifest: unusable(held.manifest), progress: unusable(held.progress) };
}
