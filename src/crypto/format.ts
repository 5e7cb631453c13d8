/**
 * The stored format of an encrypted file (README, "Client-side encryption").
 *
 *   stored file  = sealed chunk 0 || sealed chunk 1 || ... || sealed chunk n-1
 *   sealed i     = prefix (32 bytes) || AES-256-GCM(plain chunk i) || tag (16 bytes)
 *   prefix       = "OFSE" | version 2 (1 byte) | 3 zero bytes | chunkBytes (u32 BE)
 *                  | key check (8 bytes) | nonce (12 bytes)
 *
 * Plain chunk i is bytes [i*chunkBytes, (i+1)*chunkBytes) of the file; an empty file is one empty
 * chunk. Every chunk carries the same 48 bytes of overhead, so stored chunk i starts at
 * i*(chunkBytes+48): a write cut into parts of whole chunks maps part for part onto the stored
 * object (resume at any part boundary), and any chunk can be located and checked on its own.
 *
 * Keys: each file has its own AES key and nonce key, derived with HKDF from the destination key
 * and the file's identity (src/crypto/keys.ts). The identity is the file's path inside its backup
 * (`binlogs/insert_log/...`, without the backup's name; format version 2): milvus-backup builds
 * those paths from IDs, so a path names the same binlog in every nightly backup, and a file sealed
 * in one backup's copy opens under the same path in another's. That is what lets reuse (issue 12)
 * copy it there server-side (the bytes are exactly those a send would store). Version 1 files
 * (identity `NAME/path`) are still read, never reused.
 *
 * Nonces are synthetic (as in SIV): nonce i = HMAC(nonce key, MAC i)[:12], where MAC i is the
 * keyed HMAC-SHA256 of (chunkBytes, i, last flag, plain chunk i). Sealing is therefore
 * deterministic: the same plaintext at the same place gives the same bytes, which is what lets an
 * interrupted upload resume (the parts already stored are compared, not trusted), while a nonce
 * repeats only for the very same chunk (the same ciphertext), never for different plaintexts.
 *
 * The additional data is the prefix, the file identity, the index and the last flag. So a chunk
 * that is changed, moved to another index, moved to another path, dropped from the end, or
 * followed by an extra chunk fails its tag, and the error names the chunk. A chunk of the same
 * path in another backup's copy opens (the price of reuse), but it changes the file's plaintext
 * MAC, which `pull` checks at the end of every file, and its stored hash, which the signed
 * manifest records and every audit checks. The key check tells a
 * wrong key apart from damage before any chunk is opened (it is the same for every file of a key).
 *
 * The file's plaintext MAC (`fileMac`) is an HMAC over the size, the chunk size and the chunk
 * MACs: keyed, so the manifest that records it confirms no guessed plaintext to its readers.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, timingSafeEqual, type Hmac } from 'node:crypto';
import { OffsiteError } from '../errors.js';
import type { Hasher } from '../hash/xxh64.js';
import { EncryptionKeyError, type DestinationKey } from './keys.js';

const MAGIC = Buffer.from('OFSE', 'latin1');
/** The format version written: 2 (identity: the path inside the backup). */
const VERSION = 2;
/** The format version this offsite writes (`ENCRYPTION_SCHEME` names it in manifests). */
export const FORMAT_VERSION = VERSION;
/** Version 1 files (identity: `NAME/path`) are read, not written. */
const READ_VERSIONS: ReadonlySet<number> = new Set([1, 2]);
const CHECK_BYTES = 8;
const NONCE_BYTES = 12;
/** Bytes of the prefix in front of every sealed chunk. */
export const PREFIX_BYTES = 4 + 1 + 3 + 4 + CHECK_BYTES + NONCE_BYTES;
/** Bytes of the GCM tag after each sealed chunk. */
export const TAG_BYTES = 16;
/** Bytes every chunk gains when sealed. */
export const OVERHEAD_BYTES = PREFIX_BYTES + TAG_BYTES;
/** Largest chunk size the prefix can record. */
export const MAX_CHUNK_BYTES = 0xffff_ffff - OVERHEAD_BYTES;
/** Bytes handed to the cipher per call. */
const SLICE_BYTES = 64 * 1024;
/** Names the format in manifests. */
export const ENCRYPTION_SCHEME = 'offsite-aes-256-gcm-chunked/v2';
/** Prefix of a file's plaintext MAC as manifests record it. */
export const MAC_PREFIX = 'hmac-sha256:';

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

