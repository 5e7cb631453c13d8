/**
 * The object-store driver shared by `s3` and `minio`: the driver contract (../types.ts) on top
 * of the small `ObjectStore` interface (./store.ts), so that both drivers behave identically and
 * only their configuration and SDK differ.
 *
 * Layout: key `a/b.bin` is the object `<prefix>a/b.bin` in the bucket.
 *
 * Writes:
 * - An object of 0 or 1 part is sent at `commit` as one PutObject with `Content-MD5` and the
 *   hash in its metadata. The part is held in memory until then (the hash is only known at
 *   commit, and the engine reuses its buffer once `write` resolves): a copy in a buffer that the
 *   driver reuses (./resources.ts `ByteStash`), one per open single-part session.
 * - A larger object is a multipart upload of the temp key `<prefix>a/.b.bin.offsite-partial`.
 *   `commit` completes it (under the temp key), checks the size with a HEAD, copies it
 *   server-side onto the final key with the metadata `offsite-hash` (CopyObject, or
 *   UploadPartCopy above `multipartCopyThresholdBytes`) and deletes the temp object.
 * - Uploads (PutObject, UploadPart) wait for one of `maxConcurrency` slots: that many are in
 *   flight at most, whatever the engine's file and part concurrency.
 *
 * Why the extra copy (multipart objects only: a single PutObject carries the hash itself):
 * S3 fixes an object's metadata when the multipart upload is created, and
 * our whole-file hash is only known when the last part has been read. The alternatives are
 * worse: completing straight onto the final key and then copying the object onto itself to add
 * the hash makes the object visible without its hash (and, for a commit that fails the size
 * check, visible with the wrong size) until the copy is done; a sidecar object per file doubles
 * the object count and is not atomic either. With the temp key, the final key appears only
 * whole, size-checked and with its hash, in one step. On Ceph RGW the copy shares the stored
 * data (measured: 1 GiB copied in ~0.17 s, vs ~25 s to upload it); on AWS it is a server-side
 * copy that moves no bytes through this machine but takes time proportional to the size.
 *
 * Resume: `openWrite` lists the open uploads of the temp key (ListMultipartUploads, all pages),
 * keeps the newest whose parts all have the size this layout expects (ListParts, all pages),
 * reports those parts in `resumableParts` and aborts the others (stale uploads of older runs).
 * `matches(i)` compares part i's ETag with the MD5 of the bytes. `commit` only completes parts
 * written or confirmed in this session, with the ETags the server lists for them.
 *
 * What a crash leaves: an open multipart upload (resumed by the next run, removed by `abort` or
 * `delete`), or, between CompleteMultipartUpload and the copy, a completed temp object that is
 * never listed and is overwritten by the next commit or removed by `abort`/`delete`. When the
 * answer to CompleteMultipartUpload is lost, a retried `commit` recognizes the completed temp
 * object by its size and multipart ETag (MD5 of the part MD5s) and goes on with the copy. A bucket
 * lifecycle rule `AbortIncompleteMultipartUpload` cleans up uploads that no run comes back for.
 */
import { createHash } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { AbortedError, DriverError, KeyError, OffsiteError, throwIfAborted } from '../../errors.js';
import { checkKey, checkPrefix, partCount, partRange } from '../keys.js';
import type { Capabilities, CommitOptions, Driver, Entry, ReadOptions, SignalOptions, WriteOptions, WriteSession } from '../types.js';
import { classifyS3Error, type S3Failure } from './errors.js';
import { S3_LIMITS } from './quirks.js';
import { badArgument as toolkitBadArgument, isTempPath, missingPartError, PARTIAL_SUFFIX, partialPathOf, Semaphore } from '../toolkit/index.js';
import { ByteStash } from './resources.js';
import type { ObjectStore, StoredObject, StoredPart } from './store.js';

/** User-metadata name of our whole-file hash (`x-amz-meta-offsite-hash`). */
export const HASH_METADATA = 'offsite-hash';
/** Hashes look like `xxh64:0123456789abcdef`; anything printable and short is stored as is. */
const HASH_SHAPE = /^[\x21-\x7e]{1,200}$/;
/** Entries whose stored hash `list` fetches at once (HEAD per object, `maxConcurrency` in flight). */
const LIST_BATCH = 64;
/** Idle bytes the single-part sessions of one driver keep for reuse (see `ByteStash`). */
const STASH_IDLE_BYTES = 32 * 1024 * 1024;

