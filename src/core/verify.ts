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
import type { Driver, FileHashes } from '../drivers/types.js';
import { errorKind, errorMessage, OffsiteError } from '../errors.js';
import { HashArena } from '../hash/xxh64.js';
import { manifestKey, OFFSITE_DIR, type ManifestFile } from '../manifest/manifest.js';
import { streamManifestAt, type ManifestFieldsSoFar, type ManifestSummary } from '../manifest/read.js';
import { readChunkHashes } from './chunks.js';
import { ListingIndex } from '../listing-index.js';

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
  /**
   * With level `quick`: also read back the files it accepts (the audit's sample or slice). Asked
   * once for every file (of `only`), in the manifest's order, as the file list streams by:
   * `index` is the file's position in the manifest, `fieldsSoFar` the manifest's fields read
   * before its file list (`fileCount`...), not yet checked.
   */
  readonly readBack?: (file: ManifestFile, index: number, fieldsSoFar: ManifestFieldsSoFar) => boolean;
  /** Told the manifest's fields (all but the file list) once it has been read whole and its digest matched. */
  readonly onManifest?: (summary: ManifestSummary) => void;
  /**
   * The manifest must be signed with this Ed25519 public key (an encrypted destination's, from its
   * key or its `encryption.publicKey`): a forged or replaced manifest is then damage.
   */
  readonly publicKey?: string;
  /** Files the copy likely holds (a manifest's `fileCount` read before): the listing's index is sized for them at once. */
  readonly expectedFiles?: number;
  readonly signal?: AbortSignal;
  readonly onBytes?: (bytes: number) => void;
}

/**
 * Bytes per read of a deep check. Reads land in a `HashArena` and are hashed there; pieces of a
 * few MB keep several reads in flight per file on the thread pool while the main thread hashes
 * the ones done, and the arena small (`READ_SLOTS_PER_FILE` of them per file in flight).
 */
const READ_PIECE_BYTES = 1024 * 1024;
/** Slots of the arena per file in flight: the piece being hashed, the one being read, one more read ahead, one spare. */
const READ_SLOTS_PER_FILE = 4;
/**
 * Files read back before the listing showed them whose records are kept until it does (see
 * `check` in `verifyCopy`). Beyond this many, reads wait for the listing: a listing slower than
 * the reads (a loaded machine, a slow server) made every record of the manifest pile up here, a
 * few hundred bytes of heap each (issue 13: `verify --deep` of ~20,000 files ran out of a 24 MB
 * heap, and pull's read-back peaked with it at 100,000).
 */
export const MAX_FILES_READ_BEFORE_LISTED = 1024;

/** Thrown (and caught) by `verifyCopy` when a manifest's file list comes before its chunk size. */
class ChunkSizeAfterFiles extends Error {}

/**
 * Reads one file back and compares its chunk hashes with the manifest: hashed by the driver where
 * it can (`Driver.readHashes`: the local driver reads into the hash module's memory, no stream),
 * else read through its stream and hashed here. Every byte read is
 * hashed once: when the manifest lists chunk hashes (every file with bytes), each chunk is
 * compared with its own, and all of them matching is the proof (64 bits per chunk, from the same
 * source read as the whole-file hash); the whole-file hash is computed only for a record without
 * chunk hashes.
 */
async function deepCheck(driver: Driver, key: string, file: ManifestFile, chunkBytes: number, arena: () => HashArena, options: VerifyOptions): Promise<Damage | undefined> {
  if (driver.readHashes) return judgeHashes(file, chunkBytes, await driver.readHashes(key, { size: file.storedSize ?? file.size, chunkBytes, whole: file.chunks.length === 0, signal: options.signal, onBytes: options.onBytes }));
  return deepCheckByStream(driver, key, file, chunkBytes, arena(), options);
}

/**
 * `deepCheck` where the driver hashed the file itself (`Driver.readHashes`: every byte read, the
 * size exact, or it rejected): the same findings as reading the stream, from its hashes.
 */
