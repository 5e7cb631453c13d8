/**
 * Write sessions of the object-store driver (see ./driver.ts for the layout and what a crash
 * leaves behind):
 *
 * - `SinglePartSession`, 0 or 1 part: the bytes are held until `commit`, then sent with the hash
 *   in one PutObject with its digest (`payloadDigest`) (and, with `objectLock`, the retention: ./object-lock.ts).
 * - `MultipartSession`, several parts: a multipart upload of the temp key, completed, size-checked
 *   and copied onto the final key with the hash at `commit`.
 *
 * `openObjectWrite` picks one, and for a multipart object finds the open upload to resume.
 * Part bookkeeping (indexes, lengths) is the toolkit's `PartLedger`; refusals have the toolkit's
 * codes and kinds (src/drivers/toolkit/errors.ts). Every upload carries a digest the server checks
 * (`payloadDigest`): the caller's MD5 when it gives one (`PartWriteOptions.md5`: the encryption
 * wrapper takes it while sealing the part), else the SHA-256 where the store signs payloads (the
 * caller's, `PartWriteOptions.sha256`, taken the same way, or taken inline: ~0.7 ms per MiB),
 * else an MD5 computed in the CPU pool's worker threads
 * (`partMd5`, off the event loop). Only a resumed upload's `matches()` needs MD5s (part ETags).
 */
import { DriverError, throwIfAborted } from '../../errors.js';
import {
  badArgument, etagFingerprint, missingPartError, partialPathOf, PartLedger, sessionClosedError, sizeMismatchError, type ErrorContext,
} from '../toolkit/index.js';
import type { CommitOptions, Committed, PartMatchOptions, PartMd5, PartWriteOptions, WriteSession } from '../types.js';
import { HASH_METADATA, type Bucket } from './bucket.js';
import { ensureRetention, retentionFor } from './object-lock.js';
import { S3_LIMITS } from './quirks.js';
import { md5, multipartEtag, partMd5, sha256Hex, type ObjectStore, type PayloadDigest, type StoredPart } from './store.js';

/** Hashes look like `xxh64:0123456789abcdef`; anything printable and short is stored as is. */
const HASH_SHAPE = /^[\x21-\x7e]{1,200}$/;

/**
 * Starts or resumes a write of `key` (full key `full`) of `size` bytes in parts of `partBytes`
 * (both checked by the caller). Refuses layouts S3 cannot hold (parts below 5 MiB when there
 * are several, above 5 GiB, more than `maxParts`). IO only for multi-part objects: listing the
 * open uploads of the temp key and aborting stale ones.
 */
export async function openObjectWrite(bucket: Bucket, key: string, full: string, size: number, partBytes: number, maxParts: number, signal: AbortSignal | undefined): Promise<WriteSession> {
  const ledger = new PartLedger(size, partBytes);
  const context = { driver: bucket.driver, key, action: 'open write' };
  if (ledger.count <= 1) return new SinglePartSession(bucket, key, full, ledger);
  if (partBytes < S3_LIMITS.minPartBytes || partBytes > S3_LIMITS.maxPartBytes) {
    throw badArgument(context, `partBytes ${partBytes} is outside S3's ${S3_LIMITS.minPartBytes}..${S3_LIMITS.maxPartBytes} bytes per part`);
  }
  if (ledger.count > maxParts) throw badArgument(context, `${ledger.count} parts of ${partBytes} bytes exceed the ${maxParts} parts S3 allows`);
  const temp = partialPathOf(full);
  try {
    const found = await findUpload(bucket, temp, ledger, signal);
    return new MultipartSession(bucket, key, full, temp, ledger, found?.uploadId, found?.parts ?? new Map());
  } catch (err) {
    throw bucket.fail(err, 'open write', full);
  }
}