export interface ObjectDriverSettings {
  /** `''` or `folder/` inside the bucket. */
  readonly prefix: string;
  /** For humans and manifests: `s3://bucket/prefix @ endpoint`. No credentials. */
  readonly description: string;
  /**
   * Most uploads (PutObject, UploadPart) in flight at once through this driver, whatever the
   * engine asks for (more wait here); also the HEADs `list` runs at once, and `capabilities.maxConcurrency`.
   */
  readonly maxConcurrency: number;
  readonly maxParts: number;
  readonly listPageSize: number;
}

/** `a/b.bin` -> `a/.b.bin.offsite-partial` (the one rule of src/drivers/toolkit/temp-names.ts). */
export function tempKeyOf(key: string): string {
  return partialPathOf(key);
}

export function isTempKey(key: string): boolean {
  return isTempPath(key);
}

/** The ETag S3 gives a completed multipart object: MD5 of the parts' binary MD5s, `-`, part count. */
export function multipartEtag(partEtags: readonly string[]): string {
  const digests = Buffer.concat(partEtags.map((etag) => Buffer.from(etag, 'hex')));
  return `${createHash('md5').update(digests).digest('hex')}-${partEtags.length}`;
}

export function md5(bytes: Uint8Array): { hex: string; base64: string } {
  const digest = createHash('md5').update(bytes).digest();
  return { hex: digest.toString('hex'), base64: digest.toString('base64') };
}

function badArgument(driver: string, key: string, message: string): DriverError {
  return toolkitBadArgument({ driver, key, action: 'check arguments' }, message);
}

export class ObjectDriver implements Driver {
  readonly description: string;
  readonly capabilities: Capabilities;
  readonly #store: ObjectStore;
  readonly #settings: ObjectDriverSettings;
  readonly #uploads: Semaphore;
  /** Where single-part sessions keep their bytes until commit. */
  readonly stash = new ByteStash(STASH_IDLE_BYTES);
  #bucketChecked = false;
  #closed = false;

  constructor(readonly name: string, store: ObjectStore, settings: ObjectDriverSettings) {
    this.#store = store;
    this.#settings = settings;
    this.#uploads = new Semaphore(settings.maxConcurrency);
    this.description = settings.description;
    this.capabilities = {
      rangeReads: true,
      resumableWrites: true,
      atomicCommit: true,
      storedHash: true,
      serverSideCopy: true,
      minPartBytes: S3_LIMITS.minPartBytes,
      maxPartBytes: S3_LIMITS.maxPartBytes,
      maxParts: settings.maxParts,
      parallelPartWrites: true,
      maxConcurrency: settings.maxConcurrency,
    };
  }

  /** The bucket's full key for a driver key; refuses unsafe keys and our temp names. */
  fullKey(key: string): string {
    checkKey(key);
    if (isTempKey(key)) throw new KeyError(key, `names like ".x${PARTIAL_SUFFIX}" are reserved for offsite's temp files`);
    return this.#settings.prefix + key;
  }

  /** Runs one upload request (PutObject, UploadPart) within the `maxConcurrency` limit. */
  upload<T>(signal: AbortSignal | undefined, what: string, send: () => Promise<T>): Promise<T> {
    return this.#uploads.run(signal, `${this.name}: ${what}`, send);
  }

  /** Uploads in flight right now (for tests). */
  get uploadsInFlight(): number {
    return this.#uploads.busy;
  }

  /** Classifies an SDK error with this driver's name, bucket and endpoint. */
  fail(err: unknown, action: string, fullKey?: string, failure: S3Failure = this.#store.describeError(err)): OffsiteError {
    return classifyS3Error(err, failure, {
      driver: this.name, action, bucket: this.#store.bucket, endpoint: this.#store.endpoint, ...(fullKey !== undefined ? { key: fullKey } : {}),
    });
  }

