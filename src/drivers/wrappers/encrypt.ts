/**
 * Client-side encryption as a driver wrapper (README, "Client-side encryption"; issue 14): the
 * engine writes and reads plaintext through it, the driver below stores sealed chunks
 * (src/crypto/format.ts). It overrides only what encryption changes (./forwarding.ts):
 *
 * - Backup files are sealed on write and opened on read; offsite's own bookkeeping (every key with
 *   a `.offsite` folder: manifests, checkpoints, locks) passes through as it is, so that `list`,
 *   `verify` and `audit` read it without the key (the manifest is signed instead).
 * - Sizes: `list` and `stat` show plain sizes; the stored object is 48 bytes per chunk larger.
 *   Parts map one to one: plain part i (a whole number of chunks) is stored part i, so resume at a
 *   part boundary works as on the driver below. Sealing is deterministic (synthetic nonces), so
 *   `matches` seals the part again and lets the driver below compare the stored bytes.
 * - `commit` hands the driver below the XXH64 of the stored bytes (never a plaintext hash: it
 *   would confirm guesses) and returns the stored record (`Committed.stored`: stored size, hash,
 *   chunk hashes, keyed plaintext MAC) that the manifest keeps, so an auditor without the key can
 *   prove the stored bytes, and `pull` the plaintext.
 * - Server-side copies (reuse, issue 12) only to the same path in another backup: a sealed file
 *   is bound to its path inside the backup (src/crypto/format.ts `sealedIdentity`), so the copy
 *   holds exactly the bytes a send would store there, and opens; a copy to another path would
 *   not, and is refused (`E_COPY_ELSEWHERE`, kind `permanent`: the engine sends the file). The
 *   engine finds such files by their keyed plaintext MAC (`encryption.plaintextMac`).
 * - Adoption of a file committed but not recorded: `encryption.inspect` reads it once, opening
 *   every chunk, and gives its plaintext hashes (compared with the source's) and its stored record.
 * - Sealing a part (its chunks' MACs, AES-256-GCM, the XXH64 of each sealed chunk, for a driver
 *   below that sends parts with their MD5 the part's MD5, for one that signs their SHA-256
 *   (`capabilities.partSha256`) that, and for a file of one part its stored hash, all in one pass
 *   over the sealed bytes, and then that file's plaintext MAC) runs in the CPU pool's worker threads
 *   (src/runtime/cpu-pool.ts), which get the key once and are started at the first write here
 *   (a run's lock), before the first file: the main thread runs everything else. Only the whole-file
 *   hash and plaintext MAC of a file of several parts, taken in part order, stay on the main thread. Sealed parts
 *   are written into reused buffers of shared memory (src/core/buffers.ts `ChunkPool`): a fresh
 *   buffer per part cost a page fault per 4 KiB (a fifth of the worker's time) and garbage
 *   collections for external memory on the main thread.
 */
import { Readable } from 'node:stream';
import { ChunkPool } from '../../core/buffers.js';
import {
  chunkCount, ChunkIntegrityError, ChunkReader, ENCRYPTION_SCHEME, fileMac, FileOpener, FORMAT_VERSION, MAX_CHUNK_BYTES, OVERHEAD_BYTES, PlaintextMac, plainSize, sealedIdentity, storedSize,
} from '../../crypto/format.js';
import { EncryptionKeyError, type DestinationKey } from '../../crypto/keys.js';
import { DriverError, throwIfAborted } from '../../errors.js';
import { getHasher, type Hasher, type StreamingHash } from '../../hash/xxh64.js';
import { cpuPool } from '../../runtime/cpu-pool.js';
import type { SealResult } from '../../runtime/cpu-tasks.js';
import { checkDriverKey } from '../toolkit/args.js';
import { badArgument, missingPartError } from '../toolkit/errors.js';
import type {
  Capabilities, CommitOptions, Committed, CopyWithinOptions, Driver, DriverEncryption, Entry, PartMd5, PartWriteOptions, ReadOptions, SignalOptions, StoredRecord, WriteOptions, WriteSession,
} from '../types.js';
import { ForwardingDriver, ForwardingWriteSession } from './forwarding.js';