/** Stored size of a plain file of `plainSize` bytes. */
export function storedSize(plainSize: number, chunkBytes: number): number {
  return chunkCount(plainSize, chunkBytes) * OVERHEAD_BYTES + plainSize;
}

/** Plain size of a stored file of `stored` bytes, or `undefined` when no plain size fits it. */
export function plainSize(stored: number, chunkBytes: number): number | undefined {
  if (stored < OVERHEAD_BYTES) return undefined;
  const chunks = Math.ceil(stored / (chunkBytes + OVERHEAD_BYTES));
  const plain = stored - chunks * OVERHEAD_BYTES;
  return plain >= 0 && chunkCount(plain, chunkBytes) === chunks ? plain : undefined;
}

/** The chunk MAC input's fixed head: chunkBytes, index, last flag. */
function chunkLabel(chunkBytes: number, index: number, last: boolean): Buffer {
  const b = Buffer.alloc(5 + 4 + 8 + 1);
  b.write('chunk', 0, 'latin1');
  b.writeUInt32BE(chunkBytes, 5);
  b.writeBigUInt64BE(BigInt(index), 9);
  b[17] = last ? 1 : 0;
  return b;
}

/** The file's plaintext MAC from its size, chunk size and chunk MACs (in order), `hmac-sha256:<hex>`. */
export function fileMac(key: DestinationKey, plainBytes: number, chunkBytes: number, chunkMacs: readonly Uint8Array[]): string {
  const head = Buffer.alloc(4 + 8 + 4);
  head.write('file', 0, 'latin1');
  head.writeBigUInt64BE(BigInt(plainBytes), 4);
  head.writeUInt32BE(chunkBytes, 12);
  const mac = key.plaintextMac().update(head);
  for (const m of chunkMacs) mac.update(m);
  return MAC_PREFIX + mac.digest('hex');
}

/**
 * A file's plaintext MAC (`fileMac`) from its plain bytes in pieces of any size, without sealing
 * them: what the engine compares with the MACs an encrypted copy's manifest records, to find a
 * file there that holds the same plaintext (reuse). Equal to the MAC a seal of the same bytes
 * gives, whatever the file's identity.
 */
export class PlaintextMac {
  readonly #chunks: number;
  readonly #macs: Buffer[] = [];
  #current: Hmac | undefined;
  /** Bytes of the current chunk taken so far. */
  #filled = 0;
  #taken = 0;

  constructor(private readonly key: DestinationKey, private readonly size: number, private readonly chunkBytes: number) {
    this.#chunks = chunkCount(size, chunkBytes);
  }

  update(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const index = this.#macs.length;
      if (index >= this.#chunks) throw new RangeError(`more than the ${this.size} bytes announced`);
      this.#current ??= this.key.plaintextMac().update(chunkLabel(this.chunkBytes, index, index === this.#chunks - 1));
      const wanted = Math.min(this.chunkBytes, this.size - index * this.chunkBytes) - this.#filled;
      const take = Math.min(wanted, bytes.length - at);
      this.#current.update(bytes.subarray(at, at + take));
      at += take;
      this.#filled += take;
      this.#taken += take;
      if (take === wanted) this.#closeChunk();
    }
  }

