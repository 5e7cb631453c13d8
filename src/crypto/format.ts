/**
 * The stored format of an encrypted file (README, "Client-side encryption").
 *
 *   stored file = header || sealed chunk 0 || sealed chunk 1 || ... || sealed chunk n-1
 *   header      = "OFSE" | version 1 (1 byte) | 3 zero bytes | chunkBytes (u32 BE)
 *                 | salt (32 random bytes) | key check (16 bytes)          = 60 bytes
 *   sealed i    = AES-256-GCM(plain chunk i) || tag (16 bytes)
 *
 * Plain chunk i is bytes [i*chunkBytes, (i+1)*chunkBytes) of the file (the engine's chunk
 * size, recorded in the header so a later change of `chunkSize` does not matter); stored chunk
 * 0 carries the header in front, so stored chunk i covers exactly plain chunk i and a write
 * can resume at any part boundary. An empty file is one empty sealed chunk.
 *
 * Each file has its own AES key, derived with HKDF from the destination key and the random salt
 * (src/crypto/keys.ts), so chunks of one file never open under another file's key. The nonce
 * is the chunk index and a last-chunk flag; the additional data is the whole header, the file's
 * relative path, the index and the flag. So a chunk that is changed, moved to another index,
 * moved to another file (even with its header), dropped from the end, or followed by an extra
 * chunk fails its tag, and the error names the chunk. The key check in the header tells a
 * wrong key apart from damage before any chunk is opened.
 */
import { createCipheriv, createDecipheriv, randomBytes, timingSafeEqual } from 'node:crypto';
import { OffsiteError } from '../errors.js';
import { EncryptionKeyError, type DestinationKey } from './keys.js';

const MAGIC = Buffer.from('OFSE', 'latin1');
const VERSION = 1;
const SALT_BYTES = 32;
const CHECK_BYTES = 16;
/** Bytes of the header in front of stored chunk 0. */
export const HEADER_BYTES = 4 + 1 + 3 + 4 + SALT_BYTES + CHECK_BYTES;
/** Bytes of the GCM tag after each sealed chunk. */
export const TAG_BYTES = 16;
/** Largest chunk size the header can record (and GCM with a 12-byte nonce can seal). */
export const MAX_CHUNK_BYTES = 0xffff_ffff;

/** A stored chunk that fails its check: damaged, reordered, truncated or from another file. */
export class ChunkIntegrityError extends OffsiteError {
  constructor(readonly destination: string, readonly path: string, readonly chunk: number, detail: string) {
    super('E_DECRYPT', `destination "${destination}": ${path}: encrypted chunk ${chunk} ${detail}; the stored copy of this file is damaged (run "offsite verify --deep" on it, and replicate the backup again)`, { kind: 'integrity' });
  }
}

/** Number of chunks of a plain file of `plainSize` bytes (an empty file has one, empty). */
export function chunkCount(plainSize: number, chunkBytes: number): number {
  return Math.max(1, Math.ceil(plainSize / chunkBytes));
}

/** Stored size of a plain file of `plainSize` bytes: header plus one tag per chunk. */
export function storedSize(plainSize: number, chunkBytes: number): number {
  return HEADER_BYTES + chunkCount(plainSize, chunkBytes) * TAG_BYTES + plainSize;
}

/** Plain size of a stored file of `stored` bytes, or `undefined` when no plain size fits it. */
export function plainSize(stored: number, chunkBytes: number): number | undefined {
  const body = stored - HEADER_BYTES;
  if (body < TAG_BYTES) return undefined;
  const chunks = Math.ceil(body / (chunkBytes + TAG_BYTES));
  const plain = body - chunks * TAG_BYTES;
  return plain >= 0 && chunkCount(plain, chunkBytes) === chunks ? plain : undefined;
}

function nonce(index: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(BigInt(index), 0);
  n[8] = last ? 1 : 0;
  return n;
}

function additionalData(header: Buffer, path: Buffer, index: number, last: boolean): Buffer {
  const tail = Buffer.alloc(4 + 8 + 1);
  tail.writeUInt32BE(path.length, 0);
  tail.writeBigUInt64BE(BigInt(index), 4);
  tail[12] = last ? 1 : 0;
  return Buffer.concat([header, tail.subarray(0, 4), path, tail.subarray(4)]);
}

/** What both directions share: the file's header, key and identity. */
abstract class FileCipher {
  protected readonly fileKey: Buffer;
  protected readonly pathBytes: Buffer;