/** Keys offsite keeps for itself (manifests, checkpoints, locks): stored as they are. */
export function isBookkeepingKey(key: string): boolean {
  return key.startsWith('.offsite/') || key.includes('/.offsite/') || key === '.offsite';
}

/** Wraps `inner` so that backup files are stored encrypted with `key` in chunks of `chunkBytes`. */
export function withEncryption(inner: Driver, key: DestinationKey, chunkBytes: number): Driver {
  return new EncryptingDriver(inner, key, chunkBytes);
}

/**
 * An encrypted destination seen from a machine without its key (`encryption: { publicKey }`):
 * reads, lists and bookkeeping pass; writing a backup file (or a server-side copy) is refused with
 * `message` (`E_ENCRYPTION_KEY`, kind `auth`), so nothing is ever stored there in plaintext.
 */
export function withoutWrites(inner: Driver, message: string): Driver {
  return new KeylessDriver(inner, message);
}

class KeylessDriver extends ForwardingDriver {
  constructor(inner: Driver, private readonly refusal: string) {
    super(inner);
  }

  override openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    if (isBookkeepingKey(key)) return this.inner.openWrite(key, options);
    return Promise.reject(new EncryptionKeyError(this.refusal));
  }

  protected override forwardCopyWithin(fromKey: string, toKey: string, options?: CopyWithinOptions): Promise<Committed | void> {
    if (isBookkeepingKey(toKey)) return super.forwardCopyWithin(fromKey, toKey, options);
    return Promise.reject(new EncryptionKeyError(this.refusal));
  }
}

class EncryptingDriver extends ForwardingDriver {
  readonly encryption: DriverEncryption;
  readonly #key: DestinationKey;
  readonly #chunkBytes: number;
  readonly #expected = new Map<string, string>();
  /** The buffers sealed parts are written into; one size class at a time (the stored part size). */
  #sealedParts: ChunkPool | undefined;
  /** The CPU pool was warmed up for this key (`#warmPool`). */
  #warmed = false;

  constructor(inner: Driver, key: DestinationKey, chunkBytes: number) {
    super(inner);
    this.#key = key;
    this.#chunkBytes = chunkBytes;
    const expected = this.#expected;
    this.encryption = {
      scheme: ENCRYPTION_SCHEME,
      chunkBytes,
      storedChunkBytes: chunkBytes + OVERHEAD_BYTES,
      get publicKey() { return key.publicKey; },
      stored: inner,
      sign: (bytes) => key.sign(bytes),
      expect: (k, mac) => { expected.set(k, mac); },
      plaintextMac: (size) => new PlaintextMac(key, size, chunkBytes),
      inspect: (k, size, options) => this.#inspect(k, size, options),
    };
  }

  /**
   * The driver's `readHashes` would hash the stored (sealed) bytes, not the plaintext this driver
   * reads: not offered. (An auditor's check of the stored bytes reads `encryption.stored`, which
   * has it.)
   */
  protected override get forwardsReadHashes(): boolean {
    return false;
  }