  /** The MAC, `hmac-sha256:<hex>`, once all `size` bytes were given. */
  digest(): string {
    if (this.#taken !== this.size) throw new RangeError(`${this.#taken} bytes given, ${this.size} announced`);
    // An empty file is one empty chunk.
    if (this.#macs.length < this.#chunks) {
      this.#current ??= this.key.plaintextMac().update(chunkLabel(this.chunkBytes, 0, true));
      this.#closeChunk();
    }
    return fileMac(this.key, this.size, this.chunkBytes, this.#macs);
  }

  #closeChunk(): void {
    this.#macs.push((this.#current as Hmac).digest());
    this.#current = undefined;
    this.#filled = 0;
  }
}

/** A sealed or opened chunk and its plaintext MAC. */
export interface ChunkResult {
  readonly bytes: Buffer;
  readonly mac: Buffer;
}

/**
 * The identity sealed into a file's chunks: for version 2 its path inside the backup (`key`
 * without its first segment, the backup's name), for version 1 the whole key.
 */
export function sealedIdentity(key: string, version = VERSION): string {
  if (version === 1) return key;
  const slash = key.indexOf('/');
  return slash < 0 ? key : key.slice(slash + 1);
}

/** What both directions share: the file's keys and identity. */
abstract class FileCipher {
  protected readonly fileKey: Buffer;
  protected readonly nonceKey: Buffer;
  protected readonly idBytes: Buffer;
  protected readonly check: Buffer;

  /** `fileId` is the file's key in the destination (`NAME/path`); its identity follows `version` (`sealedIdentity`). */
  protected constructor(protected readonly key: DestinationKey, readonly fileId: string, readonly chunkBytes: number, readonly version: number) {
    this.idBytes = Buffer.from(sealedIdentity(fileId, version), 'utf8');
    ({ fileKey: this.fileKey, nonceKey: this.nonceKey } = key.fileKeys(this.idBytes));
    this.check = keyCheck(key);
  }

  protected chunkMac(index: number, plain: Buffer, last: boolean): Buffer {
    return this.key.plaintextMac().update(chunkLabel(this.chunkBytes, index, last)).update(plain).digest();
  }

  protected nonceOf(mac: Buffer): Buffer {
    return createHmac('sha256', this.nonceKey).update(mac).digest().subarray(0, NONCE_BYTES);
  }

  protected additionalData(prefix: Buffer, index: number, last: boolean): Buffer {
    const tail = Buffer.alloc(4 + this.idBytes.length + 8 + 1);
    tail.writeUInt32BE(this.idBytes.length, 0);
    this.idBytes.copy(tail, 4);
    tail.writeBigUInt64BE(BigInt(index), 4 + this.idBytes.length);
    tail[tail.length - 1] = last ? 1 : 0;
    return Buffer.concat([prefix, tail]);
  }
}

/** Encrypts one file chunk by chunk. Chunks may be sealed in any order (parallel parts). */
export class FileSealer extends FileCipher {
  constructor(key: DestinationKey, fileId: string, chunkBytes: number) {
    if (!Number.isInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) throw new RangeError(`chunkBytes must be an integer in [1, ${MAX_CHUNK_BYTES}], got ${chunkBytes}`);
    super(key, fileId, chunkBytes, VERSION);
  }

  /**
   * The stored bytes of chunk `index` and its plaintext MAC. `plain` must be the whole plain
   * chunk (`chunkBytes` long unless `last`). The same input always gives the same bytes.
   */
  seal(index: number, plain: Uint8Array, last: boolean): ChunkResult {
    const out = Buffer.allocUnsafe(OVERHEAD_BYTES + plain.length);
    return { bytes: out, mac: this.sealInto(index, plain, last, out, 0) };
  }