  protected constructor(protected readonly key: DestinationKey, readonly path: string, readonly header: Buffer, readonly chunkBytes: number) {
    this.fileKey = key.fileKey(header.subarray(12, 12 + SALT_BYTES));
    this.pathBytes = Buffer.from(path, 'utf8');
  }
}

/** Encrypts one file chunk by chunk. Chunks may be sealed in any order (parallel parts). */
export class FileSealer extends FileCipher {
  /** A new file: a fresh random salt. `path` is the file's path relative to the copy. */
  static create(key: DestinationKey, path: string, chunkBytes: number): FileSealer {
    if (!Number.isInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) throw new RangeError(`chunkBytes must be an integer in [1, ${MAX_CHUNK_BYTES}], got ${chunkBytes}`);
    const header = Buffer.alloc(HEADER_BYTES);
    MAGIC.copy(header, 0);
    header[4] = VERSION;
    header.writeUInt32BE(chunkBytes, 8);
    const salt = randomBytes(SALT_BYTES);
    salt.copy(header, 12);
    key.checkValue(salt).copy(header, 12 + SALT_BYTES);
    return new FileSealer(key, path, header, chunkBytes);
  }

  /**
   * Continues a file whose stored chunk 0 (or at least its header) was already written, e.g.
   * when a write resumes after its first part: the chunks still to seal use the same salt.
   */
  static resume(key: DestinationKey, path: string, storedStart: Buffer): FileSealer {
    const header = readHeader(key, path, storedStart);
    return new FileSealer(key, path, header, header.readUInt32BE(8));
  }

  /**
   * The stored bytes of chunk `index` (header in front for chunk 0). `plain` must be the whole
   * plain chunk (`chunkBytes` long unless `last`).
   */
  seal(index: number, plain: Buffer, last: boolean): Buffer {
    if (plain.length > this.chunkBytes || (!last && plain.length !== this.chunkBytes)) {
      throw new RangeError(`${this.path}: chunk ${index} has ${plain.length} bytes; only the last chunk may be shorter than ${this.chunkBytes}`);
    }
    const cipher = createCipheriv('aes-256-gcm', this.fileKey, nonce(index, last));
    cipher.setAAD(additionalData(this.header, this.pathBytes, index, last));
    const parts = index === 0 ? [this.header] : [];
    parts.push(cipher.update(plain), cipher.final(), cipher.getAuthTag());
    return Buffer.concat(parts);
  }
}

/** Checks a header and the key against it; returns the header's bytes. */
function readHeader(key: DestinationKey, path: string, stored: Buffer): Buffer {
  if (stored.length < HEADER_BYTES || !stored.subarray(0, 4).equals(MAGIC)) {
    throw new ChunkIntegrityError(key.destination, path, 0, 'does not start with the header of an offsite encrypted file (is this copy encrypted?)');
  }
  if (stored[4] !== VERSION) throw new ChunkIntegrityError(key.destination, path, 0, `has format version ${stored[4]}, this offsite reads version ${VERSION} (update offsite)`);
  const header = Buffer.from(stored.subarray(0, HEADER_BYTES));
  const chunkBytes = header.readUInt32BE(8);
  if (chunkBytes === 0) throw new ChunkIntegrityError(key.destination, path, 0, 'has a header with chunk size 0');
  const salt = header.subarray(12, 12 + SALT_BYTES);
  if (!timingSafeEqual(key.checkValue(salt), header.subarray(12 + SALT_BYTES))) {
    throw new EncryptionKeyError(`destination "${key.destination}": the encryption key does not open this copy (${path} was written with another key): check encryption.key or encryption.keyFile of this destination`);
  }
  return header;
}

/** Decrypts one file chunk by chunk, checking every tag. */
export class FileOpener extends FileCipher {
  /** Reads the header at the start of stored chunk 0; a wrong key is an `EncryptionKeyError`. */
  static open(key: DestinationKey, path: string, storedStart: Buffer): FileOpener {
    const header = readHeader(key, path, storedStart);
    return new FileOpener(key, path, header, header.readUInt32BE(8));
  }

  /** Bytes of stored chunk `index` when it is not the last one. */
  storedChunkBytes(index: number): number {
    return this.chunkBytes + TAG_BYTES + (index === 0 ? HEADER_BYTES : 0);
  }

