/**
 * Verification of one destination copy against its own manifest.
 *
 * - quick: the manifest exists and its digest is valid; every file it lists exists with the
 *   listed size, and where the driver keeps our hash with the object (`storedHash`), that hash
 *   matches too. Where the manifest recorded the file's destination fingerprint (size + mtime +
 *   inode, size + mtime, or ETag: see src/drivers/toolkit/fingerprint.ts) and the listing shows
 *   another one, the file was touched since it was committed: it is read back and hashed, and
 *   reported only when its bytes differ (a `touch` is no damage). Nothing else is read, so a
 *   quick check proves nothing about bytes whose fingerprint held (bit rot, a rewrite that kept
 *   the mtime): the stored hash and the fingerprint are metadata. A stored hash that differs is
 *   damage; one that matches is no proof.
 * - deep: additionally reads every byte back and compares each chunk's hash; a difference is
 *   reported with the file, the chunk number and its byte range.
 * - quick plus a deep sample (`readBack`): quick checks for every file, deep for those chosen
 *   (audits: a random sample or a slice of the rotation).
 */
import PQueue from 'p-queue';
import type { Driver } from '../drivers/types.js';
import { errorKind, errorMessage, OffsiteError } from '../errors.js';
import { getHasher } from '../hash/xxh64.js';
import { manifestKey, OFFSITE_DIR, readManifestAt, type Manifest, type ManifestFile } from '../manifest/manifest.js';
import { ChunkPool } from './buffers.js';
import { readChunks } from './chunks.js';

export type VerifyLevel = 'quick' | 'deep';

export interface Damage {
  readonly path: string;
  /** missing | size | hash (the stored hash, a fingerprint, differs; or the file hash after a read) | chunk (bytes differ) | unreadable */
  readonly problem: 'missing' | 'size' | 'hash' | 'chunk' | 'unreadable';
  /** For `chunk`: the first chunk that differs (0-based) and its byte range. */
  readonly chunk?: number;
  readonly offset?: number;
  readonly length?: number;
  readonly message: string;
  /**
   * The file was created by a server-side copy of this key at the destination (`ManifestFile.reusedFrom`):
   * with `reuse: link` the two share their blocks, so that copy is likely damaged too.
   */
  readonly reusedFrom?: string;
}

export interface VerifyResult {
  readonly destination: string;
  readonly description: string;
  readonly backup: string;
  readonly level: VerifyLevel;
  /** ok: intact; damaged: see `damage`; incomplete: no valid manifest; error: could not check. */
  readonly status: 'ok' | 'damaged' | 'incomplete' | 'error';
  readonly filesChecked: number;
  readonly bytesChecked: number;
  /** Files read back in full (deep checks that completed, intact or not). */
  readonly filesRead: number;
  readonly damage: readonly Damage[];
  readonly message?: string;
}

export interface VerifyOptions {
  readonly driver: Driver;
  readonly backup: string;
  readonly level: VerifyLevel;
  /** Files checked at once. @default 4 */
  readonly concurrency?: number;
  /** Only these manifest paths; all when omitted. */
  readonly only?: (file: ManifestFile) => boolean;
  /** With level `quick`: also read back the files it accepts (the audit's sample or slice). */
  readonly readBack?: (file: ManifestFile) => boolean;
  readonly signal?: AbortSignal;
  readonly onBytes?: (bytes: number) => void;
}

/**
 * Reads one file back and compares its chunk hashes with the manifest. Every byte read is
 * hashed once: when the manifest lists chunk hashes (every file with bytes), each chunk is
 * compared with its own, and all of them matching is the proof (64 bits per chunk, from the same
 * source read as the whole-file hash); the whole-file hash is computed only for a record without
 * chunk hashes.
 */
async function deepCheck(driver: Driver, key: string, file: ManifestFile, pool: ChunkPool, options: VerifyOptions): Promise<Damage | undefined> {
  const chunkBytes = pool.chunkBytes;
  const hasher = await getHasher();
  const whole = file.chunks.length === 0 ? hasher.create() : undefined;
  let index = 0;
  for await (const chunk of readChunks(driver, key, file.size, pool, `${driver.name}: ${key}`, options.signal)) {
    const length = chunk.length;
    let actual: string | undefined;
    if (whole) whole.update(chunk);
    else actual = hasher.hash(chunk);
    pool.release(chunk);
    if (actual !== undefined && actual !== file.chunks[index]) {
      const offset = index * chunkBytes;
      return {
        path: file.path, problem: 'chunk', chunk: index, offset, length,
        message: `${file.path}: chunk ${index} (bytes ${offset}..${offset + length - 1}) differs: expected ${file.chunks[index]}, found ${actual}`,
      };
    }
    options.onBytes?.(length);
    index++;
  }
  if (whole) {
    const actual = whole.digest();
    if (actual !== file.hash) return { path: file.path, problem: 'hash', message: `${file.path}: file hash ${actual}, manifest says ${file.hash}` };
  } else if (index !== file.chunks.length) {
    return { path: file.path, problem: 'hash', message: `${file.path}: ${index} chunks read back, the manifest lists ${file.chunks.length}` };
  }
  return undefined;
}

