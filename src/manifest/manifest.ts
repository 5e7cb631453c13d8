/**
 * The manifest: the proof that one destination holds one whole backup. It lives at
 * `NAME/.offsite/manifest.json` next to the copy, is written after every file of the copy is
 * committed, and is removed first whenever the copy is changed or deleted. "Manifest present
 * and its digest valid" is the definition of "copy complete".
 *
 * While a copy is in progress, `NAME/.offsite/progress.json` (same shape, `kind: "progress"`)
 * records the files already committed with their hashes, so that a later run, from any machine,
 * can skip them without re-reading them. It never counts as complete. Files committed after it
 * was written are recorded in a journal next to it, `NAME/.offsite/progress-00000001.json`,
 * `-00000002`... (same shape, each with its `sequence` and only the files new since the entry
 * before), so that a checkpoint costs what it adds, not the size of the whole list: rewriting
 * the whole list every second cost minutes and ~100 MB per checkpoint at 100,000 files.
 * `progress.json` says which entries it already includes (`includesThrough`); the others are
 * read on top of it, in order. Older offsite versions read `progress.json` alone and re-hash
 * what only the journal records.
 *
 * Encoding: JSON; the `digest` field is the XXH64 of the canonical encoding (keys sorted, no
 * whitespace) of every other field, so a damaged or hand-edited manifest is detected. A corrupt
 * manifest is an error, never an empty manifest. Encoding and the digest check stream the file
 * list in pieces: a manifest of 100,000 files is tens of MB of JSON, built once, not several
 * times over in intermediate strings.
 */
import { createHash } from 'node:crypto';
import { OffsiteError } from '../errors.js';
import { getHasher, HASH_ALGORITHM, isHash } from '../hash/xxh64.js';
import type { Driver, SignalOptions } from '../drivers/types.js';
import { writeBytes } from '../drivers/io.js';
// read.ts imports this module too; neither uses the other's bindings before they are called.
import { readManifestStreamed } from './read.js';
import { manifestEncryptionOf, signManifest } from './signature.js';

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
  /**
   * The source's fingerprint (`Entry.fingerprint`) when the file was read for this record. A
   * later run trusts the record only while the source still shows it. Absent in older manifests.
   */
  readonly sourceFingerprint?: string;
  /**
   * The destination's fingerprint of the file right after it was committed (or checked) there.
   * A listing that shows another one means the file was touched since: it is read back and
   * hashed before the record is trusted again. Absent in older manifests.
   */
  readonly destinationFingerprint?: string;
  /**
   * Set when the file was not sent but created at the destination by a server-side copy of the
   * same bytes held by another complete copy there (src/core/reuse-index.ts): that copy's key,
   * `<backup>/<path>`. For reports only: the record is checked like any other.
   */
  readonly reusedFrom?: string;
  /**
   * Encrypted copies (`ManifestBody.encryption`): bytes stored. `size` is then the plain size,
   * while `hash` and `chunks` are XXH64 of the stored (encrypted) bytes, in stored chunks of
   * `encryption.storedChunkBytes`, so an auditor without the key proves the stored bytes.
   */
  readonly storedSize?: number;
  /** Encrypted copies: the keyed MAC of the plaintext, `hmac-sha256:<hex>` (never a bare plaintext hash). */
  readonly mac?: string;
}

