/**
 * Reading a manifest (./manifest.ts) as a stream: its file records are handed out one at a time
 * while the digest of its canonical encoding is computed as they pass, so that reading a manifest
 * of 100,000 files costs one record at a time, not the whole text, its decoded string and every
 * record at once (issue 13: `offsite list` needed ~1 GB, `verify` ~250 MB at 100,000 files).
 *
 * The rule "never certify unread bytes" holds: the records handed to `onFile` are provisional
 * until `streamManifestAt` resolves. It resolves only after the last byte was read and the digest
 * matched; a damaged manifest rejects with `ManifestError` (kind `integrity`), after records may
 * already have been handed out. A caller that acts on records as they come (verify checks the
 * files they name) must treat its results as void when the promise rejects.
 *
 * Compatibility: any manifest `decodeManifest` accepts reads the same here (the values are
 * decoded by `JSON.parse`, and the digest is the same canonical encoding). The digest is computed
 * in one pass when every field that sorts before `files` comes before the file list in the text,
 * as offsite has always written it; otherwise the manifest is read a second time for the digest,
 * and both reads must see the same bytes.
 */
import { createHash } from 'node:crypto';
import type { Driver, SignalOptions } from '../drivers/types.js';
import { errorKind, throwIfAborted } from '../errors.js';
import { getHasher, isHash } from '../hash/xxh64.js';
import { JsonStreamError, StreamedObjectReader } from './json-stream.js';
import {
  canonicalJson, canonicalRecord, ManifestError, MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest, type ManifestFile,
} from './manifest.js';
import { checkManifestSignature } from './signature.js';

/** Everything in a manifest but its file list (`fileCount` and `totalBytes` say how big it is). */
export type ManifestSummary = Omit<Manifest, 'files'>;

/** The fields read before the file list began, as the manifest states them (not yet checked). */
export type ManifestFieldsSoFar = Readonly<Partial<ManifestSummary>>;

export interface StreamManifestOptions extends SignalOptions {
  /**
   * The manifest must be signed by the holder of this Ed25519 public key (base64; an encrypted
   * destination's, ./signature.ts): otherwise it is rejected as forged or replaced
   * (`ManifestError`). @default no signature check
   */
  readonly publicKey?: string;
  /**
   * Called with each file record, in the manifest's order, with its 0-based position and the
   * fields read before the file list. Provisional until `streamManifestAt` resolves (see the file
   * comment). Reading waits for a returned promise (backpressure).
   */
  readonly onFile?: (file: ManifestFile, index: number, fieldsSoFar: ManifestFieldsSoFar) => void | Promise<void>;
}

const FILES = 'files';
/** Fields outside the canonical encoding: the digest of it, and the signature of it. */
const UNHASHED: ReadonlySet<string> = new Set(['digest', 'signature']);
/** Hash input is handed over in pieces of about this many characters. */
const PIECE_CHARS = 65536;

/** The `decodeManifest` check of one record. */
function isWellFormed(f: Partial<ManifestFile> | null | undefined): f is ManifestFile {
  return typeof f?.path === 'string' && typeof f.size === 'number' && isHash(f.hash) && Array.isArray(f.chunks) &&
    (f.sourceFingerprint === undefined || typeof f.sourceFingerprint === 'string') &&
    (f.destinationFingerprint === undefined || typeof f.destinationFingerprint === 'string') &&
    (f.storedSize === undefined || typeof f.storedSize === 'number') && (f.mac === undefined || typeof f.mac === 'string');
}

/** What a manifest is read through: a driver, or a local cache of its manifests (src/core/manifest-cache.ts). */
export type ManifestReader = Pick<Driver, 'name' | 'openRead'>;