  /**
   * `seal` writing the stored bytes into `out` at `at` (`OVERHEAD_BYTES + plain.length` of them);
   * returns the plaintext MAC. Each of `taps` gets every piece of the stored bytes as it is written,
   * in order (the hashes of the stored bytes take them while they are still in the CPU's cache,
   * instead of reading the sealed chunk again).
   */
  sealInto(index: number, plain: Uint8Array, last: boolean, out: Buffer, at: number, taps: readonly Tap[] = []): Buffer {
    if (plain.length > this.chunkBytes || (!last && plain.length !== this.chunkBytes)) {
      throw new RangeError(`${this.fileId}: chunk ${index} has ${plain.length} bytes; only the last chunk may be shorter than ${this.chunkBytes}`);
    }
    const mac = this.chunkMac(index, plain as Buffer, last);
    const start = at;
    MAGIC.copy(out, at);
    out[at + 4] = VERSION;
    out.fill(0, at + 5, at + 8);
    out.writeUInt32BE(this.chunkBytes, at + 8);
    this.check.copy(out, at + 12);
    const nonce = this.nonceOf(mac);
    nonce.copy(out, at + 12 + CHECK_BYTES);
    const prefix = out.subarray(start, start + PREFIX_BYTES);
    for (const tap of taps) tap.update(prefix);
    const cipher = createCipheriv('aes-256-gcm', this.fileKey, nonce);
    cipher.setAAD(this.additionalData(prefix, index, last));
    at += PREFIX_BYTES;
    // In slices: one update of a whole 8 MiB chunk was measured slower (a large output buffer per call).
    for (let from = 0; from < plain.length; from += SLICE_BYTES) {
      const piece = cipher.update(plain.subarray(from, from + SLICE_BYTES));
      at = copyInto(out, piece, at);
      for (const tap of taps) tap.update(piece);
      freeNow(piece);
    }
    const final = cipher.final();
    at = copyInto(out, final, at);
    const tag = cipher.getAuthTag();
    tag.copy(out, at);
    for (const tap of taps) {
      if (final.length > 0) tap.update(final);
      tap.update(tag);
    }
    return mac;
  }
}

/**
 * Copies `bytes` into `out` at `at`; returns the offset after them. `out` is usually shared memory
 * (a sealed part a worker thread writes for the main thread). `fill` with a buffer the size of the
 * range is one `memcpy` in Node's C++; Node 20's `copy` is a typed array `set`, which V8 does into
 * shared memory with relaxed atomic stores: in profiles of an encrypted upload's worker (under
 * load, indicative) `copy` took 1.7x the cipher's time, `fill` 0.7x.
 */
function copyInto(out: Buffer, bytes: Buffer, at: number): number {
  if (bytes.length > 0) out.fill(bytes, at, at + bytes.length);
  return at + bytes.length;
}

/**
 * Gives the memory of `bytes` (a cipher's output, its own ArrayBuffer, already copied and hashed)
 * back now rather than at the thread's next garbage collection, where the runtime can
 * (`ArrayBuffer.prototype.transfer`, Node 22+): the next piece then reuses it. Kept until a
 * collection, the pieces were ~64 MB of fresh memory per sealing thread between collections,
 * each 4 KiB of it a page fault (measured ~14 us each on a virtual machine), and ArrayBuffers for
 * the collector's helper threads to sweep. Node 20 has no such call: there they wait for the collector.
 */
function freeNow(bytes: Buffer): void {
  const buffer = bytes.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };
  if (typeof buffer.transfer === 'function' && bytes.byteOffset === 0 && bytes.byteLength === buffer.byteLength && !(buffer instanceof SharedArrayBuffer)) buffer.transfer(0);
}

/** What takes the stored bytes as they are written (a streaming hash). */
export interface Tap {
  update(bytes: Uint8Array): unknown;
}

/** What sealing a plain part gives besides its stored bytes: the XXH64 of each sealed chunk and their plaintext MACs (in chunk order). */
export interface SealedPart {
  /** Bytes of the stored part, written at the start of the output buffer. */
  readonly length: number;
  readonly hashes: readonly string[];
  readonly macs: readonly Uint8Array[];
  /** The MD5 of the stored part, when asked for (an S3 part's Content-MD5 and ETag). */
  readonly md5?: { readonly hex: string; readonly base64: string };
  /** The XXH64 of the whole stored part, when asked for (the file's stored hash, when the part is the whole file). */
  readonly hash?: string;
  /** The SHA-256 of the stored part (hex), when asked for (the signed payload hash of its upload). */
  readonly sha256?: string;
}