  /** The plain bytes of stored chunk `index` (with the header for chunk 0). */
  open(index: number, stored: Buffer, last: boolean): Buffer {
    const body = index === 0 ? stored.subarray(HEADER_BYTES) : stored;
    if (body.length < TAG_BYTES || body.length > this.chunkBytes + TAG_BYTES) {
      throw new ChunkIntegrityError(this.key.destination, this.path, index, `has ${body.length} bytes, not between ${TAG_BYTES} and ${this.chunkBytes + TAG_BYTES} (truncated or extended)`);
    }
    const decipher = createDecipheriv('aes-256-gcm', this.fileKey, nonce(index, last));
    decipher.setAAD(additionalData(this.header, this.pathBytes, index, last));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    const plain = decipher.update(body.subarray(0, body.length - TAG_BYTES));
    try {
      decipher.final();
    } catch {
      const why = last ? 'fails its authentication tag (changed, moved, from another file, or the file was cut short or extended here)' : 'fails its authentication tag (changed, moved, or from another file)';
      throw new ChunkIntegrityError(this.key.destination, this.path, index, why);
    }
    return plain;
  }
}

/** Encrypts a whole file held in memory (tests and small files). */
export function sealBuffer(key: DestinationKey, path: string, plain: Buffer, chunkBytes: number): Buffer {
  const sealer = FileSealer.create(key, path, chunkBytes);
  const count = chunkCount(plain.length, chunkBytes);
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) out.push(sealer.seal(i, plain.subarray(i * chunkBytes, (i + 1) * chunkBytes), i === count - 1));
  return Buffer.concat(out);
}

/** Decrypts a whole stored file held in memory, checking every chunk. */
export function openBuffer(key: DestinationKey, path: string, stored: Buffer): Buffer {
  const out: Buffer[] = [];
  for (const plain of openChunksOf(key, path, [stored])) out.push(plain);
  return Buffer.concat(out);
}

/**
 * Decrypts stored bytes arriving in pieces of any size (a read stream), yielding plain chunks.
 * A chunk is opened as the last one only when the input ends after it, so a copy cut at a chunk
 * boundary or extended by a chunk fails, naming the chunk.
 */
export function* openChunksOf(key: DestinationKey, path: string, pieces: Iterable<Buffer>): Generator<Buffer> {
  const reader = new ChunkReader(key, path);
  for (const piece of pieces) yield* reader.push(piece);
  yield* reader.end();
}

/** The same as `openChunksOf` for an async source (a driver's read stream). */
export async function* openChunksOfStream(key: DestinationKey, path: string, pieces: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const reader = new ChunkReader(key, path);
  for await (const piece of pieces) yield* reader.push(piece);
  yield* reader.end();
}

/** Cuts stored bytes at chunk boundaries, holding back one chunk until it is known whether more follows. */
class ChunkReader {
  #opener?: FileOpener;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #index = 0;

  constructor(private readonly key: DestinationKey, private readonly path: string) {}

  *push(piece: Buffer): Generator<Buffer> {
    this.#pending.push(piece);
    this.#pendingBytes += piece.length;
    for (;;) {
      if (!this.#opener) {
        if (this.#pendingBytes < HEADER_BYTES) return;
        this.#opener = FileOpener.open(this.key, this.path, this.#take(this.#pendingBytes, false));
      }
      const size = this.#opener.storedChunkBytes(this.#index);
      // Strictly more than one chunk: this one is not the last.
      if (this.#pendingBytes <= size) return;
      yield this.#opener.open(this.#index, this.#take(size, true), false);
      this.#index++;
    }
  }

  *end(): Generator<Buffer> {
    if (!this.#opener) {
      this.#opener = FileOpener.open(this.key, this.path, this.#take(this.#pendingBytes, false));
    }
    yield this.#opener.open(this.#index, this.#take(this.#pendingBytes, true), true);
  }

  /** The first `bytes` pending bytes; removed from the queue when `consume`. */
  #take(bytes: number, consume: boolean): Buffer {
    const all = this.#pending.length === 1 ? (this.#pending[0] as Buffer) : Buffer.concat(this.#pending);
    if (!consume) {
      this.#pending = [all];
      return all;
    }
    const rest = all.subarray(bytes);
    this.#pending = rest.length > 0 ? [rest] : [];
    this.#pendingBytes = rest.length;
    return all.subarray(0, bytes);
  }
}