/** `{"k":v,...` for the given fields in canonical (sorted) order, without the braces. */
function canonicalMembers(fields: ReadonlyMap<string, unknown>, keep: (key: string) => boolean): string {
  return [...fields.keys()].filter((k) => keep(k) && fields.get(k) !== undefined).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(fields.get(k))}`).join(',');
}

interface PassResult {
  /** Every member but `files`, in the order of the text (`files` keeps its place, value undefined). */
  readonly fields: Map<string, unknown>;
  readonly hasFileList: boolean;
  /** The digest over the canonical encoding, when this pass could compute it. */
  readonly computed?: string;
  /** SHA-256 of the same canonical encoding (what a signature signs), with `computed`. */
  readonly sha256?: Buffer;
  /** XXH64 of the raw bytes (to tell that a second pass read the same manifest). */
  readonly raw: string;
}

/**
 * One read of the manifest. `known` (a second pass): the fields of the first, so the canonical
 * encoding can be hashed whatever their order in the text. Resolves `undefined` when the key is
 * missing.
 */
async function readPass(driver: ManifestReader, key: string, where: string, options: StreamManifestOptions, known?: ReadonlyMap<string, unknown>): Promise<PassResult | undefined> {
  const hasher = await getHasher();
  const raw = hasher.create();
  const canonical = hasher.create();
  const sha = createHash('sha256');
  let text = '';
  const feed = (s: string): void => {
    text += s;
    if (text.length >= PIECE_CHARS) { const b = Buffer.from(text); canonical.update(b); sha.update(b); text = ''; }
  };
  const fields = new Map<string, unknown>();
  let hasFileList = false;
  /** Whether the canonical encoding is being hashed in order (false: a field sorting before `files` came after it). */
  let inOrder = true;
  let fieldsSoFar: ManifestFieldsSoFar = {};
  let index = 0;
  const reader = new StreamedObjectReader(FILES);
  const seen = (k: string): void => {
    if (fields.has(k)) throw new ManifestError(`${where}: manifest has the field ${JSON.stringify(k)} twice (damaged, or edited by hand); check the copy (offsite verify --deep) or replicate it again`);
  };

  let stream;
  try {
    stream = await driver.openRead(key, { signal: options.signal });
  } catch (err) {
    if (errorKind(err) === 'not-found') return undefined;
    throw err;
  }
  try {
    for await (const part of stream) {
      throwIfAborted(options.signal, `reading ${where}`);
      const piece = Buffer.isBuffer(part) ? part : Buffer.from(part as Uint8Array);
      raw.update(piece);
      reader.push(piece);
      for (let event = reader.next(); event !== undefined; event = reader.next()) {
        if (event.type === 'member') {
          seen(event.key);
          fields.set(event.key, event.value);
          if (hasFileList && event.key < FILES && !UNHASHED.has(event.key) && !known?.has(event.key)) inOrder = false;
        } else if (event.type === 'array-start') {
          seen(FILES);
          fields.set(FILES, undefined);
          hasFileList = true;
          const format = fields.get('format');
          if (format !== undefined && format !== MANIFEST_FORMAT) throw new ManifestError(`${where}: not an offsite manifest`);
          const version = fields.get('version');
          if (version !== undefined && version !== MANIFEST_VERSION) throw new ManifestError(`${where}: manifest version ${String(version)} is not supported by this offsite (${MANIFEST_VERSION}); upgrade offsite`);
          fieldsSoFar = Object.fromEntries(fields) as ManifestFieldsSoFar;
          const before = canonicalMembers(known ?? fields, (k) => k < FILES && !UNHASHED.has(k));
          feed(`{${before}${before ? ',' : ''}"files":[`);
        } else if (event.type === 'element') {
          const file = event.value as Partial<ManifestFile> | null;
          if (!isWellFormed(file)) throw new ManifestError(`${where}: manifest entry ${JSON.stringify((file as { path?: unknown } | null)?.path)} is malformed`);
          feed(index === 0 ? canonicalRecord(file) : `,${canonicalRecord(file)}`);
          // One string for the file hash and the hash of its only chunk (the same bytes).
          if (file.chunks.length === 1 && file.chunks[0] === file.hash) (file.chunks as string[])[0] = file.hash;
          if (options.onFile) await options.onFile(file, index, fieldsSoFar);
          index++;
        }
      }
    }
    reader.finish();
  } catch (err) {
    if (err instanceof JsonStreamError) throw new ManifestError(`${where}: manifest is not valid JSON (${err.message}); the copy must be checked or replicated again`);
    throw err;
  } finally {
    stream.destroy();
  }
  let computed: string | undefined;
  let sha256: Buffer | undefined;
  if (hasFileList && inOrder) {
    const after = canonicalMembers(known ?? fields, (k) => k > FILES && !UNHASHED.has(k));
    feed(`]${after ? ',' : ''}${after}}`);
    const b = Buffer.from(text);
    canonical.update(b);
    computed = canonical.digest();
    sha256 = sha.update(b).digest();
  }
  return { fields, hasFileList, computed, sha256, raw: raw.digest() };
}

/**
 * Reads and checks the manifest at `key` as a stream (see the file comment), handing each file
 * record to `onFile`. Resolves with everything but the file list once the whole manifest has been
 * read and its digest matched; `undefined` when it does not exist. Rejects with `ManifestError`
 * (kind `integrity`) naming what is wrong, as `decodeManifest` does, and with the driver's own
 * error (its kind kept) when the read fails.
 */
export async function streamManifestAt(driver: ManifestReader, key: string, options: StreamManifestOptions = {}): Promise<ManifestSummary | undefined> {
  const where = `${driver.name}: ${key}`;
  const first = await readPass(driver, key, where, options);
  if (!first) return undefined;
  const { fields } = first;
  if (fields.get('format') !== MANIFEST_FORMAT) throw new ManifestError(`${where}: not an offsite manifest`);
  if (fields.get('version') !== MANIFEST_VERSION) throw new ManifestError(`${where}: manifest version ${String(fields.get('version'))} is not supported by this offsite (${MANIFEST_VERSION}); upgrade offsite`);
  const digest = fields.get('digest');
  if (typeof digest !== 'string') throw new ManifestError(`${where}: manifest has no digest field (damaged, or edited by hand): it proves nothing; check the copy (offsite verify --deep) or replicate it again`);
  let computed = first.computed;
  let sha256 = first.sha256;
  if (!first.hasFileList) {
    // No file list to stream (a damaged manifest): the plain definition, as decodeManifest has it.
    computed = (await getHasher()).hash(Buffer.from(canonicalJson(Object.fromEntries([...fields].filter(([k]) => !UNHASHED.has(k))))));
  } else if (computed === undefined) {
    const second = await readPass(driver, key, where, { signal: options.signal }, fields);
    if (!second || second.raw !== first.raw) throw new ManifestError(`${where}: the manifest changed while it was read (another offsite run is writing it?); try again`);
    computed = second.computed;
    sha256 = second.sha256;
  }
  if (digest !== computed) throw new ManifestError(`${where}: manifest digest mismatch (stored ${digest}, computed ${String(computed)}): the manifest is damaged; check the copy (offsite verify --deep) or replicate it again`);
  const chunkBytes = fields.get('chunkBytes');
  if (!first.hasFileList || typeof chunkBytes !== 'number' || chunkBytes <= 0) throw new ManifestError(`${where}: manifest has no file list or chunk size`);
  if (options.publicKey !== undefined) checkManifestSignature(where, fields, sha256 as Buffer, options.publicKey);
  fields.delete(FILES);
  return Object.fromEntries(fields) as unknown as ManifestSummary;
}

/**
 * Reads and checks the manifest at `key` with its file list (for the few callers that need every
 * record at once: a pull, a repair). Holds the records, never the text. `undefined` when missing.
 */
export async function readManifestStreamed(driver: Driver, key: string, options: SignalOptions & { readonly publicKey?: string } = {}): Promise<Manifest | undefined> {
  const files: ManifestFile[] = [];
  const summary = await streamManifestAt(driver, key, { signal: options.signal, publicKey: options.publicKey, onFile: (f) => { files.push(f); } });
  if (!summary) return undefined;
  // Fields in the order of a manifest as offsite writes it: `files` after the counts.
  const { includesThrough, sequence, digest, ...head } = summary;
  return {
    ...head, files,
    ...(includesThrough !== undefined ? { includesThrough } : {}),
    ...(sequence !== undefined ? { sequence } : {}),
    digest,
  };
}