/** The newest open upload of `temp` whose parts fit this layout; aborts every other one. */
async function findUpload(bucket: Bucket, temp: string, ledger: PartLedger, signal: AbortSignal | undefined): Promise<{ uploadId: string; parts: Map<number, StoredPart> } | undefined> {
  const uploads = [];
  for await (const upload of bucket.store.listUploads(temp, bucket.listPageSize, signal)) {
    if (upload.key === temp) uploads.push(upload);
  }
  uploads.sort((a, b) => b.initiatedMs - a.initiatedMs);
  let chosen: { uploadId: string; parts: Map<number, StoredPart> } | undefined;
  for (const upload of uploads) {
    if (chosen === undefined) {
      const parts = await partsIfFitting(bucket, temp, upload.uploadId, ledger, signal);
      if (parts !== undefined) {
        chosen = { uploadId: upload.uploadId, parts };
        continue;
      }
    }
    await bucket.store.abortUpload(temp, upload.uploadId, signal);
  }
  return chosen;
}

/** The parts of an open upload when every one has the index and length this layout expects. */
async function partsIfFitting(bucket: Bucket, temp: string, uploadId: string, ledger: PartLedger, signal: AbortSignal | undefined): Promise<Map<number, StoredPart> | undefined> {
  const parts = new Map<number, StoredPart>();
  for await (const part of bucket.store.listParts(temp, uploadId, bucket.listPageSize, signal)) {
    const index = part.partNumber - 1;
    if (index >= ledger.count) return undefined;
    const { start, end } = ledger.range(index);
    if (part.size !== end - start) return undefined;
    parts.set(index, part);
  }
  return parts;
}

/** The digests of a part its caller took already (`PartWriteOptions.md5`, `PartWriteOptions.sha256`). */
interface GivenDigests {
  readonly md5?: PartMd5 | undefined;
  readonly sha256?: string | undefined;
}

/**
 * The digest an upload of `bytes` carries (see the file comment); `needsMd5` for a PutObject
 * with Object Lock (S3 wants Content-MD5 there).
 */
async function payloadDigest(store: ObjectStore, bytes: Uint8Array, given: GivenDigests, needsMd5: boolean, signal: AbortSignal | undefined): Promise<PayloadDigest> {
  if (given.md5 !== undefined) return { md5Base64: given.md5.base64 };
  if (store.payloadCheck === 'sha256' && !needsMd5) return { sha256Hex: given.sha256 ?? sha256Hex(bytes) };
  return { md5Base64: (await partMd5(bytes, signal)).base64 };
}

/** Shared checks of both session kinds. */
abstract class Session implements WriteSession {
  readonly resumableParts: ReadonlySet<number>;
  protected state: 'open' | 'committed' | 'suspended' | 'aborted' = 'open';

  constructor(
    protected readonly bucket: Bucket,
    readonly key: string,
    protected readonly full: string,
    protected readonly ledger: PartLedger,
    resumable: Iterable<number>,
  ) {
    this.resumableParts = new Set(resumable);
  }

  get size(): number {
    return this.ledger.size;
  }

  get partBytes(): number {
    return this.ledger.partBytes;
  }

  protected context(action: string): ErrorContext {
    return { driver: this.bucket.driver, key: this.key, action };
  }

  /** Checks the state and the signal. */
  protected checkOpen(signal: AbortSignal | undefined, action: string): void {
    throwIfAborted(signal, `${this.bucket.driver}: ${this.key}: ${action}`);
    if (this.state !== 'open') throw sessionClosedError(this.context(action), this.state);
  }

  /** Checks the state, the signal, the index and (for `write`) the part's length; returns the part's expected length. */
  protected checkPart(index: number, bytes: Uint8Array, signal: AbortSignal | undefined, action: 'write' | 'matches'): number {
    this.checkOpen(signal, action);
    const { start, end } = action === 'write' ? this.ledger.checkPart(index, bytes, this.context(action)) : this.ledger.checkIndex(index, this.context(action));
    return end - start;
  }