/** How an encrypted copy is stored (src/crypto/format.ts), and the public key that checks its manifest. */
export interface ManifestEncryption {
  readonly scheme: string;
  /** Plain bytes per sealed chunk. */
  readonly chunkBytes: number;
  /** Stored bytes per sealed chunk: the chunk size of the records' `chunks`. */
  readonly storedChunkBytes: number;
  /** Ed25519 public key (base64) that checks `signature` (./signature.ts). */
  readonly publicKey: string;
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
  /** `progress.json` only: the journal entries (`progress-N.json`) it already includes, all N up to this. */
  readonly includesThrough?: number;
  /** A journal entry only: its N. */
  readonly sequence?: number;
  /** Present on copies at an encrypted destination. */
  readonly encryption?: ManifestEncryption;
  /** Encrypted complete copies: the Ed25519 signature of the canonical encoding (./signature.ts); not covered by `digest`. */
  readonly signature?: string;
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

/** Key of journal entry `sequence` (1, 2...) of the progress checkpoint. */
export function progressJournalKey(backup: string, sequence: number): string {
  return `${backup}/${OFFSITE_DIR}/progress-${String(sequence).padStart(8, '0')}.json`;
}

/** The sequence number of a journal entry's key, or `undefined` for any other key. */
export function progressJournalSequence(backup: string, key: string): number | undefined {
  const prefix = `${backup}/${OFFSITE_DIR}/progress-`;
  if (!key.startsWith(prefix) || !key.endsWith('.json')) return undefined;
  const digits = key.slice(prefix.length, -'.json'.length);
  return /^[0-9]{8,15}$/.test(digits) ? Number(digits) : undefined;
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

/**
 * True for a file record with the four fields of `ManifestFile` plus, optionally, its two
 * fingerprints and `reusedFrom` as strings: the shape the fast paths below encode.
 */
function isPlainRecord(f: ManifestFile): boolean {
  let keys = 0;
  for (const key in f) {
    if (key === 'sourceFingerprint' || key === 'destinationFingerprint' || key === 'reusedFrom') {
      if (typeof f[key] !== 'string') return false;
      continue;
    }
    if (key !== 'path' && key !== 'size' && key !== 'hash' && key !== 'chunks') return false;
    keys++;
  }
  return keys === 4 && typeof f.path === 'string' && typeof f.size === 'number' && typeof f.hash === 'string' && Array.isArray(f.chunks) && f.chunks.every((c) => typeof c === 'string');
}

/** `canonicalJson(f)` for one file record, without the generic walk (keys: chunks, destinationFingerprint, hash, path, reusedFrom, size, sourceFingerprint). */
export function canonicalRecord(f: ManifestFile): string {
  if (!isPlainRecord(f)) return canonicalJson(f);
  let chunks = '';
  for (let i = 0; i < f.chunks.length; i++) chunks += (i === 0 ? '' : ',') + JSON.stringify(f.chunks[i]);
  const destination = f.destinationFingerprint !== undefined ? `,"destinationFingerprint":${JSON.stringify(f.destinationFingerprint)}` : '';
  const source = f.sourceFingerprint !== undefined ? `,"sourceFingerprint":${JSON.stringify(f.sourceFingerprint)}` : '';
  const reused = f.reusedFrom !== undefined ? `,"reusedFrom":${JSON.stringify(f.reusedFrom)}` : '';
  return `{"chunks":[${chunks}]${destination},"hash":${JSON.stringify(f.hash)},"path":${JSON.stringify(f.path)}${reused},"size":${JSON.stringify(f.size)}${source}}`;
}

/** One file record, pretty-printed, as an element of `files` (indented by two more). */
export function prettyRecord(f: ManifestFile): string {
  if (!isPlainRecord(f)) return `  ${JSON.stringify(f, null, 1).replace(/\n/g, '\n  ')}`;
  let out = `  {\n   "path": ${JSON.stringify(f.path)},\n   "size": ${JSON.stringify(f.size)},\n   "hash": ${JSON.stringify(f.hash)},\n`;
  if (f.sourceFingerprint !== undefined) out += `   "sourceFingerprint": ${JSON.stringify(f.sourceFingerprint)},\n`;
  if (f.destinationFingerprint !== undefined) out += `   "destinationFingerprint": ${JSON.stringify(f.destinationFingerprint)},\n`;
  if (f.reusedFrom !== undefined) out += `   "reusedFrom": ${JSON.stringify(f.reusedFrom)},\n`;
  out += '   "chunks": ';
  if (f.chunks.length === 0) return `${out}[]\n  }`;
  out += '[';
  for (let i = 0; i < f.chunks.length; i++) out += `${i === 0 ? '' : ','}\n    ${JSON.stringify(f.chunks[i])}`;
  return `${out}\n   ]\n  }`;
}

/** Collects text in pieces of ~64 KB as UTF-8 buffers (so no string ever holds the whole encoding). */
class PieceSink {
  private text = '';
  readonly buffers: Buffer[] = [];
  bytes = 0;

  constructor(private readonly onBuffer?: (b: Buffer) => void) {}

  push(text: string): void {
    this.text += text;
    if (this.text.length >= 65536) this.flush();
  }

  flush(): void {
    if (this.text === '') return;
    const buffer = Buffer.from(this.text);
    this.text = '';
    this.bytes += buffer.length;
    if (this.onBuffer) this.onBuffer(buffer); else this.buffers.push(buffer);
  }
}

/**
 * Feeds the canonical encoding of `body` (as `canonicalJson` makes it) to `sink` in pieces: the
 * fields other than `files` through the generic encoder, the file list record by record.
 */
function canonicalPieces(body: ManifestBody, sink: PieceSink): void {
  const head = canonicalJson({ ...body, files: [], signature: undefined });
  const at = head.indexOf('"files":[]'); // unique: inside a JSON string every `"` is escaped
  sink.push(head.slice(0, at + '"files":['.length));
  body.files.forEach((f, i) => sink.push(i === 0 ? canonicalRecord(f) : `,${canonicalRecord(f)}`));
  sink.push(head.slice(at + '"files":['.length));
  sink.flush();
}

/** The digest of a manifest body: XXH64 of its canonical encoding (every field but `digest` and `signature`). */
export async function manifestDigest(body: ManifestBody): Promise<string> {
  return (await manifestHashes(body)).digest;
}

/** The digest and the SHA-256 (what a signature signs) of a body's canonical encoding. */
export async function manifestHashes(body: ManifestBody): Promise<{ digest: string; sha256: Buffer }> {
  const hasher = await getHasher();
  const digest = hasher.create();
  const sha = createHash('sha256');
  canonicalPieces(body, new PieceSink((b) => { digest.update(b); sha.update(b); }));
  return { digest: digest.digest(), sha256: sha.digest() };
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
  includesThrough?: number;
  sequence?: number;
  encryption?: ManifestEncryption;
}): ManifestBody {
  const files = [...input.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  let totalBytes = 0;
  for (const f of files) totalBytes += f.size;
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    kind: input.kind,
    backup: input.backup,
    source: input.source,
    createdAt: (input.createdAt ?? new Date()).toISOString(),
    ...(input.backupTime ? { backupTime: input.backupTime } : {}),
    chunkBytes: input.chunkBytes,
    ...(input.encryption ? { encryption: input.encryption } : {}),
    hashAlgorithm: HASH_ALGORITHM,
    fileCount: files.length,
    totalBytes,
    files,
    ...(input.includesThrough !== undefined ? { includesThrough: input.includesThrough } : {}),
    ...(input.sequence !== undefined ? { sequence: input.sequence } : {}),
  };
}

export interface EncodeOptions {
  /** One field per line, indented by one space, as `JSON.stringify(m, null, 1)` (for people reading it). @default true */
  readonly pretty?: boolean;
}

/**
 * Serializes a manifest: the body plus the digest of its canonical encoding, as UTF-8 pieces of
 * ~64 KB (`bytes` joins them; `writeManifestAt` writes the pieces without joining them).
 */
export async function encodeManifestPieces(body: ManifestBody, options: EncodeOptions = {}): Promise<{ pieces: Buffer[]; size: number; digest: string }> {
  const digest = await manifestDigest(body);
  const sink = new PieceSink();
  const pretty = options.pretty ?? true;
  const head = pretty ? JSON.stringify({ ...body, files: [], digest }, null, 1) : JSON.stringify({ ...body, files: [], digest });
  const empty = pretty ? '"files": []' : '"files":[]';
  const at = head.indexOf(empty); // unique: inside a JSON string every `"` is escaped
  const open = empty.slice(0, -1);
  sink.push(head.slice(0, at + open.length));
  if (pretty) {
    body.files.forEach((f, i) => sink.push(`${i === 0 ? '\n' : ',\n'}${prettyRecord(f)}`));
    if (body.files.length > 0) sink.push('\n ');
  } else {
    body.files.forEach((f, i) => sink.push(i === 0 ? JSON.stringify(f) : `,${JSON.stringify(f)}`));
  }
  sink.push(`${head.slice(at + open.length)}\n`);
  sink.flush();
  return { pieces: sink.buffers, size: sink.bytes, digest };
}

/** Serializes a manifest: the body plus the digest of its canonical encoding. */
export async function encodeManifest(body: ManifestBody, options: EncodeOptions = {}): Promise<{ bytes: Buffer; digest: string }> {
  const { pieces, size, digest } = await encodeManifestPieces(body, options);
  return { bytes: Buffer.concat(pieces, size), digest };
}

/** Parses and checks a manifest; throws `ManifestError` naming what is wrong. */
export async function decodeManifest(bytes: Uint8Array, where: string): Promise<Manifest> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (err) {
    throw new ManifestError(`${where}: manifest is not valid JSON (${(err as Error).message}); the copy must be checked or replicated again`);
  }
  const m = parsed as Partial<Manifest> | null;
  if (!m || typeof m !== 'object' || m.format !== MANIFEST_FORMAT) throw new ManifestError(`${where}: not an offsite manifest`);
  if (m.version !== MANIFEST_VERSION) throw new ManifestError(`${where}: manifest version ${String(m.version)} is not supported by this offsite (${MANIFEST_VERSION}); upgrade offsite`);
  const { digest, ...body } = m as Manifest;
  if (typeof digest !== 'string') throw new ManifestError(`${where}: manifest has no digest field (damaged, or edited by hand): it proves nothing; check the copy (offsite verify --deep) or replicate it again`);
  const expected = Array.isArray(body.files) ? await manifestDigest(body) : (await getHasher()).hash(Buffer.from(canonicalJson({ ...body, signature: undefined })));
  if (digest !== expected) throw new ManifestError(`${where}: manifest digest mismatch (stored ${digest}, computed ${expected}): the manifest is damaged; check the copy (offsite verify --deep) or replicate it again`);
  if (!Array.isArray(m.files) || typeof m.chunkBytes !== 'number' || m.chunkBytes <= 0) throw new ManifestError(`${where}: manifest has no file list or chunk size`);
  for (const f of m.files) {
    if (typeof f?.path !== 'string' || typeof f.size !== 'number' || !isHash(f.hash) || !Array.isArray(f.chunks) ||
      (f.sourceFingerprint !== undefined && typeof f.sourceFingerprint !== 'string') ||
      (f.destinationFingerprint !== undefined && typeof f.destinationFingerprint !== 'string') ||
      (f.reusedFrom !== undefined && typeof f.reusedFrom !== 'string') ||
      (f.storedSize !== undefined && typeof f.storedSize !== 'number') || (f.mac !== undefined && typeof f.mac !== 'string')) {
      throw new ManifestError(`${where}: manifest entry ${JSON.stringify(f?.path)} is malformed`);
    }
  }
  return m as Manifest;
}