function judgeHashes(file: ManifestFile, chunkBytes: number, found: FileHashes): Damage | undefined {
  const size = file.storedSize ?? file.size;
  if (file.chunks.length === 0) return found.hash === file.hash ? undefined : fileHashDamage(file, found.hash ?? '(none)');
  const count = Math.min(found.chunks.length, file.chunks.length);
  for (let index = 0; index < count; index++) {
    const actual = found.chunks[index] as string;
    if (actual !== file.chunks[index]) return chunkDamage(file, index, index * chunkBytes, Math.min(chunkBytes, size - index * chunkBytes), actual);
  }
  return found.chunks.length === file.chunks.length ? undefined : chunkCountDamage(file, found.chunks.length);
}

/** Chunk `index` of `file` (`length` bytes at `offset`) hashed to `actual`, not to its recorded hash. */
function chunkDamage(file: ManifestFile, index: number, offset: number, length: number, actual: string): Damage {
  return {
    path: file.path, problem: 'chunk', chunk: index, offset, length,
    message: `${file.path}: chunk ${index} (bytes ${offset}..${offset + length - 1}) differs: expected ${file.chunks[index]}, found ${actual}`,
  };
}

/** `file` (recorded without chunk hashes) hashed to `actual`, not to its recorded hash. */
function fileHashDamage(file: ManifestFile, actual: string): Damage {
  return { path: file.path, problem: 'hash', message: `${file.path}: file hash ${actual}, manifest says ${file.hash}` };
}

/** `count` chunks of `file` were read back, not as many as it records. */
function chunkCountDamage(file: ManifestFile, count: number): Damage {
  return { path: file.path, problem: 'hash', message: `${file.path}: ${count} chunks read back, the manifest lists ${file.chunks.length}` };
}

/** `deepCheck` through the driver's read stream, hashed here (in `arena`). */
async function deepCheckByStream(driver: Driver, key: string, file: ManifestFile, chunkBytes: number, arena: HashArena, options: VerifyOptions): Promise<Damage | undefined> {
  const whole = file.chunks.length === 0 ? arena.create() : undefined;
  let index = 0;
  let offset = 0;
  const size = file.storedSize ?? file.size;
  for await (const actual of readChunkHashes(driver, key, size, chunkBytes, arena, `${driver.name}: ${key}`, options.signal, whole)) {
    const length = Math.min(chunkBytes, size - offset);
    if (!whole && actual !== file.chunks[index]) return chunkDamage(file, index, offset, length, actual);
    options.onBytes?.(length);
    offset += length;
    index++;
  }
  if (whole) {
    const actual = whole.digest();
    if (actual !== file.hash) return fileHashDamage(file, actual);
  } else if (index !== file.chunks.length) {
    return chunkCountDamage(file, index);
  }
  return undefined;
}

/**
 * Verifies one destination copy. Never throws for damage; throws only when aborted.
 *
 * Memory: the listing of the copy (compact: ../listing-index.ts) and the files in flight; the manifest's
 * file list streams by (../manifest/read.ts), each file checked as its record arrives, and read
 * back while the listing is still coming (the records of files read before the listing showed
 * them are kept, without their chunk hashes, until it has ended). Nothing
 * counts as checked before the whole manifest was read and its digest matched: a manifest found
 * damaged at its end voids the checks made on its records, and the copy is reported by its
 * manifest's damage alone.
 */