/** What `sealPart` takes besides the chunk hashes, in the same pass. */
export interface SealPartOptions {
  /** The MD5 of the stored part. */
  readonly md5?: boolean;
  /** The XXH64 of the whole stored part. */
  readonly hash?: boolean;
  /** The SHA-256 of the stored part. */
  readonly sha256?: boolean;
}

/**
 * Seals a plain part of whole chunks (the file's last part may end short) whose first chunk is
 * `firstChunk` of the file's `chunks`, into `out` (at least `storedSize(plain.length)` long: the
 * caller's reused buffer, in shared memory when a worker thread seals, src/runtime/cpu-tasks.ts),
 * in one pass: each piece of a sealed chunk is hashed (the chunk's XXH64, and as `options` ask the
 * part's MD5, SHA-256 and XXH64) right after the cipher wrote it. A fresh output buffer per part cost more
 * than the sealing (a page fault per 4 KiB of new memory, and garbage collections for external
 * memory).
 */
export function sealPart(sealer: FileSealer, hasher: Hasher, firstChunk: number, chunks: number, plain: Uint8Array, out: Uint8Array, options: SealPartOptions = {}): SealedPart {
  const { chunkBytes } = sealer;
  const count = Math.max(1, Math.ceil(plain.length / chunkBytes));
  const length = storedSize(plain.length, chunkBytes);
  if (out.length < length) throw new RangeError(`a sealed part of ${length} bytes does not fit the ${out.length}-byte output buffer`);
  const target = Buffer.isBuffer(out) ? out : Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  const partMd5 = options.md5 === true ? createHash('md5') : undefined;
  const partSha256 = options.sha256 === true ? createHash('sha256') : undefined;
  // A part of one chunk is that chunk: its hash is the chunk's, not a second pass over the same bytes.
  const partHash = options.hash === true && count > 1 ? hasher.create() : undefined;
  const hashes: string[] = [];
  const macs: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const chunk = firstChunk + i;
    const piece = plain.subarray(i * chunkBytes, (i + 1) * chunkBytes);
    const chunkHash = hasher.create();
    const taps: Tap[] = [chunkHash];
    if (partMd5 !== undefined) taps.push(partMd5);
    if (partSha256 !== undefined) taps.push(partSha256);
    if (partHash !== undefined) taps.push(partHash);
    macs.push(sealer.sealInto(chunk, piece, chunk === chunks - 1, target, at, taps));
    hashes.push(chunkHash.digest());
    at += OVERHEAD_BYTES + piece.length;
  }
  const digest = partMd5?.digest();
  return {
    length, hashes, macs,
    ...(digest !== undefined ? { md5: { hex: digest.toString('hex'), base64: digest.toString('base64') } } : {}),
    ...(options.hash === true ? { hash: partHash?.digest() ?? (hashes[0] as string) } : {}),
    ...(partSha256 !== undefined ? { sha256: partSha256.digest('hex') } : {}),
  };
}

/**
 * The key check stored in every chunk: the same for every file of the key (so a file moved from
 * another place reads as damage, not as a wrong key), and it reveals nothing about the key.
 */
function keyCheck(key: DestinationKey): Buffer {
  let check = keyChecks.get(key);
  if (check === undefined) {
    check = key.checkValue(Buffer.from('offsite key check', 'latin1')).subarray(0, CHECK_BYTES);
    keyChecks.set(key, check);
  }
  return check;
}

/** `keyCheck` per key: the same for every file, so worked out once, not per file. */
const keyChecks = new WeakMap<DestinationKey, Buffer>();

