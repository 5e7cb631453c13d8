/**
 * What a destination holds for one backup before a replicate run plans it: its manifest, the
 * files present with their sizes and fingerprints, and its progress checkpoint with the journal
 * entries on top (used by ./replicate.ts and ./shard.ts).
 */
import type { Driver } from '../drivers/types.js';
import { EncryptionKeyError } from '../crypto/keys.js';
import { errorKind, errorMessage } from '../errors.js';
import { manifestKey, OFFSITE_DIR, readManifestAt, type Manifest, type ManifestFile } from '../manifest/manifest.js';
import { copyCheckpointKeys, type CheckpointKeys } from './destination-run.js';
import type { DestinationState } from './plan.js';

/** What a destination holds for a backup, with the journal of its progress checkpoint. */
export interface DestinationHoldings extends DestinationState {
  readonly progressJournal: ProgressJournal;
}

export interface ProgressJournal {
  /** Files in `progress.json` when it is there and valid. */
  readonly baseFiles?: number;
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
  let manifest: Manifest | undefined;
  let manifestProblem: string | undefined;
  try {
    manifest = await readManifestAt(driver, manifestKey(backup), { signal });
  } catch (err) {
    if (errorKind(err) !== 'integrity') throw err;
    manifestProblem = errorMessage(err);
  }
  // A damaged checkpoint or journal entry only costs re-reading the files it recorded.
  const readQuietly = async (key: string): Promise<Manifest | undefined> => {
    try {
      return await readManifestAt(driver, key, { signal });
    } catch (err) {
      if (errorKind(err) !== 'integrity') throw err;
      return undefined;
    }
  };
  const base = await readQuietly(keys.progress);
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
      if (layer.chunkBytes !== newest.chunkBytes) continue;
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
  return { name: driver.name, manifest, manifestProblem, progress, present, presentFingerprints, progressJournal: { baseFiles: base?.fileCount, entries } };
}

/**
 * What a destination holds, with the records that cannot serve this destination's encryption
 * setting left out: a plain copy's records at a destination that now encrypts (its files are sent
 * again, encrypted; records are left out by marking their manifest's chunk size unusable, so the
 * plan still removes that manifest first). Refused (kind `auth`): an encrypted copy made with
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
  const unusable = (m: Manifest | undefined): Manifest | undefined => (m && m.encryption === undefined && publicKey !== undefined ? { ...m, chunkBytes: -1 } : m);
  return { ...held, manifest: unusable(held.manifest), progress: unusable(held.progress) };
}