  protected checkCommit(options: CommitOptions): void {
    this.checkOpen(options.signal, 'commit');
    if (typeof options.hash !== 'string' || !HASH_SHAPE.test(options.hash)) throw badArgument(this.context('commit'), `bad hash ${JSON.stringify(options.hash)}`);
  }

  abstract matches(index: number, bytes: Uint8Array, options?: PartMatchOptions): Promise<boolean>;
  abstract write(index: number, bytes: Uint8Array, options?: PartWriteOptions): Promise<void>;
  abstract commit(options: CommitOptions): Promise<Committed | void>;
  abstract abort(): Promise<void>;

  async suspend(): Promise<void> {
    if (this.state === 'open') this.state = 'suspended';
  }
}

/**
 * 0 or 1 part: sent with its hash in one PutObject at commit. Nothing to resume. The part must
 * outlive `write` (the hash is only known at `commit`): the session keeps the caller's bytes when
 * the caller lets it (`hold`: the engine's pooled chunk stays unchanged meanwhile, no copy), else it
 * copies them into a buffer of the driver's stash. Either goes back once the object is stored, or
 * at `abort`/`suspend`, and is kept across a failed commit so that a retry can resend it.
 */
class SinglePartSession extends Session {
  #bytes: Buffer | undefined;
  /** The caller's MD5 and SHA-256 of `#bytes` (`PartWriteOptions.md5`, `.sha256`), those it gave. */
  #given: GivenDigests = {};
  /** Gives the caller's held bytes back; undefined when `#bytes` is a stash copy (or nothing). */
  #giveBack: (() => void) | undefined;

  constructor(bucket: Bucket, key: string, full: string, ledger: PartLedger) {
    super(bucket, key, full, ledger, []);
  }

  async matches(index: number, bytes: Uint8Array, options: PartMatchOptions = {}): Promise<boolean> {
    this.checkPart(index, bytes, options.signal, 'matches');
    return this.#bytes !== undefined && this.#bytes.equals(bytes);
  }