  /** An error of the S3 code `code` that no SDK raised (e.g. a HEAD that found nothing). */
  #failWith(code: 'NoSuchKey' | 'NoSuchBucket', action: string, fullKey: string): OffsiteError {
    return this.fail(undefined, action, fullKey, { code, status: 404, message: code });
  }

  #checkOpen(signal: AbortSignal | undefined, what: string): void {
    throwIfAborted(signal, `${this.name}: ${what}`);
    if (this.#closed) throw new DriverError('E_CLOSED', `${this.name}: ${what}: the driver is closed`, { kind: 'fatal' });
  }

  /** A 404 on an object may really be a missing bucket (HEAD has no body to say which): ask once. */
  async #checkBucket(signal: AbortSignal | undefined, fullKey: string): Promise<void> {
    if (this.#bucketChecked) return;
    if (!(await this.#store.bucketExists(signal))) {
      throw this.#failWith('NoSuchBucket', 'check bucket', fullKey);
    }
    this.#bucketChecked = true;
  }

  #entry(key: string, object: StoredObject): Entry {
    const hash = object.metadata?.[HASH_METADATA];
    return { key, size: object.size, mtimeMs: object.mtimeMs, ...(hash !== undefined ? { hash } : {}) };
  }

  /**
   * Lists with ListObjectsV2 (all pages), skipping folder markers (`.../`), our temp objects and
   * keys the contract cannot express (`a//b`). The stored hash needs one HEAD per object: they
   * run `maxConcurrency` at a time, `LIST_BATCH` entries ahead, so memory stays bounded.
   * Failure: classified errors (NoSuchBucket is `permanent`); a missing prefix yields nothing.
   */
  async *list(prefix: string, options: SignalOptions = {}): AsyncIterable<Entry> {
    const full = this.#settings.prefix + prefix;
    try {
      checkPrefix(prefix);
      this.#checkOpen(options.signal, 'list');
      let batch: StoredObject[] = [];
      for await (const object of this.#store.list(full, this.#settings.listPageSize, options.signal)) {
        const key = object.key.slice(this.#settings.prefix.length);
        if (!object.key.startsWith(this.#settings.prefix) || key.endsWith('/') || isTempKey(key) || !isSafeKey(key)) continue;
        batch.push(object);
        if (batch.length >= LIST_BATCH) {
          yield* await this.#withHashes(batch, options.signal);
          batch = [];
        }
      }
      yield* await this.#withHashes(batch, options.signal);
    } catch (err) {
      throw this.fail(err, 'list', full);
    }
  }

  async #withHashes(batch: StoredObject[], signal: AbortSignal | undefined): Promise<Entry[]> {
    const out: Array<Entry | undefined> = new Array(batch.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < batch.length; i = next++) {
        const object = batch[i] as StoredObject;
        const head = await this.#store.head(object.key, signal);
        out[i] = head === undefined ? undefined : this.#entry(object.key.slice(this.#settings.prefix.length), head);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#settings.maxConcurrency, batch.length) }, worker));
    return out.filter((e): e is Entry => e !== undefined);
  }

  /** HEAD. Missing key: `undefined` (after checking once that the bucket exists). */
  async stat(key: string, options: SignalOptions = {}): Promise<Entry | undefined> {
    const full = this.fullKey(key);
    try {
      this.#checkOpen(options.signal, 'stat');
      const head = await this.#store.head(full, options.signal);
      if (head === undefined) {
        await this.#checkBucket(options.signal, full);
        return undefined;
      }
      return this.#entry(key, head);
    } catch (err) {
      throw this.fail(err, 'stat', full);
    }
  }

  /**
   * GetObject with a Range header. Missing key: `not-found`. Reading at or past the end gives an
   * empty stream. Stream errors are classified; the signal destroys the stream with AbortedError.
   */
  async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    const full = this.fullKey(key);
    const offset = options.offset ?? 0;
    const length = options.length;
    if (!Number.isSafeInteger(offset) || offset < 0) throw badArgument(this.name, key, `offset must be a non-negative integer, got ${String(offset)}`);
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) throw badArgument(this.name, key, `length must be a non-negative integer, got ${String(length)}`);
    const signal = options.signal;
    let body: Readable;
    try {
      this.#checkOpen(signal, 'read');
      if (length === 0) {
        if ((await this.#store.head(full, signal)) === undefined) throw this.#notFound(full, 'read');
        return emptyStream();
      }
      try {
        body = await this.#store.get(full, offset, length === undefined ? undefined : offset + length, signal);
      } catch (err) {
        const failure = this.#store.describeError(err);
        if (failure.code !== 'InvalidRange' && failure.status !== 416) throw err;
        // Past the end (or an empty object): empty when the object exists.
        const head = await this.#store.head(full, signal);
        if (head === undefined) throw this.#notFound(full, 'read');
        if (offset >= head.size) return emptyStream();
        throw err;
      }
    } catch (err) {
      throw this.fail(err, 'read', full);
    }
    return this.#guard(body, full, signal);
  }

  #notFound(full: string, action: string): OffsiteError {
    return this.#failWith('NoSuchKey', action, full);
  }

  #guard(body: Readable, full: string, signal: AbortSignal | undefined): Readable {
    const out = new PassThrough();
    const onAbort = (): void => {
      out.destroy(new AbortedError(`${this.name}: read`));
      body.destroy();
    };
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    body.on('error', (err) => out.destroy(signal?.aborted ? new AbortedError(`${this.name}: read`) : this.fail(err, 'read', full)));
    out.on('close', () => {
      signal?.removeEventListener('abort', onAbort);
      body.destroy();
    });
    body.pipe(out);
    return out;
  }

  /**
   * Starts or resumes a write (see the file comment). Refuses bad sizes and layouts S3 cannot
   * hold (parts below 5 MiB when there are several, above 5 GiB, more than `maxParts`). IO only
   * for multi-part objects: listing open uploads of the temp key and aborting stale ones.
   */
  async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    const full = this.fullKey(key);
    const { size, partBytes, signal } = options;
    if (!Number.isSafeInteger(size) || size < 0) throw badArgument(this.name, key, `size must be a non-negative integer, got ${String(size)}`);
    if (!Number.isSafeInteger(partBytes) || partBytes < 1) throw badArgument(this.name, key, `partBytes must be a positive integer, got ${String(partBytes)}`);
    this.#checkOpen(signal, 'open write');
    const parts = partCount(size, partBytes);
    if (parts <= 1) return new SinglePartSession(this, this.#store, key, full, size, partBytes);
    if (partBytes < S3_LIMITS.minPartBytes || partBytes > S3_LIMITS.maxPartBytes) {
      throw badArgument(this.name, key, `partBytes ${partBytes} is outside S3's ${S3_LIMITS.minPartBytes}..${S3_LIMITS.maxPartBytes} bytes per part`);
    }
    if (parts > this.capabilities.maxParts) throw badArgument(this.name, key, `${parts} parts of ${partBytes} bytes exceed the ${this.capabilities.maxParts} parts S3 allows`);
    const temp = tempKeyOf(full);
    try {
      const found = await this.#findUpload(temp, size, partBytes, signal);
      return new MultipartSession(this, this.#store, key, full, temp, size, partBytes, found?.uploadId, found?.parts ?? new Map(), this.#settings.listPageSize);
    } catch (err) {
      throw this.fail(err, 'open write', full);
    }
  }

  /** The newest open upload of `temp` whose parts fit this layout; aborts every other one. */
  async #findUpload(temp: string, size: number, partBytes: number, signal: AbortSignal | undefined): Promise<{ uploadId: string; parts: Map<number, StoredPart> } | undefined> {
    const uploads = [];
    for await (const upload of this.#store.listUploads(temp, this.#settings.listPageSize, signal)) {
      if (upload.key === temp) uploads.push(upload);
    }
    uploads.sort((a, b) => b.initiatedMs - a.initiatedMs);
    let chosen: { uploadId: string; parts: Map<number, StoredPart> } | undefined;
    for (const upload of uploads) {
      if (chosen === undefined) {
        const parts = await this.#partsIfFitting(temp, upload.uploadId, size, partBytes, signal);
        if (parts !== undefined) {
          chosen = { uploadId: upload.uploadId, parts };
          continue;
        }
      }
      await this.#store.abortUpload(temp, upload.uploadId, signal);
    }
    return chosen;
  }

  async #partsIfFitting(temp: string, uploadId: string, size: number, partBytes: number, signal: AbortSignal | undefined): Promise<Map<number, StoredPart> | undefined> {
    const count = partCount(size, partBytes);
    const parts = new Map<number, StoredPart>();
    for await (const part of this.#store.listParts(temp, uploadId, this.#settings.listPageSize, signal)) {
      const index = part.partNumber - 1;
      if (index >= count) return undefined;
      const { start, end } = partRange(index, size, partBytes);
      if (part.size !== end - start) return undefined;
      parts.set(index, part);
    }
    return parts;
  }

  /** DeleteObject, plus the resumable state of the key (open uploads, a completed temp object). */
  async delete(key: string, options: SignalOptions = {}): Promise<void> {
    const full = this.fullKey(key);
    try {
      this.#checkOpen(options.signal, 'delete');
      await Promise.all([this.#store.delete(full, options.signal), this.removeTemp(tempKeyOf(full), options.signal)]);
    } catch (err) {
      throw this.fail(err, 'delete', full);
    }
  }

  /** Aborts every open upload of `temp` and deletes a completed temp object. */
  async removeTemp(temp: string, signal: AbortSignal | undefined, uploadId?: string): Promise<void> {
    const ids = new Set<string>(uploadId !== undefined ? [uploadId] : []);
    for await (const upload of this.#store.listUploads(temp, this.#settings.listPageSize, signal)) {
      if (upload.key === temp) ids.add(upload.uploadId);
    }
    await Promise.all([...ids].map((id) => this.#store.abortUpload(temp, id, signal)));
    await this.#store.delete(temp, signal);
  }

  /** Server-side copy with the source's metadata (so its stored hash); `not-found` when the source is missing. */
  async copyWithin(fromKey: string, toKey: string, options: SignalOptions = {}): Promise<void> {
    const from = this.fullKey(fromKey);
    const to = this.fullKey(toKey);
    try {
      this.#checkOpen(options.signal, 'copy');
      const head = await this.#store.head(from, options.signal);
      if (head === undefined) throw this.#notFound(from, 'copy');
      await this.#store.copy(from, to, head.size, { ...head.metadata }, options.signal);
    } catch (err) {
      throw this.fail(err, `copy to ${to}`, from);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#store.close();
  }
}

function isSafeKey(key: string): boolean {
  try {
    checkKey(key);
    return true;
  } catch {
    return false;
  }
}

function emptyStream(): Readable {
  const stream = new PassThrough();
  stream.end();
  return stream;
}

/** Shared checks of both session kinds. */
abstract class Session implements WriteSession {
  readonly resumableParts: ReadonlySet<number>;
  protected done = false;

  constructor(
    protected readonly driver: ObjectDriver,
    protected readonly store: ObjectStore,
    readonly key: string,
    protected readonly full: string,
    readonly size: number,
    readonly partBytes: number,
    resumable: Iterable<number>,
  ) {
    this.resumableParts = new Set(resumable);
  }

  protected get count(): number {
    return partCount(this.size, this.partBytes);
  }

  /** Checks the state, the signal, the index and the part's length; returns the expected length. */
  protected checkPart(index: number, bytes: Uint8Array | undefined, signal: AbortSignal | undefined, what: string): number {
    throwIfAborted(signal, `${this.driver.name}: ${this.key}: ${what}`);
    if (this.done) throw new DriverError('E_SESSION_CLOSED', `${this.driver.name}: ${this.key}: ${what}: the write session is already committed, suspended or aborted`, { kind: 'fatal' });
    if (!Number.isInteger(index) || index < 0 || index >= this.count) {
      throw badArgument(this.driver.name, this.key, `${what}: part ${index} is outside 0..${this.count - 1}`);
    }
    const { start, end } = partRange(index, this.size, this.partBytes);
    if (bytes !== undefined && what === 'write' && bytes.length !== end - start) {
      throw badArgument(this.driver.name, this.key, `write: part ${index} must have ${end - start} bytes, got ${bytes.length}`);
    }
    return end - start;
  }

  protected checkCommit(options: CommitOptions): void {
    throwIfAborted(options.signal, `${this.driver.name}: ${this.key}: commit`);
    if (this.done) throw new DriverError('E_SESSION_CLOSED', `${this.driver.name}: ${this.key}: commit: the write session is already committed, suspended or aborted`, { kind: 'fatal' });
    if (typeof options.hash !== 'string' || !HASH_SHAPE.test(options.hash)) throw badArgument(this.driver.name, this.key, `commit: bad hash ${JSON.stringify(options.hash)}`);
  }

  abstract matches(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<boolean>;
  abstract write(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<void>;
  abstract commit(options: CommitOptions): Promise<void>;
  abstract abort(): Promise<void>;

  async suspend(): Promise<void> {
    this.done = true;
  }
}

/**
 * 0 or 1 part: sent with its hash in one PutObject at commit. Nothing to resume. The part is
 * copied at `write` into a buffer of the driver's stash (the engine reuses its buffer once `write`
 * resolves, and the hash is only known at `commit`); the buffer goes back once the object is
 * stored, or at `abort`/`suspend`, and is kept across a failed commit so that a retry can resend it.
 */
class SinglePartSession extends Session {
  #bytes: Buffer | undefined;

  constructor(driver: ObjectDriver, store: ObjectStore, key: string, full: string, size: number, partBytes: number) {
    super(driver, store, key, full, size, partBytes, []);
  }

  async matches(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<boolean> {
    this.checkPart(index, bytes, options.signal, 'matches');
    return this.#bytes !== undefined && this.#bytes.equals(bytes);
  }

  /** Copies the bytes (the caller may reuse its buffer); sent by `commit`. */
  async write(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<void> {
    this.checkPart(index, bytes, options.signal, 'write');
    this.#release();
    this.#bytes = this.driver.stash.copy(bytes);
  }

  /** PutObject with Content-MD5 and the hash as metadata. Rejects when the part is missing. */
  async commit(options: CommitOptions): Promise<void> {
    this.checkCommit(options);
    const body = this.size === 0 ? Buffer.alloc(0) : this.#bytes;
    if (body === undefined) {
      throw missingPartError({ driver: this.driver.name, key: this.key, action: 'commit' }, [0], 1, 'was never written');
    }
    try {
      const digest = md5(body).base64;
      await this.driver.upload(options.signal, `${this.key}: commit`, () => this.store.put(this.full, body, digest, { [HASH_METADATA]: options.hash }, options.signal));
    } catch (err) {
      throw this.driver.fail(err, 'commit', this.full);
    }
    this.done = true;
    this.#release();
  }

  #release(): void {
    if (this.#bytes !== undefined) this.driver.stash.release(this.#bytes);
    this.#bytes = undefined;
  }

  async abort(): Promise<void> {
    this.done = true;
    this.#release();
  }

  override async suspend(): Promise<void> {
    this.done = true;
    this.#release();
  }
}

/** Several parts: a multipart upload of the temp key, completed and copied at commit. */
class MultipartSession extends Session {
  #uploadId: string | undefined;
  #creating: Promise<string> | undefined;
  /** Set once CompleteMultipartUpload succeeded: a retried commit only redoes the copy. */
  #completed = false;
  /** The parts of the last CompleteMultipartUpload sent (it may have succeeded even if its answer was lost). */
  #sentParts: ReadonlyArray<{ partNumber: number; etag: string }> | undefined;
  /** Parts found at open time (candidates). */
  readonly #found: Map<number, StoredPart>;
  /** ETag of every part written or confirmed in this session: the only parts `commit` uses. */
  readonly #confirmed = new Map<number, string>();

  constructor(driver: ObjectDriver, store: ObjectStore, key: string, full: string, private readonly temp: string, size: number, partBytes: number,
    uploadId: string | undefined, found: Map<number, StoredPart>, private readonly pageSize: number) {
    super(driver, store, key, full, size, partBytes, found.keys());
    this.#uploadId = uploadId;
    this.#found = found;
  }

  /** Compares the stored part's ETag (its MD5) with the bytes; no IO. */
  async matches(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<boolean> {
    const expected = this.checkPart(index, bytes, options.signal, 'matches');
    const stored = this.#found.get(index);
    if (stored === undefined || bytes.length !== expected || stored.etag !== md5(bytes).hex) {
      this.#found.delete(index);
      return false;
    }
    this.#confirmed.set(index, stored.etag);
    return true;
  }

  async #upload(signal: AbortSignal | undefined): Promise<string> {
    if (this.#uploadId !== undefined) return this.#uploadId;
    this.#creating ??= this.store.createUpload(this.temp, signal).then((id) => (this.#uploadId = id));
    try {
      return await this.#creating;
    } catch (err) {
      this.#creating = undefined;
      throw err;
    }
  }

  /** UploadPart with Content-MD5: the server refuses bytes damaged on the way (kind `integrity`). */
  async write(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<void> {
    this.checkPart(index, bytes, options.signal, 'write');
    try {
      const uploadId = await this.#upload(options.signal);
      const digest = md5(bytes);
      this.#confirmed.delete(index);
      const etag = await this.driver.upload(options.signal, `${this.key}: write part ${index}`,
        () => this.store.uploadPart(this.temp, uploadId, index + 1, bytes, digest.base64, options.signal));
      this.#confirmed.set(index, etag === '' ? digest.hex : etag);
    } catch (err) {
      throw this.driver.fail(err, `write part ${index}`, this.full);
    }
  }

  /**
   * Checks that every part is stored with its size and the ETag this session wrote or confirmed
   * (ListParts), completes the upload under the temp key, checks the size (HEAD: RGW returns an
   * empty ETag from Complete), copies it onto the final key with the hash and deletes the temp.
   * A missing or unconfirmed part rejects with E_MISSING_PART and keeps the upload for a resume;
   * a wrong final size removes the temp object and rejects with kind `integrity`.
   */
  async commit(options: CommitOptions): Promise<void> {
    this.checkCommit(options);
    const signal = options.signal;
    try {
      if (!this.#completed) {
        try {
          await this.#complete(signal);
        } catch (err) {
          // A retry after a CompleteMultipartUpload whose answer was lost: the upload is gone
          // because it was completed. A temp object of exactly `size` bytes whose ETag is the
          // multipart ETag of the parts we sent proves it (a stale temp object of an earlier
          // run has other parts, so another ETag).
          if (this.#sentParts === undefined) throw err;
          const head = await this.store.head(this.temp, signal);
          if (head?.size !== this.size || head.etag !== multipartEtag(this.#sentParts.map((p) => p.etag))) throw err;
          this.#completed = true;
        }
      }
      await this.store.copy(this.temp, this.full, this.size, { [HASH_METADATA]: options.hash }, signal);
      await this.store.delete(this.temp);
      this.done = true;
    } catch (err) {
      throw this.driver.fail(err, 'commit', this.full);
    }
  }

  async #complete(signal: AbortSignal | undefined): Promise<void> {
    const uploadId = this.#uploadId;
    if (uploadId === undefined) throw this.#missing(0, 'was never written');
    const stored = new Map<number, StoredPart>();
    for await (const part of this.store.listParts(this.temp, uploadId, this.pageSize, signal)) stored.set(part.partNumber - 1, part);
    const parts: Array<{ partNumber: number; etag: string }> = [];
    for (let index = 0; index < this.count; index++) {
      const part = stored.get(index);
      const confirmed = this.#confirmed.get(index);
      const { start, end } = partRange(index, this.size, this.partBytes);
      if (part === undefined) throw this.#missing(index, 'is not stored');
      if (confirmed === undefined) throw this.#missing(index, 'was neither written nor confirmed by matches() in this session');
      if (part.size !== end - start) throw this.#missing(index, `has ${part.size} bytes instead of ${end - start}`);
      if (part.etag !== confirmed) {
        throw new DriverError('E_INTEGRITY', `${this.driver.name}: ${this.key}: commit: part ${index} changed on the server (another writer?)`, { kind: 'integrity' });
      }
      parts.push({ partNumber: index + 1, etag: part.etag });
    }
    throwIfAborted(signal, `${this.driver.name}: ${this.key}: commit`);
    this.#sentParts = parts;
    await this.store.completeUpload(this.temp, uploadId, parts, signal);
    this.#uploadId = undefined;
    const head = await this.store.head(this.temp);
    if (head?.size !== this.size) {
      await this.store.delete(this.temp).catch(() => undefined);
      this.done = true;
      throw new DriverError('E_INTEGRITY', `${this.driver.name}: ${this.key}: commit: the completed object has ${head?.size ?? 'no'} bytes instead of ${this.size}`, { kind: 'integrity' });
    }
    this.#completed = true;
  }

  #missing(index: number, why: string): DriverError {
    return missingPartError({ driver: this.driver.name, key: this.key, action: 'commit' }, [index], this.count, why);
  }

  /** Aborts this and every other open upload of the key and removes a completed temp object. */
  async abort(): Promise<void> {
    this.done = true;
    const uploadId = this.#uploadId ?? (await this.#creating?.catch(() => undefined));
    this.#uploadId = undefined;
    try {
      await this.driver.removeTemp(this.temp, undefined, uploadId);
    } catch (err) {
      throw this.driver.fail(err, 'abort', this.full);
    }
  }
}
