/**
 * Writing a manifest (or progress checkpoint) from file records made on demand (issue 13): the
 * replicate engine keeps its records compact (src/core/records.ts), and building the whole
 * `files` array of record objects, then a sorted copy of it, then every piece of the encoding
 * before the first byte is written, held tens of MB at 100,000 files, at the very end of the run.
 *
 * Here the records are produced twice, one at a time: a first pass computes the digest (over the
 * canonical encoding) and the size of the file; a second encodes again and writes, in parts of at
 * most 8 MiB, hashing as it goes. The bytes are exactly those of `writeManifestAt` for the same
 * body (./manifest.ts, checked by test/manifest/write-stream.test.ts), so readers see no
 * difference.
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

/** Bytes per part, as `writeManifestAt` writes them (the driver may need larger ones). */
const PART_BYTES = 8 * 1024 * 1024;
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

/** Hands text on in UTF-8 pieces of ~64 KB. */
class TextPieces {
  #text = '';
  constructor(private readonly onPiece: (piece: Buffer) => void | Promise<void>) {}

  async push(text: string): Promise<void> {
    this.#text += text;
    if (this.#text.length >= PIECE_CHARS) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#text === '') return;
    const piece = Buffer.from(this.#text);
    this.#text = '';
    await this.onPiece(piece);
  }
}

/**
 * Feeds the encoding of the manifest to `sink`: the canonical one (for the digest) or the one
 * written (pretty or not, with `digest`). Checks that the records are sorted by path and match
 * the head's count and total.
 */
async function encode(head: ManifestHead, records: () => Iterable<ManifestFile>, sink: TextPieces, how: { canonical: true } | { canonical: false; pretty: boolean; digest: string }): Promise<void> {
  const shell = bodyShell(head);
  let before: string, after: string;
  let record: (f: ManifestFile, first: boolean) => string;
  if (how.canonical) {
    [before, after] = around(canonicalJson({ ...shell, signature: undefined }), '"files":[]');
    record = (f, first) => (first ? canonicalRecord(f) : `,${canonicalRecord(f)}`);
  } else if (how.pretty) {
    [before, after] = around(JSON.stringify({ ...shell, digest: how.digest }, null, 1), '"files": []');
    record = (f, first) => `${first ? '\n' : ',\n'}${prettyRecord(f)}`;
  } else {
    [before, after] = around(JSON.stringify({ ...shell, digest: how.digest }), '"files":[]');
    record = (f, first) => (first ? JSON.stringify(f) : `,${JSON.stringify(f)}`);
  }
  await sink.push(before);
  let count = 0;
  let bytes = 0;
  let last: string | undefined;
  for (const f of records()) {
    if (last !== undefined && !(last < f.path)) throw new OffsiteError('E_INTERNAL', `manifest records out of order: ${JSON.stringify(f.path)} after ${JSON.stringify(last)}`, { kind: 'fatal' });
    last = f.path;
    await sink.push(record(f, count === 0));
    count++;
    bytes += f.size;
  }
  if (count !== head.fileCount || bytes !== head.totalBytes) {
    throw new OffsiteError('E_INTERNAL', `manifest head says ${head.fileCount} files of ${head.totalBytes} bytes, the records are ${count} of ${bytes}`, { kind: 'fatal' });
  }
  if (!how.canonical && how.pretty && count > 0) await sink.push('\n ');
  await sink.push(how.canonical ? after : `${after}\n`);
  await sink.flush();
}

/**
 * Writes the manifest with `head` and the records `records()` yields (sorted by path; called
 * twice, and must yield the same records both times) at `key`, atomically, as `writeManifestAt`
 * would write the same body. Returns its digest.
 */
export async function writeManifestStreamed(
  driver: Driver, key: string, given: ManifestHead, records: () => Iterable<ManifestFile>, options: SignalOptions & EncodeOptions = {},
): Promise<string> {
  const hasher = await getHasher();
  const canonical = hasher.create();
  const sha = createHash('sha256');
  // At an encrypted destination: its `encryption` field, and a complete manifest is signed (./signature.ts).
  let head: ManifestHead = driver.encryption ? { ...given, encryption: given.encryption ?? manifestEncryptionOf(driver.encryption), signature: undefined } : given;
  await encode(head, records, new TextPieces((piece) => { canonical.update(piece); sha.update(piece); }), { canonical: true });
  const digest = canonical.digest();
  if (driver.encryption && head.kind === 'complete') head = { ...head, signature: signManifest(driver.encryption, sha.digest()) };
  const pretty = options.pretty ?? true;
  // The size first (the write session needs it): the digest is of fixed length.
  let size = 0;
  await encode(head, records, new TextPieces((piece) => { size += piece.length; }), { canonical: false, pretty, digest: DIGEST_PLACEHOLDER });
  const whole = hasher.create();
  const partBytes = Math.max(PART_BYTES, driver.capabilities.minPartBytes);
  if (size <= partBytes) {
    const bytes = Buffer.allocUnsafe(size);
    let filled = 0;
    await encode(head, records, new TextPieces((piece) => { filled += piece.copy(bytes, filled); }), { canonical: false, pretty, digest });
    if (filled !== size) throw new OffsiteError('E_INTERNAL', `manifest encoding changed size between passes (${size}, then ${filled} bytes)`, { kind: 'fatal' });
    await writeBytes(driver, key, bytes, whole.update(bytes).digest(), options);
    return digest;
  }
  const session = await driver.openWrite(key, { size, partBytes, signal: options.signal });
  try {
    // One part buffer, filled again once its write has settled (the contract allows it).
    const part = Buffer.allocUnsafe(partBytes);
    let filled = 0;
    let index = 0;
    let written = 0;
    const flushPart = async (bytes: Buffer): Promise<void> => {
      whole.update(bytes);
      await session.write(index++, bytes, options);
      written += bytes.length;
    };
    await encode(head, records, new TextPieces(async (piece) => {
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
    }), { canonical: false, pretty, digest });
    if (filled > 0) await flushPart(part.subarray(0, filled));
    if (written !== size) throw new OffsiteError('E_INTERNAL', `manifest encoding changed size between passes (${size}, then ${written} bytes)`, { kind: 'fatal' });
    await session.commit({ hash: whole.digest(), signal: options.signal });
  } catch (err) {
    await session.abort();
    throw err;
  }
  return digest;
}
