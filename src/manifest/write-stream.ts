/**
 * Writing a manifest (or progress checkpoint) from file records made on demand (issue 13): the
 * replicate engine keeps its records compact (src/core/records.ts), and building the whole
 * `files` array of record objects, then a sorted copy of it, then every piece of the encoding
 * before the first byte is written, held tens of MB at 100,000 files, at the very end of the run.
 *
 * Here the records are produced one at a time: one pass computes the digest (over the canonical
 * encoding) and the written encoding, kept when it fits in one part of 1 MiB; a larger manifest
 * is encoded again and written in parts of 1 MiB, hashing as it goes. The bytes are
 * exactly those of `writeManifestAt` for the same body (./manifest.ts, checked by
 * test/manifest/write-stream.test.ts), so readers see no difference.
 */
import { createHash } from 'node:crypto';
import { OffsiteError } from '../errors.js';
import { getHasher, HASH_ALGORITHM } from '../hash/xxh64.js';
import type { Driver, SignalOptions } from '../drivers/types.js';
import { writeBytes } from '../drivers/io.js';
import {
  canonicalJson, canonicalRecord, MANIFEST_FORMAT, MANIFEST_VERSION, prettyRecord,
  type EncodeOptions, type ManifestBody, type ManifestFile,
} from './manifest.js';
import { manifestEncryptionOf, signManifest } from './signature.js';

/** Everything of a manifest body but its records (their count and total size included). */
export type ManifestHead = Omit<ManifestBody, 'files' | 'format' | 'version' | 'hashAlgorithm'>;

/**
 * Bytes per part (the driver may need larger ones). 1 MiB, not the 8 MiB of `writeManifestAt`:
 * the manifest of 100,000 files (~30 MB) is written when the run's heap is at its largest, and
 * the bytes kept for the one-pass case plus the part buffer held ~16 MB more than this (issue 13).
 * A second pass over the records costs ~1 s of CPU per million records.
 */
const PART_BYTES = 1024 * 1024;
/** Text gathered before it is turned into bytes. */
const PIECE_CHARS = 65536;
/** A digest's length in the encoding (`xxh64:` + 16 hex digits). */
const DIGEST_PLACEHOLDER = `${HASH_ALGORITHM}:${'0'.repeat(16)}`;

/** The head in the key order `buildManifestBody` gives, with an empty file list where the records go. */
function bodyShell(head: ManifestHead): ManifestBody {
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    kind: head.kind,
    backup: head.backup,
    source: head.source,
    createdAt: head.createdAt,
    ...(head.backupTime ? { backupTime: head.backupTime } : {}),
    chunkBytes: head.chunkBytes,
    ...(head.encryption ? { encryption: head.encryption } : {}),
    hashAlgorithm: HASH_ALGORITHM,
    fileCount: head.fileCount,
    totalBytes: head.totalBytes,
    files: [],
    ...(head.includesThrough !== undefined ? { includesThrough: head.includesThrough } : {}),
    ...(head.sequence !== undefined ? { sequence: head.sequence } : {}),
    ...(head.signature !== undefined ? { signature: head.signature } : {}),
  };
}

/** `text` split around the empty file list `empty` (unique: inside a JSON string every `"` is escaped). */
function around(text: string, empty: string): [string, string] {
  const at = text.indexOf(empty);
  const open = empty.length - 1;
  return [text.slice(0, at + open), text.slice(at + open)];
}

/**
 * Hands text on in UTF-8 pieces of ~64 KB. `push` returns a promise only when a piece went out,
 * and the next piece may be pushed only once it has settled: every piece is encoded into the same
 * buffer, which `onPiece` must not keep (copy what it keeps). A new buffer per piece made the
 * ~60 MB of pieces of a 100,000-file manifest's two passes as many native allocations, freed only
 * when the garbage collector found their handles; with one buffer, the process grew by ~30 MB
 * instead of ~40 MB while the manifest was written at the end of the run (issue 13, under load).
 */
class TextPieces {
  #text = '';
  #buffer = Buffer.allocUnsafe(3 * PIECE_CHARS);
  constructor(private readonly onPiece: (piece: Buffer) => void | Promise<void>) {}