export async function verifyCopy(options: VerifyOptions): Promise<VerifyResult> {
  const { backup, level, signal } = options;
  // The stored bytes, as an auditor without the key sees them: an encrypted copy's records are of
  // those (the driver below its encryption; src/drivers/types.ts `DriverEncryption.stored`).
  const driver = options.driver.encryption?.stored ?? options.driver;
  const base = { destination: driver.name, description: driver.description, backup, level };
  const key = manifestKey(backup);
  const damagedManifest = (err: unknown): VerifyResult => ({ ...base, status: 'damaged', filesChecked: 0, bytesChecked: 0, filesRead: 0, damage: [{ path: `${OFFSITE_DIR}/manifest.json`, problem: 'hash', message: errorMessage(err) }] });
  const failed = (err: unknown): VerifyResult => ({ ...base, status: 'error', filesChecked: 0, bytesChecked: 0, filesRead: 0, damage: [], message: errorMessage(err) });
  const incomplete: VerifyResult = { ...base, status: 'incomplete', filesChecked: 0, bytesChecked: 0, filesRead: 0, damage: [], message: `${driver.name}: no manifest for ${backup}: the copy is absent or incomplete; run offsite replicate ${backup} --to ${driver.name}` };
  const isAbort = (err: unknown): boolean => err instanceof OffsiteError && err.code === 'E_ABORTED';
  try {
    if (!(await driver.stat(key, { signal }))) return incomplete;
  } catch (err) {
    if (isAbort(err)) throw err;
    return errorKind(err) === 'integrity' ? damagedManifest(err) : failed(err);
  }
  // Keys relative to `NAME/`, held compactly (../listing-index.ts): the listing is the one thing kept per file.
  const present = new ListingIndex(options.expectedFiles);
  const prefixLength = backup.length + 1;
  const damage: Damage[] = [];
  let arena: HashArena | undefined;
  const concurrency = options.concurrency ?? 4;
  let filesChecked = 0;
  let bytesChecked = 0;
  let filesRead = 0;
  let failure: unknown;
  /** Records damage, naming the copy a reused file was copied from (the audit report shows it). */
  const note = (file: ManifestFile, found: Damage): void => {
    damage.push(file.reusedFrom === undefined ? found : { ...found, reusedFrom: file.reusedFrom, message: `${found.message} (created by a server-side copy of ${file.reusedFrom})` });
  };
  let stopped = false;
  // The listing comes while the manifest streams and files are read (issue 13: before, nothing was
  // read until the whole copy had been listed). A file is judged (missing, size, stored hash, read)
  // only once the listing shows it or has ended: see `check`.
  let listed = false;
  let listingFailure: unknown;
  const listing = (async () => {
    try {
      for await (const entry of driver.list(`${backup}/`, { signal })) {
        present.set(entry.key.slice(prefixLength), entry.size, entry.fingerprint, entry.hash);
        if (stopped) return;
      }
      listed = true;
    } catch (err) {
      listingFailure = err;
      stopped = true;
    }
  })();
  /** A deep check's outcome, kept until the file can be judged. */
  type ReadOutcome = { readonly found?: Damage; readonly error?: unknown };
  /** The arena of reads through the driver's stream (made at the first; not when the driver hashes itself). */
  const streamArena = (): HashArena => (arena ??= new HashArena(READ_SLOTS_PER_FILE * concurrency, READ_PIECE_BYTES));
  const readBackFile = (file: ManifestFile, chunkBytes: number): Promise<ReadOutcome> =>
    deepCheck(driver, `${backup}/${file.path}`, file, chunkBytes, streamArena, options).then((found) => ({ found }), (error: unknown) => ({ error }));
  /** Files read before the listing showed them, judged once it has ended (their chunk hashes dropped: they are read). */
  const readEarly: { file: ManifestFile; readBack: boolean; chunkBytes: number; outcome: ReadOutcome }[] = [];
  /** Checks one file against the listing, and reads it back (unless `read` holds its outcome already). */
  const judge = async (file: ManifestFile, readBack: boolean, chunkBytes: number, read?: ReadOutcome): Promise<void> => {
    if (failure !== undefined || stopped) return;
    const fileKey = `${backup}/${file.path}`;
    const there = present.get(file.path);
    if (!there) { note(file, { path: file.path, problem: 'missing', message: `${file.path}: missing` }); return; }
    const size = file.storedSize ?? file.size;
    if (there.size !== size) { note(file, { path: file.path, problem: 'size', message: `${file.path}: ${there.size} bytes, manifest says ${size}${file.storedSize !== undefined ? ' (stored, encrypted)' : ''}` }); return; }
    try {
      if (driver.capabilities.storedHash) {
        const stored = there.hash ?? (await driver.stat(fileKey, { signal }))?.hash;
        if (stored !== undefined && stored !== file.hash) {
          note(file, { path: file.path, problem: 'hash', message: `${file.path}: the hash stored with the object is ${stored}, the manifest says ${file.hash}: the object was replaced` });
          return;
        }
      }
      const touched = file.destinationFingerprint !== undefined && there.fingerprint !== file.destinationFingerprint;
      if (level === 'deep' || touched || readBack) {
        const outcome = read ?? await readBackFile(file, chunkBytes);
        if (outcome.error !== undefined) throw outcome.error;
        filesRead++;
        if (outcome.found) note(file, outcome.found);
        else bytesChecked += size;
      }
    } catch (err) {
      if (errorKind(err) === 'integrity' || errorKind(err) === 'not-found') note(file, { path: file.path, problem: 'unreadable', message: `${file.path}: ${errorMessage(err)}` });
      else failure ??= err;
    }
  };
  /**
   * A file the listing has not shown yet: one to be read anyway (deep, or chosen for read-back) is
   * read now and judged by `judge` once the listing shows it or has ended, with what the read found
   * (its queue place goes to the next file meanwhile); one only to be checked waits for the listing,
   * and so does every file once `MAX_FILES_READ_BEFORE_LISTED` read ones wait for it (their records
   * are held until then).
   * A file is never certified on a read alone: a missing, short or longer file (the listing's size)
   * or a replaced one (the stored hash) is reported as such whatever its read found.
   */
  const check = async (file: ManifestFile, readBack: boolean, chunkBytes: number): Promise<void> => {
    if (failure !== undefined || stopped) return;
    if (!listed && !present.has(file.path)) {
      if ((level !== 'deep' && !readBack) || readEarly.length >= MAX_FILES_READ_BEFORE_LISTED) {
        await listing;
      } else {
        const outcome = await readBackFile(file, chunkBytes);
        if (!listed && !present.has(file.path)) {
          readEarly.push({ file: { ...file, chunks: [] }, readBack, chunkBytes, outcome });
          return;
        }
        return judge(file, readBack, chunkBytes, outcome);
      }
    }
    return judge(file, readBack, chunkBytes);
  };
  const queue = new PQueue({ concurrency });
  /** `chunkBytes` when the manifest gives it only after its file list (never written so by offsite): read it first. */
  const stream = (knownChunkBytes?: number): Promise<ManifestSummary | undefined> => streamManifestAt(driver, key, {
    signal, publicKey: options.publicKey,
    onFile: async (file, index, fieldsSoFar) => {
      // An encrypted copy's chunk hashes are of its stored chunks.
      const chunkBytes = fieldsSoFar.encryption?.storedChunkBytes ?? knownChunkBytes ?? fieldsSoFar.chunkBytes;
      if (typeof chunkBytes !== 'number' || chunkBytes <= 0) throw new ChunkSizeAfterFiles();
      if (options.only && !options.only(file)) return;
      filesChecked++;
      // Asked here, in order, for every file: a sample drawn as the list streams by needs every answer.
      const readBack = options.readBack?.(file, index, fieldsSoFar) ?? false;
      await queue.onSizeLessThan(queue.concurrency);
      void queue.add(() => check(file, readBack, chunkBytes));
    },
  });
  let summary: ManifestSummary | undefined;
  try {
    try {
      summary = await stream();
    } catch (err) {
      if (!(err instanceof ChunkSizeAfterFiles)) throw err;
      const first = await streamManifestAt(driver, key, { signal });
      summary = first && await stream(first.chunkBytes);
    }
  } catch (err) {
    stopped = true;
    await queue.onIdle();
    await listing;
    if (isAbort(err)) throw err;
    return errorKind(err) === 'integrity' ? damagedManifest(err) : failed(err);
  }
  await queue.onIdle();
  await listing;
  if (listingFailure !== undefined) {
    if (isAbort(listingFailure)) throw listingFailure;
    return failed(listingFailure);
  }
  for (const early of readEarly.splice(0)) void queue.add(() => judge(early.file, early.readBack, early.chunkBytes, early.outcome));
  await queue.onIdle();
  if (!summary) return incomplete; // removed between the stat and the read
  damage.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (failure !== undefined) {
    if (isAbort(failure)) throw failure;
    return { ...base, status: 'error', filesChecked, bytesChecked, filesRead, damage, message: errorMessage(failure) };
  }
  options.onManifest?.(summary);
  return { ...base, status: damage.length > 0 ? 'damaged' : 'ok', filesChecked, bytesChecked, filesRead, damage };
}