/**
 * Reads `key` as a manifest; `undefined` when it does not exist. Streamed (./read.ts): the records
 * are held, never the text. Callers that need no record at once use `streamManifestAt` there.
 */
export async function readManifestAt(driver: Driver, key: string, options: SignalOptions & { readonly publicKey?: string } = {}): Promise<Manifest | undefined> {
  return readManifestStreamed(driver, key, options);
}

/** Bytes per part when a manifest is written in parts (the driver may need larger ones). */
const MANIFEST_PART_BYTES = 8 * 1024 * 1024;

/**
 * Writes a manifest (or progress checkpoint) atomically, in parts of at most 8 MiB (or the
 * driver's minimum part size), never holding its encoding twice.
 */
export async function writeManifestAt(driver: Driver, key: string, given: ManifestBody, options: SignalOptions & EncodeOptions = {}): Promise<Manifest> {
  const body = await sealedBody(driver, given);
  const { pieces, size, digest } = await encodeManifestPieces(body, options);
  const hasher = await getHasher();
  const whole = hasher.create();
  for (const piece of pieces) whole.update(piece);
  const partBytes = Math.max(MANIFEST_PART_BYTES, driver.capabilities.minPartBytes);
  if (size <= partBytes) {
    await writeBytes(driver, key, pieces.length === 1 ? pieces[0] as Buffer : Buffer.concat(pieces, size), whole.digest(), options);
    return { ...body, digest };
  }
  const session = await driver.openWrite(key, { size, partBytes, signal: options.signal });
  try {
    let index = 0;
    for (const part of repack(pieces, partBytes)) await session.write(index++, part, options);
    await session.commit({ hash: whole.digest(), signal: options.signal });
  } catch (err) {
    await session.abort();
    throw err;
  }
  return { ...body, digest };
}