  /** Holds or copies the bytes (see the class comment); sent by `commit`. */
  async write(index: number, bytes: Uint8Array, options: PartWriteOptions = {}): Promise<void> {
    this.checkPart(index, bytes, options.signal, 'write');
    this.#release();
    this.#given = { md5: options.md5, sha256: options.sha256 };
    if (options.hold === undefined) {
      this.#bytes = this.bucket.stash.copy(bytes);
      return;
    }
    this.#giveBack = options.hold();
    this.#bytes = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /**
   * PutObject with its digest and the hash as metadata. Rejects (E_MISSING_PART) when the part
   * is missing. Tells the fingerprint from the ETag the server answered (what a HEAD shows).
   */
  async commit(options: CommitOptions): Promise<Committed | void> {
    this.checkCommit(options);
    const body = this.size === 0 ? Buffer.alloc(0) : this.#bytes;
    if (body === undefined) throw missingPartError(this.context('commit'), [0], 1, 'was never written');
    let etag: string | undefined;
    try {
      const retention = retentionFor(this.bucket, this.full);
      const digest = await payloadDigest(this.bucket.store, body, this.#given, retention !== undefined, options.signal);
      etag = await this.bucket.upload(options.signal, `${this.key}: commit`, () => this.bucket.store.put(this.full, body, digest, { [HASH_METADATA]: options.hash }, options.signal, retention));
    } catch (err) {
      throw this.bucket.fail(err, 'commit', this.full);
    }
    this.state = 'committed';
    this.#release();
    const fingerprint = etagFingerprint(etag, this.size);
    return fingerprint === undefined ? undefined : { fingerprint };
  }

  #release(): void {
    const giveBack = this.#giveBack;
    if (giveBack !== undefined) giveBack();
    else if (this.#bytes !== undefined) this.bucket.stash.release(this.#bytes);
    this.#bytes = undefined;
    this.#given = {};
    this.#giveBack = undefined;
  }

  async abort(): Promise<void> {
    this.state = 'aborted';
    this.#release();
  }

  override async suspend(): Promise<void> {
    await super.suspend();
    this.#release();
  }
}

/** Several parts: a multipart upload of the temp key, completed and copied at commit. */
class MultipartSession extends Session {
  #uploadId: string | undefined;
  #creating: Promise<string> | undefined;
  /** Set once CompleteMultipartUpload succeeded: a retried commit only redoes the copy. */
  #completed = false;
  /** Set once the copy onto the final key succeeded: a retried commit only removes the temp object. */
  #copied = false;
  /** The final object's ETag as the copy onto it reported it (what a HEAD shows), when it reported one. */
  #copiedEtag: string | undefined;
  /** The parts of the last CompleteMultipartUpload sent (it may have succeeded even if its answer was lost). */
  #sentParts: ReadonlyArray<{ partNumber: number; etag: string }> | undefined;
  /** Parts found at open time (candidates). */
  readonly #found: Map<number, StoredPart>;
  /** ETag of every part written or confirmed in this session: the only parts `commit` uses. */
  readonly #confirmed = new Map<number, string>();

  constructor(bucket: Bucket, key: string, full: string, private readonly temp: string, ledger: PartLedger,
    uploadId: string | undefined, found: Map<number, StoredPart>) {
    super(bucket, key, full, ledger, found.keys());
    this.#uploadId = uploadId;
    this.#found = found;
  }

  /** Compares the stored part's ETag (its MD5) with the bytes; no IO (the MD5 runs in the CPU pool). */
  async matches(index: number, bytes: Uint8Array, options: PartMatchOptions = {}): Promise<boolean> {
    const expected = this.checkPart(index, bytes, options.signal, 'matches');
    const stored = this.#found.get(index);
    if (stored === undefined || bytes.length !== expected || stored.etag !== (options.md5 ?? await partMd5(bytes, options.signal)).hex) {
      this.#found.delete(index);
      return false;
    }
    this.#confirmed.set(index, stored.etag);
    return true;
  }

  async #upload(signal: AbortSignal | undefined): Promise<string> {
    if (this.#uploadId !== undefined) return this.#uploadId;
    this.#creating ??= this.bucket.store.createUpload(this.temp, signal).then((id) => (this.#uploadId = id));
    try {
      return await this.#creating;
    } catch (err) {
      this.#creating = undefined;
      throw err;
    }
  }

  /**
   * UploadPart with a digest: the server refuses bytes damaged on the way (kind `integrity`).
   * Done with `bytes` when it settles. A server that answers without an ETag gets the part's MD5
   * as its expected ETag (what ListParts will show).
   */
  async write(index: number, bytes: Uint8Array, options: PartWriteOptions = {}): Promise<void> {
    this.checkPart(index, bytes, options.signal, 'write');
    try {
      const uploadId = await this.#upload(options.signal);
      const digest = await payloadDigest(this.bucket.store, bytes, options, false, options.signal);
      this.#confirmed.delete(index);
      const etag = await this.bucket.upload(options.signal, `${this.key}: write part ${index}`,
        () => this.bucket.store.uploadPart(this.temp, uploadId, index + 1, bytes, digest, options.signal));
      this.#confirmed.set(index, etag !== '' ? etag : (options.md5 ?? md5(bytes)).hex);
    } catch (err) {
      throw this.bucket.fail(err, `write part ${index}`, this.full);
    }
  }

  /**
   * Checks that every part is stored with its size and the ETag this session wrote or confirmed
   * (ListParts), completes the upload under the temp key, checks the size (HEAD: RGW returns an
   * empty ETag from Complete), copies it onto the final key with the hash and deletes the temp.
   * A missing or unconfirmed part rejects with E_MISSING_PART (kind `fatal`) and keeps the upload
   * for a resume; a wrong final size removes the temp object and rejects with kind `integrity`.
   * Tells the fingerprint from the ETag the copy answered (what a HEAD of the final key shows:
   * ./copy.ts checks the same equality), saving the engine a HEAD per file.
   */
  async commit(options: CommitOptions): Promise<Committed | void> {
    this.checkCommit(options);
    const signal = options.signal;
    const { store } = this.bucket;
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
          const head = await store.head(this.temp, signal);
          if (head?.size !== this.size || head.etag !== multipartEtag(this.#sentParts.map((p) => p.etag))) throw err;
          this.#completed = true;
        }
      }
      if (!this.#copied) {
        const retention = retentionFor(this.bucket, this.full);
        this.#copiedEtag = await store.copy(this.temp, this.full, this.size, { [HASH_METADATA]: options.hash }, signal, retention);
        await ensureRetention(this.bucket, this.full, retention, signal);
      }
      this.#copied = true;
    } catch (err) {
      throw this.bucket.fail(err, 'commit', this.full);
    }
    try {
      // The final object is written: a refused removal of the temp object only warns (bucket.ts).
      await this.bucket.dropTemp(this.temp, this.size, undefined);
    } catch (err) {
      throw this.bucket.failNeeding('s3:DeleteObject', err, 'commit: delete temp object', this.temp);
    }
    this.state = 'committed';
    const fingerprint = etagFingerprint(this.#copiedEtag, this.size);
    return fingerprint === undefined ? undefined : { fingerprint };
  }

  async #complete(signal: AbortSignal | undefined): Promise<void> {
    const { store } = this.bucket;
    const uploadId = this.#uploadId;
    if (uploadId === undefined) throw this.#missing(0, 'was never written');
    const stored = new Map<number, StoredPart>();
    for await (const part of store.listParts(this.temp, uploadId, this.bucket.listPageSize, signal)) stored.set(part.partNumber - 1, part);
    const parts: Array<{ partNumber: number; etag: string }> = [];
    for (let index = 0; index < this.ledger.count; index++) {
      const part = stored.get(index);
      const confirmed = this.#confirmed.get(index);
      const { start, end } = this.ledger.range(index);
      if (part === undefined) throw this.#missing(index, 'is not stored');
      if (confirmed === undefined) throw this.#missing(index, 'was neither written nor confirmed by matches() in this session');
      if (part.size !== end - start) throw this.#missing(index, `has ${part.size} bytes instead of ${end - start}`);
      if (part.etag !== confirmed) {
        throw new DriverError('E_INTEGRITY', `${this.bucket.driver}: ${this.key}: commit: part ${index} changed on the server (another writer?)`, { kind: 'integrity' });
      }
      parts.push({ partNumber: index + 1, etag: part.etag });
    }
    throwIfAborted(signal, `${this.bucket.driver}: ${this.key}: commit`);
    this.#sentParts = parts;
    await store.completeUpload(this.temp, uploadId, parts, signal);
    this.#uploadId = undefined;
    const head = await store.head(this.temp);
    if (head?.size !== this.size) {
      await this.bucket.removeKey(this.temp, undefined).catch(() => undefined);
      this.state = 'aborted';
      throw sizeMismatchError(this.context('commit'), 'the completed object', head?.size ?? 'no', this.size);
    }
    this.#completed = true;
  }

  #missing(index: number, why: string): DriverError {
    return missingPartError(this.context('commit'), [index], this.ledger.count, why);
  }

  /** Aborts this and every other open upload of the key and removes a completed temp object. */
  async abort(): Promise<void> {
    this.state = 'aborted';
    const uploadId = this.#uploadId ?? (await this.#creating?.catch(() => undefined));
    this.#uploadId = undefined;
    try {
      await this.bucket.removeTemp(this.temp, undefined, uploadId);
    } catch (err) {
      throw this.bucket.fail(err, 'abort', this.full);
    }
  }
}