/** Verifies one destination copy. Never throws for damage; throws only when aborted. */
export async function verifyCopy(options: VerifyOptions): Promise<VerifyResult> {
  const { driver, backup, level } = options;
  const base = { destination: driver.name, description: driver.description, backup, level };
  let manifest: Manifest | undefined;
  try {
    manifest = await readManifestAt(driver, manifestKey(backup), { signal: options.signal });
  } catch (err) {
    if (errorKind(err) === 'integrity') {
      return { ...base, status: 'damaged', filesChecked: 0, bytesChecked: 0, filesRead: 0, damage: [{ path: `${OFFSITE_DIR}/manifest.json`, problem: 'hash', message: errorMessage(err) }] };
    }
    return { ...base, status: 'error', filesChecked: 0, bytesChecked: 0, filesRead: 0, damage: [], message: errorMessage(err) };
  }
  if (!manifest) {
    return { ...base, status: 'incomplete', filesChecked: 0, bytesChecked: 0, filesRead: 0, damage: [], message: `${driver.name}: no manifest for ${backup}: the copy is absent or incomplete; run offsite replicate ${backup} --to ${driver.name}` };
  }
  const files = options.only ? manifest.files.filter(options.only) : manifest.files;
  const present = new Map<string, { size: number; hash?: string; fingerprint?: string }>();
  try {
    for await (const entry of driver.list(`${backup}/`, { signal: options.signal })) present.set(entry.key, { size: entry.size, hash: entry.hash, fingerprint: entry.fingerprint });
  } catch (err) {
    return { ...base, status: 'error', filesChecked: 0, bytesChecked: 0, filesRead: 0, damage: [], message: errorMessage(err) };
  }
  const damage: Damage[] = [];
  const pool = new ChunkPool(manifest.chunkBytes);
  let bytesChecked = 0;
  let filesRead = 0;
  let failure: unknown;
  const queue = new PQueue({ concurrency: options.concurrency ?? 4 });
  /** Records damage, naming the copy a reused file was copied from (the audit report shows it). */
  const note = (file: ManifestFile, found: Damage): void => {
    damage.push(file.reusedFrom === undefined ? found : { ...found, reusedFrom: file.reusedFrom, message: `${found.message} (created by a server-side copy of ${file.reusedFrom})` });
  };
  for (const file of files) {
    await queue.onSizeLessThan(queue.concurrency);
    void queue.add(async () => {
      if (failure !== undefined) return;
      const key = `${backup}/${file.path}`;
      const there = present.get(key);
      if (!there) { note(file, { path: file.path, problem: 'missing', message: `${file.path}: missing` }); return; }
      if (there.size !== file.size) { note(file, { path: file.path, problem: 'size', message: `${file.path}: ${there.size} bytes, manifest says ${file.size}` }); return; }
      try {
        if (driver.capabilities.storedHash) {
          const stored = there.hash ?? (await driver.stat(key, { signal: options.signal }))?.hash;
          if (stored !== undefined && stored !== file.hash) {
            note(file, { path: file.path, problem: 'hash', message: `${file.path}: the hash stored with the object is ${stored}, the manifest says ${file.hash}: the object was replaced` });
            return;
          }
        }
        const touched = file.destinationFingerprint !== undefined && there.fingerprint !== file.destinationFingerprint;
        if (level === 'deep' || touched || options.readBack?.(file)) {
          const found = await deepCheck(driver, key, file, pool, options);
          filesRead++;
          if (found) note(file, found);
          else bytesChecked += file.size;
        }
      } catch (err) {
        if (errorKind(err) === 'integrity' || errorKind(err) === 'not-found') note(file, { path: file.path, problem: 'unreadable', message: `${file.path}: ${errorMessage(err)}` });
        else failure ??= err;
      }
    });
  }
  await queue.onIdle();
  damage.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (failure !== undefined) {
    if (errorKind(failure) === 'fatal' && failure instanceof OffsiteError && failure.code === 'E_ABORTED') throw failure;
    return { ...base, status: 'error', filesChecked: files.length, bytesChecked, filesRead, damage, message: errorMessage(failure) };
  }
  return { ...base, status: damage.length > 0 ? 'damaged' : 'ok', filesChecked: files.length, bytesChecked, filesRead, damage };
}