/**
 * At an encrypted destination (`driver.encryption`), a body with the destination's `encryption`
 * field, and for a complete manifest its signature (./signature.ts); elsewhere `body` itself.
 */
async function sealedBody(driver: Driver, body: ManifestBody): Promise<ManifestBody> {
  const encryption = driver.encryption;
  if (!encryption) return body;
  const withEncryption = { ...body, encryption: body.encryption ?? manifestEncryptionOf(encryption), signature: undefined };
  if (body.kind !== 'complete') return withEncryption;
  return { ...withEncryption, signature: signManifest(encryption, (await manifestHashes(withEncryption)).sha256) };
}

/** Regroups buffers into parts of exactly `partBytes` (the last one shorter), releasing pieces as it goes. */
function* repack(pieces: Buffer[], partBytes: number): Generator<Buffer> {
  let part = Buffer.allocUnsafe(partBytes);
  let filled = 0;
  for (let i = 0; i < pieces.length; i++) {
    let piece = pieces[i] as Buffer;
    pieces[i] = EMPTY;
    while (piece.length > 0) {
      const take = Math.min(partBytes - filled, piece.length);
      piece.copy(part, filled, 0, take);
      filled += take;
      piece = piece.subarray(take);
      if (filled === partBytes) {
        yield part;
        part = Buffer.allocUnsafe(partBytes);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield part.subarray(0, filled);
}

const EMPTY = Buffer.alloc(0);