  push(text: string): void | Promise<void> {
    this.#text += text;
    if (this.#text.length >= PIECE_CHARS) return this.flush();
  }

  flush(): void | Promise<void> {
    if (this.#text === '') return;
    const text = this.#text;
    this.#text = '';
    // At most 3 bytes of UTF-8 per UTF-16 code unit.
    if (3 * text.length > this.#buffer.length) this.#buffer = Buffer.allocUnsafe(3 * text.length);
    return this.onPiece(this.#buffer.subarray(0, this.#buffer.write(text)));
  }
}

/** One encoding of a manifest: the text before the records, each record, the text after them. */
interface Encoding {
  readonly before: string;
  readonly record: (f: ManifestFile, first: boolean) => string;
  /** Everything after the last record (`count` records), the digest written in. */
  readonly after: (digest: string, count: number) => string;
}

/** The canonical encoding (for the digest). */
function canonicalEncoding(head: ManifestHead): Encoding {
  // Without the signature: it signs this encoding.
  const [before, after] = around(canonicalJson({ ...bodyShell(head), signature: undefined }), '"files":[]');
  return { before, record: (f, first) => (first ? canonicalRecord(f) : `,${canonicalRecord(f)}`), after: () => after };
}

/**
 * The encoding written (pretty or not). The digest is the last key, after the records: what comes
 * before them does not depend on it.
 */
function writtenEncoding(head: ManifestHead, pretty: boolean): Encoding {
  const shell = bodyShell(head);
  const withDigest = (after: string, digest: string): string => {
    const at = after.lastIndexOf(DIGEST_PLACEHOLDER);
    return `${after.slice(0, at)}${digest}${after.slice(at + DIGEST_PLACEHOLDER.length)}`;
  };
  if (pretty) {
    const [before, after] = around(JSON.stringify({ ...shell, digest: DIGEST_PLACEHOLDER }, null, 1), '"files": []');
    return {
      before,
      record: (f, first) => `${first ? '\n' : ',\n'}${prettyRecord(f)}`,
      after: (digest, count) => `${count > 0 ? '\n ' : ''}${withDigest(after, digest)}\n`,
    };
  }
  const [before, after] = around(JSON.stringify({ ...shell, digest: DIGEST_PLACEHOLDER }), '"files":[]');
  return {
    before,
    record: (f, first) => (first ? JSON.stringify(f) : `,${JSON.stringify(f)}`),
    after: (digest) => `${withDigest(after, digest)}\n`,
  };
}

/**
 * Feeds the records `records()` yields to `sinks`, each in its encoding, in one pass; checks that
 * they are sorted by path and match the head's count and total. Returns the count. The text
 * after the records is left to the caller (it may need the digest).
 */
async function encodeRecords(head: ManifestHead, records: () => Iterable<ManifestFile>, sinks: readonly { encoding: Encoding; pieces: TextPieces }[]): Promise<number> {
  for (const { encoding, pieces } of sinks) {
    const pushed = pieces.push(encoding.before);
    if (pushed) await pushed;
  }
  let count = 0;
  let bytes = 0;
  let last: string | undefined;
  for (const f of records()) {
    if (last !== undefined && !(last < f.path)) throw new OffsiteError('E_INTERNAL', `manifest records out of order: ${JSON.stringify(f.path)} after ${JSON.stringify(last)}`, { kind: 'fatal' });
    last = f.path;
    for (const { encoding, pieces } of sinks) {
      // Awaited only when a piece went out: no promise per record.
      const pushed = pieces.push(encoding.record(f, count === 0));
      if (pushed) await pushed;
    }
    count++;
    bytes += f.size;
  }
  if (count !== head.fileCount || bytes !== head.totalBytes) {
    throw new OffsiteError('E_INTERNAL', `manifest head says ${head.fileCount} files of ${head.totalBytes} bytes, the records are ${count} of ${bytes}`, { kind: 'fatal' });
  }
  return count;
}

/**
 * Writes the manifest with `head` and the records `records()` yields (sorted by path; called
 * once or twice, and must yield the same records each time) at `key`, atomically, as
 * `writeManifestAt` would write the same body. Returns its digest.
 *
 * One pass makes the canonical encoding (hashed for the digest) and the one written together;
 * the written bytes are kept while they fit in one part (1 MiB: what one part buffer holds in
 * the other case), and written at once. A larger manifest is encoded a second time, part by part,
 * once its size and digest are known (the write session needs the size first).
 */
export async function writeManifestStreamed(
  driver: Driver, key: string, given: ManifestHead, records: () => Iterable<ManifestFile>, options: SignalOptions & EncodeOptions = {},
): Promise<string> {
  const hasher = await getHasher();
  const canonical = hasher.create();
  // At an encrypted destination: its `encryption` field, and a complete manifest is signed
  // (./signature.ts) over the SHA-256 of its canonical encoding. The signature is part of the text
  // written, so a signed manifest takes one more pass first, for that hash.
  let head: ManifestHead = driver.encryption ? { ...given, encryption: given.encryption ?? manifestEncryptionOf(driver.encryption), signature: undefined } : given;
  if (driver.encryption && head.kind === 'complete') {
    const sha = createHash('sha256');
    const text = canonicalEncoding(head);
    const pieces = new TextPieces((piece) => { sha.update(piece); });
    const count = await encodeRecords(head, records, [{ encoding: text, pieces }]);
    await pieces.push(text.after(DIGEST_PLACEHOLDER, count));
    await pieces.flush();
    head = { ...head, signature: signManifest(driver.encryption, sha.digest()) };
  }
  const canonicalText = canonicalEncoding(head);
  const written = writtenEncoding(head, options.pretty ?? true);
  const partBytes = Math.max(PART_BYTES, driver.capabilities.minPartBytes);
  /** The written encoding's pieces while they fit in one part; `undefined` once they do not. */
  let kept: Buffer[] | undefined = [];
  let size = 0;
  const canonicalPieces = new TextPieces((piece) => { canonical.update(piece); });
  const writtenPieces = new TextPieces((piece) => {
    size += piece.length;
    if (size > partBytes) kept = undefined;
    kept?.push(Buffer.from(piece));
  });
  const count = await encodeRecords(head, records, [{ encoding: canonicalText, pieces: canonicalPieces }, { encoding: written, pieces: writtenPieces }]);
  await canonicalPieces.push(canonicalText.after(DIGEST_PLACEHOLDER, count));
  await canonicalPieces.flush();
  const digest = canonical.digest();
  await writtenPieces.push(written.after(digest, count));
  await writtenPieces.flush();
  const whole = hasher.create();
  if (kept !== undefined) {
    const bytes = kept.length === 1 ? kept[0] as Buffer : Buffer.concat(kept, size);
    kept = undefined;
    await writeBytes(driver, key, bytes, whole.update(bytes).digest(), options);
    return digest;
  }
  const session = await driver.openWrite(key, { size, partBytes, signal: options.signal });
  try {
    // One part buffer, filled again once its write has settled (the contract allows it).
    const part = Buffer.allocUnsafe(partBytes);
    let filled = 0;
    let index = 0;
    let sent = 0;
    const flushPart = async (bytes: Buffer): Promise<void> => {
      whole.update(bytes);
      await session.write(index++, bytes, options);
      sent += bytes.length;
    };
    const pieces = new TextPieces(async (piece) => {
      let rest = piece;
      while (rest.length > 0) {
        const take = Math.min(partBytes - filled, rest.length);
        rest.copy(part, filled, 0, take);
        filled += take;
        rest = rest.subarray(take);
        if (filled === partBytes) {
          await flushPart(part);
          filled = 0;
        }
      }
    });
    const again = await encodeRecords(head, records, [{ encoding: written, pieces }]);
    await pieces.push(written.after(digest, again));
    await pieces.flush();
    if (filled > 0) await flushPart(part.subarray(0, filled));
    if (sent !== size) throw new OffsiteError('E_INTERNAL', `manifest encoding changed size between passes (${size}, then ${sent} bytes)`, { kind: 'fatal' });
    await session.commit({ hash: whole.digest(), signal: options.signal });
  } catch (err) {
    await session.abort();
    throw err;
  }
  return digest;
}