/** Reads the format version and chunk size from a stored chunk's prefix and checks the key against it. */
function readPrefix(key: DestinationKey, fileId: string, stored: Buffer, index: number, check: Buffer): { version: number; chunkBytes: number } {
  if (stored.length < PREFIX_BYTES || !stored.subarray(0, 4).equals(MAGIC)) {
    throw new ChunkIntegrityError(key.destination, fileId, index, 'does not start like a chunk of an offsite encrypted file (is this copy encrypted? is the file cut short?)');
  }
  const version = stored[4] as number;
  if (!READ_VERSIONS.has(version)) throw new ChunkIntegrityError(key.destination, fileId, index, `has format version ${version}, this offsite reads versions ${[...READ_VERSIONS].join(' and ')} (update offsite)`);
  const chunkBytes = stored.readUInt32BE(8);
  if (chunkBytes === 0 || chunkBytes > MAX_CHUNK_BYTES) throw new ChunkIntegrityError(key.destination, fileId, index, `records the impossible chunk size ${chunkBytes}`);
  if (!timingSafeEqual(check, stored.subarray(12, 12 + CHECK_BYTES))) {
    throw new EncryptionKeyError(`destination "${key.destination}": the encryption key does not open this copy (${fileId} was written with another key): check encryption.key or encryption.keyFile of this destination`);
  }
  return { version, chunkBytes };
}

/** Decrypts one file chunk by chunk, checking every tag. */
export class FileOpener extends FileCipher {
  /** Reads the chunk size from the prefix of stored chunk 0; a wrong key is an `EncryptionKeyError`. */
  static open(key: DestinationKey, fileId: string, storedStart: Buffer): FileOpener {
    const { version, chunkBytes } = readPrefix(key, fileId, storedStart, 0, keyCheck(key));
    return new FileOpener(key, fileId, chunkBytes, version);
  }

  /** Bytes of stored chunk `index` when it is not the last one. */
  get storedChunkBytes(): number {
    return this.chunkBytes + OVERHEAD_BYTES;
  }

  /** The plain bytes of stored chunk `index` and its plaintext MAC. */
  open(index: number, stored: Buffer, last: boolean): ChunkResult {
    if (stored.length < OVERHEAD_BYTES || stored.length > this.storedChunkBytes || (!last && stored.length !== this.storedChunkBytes)) {
      throw new ChunkIntegrityError(this.key.destination, this.fileId, index, `has ${stored.length} bytes, not ${last ? `between ${OVERHEAD_BYTES} and ${this.storedChunkBytes}` : this.storedChunkBytes} (truncated or extended)`);
    }
    const prefixed = readPrefix(this.key, this.fileId, stored, index, this.check);
    if (prefixed.chunkBytes !== this.chunkBytes || prefixed.version !== this.version) {
      throw new ChunkIntegrityError(this.key.destination, this.fileId, index, 'records another chunk size or format version than chunk 0');
    }
    const prefix = stored.subarray(0, PREFIX_BYTES);
    const nonce = prefix.subarray(12 + CHECK_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', this.fileKey, nonce);
    decipher.setAAD(this.additionalData(prefix, index, last));
    decipher.setAuthTag(stored.subarray(stored.length - TAG_BYTES));
    const body = stored.subarray(PREFIX_BYTES, stored.length - TAG_BYTES);
    const plain = Buffer.allocUnsafe(body.length);
    for (let from = 0; from < body.length; from += SLICE_BYTES) decipher.update(body.subarray(from, from + SLICE_BYTES)).copy(plain, from);
    try {
      decipher.final();
    } catch {
      const why = last ? 'fails its authentication tag (changed, moved, from another file, or the file was cut short or extended here)' : 'fails its authentication tag (changed, moved, or from another file)';
      throw new ChunkIntegrityError(this.key.destination, this.fileId, index, why);
    }
    const mac = this.chunkMac(index, plain, last);
    // Only a writer holding the key picks nonces; one that is not this chunk's synthetic nonce was not made by offsite.
    if (!timingSafeEqual(this.nonceOf(mac), nonce)) throw new ChunkIntegrityError(this.key.destination, this.fileId, index, 'has a nonce that does not belong to its content');
    return { bytes: plain, mac };
  }
}

/** Encrypts a whole file held in memory (tests and small files). */
export function sealBuffer(key: DestinationKey, fileId: string, plain: Buffer, chunkBytes: number): Buffer {
  const sealer = new FileSealer(key, fileId, chunkBytes);
  const count = chunkCount(plain.length, chunkBytes);
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) out.push(sealer.seal(i, plain.subarray(i * chunkBytes, (i + 1) * chunkBytes), i === count - 1).bytes);
  return Buffer.concat(out);
}