  /** Drops the key from the CPU pool's workers, then closes the driver below. */
  override close(): Promise<void> {
    cpuPool().forget(this.#key);
    return this.inner.close();
  }

  override get capabilities(): Capabilities {
    const inner = this.inner.capabilities;
    const perChunk = this.#chunkBytes + OVERHEAD_BYTES;
    return {
      ...inner,
      storedHash: false,
      // Its reads do not pass `ifFingerprint` on: a reader checks with a stat after the read.
      conditionalReads: false,
      // The caller's bytes are not the stored ones: its MD5 or SHA-256 would not be theirs.
      partMd5: false,
      partSha256: false,
      maxPartBytes: Math.max(this.#chunkBytes, Math.floor(inner.maxPartBytes / perChunk) * this.#chunkBytes),
    };
  }

  /** A stored entry as the engine sees it: the plain size (the stored one when it cannot be a sealed file), no stored hash. */
  #plainEntry(entry: Entry): Entry {
    if (isBookkeepingKey(entry.key)) return entry;
    const { hash: _hash, ...rest } = entry;
    return { ...rest, size: plainSize(entry.size, this.#chunkBytes) ?? entry.size };
  }

  override async *list(prefix: string, options?: SignalOptions): AsyncIterable<Entry> {
    for await (const entry of this.inner.list(prefix, options)) yield this.#plainEntry(entry);
  }

  override async stat(key: string, options?: SignalOptions): Promise<Entry | undefined> {
    const entry = await this.inner.stat(key, options);
    return entry && this.#plainEntry(entry);
  }

  override async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    if (isBookkeepingKey(key)) return this.inner.openRead(key, options);
    const { signal } = options;
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || (options.length !== undefined && (!Number.isSafeInteger(options.length) || options.length < 0))) {
      throw badArgument({ driver: this.name, action: 'read', key }, `offset ${offset} and length ${String(options.length)} must be whole numbers >= 0`);
    }
    // The driver below checks the key (and refuses one escaping the root) before any IO.
    if (offset === 0 && options.length === undefined) return this.#wholeRead(key, signal);
    // A range: the chunks that cover it, opened with the knowledge of which one is the file's last.
    const entry = await this.inner.stat(key, { signal });
    const plain = entry && plainSize(entry.size, this.#chunkBytes);
    if (entry === undefined) return this.inner.openRead(key, { signal }); // rejects with the driver's not-found
    if (plain === undefined) throw new ChunkIntegrityError(this.#key.destination, key, 0, `cannot be a file sealed in ${this.#chunkBytes}-byte chunks (${entry.size} bytes stored; was options.chunkSize changed since it was written?)`);
    const length = Math.min(options.length ?? plain - offset, Math.max(0, plain - offset));
    if (offset === 0 && length === plain) return this.#wholeRead(key, signal);
    return this.#rangeRead(key, offset, length, plain, signal);
  }

  async #wholeRead(key: string, signal: AbortSignal | undefined): Promise<Readable> {
    const dkey = this.#key;
    const expected = this.#expected.get(key);
    const stream = await this.inner.openRead(key, { signal });
    async function* plain(): AsyncGenerator<Buffer> {
      try {
        const reader = new ChunkReader(dkey, key);
        for await (const piece of stream) yield* reader.push(piece as Buffer);
        yield* reader.end();
        if (expected !== undefined && reader.fileMac() !== expected) {
          throw new DriverError('E_DECRYPT', `destination "${dkey.destination}": ${key}: decrypts to other bytes than its manifest records (plaintext MAC differs): the stored copy was replaced; pull from another destination`, { kind: 'integrity' });
        }
      } finally {
        stream.destroy();
      }
    }
    return Readable.from(plain(), { objectMode: false, highWaterMark: 1 });
  }

  #rangeRead(key: string, offset: number, length: number, plain: number, signal: AbortSignal | undefined): Readable {
    const chunkBytes = this.#chunkBytes;
    const stored = chunkBytes + OVERHEAD_BYTES;
    const lastIndex = chunkCount(plain, chunkBytes) - 1;
    const first = Math.floor(offset / chunkBytes);
    const end = offset + length;
    const lastWanted = length === 0 ? first : Math.min(lastIndex, Math.ceil(end / chunkBytes) - 1);
    const inner = this.inner;
    const dkey = this.#key;
    async function* pieces(): AsyncGenerator<Buffer> {
      if (length === 0) return;
      const from = first * stored;
      const to = Math.min(storedSize(plain, chunkBytes), (lastWanted + 1) * stored);
      const stream = await inner.openRead(key, { signal, offset: from, length: to - from });
      const opener = { current: undefined as FileOpener | undefined };
      let pending: Buffer = Buffer.alloc(0);
      let index = first;
      const openNext = (bytes: Buffer): Buffer => {
        opener.current ??= FileOpener.open(dkey, key, bytes);
        const { bytes: out } = opener.current.open(index, bytes, index === lastIndex);
        const start = index * chunkBytes;
        index++;
        return out.subarray(Math.max(0, offset - start), Math.min(out.length, end - start));
      };
      try {
        for await (const piece of stream) {
          pending = pending.length === 0 ? piece as Buffer : Buffer.concat([pending, piece as Buffer]);
          while (pending.length >= stored && index <= lastWanted) {
            yield openNext(pending.subarray(0, stored));
            pending = pending.subarray(stored);
          }
        }
        if (index <= lastWanted) yield openNext(pending);
      } finally {
        stream.destroy();
      }
    }
    return Readable.from(pieces(), { objectMode: false, highWaterMark: 1 });
  }

  override async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    this.#warmPool();
    if (isBookkeepingKey(key)) return this.inner.openWrite(key, options);
    const { size, partBytes } = options;
    const chunkBytes = this.#chunkBytes;
    const context = { driver: this.name, action: 'write', key };
    if (!Number.isSafeInteger(size) || size < 0 || !Number.isSafeInteger(partBytes) || partBytes < 1) throw badArgument(context, `size ${size} and partBytes ${partBytes} must be whole numbers`);
    if (size > partBytes && partBytes % chunkBytes !== 0) {
      throw badArgument(context, `parts of ${partBytes} bytes are not whole ${chunkBytes}-byte encryption chunks: this destination encrypts in chunks of options.chunkSize; copy with the chunk size it was configured with`);
    }
    const stored = storedSize(size, chunkBytes);
    // One part of whole chunks maps onto one stored part; a file in one part may have a part size of any length.
    const innerPartBytes = partBytes % chunkBytes === 0 ? (partBytes / chunkBytes) * (chunkBytes + OVERHEAD_BYTES) : stored;
    const hasher = await getHasher();
    const session = await this.inner.openWrite(key, { ...options, size: stored, partBytes: innerPartBytes });
    const buffers = this.#sealedPartsOf(Math.ceil(partBytes / chunkBytes) * (chunkBytes + OVERHEAD_BYTES));
    const { partMd5, partSha256 } = this.inner.capabilities;
    return new EncryptingWriteSession(session, this.#key, { size, partBytes, chunkBytes, stored, hasher, context, buffers, md5: partMd5 === true, sha256: partSha256 === true });
  }

  /**
   * Starts the CPU pool's workers with the key the first time anything is written here (a run's
   * lock and checkpoint come before its first file): they load and get the key while the run
   * still reads the destination and plans, instead of at its first file.
   */
  #warmPool(): void {
    if (this.#warmed) return;
    this.#warmed = true;
    const pool = cpuPool();
    pool.warm(pool.secret(this.#key, () => this.#key.secretBytes()));
  }

  /**
   * The pool of buffers for sealed parts of at most `storedPartBytes` bytes. The engine writes
   * every file in parts of the same size, so this is one pool; a session with larger parts gets a
   * new one (the old one's buffers go back to it, and it is collected with them).
   */
  #sealedPartsOf(storedPartBytes: number): ChunkPool {
    if (this.#sealedParts === undefined || this.#sealedParts.chunkBytes < storedPartBytes) this.#sealedParts = new ChunkPool(storedPartBytes);
    return this.#sealedParts;
  }

  /**
   * A server-side copy of a sealed file to the same path in another backup (see the file
   * comment); `expect.size` is the plain size, `expect.hash` the stored hash (the driver below
   * keeps that one).
   */
  protected override async forwardCopyWithin(fromKey: string, toKey: string, options?: CopyWithinOptions): Promise<Committed | void> {
    if (isBookkeepingKey(fromKey) && isBookkeepingKey(toKey)) return super.forwardCopyWithin(fromKey, toKey, options);
    // What the driver below would refuse first (keys leaving the root, an aborted call) is refused as it would.
    checkDriverKey(this.name, fromKey);
    checkDriverKey(this.name, toKey);
    throwIfAborted(options?.signal, `${this.name}: copy ${fromKey}`);
    if (isBookkeepingKey(fromKey) || isBookkeepingKey(toKey) || sealedIdentity(fromKey) !== sealedIdentity(toKey)) {
      throw new DriverError('E_COPY_ELSEWHERE', `${this.name}: ${toKey}: an encrypted file opens only under its own path inside a backup, so it cannot be copied from ${fromKey}: send it`, { kind: 'permanent' });
    }
    const expect = options?.expect;
    return super.forwardCopyWithin(fromKey, toKey, expect ? { ...options, expect: { ...expect, size: storedSize(expect.size, this.#chunkBytes) } } : options);
  }

  /** `DriverEncryption.inspect`: one read of the stored bytes, hashed as stored and, opened, as plaintext. */
  async #inspect(key: string, size: number, options: { readonly chunkBytes: number; readonly signal?: AbortSignal }): Promise<{ plain: { hash: string; chunks: string[] }; stored: StoredRecord }> {
    const { signal } = options;
    const hasher = await getHasher();
    const stored = new ChunkedHash(hasher, this.#chunkBytes + OVERHEAD_BYTES);
    const plain = new ChunkedHash(hasher, options.chunkBytes);
    const reader = new ChunkReader(this.#key, key);
    const stream = await this.inner.openRead(key, { signal });
    try {
      for await (const piece of stream) {
        throwIfAborted(signal, `${this.name}: ${key}`);
        stored.update(piece as Buffer);
        for (const bytes of reader.push(piece as Buffer)) plain.update(bytes);
      }
      for (const bytes of reader.end()) plain.update(bytes);
    } finally {
      stream.destroy();
    }
    if (plain.bytes !== size) {
      throw new DriverError('E_SIZE_CHANGED', `${this.name}: ${key}: decrypts to ${plain.bytes} bytes, expected ${size}: it changed while being read`, { kind: 'integrity' });
    }
    // A file an earlier offsite sealed in another format version opens, but a copy recording it
    // under this version's scheme would let reuse copy it to where it does not open (a version 1
    // file is bound to its backup's name): it is not adopted, and is sealed again.
    if (reader.version !== FORMAT_VERSION) {
      throw new DriverError('E_OTHER_FORMAT', `${this.name}: ${key}: sealed in encryption format version ${String(reader.version)}, this offsite writes version ${FORMAT_VERSION}: it is sealed again`, { kind: 'integrity' });
    }
    const storedHashes = stored.digest(true);
    return { plain: plain.digest(false), stored: { size: stored.bytes, hash: storedHashes.hash, chunks: storedHashes.chunks, mac: reader.fileMac() } };
  }
}

/** XXH64 of bytes arriving in pieces: whole, and per chunk of `chunkBytes`. */
class ChunkedHash {
  readonly #whole: StreamingHash;
  #chunk: StreamingHash;
  #filled = 0;
  bytes = 0;
  readonly #chunks: string[] = [];

  constructor(private readonly hasher: Hasher, private readonly chunkBytes: number) {
    this.#whole = hasher.create();
    this.#chunk = hasher.create();
  }

  update(bytes: Buffer): void {
    this.#whole.update(bytes);
    this.bytes += bytes.length;
    for (let at = 0; at < bytes.length;) {
      const take = Math.min(this.chunkBytes - this.#filled, bytes.length - at);
      this.#chunk.update(bytes.subarray(at, at + take));
      at += take;
      this.#filled += take;
      if (this.#filled === this.chunkBytes) this.#closeChunk();
    }
  }

  /** The whole hash and the chunk hashes; `emptyChunk`: nothing read still makes one (empty) chunk. */
  digest(emptyChunk: boolean): { hash: string; chunks: string[] } {
    if (this.#filled > 0 || (emptyChunk && this.#chunks.length === 0)) this.#closeChunk();
    return { hash: this.#whole.digest(), chunks: [...this.#chunks] };
  }

  #closeChunk(): void {
    this.#chunks.push(this.#chunk.digest());
    this.#chunk = this.hasher.create();
    this.#filled = 0;
  }
}

interface SessionShape {
  readonly size: number;
  readonly partBytes: number;
  readonly chunkBytes: number;
  readonly stored: number;
  readonly hasher: Hasher;
  readonly context: { driver: string; action: string; key: string };
  /** Where sealed parts are written (shared memory, reused). */
  readonly buffers: ChunkPool;
  /** The driver below sends parts with their MD5 (`capabilities.partMd5`): take it while sealing. */
  readonly md5: boolean;
  /** The driver below signs parts with their SHA-256 (`capabilities.partSha256`): take it while sealing. */
  readonly sha256: boolean;
}

/** A sealed part: a buffer of `SessionShape.buffers` (one reference, the caller's to release) and its MD5 and SHA-256 when asked for. */
interface Sealed {
  readonly bytes: Buffer;
  readonly md5: PartMd5 | undefined;
  readonly sha256: string | undefined;
}

/**
 * One encrypted file being written: seals each plain part into the stored part of the same
 * index, and keeps what the stored record needs (the chunk hashes and MACs by chunk index; the
 * stored bytes' hash in order, parts sealed ahead of their turn held until it comes).
 */
class EncryptingWriteSession extends ForwardingWriteSession {
  readonly #key: DestinationKey;
  readonly #shape: SessionShape;
  readonly #chunks: number;
  readonly #chunksPerPart: number;
  readonly #chunkHashes: string[] = [];
  readonly #macs: Buffer[] = [];
  /** The XXH64 of the stored bytes in part order, for a file of several parts (made at its first part). */
  #wholeHash: StreamingHash | undefined;
  /** The next stored part whose bytes the whole-file hash takes. */
  #nextHashed = 0;
  /** Parts sealed ahead of their turn for the whole-file hash, each holding a reference to its buffer. */
  readonly #ahead = new Map<number, Buffer>();
  /** The file is one part: the worker that seals it hashes it whole too (no pass on the main thread). */
  readonly #onePart: boolean;
  /** The stored hash of a file of one part, from its worker. */
  #onePartHash: string | undefined;
  /** The plaintext MAC of a file of one part, from its worker (`fileMac`). */
  #onePartMac: string | undefined;

  constructor(inner: WriteSession, key: DestinationKey, shape: SessionShape) {
    super(inner);
    if (!Number.isInteger(shape.chunkBytes) || shape.chunkBytes < 1 || shape.chunkBytes > MAX_CHUNK_BYTES) throw new RangeError(`chunkBytes must be an integer in [1, ${MAX_CHUNK_BYTES}], got ${shape.chunkBytes}`);
    this.#key = key;
    this.#shape = shape;
    this.#chunks = chunkCount(shape.size, shape.chunkBytes);
    this.#chunksPerPart = Math.max(1, Math.ceil(shape.partBytes / shape.chunkBytes));
    this.#onePart = shape.size <= shape.partBytes;
  }

  /** The whole-file hash of a file of several parts (a file of one part gets its hash from its worker). */
  get #whole(): StreamingHash {
    this.#wholeHash ??= this.#shape.hasher.create();
    return this.#wholeHash;
  }

  override get size(): number { return this.#shape.size; }
  override get partBytes(): number { return this.#shape.partBytes; }
  override get resumableParts(): ReadonlySet<number> {
    return this.#shape.size === 0 ? new Set() : this.inner.resumableParts;
  }

  /**
   * The stored bytes of plain part `index`, sealed in the CPU pool into a buffer of the session's
   * pool (the caller releases it); records its chunks' hashes and MACs and feeds the whole-file
   * hash (in part order: a part sealed ahead of its turn keeps its buffer until the parts before it
   * are in). Rejects a part of the wrong index or length before any work.
   */
  async #seal(index: number, bytes: Uint8Array, signal: AbortSignal | undefined): Promise<Sealed> {
    const { chunkBytes, partBytes, size, context, buffers } = this.#shape;
    const parts = Math.max(1, Math.ceil(size / partBytes));
    if (!Number.isInteger(index) || index < 0 || index >= parts || (size === 0 && bytes.length > 0)) {
      throw badArgument(context, `part ${index} is not one of the ${size === 0 ? 0 : parts} parts of this ${size}-byte object`);
    }
    const expected = Math.min(partBytes, size - index * partBytes);
    if (bytes.length !== expected) throw badArgument(context, `part ${index} has ${bytes.length} bytes, expected ${expected}`);
    const pool = cpuPool();
    const firstChunk = index * this.#chunksPerPart;
    const secret = pool.secret(this.#key, () => this.#key.secretBytes());
    const stored = buffers.allocate(storedSize(bytes.length, chunkBytes));
    let sealed: SealResult;
    try {
      sealed = await pool.run('seal', {
        secret, destination: this.#key.destination, fileId: context.key, chunkBytes, firstChunk, chunks: this.#chunks, md5: this.#shape.md5, sha256: this.#shape.sha256, hash: this.#onePart,
      }, bytes, { signal, secret, output: stored, inlineBelowBytes: 0 });
    } catch (err) {
      buffers.release(stored);
      throw err;
    }
    sealed.hashes.forEach((hash, i) => {
      if (this.#chunkHashes[firstChunk + i] === undefined) {
        this.#chunkHashes[firstChunk + i] = hash;
        this.#macs[firstChunk + i] = asBuffer(sealed.macs[i] as Uint8Array);
      }
    });
    if (this.#onePart) {
      this.#onePartHash ??= sealed.hash;
      this.#onePartMac ??= sealed.fileMac;
      this.#nextHashed = 1;
    } else if (index === this.#nextHashed) {
      this.#whole.update(stored);
      this.#nextHashed++;
      for (let next = this.#ahead.get(this.#nextHashed); next !== undefined; next = this.#ahead.get(this.#nextHashed)) {
        this.#ahead.delete(this.#nextHashed);
        this.#whole.update(next);
        buffers.release(next);
        this.#nextHashed++;
      }
    } else if (index > this.#nextHashed && !this.#ahead.has(index)) {
      buffers.retain(stored);
      this.#ahead.set(index, stored);
    }
    return { bytes: stored, md5: sealed.md5, sha256: sealed.sha256 };
  }

  override async matches(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<boolean> {
    const sealed = await this.#seal(index, bytes, options?.signal);
    try {
      return await this.inner.matches(index, sealed.bytes, { signal: options?.signal, md5: sealed.md5 });
    } finally {
      this.#shape.buffers.release(sealed.bytes);
    }
  }

  /** The sealed part is a pooled buffer that nothing changes while referenced: the session below may keep it (`hold`: one more reference). */
  override async write(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<void> {
    const sealed = await this.#seal(index, bytes, options?.signal);
    try {
      await this.inner.write(index, sealed.bytes, { signal: options?.signal, md5: sealed.md5, sha256: sealed.sha256, hold: this.#holdOf(sealed.bytes) });
    } finally {
      this.#shape.buffers.release(sealed.bytes);
    }
  }

  #holdOf(bytes: Buffer): NonNullable<PartWriteOptions['hold']> {
    const { buffers } = this.#shape;
    return () => {
      buffers.retain(bytes);
      let held = true;
      return () => {
        if (held) buffers.release(bytes);
        held = false;
      };
    };
  }

  override async commit(options: CommitOptions): Promise<Committed | void> {
    // An empty file is one sealed empty chunk: the engine writes no part for it.
    if (this.#shape.size === 0 && this.#nextHashed === 0) await this.write(0, new Uint8Array(0), { signal: options.signal });
    const parts = Math.max(1, Math.ceil(this.#shape.size / this.#shape.partBytes));
    if (this.#nextHashed !== parts) {
      const missing: number[] = [];
      for (let i = this.#nextHashed; i < parts; i++) if (!this.#ahead.has(i)) missing.push(i);
      throw missingPartError(this.#shape.context, missing, parts);
    }
    const hash = this.#onePartHash ?? this.#whole.digest();
    const committed = await this.inner.commit({ hash, signal: options.signal });
    const stored = { size: this.#shape.stored, hash, chunks: [...this.#chunkHashes], mac: this.#onePartMac ?? fileMac(this.#key, this.#shape.size, this.#shape.chunkBytes, this.#macs) };
    return { ...(committed ?? {}), stored };
  }

  override suspend(): Promise<void> {
    this.#dropAhead();
    return this.inner.suspend();
  }

  override abort(): Promise<void> {
    this.#dropAhead();
    return this.inner.abort();
  }

  /** Gives back the buffers of parts sealed ahead of their turn: the session writes no more. */
  #dropAhead(): void {
    for (const bytes of this.#ahead.values()) this.#shape.buffers.release(bytes);
    this.#ahead.clear();
  }
}

/** A Buffer over the same bytes (a worker's answer arrives as a plain Uint8Array). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
