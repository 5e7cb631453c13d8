/**
 * The manifest: the proof that one destination holds one whole backup. It lives at
 * `NAME/.offsite/manifest.json` next to the copy, is written after every file of the copy is
 * committed, and is removed first whenever the copy is changed or deleted. "Manifest present
 * and its digest valid" is the definition of "copy complete".
 *
 * While a copy is in progress, `NAME/.offsite/progress.json` (same shape, `kind: "progress"`)
 * records the files already committed with their hashes, so that a later run, from any machine,
 * can skip them without re-reading them. It never counts as complete.
 *
 * Encoding: JSON; the `digest` field is the XXH64 of the canonical encoding (keys sorted, no
 * whitespace) of every other field, so a damaged or hand-edited manifest is detected. A corrupt
 * manifest is an error, never an empty manifest.
 */
import { OffsiteError } from '../errors.js';
import { getHasher, HASH_ALGORITHM, isHash } from '../hash/xxh64.js';
import type { Driver, SignalOptions } from '../drivers/types.js';
import { readBytes, writeBytes } from '../drivers/io.js';

export const MANIFEST_FORMAT = 'offsite-manifest';
export const MANIFEST_VERSION = 1;

export interface ManifestFile {
  /** Path relative to the backup folder, e.g. `meta/full_meta.json`. */
  readonly path: string;
  readonly size: number;
  /** Whole-file hash, `xxh64:<hex>`. */
  readonly hash: string;
  /** One hash per `chunkBytes` chunk, in order (none for an empty file). */
  readonly chunks: readonly string[];
}

export interface ManifestBody {
  readonly format: typeof MANIFEST_FORMAT;
  readonly version: number;
  /** `complete` for the manifest proper, `progress` for the in-progress checkpoint. */
  readonly kind: 'complete' | 'progress';
  readonly backup: string;
  /** Where the copy came from (driver description, never secrets). */
  readonly source: string;
  readonly createdAt: string;
  /**
   * When the backup itself was made (ISO): the UTC time in milvus-backup's default name
   * (`backup_YYYY_MM_DD_HH_MM_SS_…`), else the newest change among its files at the source.
   * Retention (`offsite prune`) goes by it. Absent in manifests written before it existed.
   */
  readonly backupTime?: string;
  readonly chunkBytes: number;
  readonly hashAlgorithm: typeof HASH_ALGORITHM;
  readonly fileCount: number;
  readonly totalBytes: number;
  /** Sorted by path. */
  readonly files: readonly ManifestFile[];
}

export interface Manifest extends ManifestBody {
  readonly digest: string;
}

export class ManifestError extends OffsiteError {
  constructor(message: string, cause?: unknown) {
    super('E_MANIFEST', message, { kind: 'integrity', cause });
  }
}

/** Folder of our own files inside a destination copy. Never part of the backup. */
export const OFFSITE_DIR = '.offsite';

export function manifestKey(backup: string): string {
  return `${backup}/${OFFSITE_DIR}/manifest.json`;
}

export function progressKey(backup: string): string {
  return `${backup}/${OFFSITE_DIR}/progress.json`;
}

/** JSON with object keys sorted at every level and no whitespace. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Builds a manifest body from file records (sorted here). */
export function buildManifestBody(input: {
  kind: ManifestBody['kind'];
  backup: string;
  source: string;
  chunkBytes: number;
  files: Iterable<ManifestFile>;
  createdAt?: Date;
  backupTime?: string;
}): ManifestBody {
  const files = [...input.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    kind: input.kind,
    backup: input.backup,
    source: input.source,
    createdAt: (input.createdAt ?? new Date()).toISOString(),
    ...(input.backupTime ? { backupTime: input.backupTime } : {}),
    chunkBytes: input.chunkBytes,
    hashAlgorithm: HASH_ALGORITHM,
    fileCount: files.length,
    totalBytes: files.reduce((sum, f) => sum + f.size, 0),
    files,
  };
}

/** Serializes a manifest: the body plus the digest of its canonical encoding. */
export async function encodeManifest(body: ManifestBody): Promise<{ bytes: Buffer; digest: string }> {
  const hasher = await getHasher();
  const digest = hasher.hash(Buffer.from(canonicalJson(body)));
  const manifest: Manifest = { ...body, digest };
  return { bytes: Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`), digest };
}

/** Parses and checks a manifest; throws `ManifestError` naming what is wrong. */
export async function decodeManifest(bytes: Uint8Array, where: string): Promise<Manifest> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new ManifestError(`${where}: manifest is not valid JSON (${(err as Error).message}); the copy must be checked or replicated again`);
  }
  const m = parsed as Partial<Manifest> | null;
  if (!m || typeof m !== 'object' || m.format !== MANIFEST_FORMAT) throw new ManifestError(`${where}: not an offsite manifest`);
  if (m.version !== MANIFEST_VERSION) throw new ManifestError(`${where}: manifest version ${String(m.version)} is not supported by this offsite (${MANIFEST_VERSION}); upgrade offsite`);
  const { digest, ...body } = m as Manifest;
  const hasher = await getHasher();
  const expected = hasher.hash(Buffer.from(canonicalJson(body)));
  if (digest !== expected) throw new ManifestError(`${where}: manifest digest mismatch (stored ${String(digest)}, computed ${expected}): the manifest is damaged`);
  if (!Array.isArray(m.files) || typeof m.chunkBytes !== 'number' || m.chunkBytes <= 0) throw new ManifestError(`${where}: manifest has no file list or chunk size`);
  for (const f of m.files) {
    if (typeof f?.path !== 'string' || typeof f.size !== 'number' || !isHash(f.hash) || !Array.isArray(f.chunks)) {
      throw new ManifestError(`${where}: manifest entry ${JSON.stringify(f?.path)} is malformed`);
    }
  }
  return m as Manifest;
}

/** Reads `key` as a manifest; `undefined` when it does not exist. */
export async function readManifestAt(driver: Driver, key: string, options: SignalOptions = {}): Promise<Manifest | undefined> {
  const entry = await driver.stat(key, options);
  if (!entry) return undefined;
  const bytes = await readBytes(driver, key, options);
  return decodeManifest(bytes, `${driver.name}: ${key}`);
}

/** Writes a manifest (or progress checkpoint) atomically. */
export async function writeManifestAt(driver: Driver, key: string, body: ManifestBody, options: SignalOptions = {}): Promise<Manifest> {
  const { bytes, digest } = await encodeManifest(body);
  const hasher = await getHasher();
  await writeBytes(driver, key, bytes, hasher.hash(bytes), options);
  return { ...body, digest };
}