/** Decrypts a whole stored file held in memory, checking every chunk. */
export function openBuffer(key: DestinationKey, fileId: string, stored: Buffer): Buffer {
  const out: Buffer[] = [];
  for (const plain of openChunksOf(key, fileId, [stored])) out.push(plain);
  return Buffer.concat(out);
}

/**
 * Decrypts stored bytes arriving in pieces of any size (a read stream), yielding plain chunks.
 * A chunk is opened as the last one only when the input ends after it, so a copy cut at a chunk
 * boundary or extended by a chunk fails, naming the chunk.
 */
export function* openChunksOf(key: DestinationKey, fileId: string, pieces: Iterable<Buffer>): Generator<Buffer> {
  const reader = new ChunkReader(key, fileId);
  for (const piece of pieces) yield* reader.push(piece);
  yield* reader.end();
}

/** The same as `openChunksOf` for an async source (a driver's read stream). */
export async function* openChunksOfStream(key: DestinationKey, fileId: string, pieces: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const reader = new ChunkReader(key, fileId);
  for await (const piece of pieces) yield* reader.push(piece);
  yield* reader.end();
}

/**
 * Cuts stored bytes at chunk boundaries, holding back one chunk until it is known whether more
 * follows; keeps the chunk MACs so that `fileMac` gives the file's plaintext MAC at the end.
 */
export class ChunkReader {
  #opener?: FileOpener;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #index = 0;
  #plainBytes = 0;
  readonly #macs: Buffer[] = [];

  constructor(private readonly key: DestinationKey, private readonly fileId: string) {}

  *push(piece: Buffer): Generator<Buffer> {
    this.#pending.push(piece);
    this.#pendingBytes += piece.length;
    for (;;) {
      if (!this.#opener) {
        if (this.#pendingBytes < PREFIX_BYTES) return;
        this.#opener = FileOpener.open(this.key, this.fileId, this.#peek());
      }
      const size = this.#opener.storedChunkBytes;
      // Strictly more than one chunk: this one is not the last.
      if (this.#pendingBytes <= size) return;
      yield this.#open(this.#take(size), false);
    }
  }

  *end(): Generator<Buffer> {
    this.#opener ??= FileOpener.open(this.key, this.fileId, this.#peek());
    yield this.#open(this.#take(this.#pendingBytes), true);
  }

  /** The format version of the file (from its first chunk's prefix), once a chunk was read. */
  get version(): number | undefined {
    return this.#opener?.version;
  }

  /** The file's plaintext MAC, once `end` has run. */
  fileMac(): string {
    return fileMac(this.key, this.#plainBytes, (this.#opener as FileOpener).chunkBytes, this.#macs);
  }

  #open(stored: Buffer, last: boolean): Buffer {
    const { bytes, mac } = (this.#opener as FileOpener).open(this.#index++, stored, last);
    this.#macs.push(mac);
    this.#plainBytes += bytes.length;
    return bytes;
  }

  #peek(): Buffer {
    const all = this.#pending.length === 1 ? (this.#pending[0] as Buffer) : Buffer.concat(this.#pending);
    this.#pending = [all];
    return all;
  }

  #take(bytes: number): Buffer {
    const all = this.#peek();
    const rest = all.subarray(bytes);
    this.#pending = rest.length > 0 ? [rest] : [];
    this.#pendingBytes = rest.length;
    return all.subarray(0, bytes);
  }
}
