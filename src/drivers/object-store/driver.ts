/**
 * The object-store driver shared by `s3` and `minio`: the driver contract (../types.ts) on top
 * of the small `ObjectStore` interface (./store.ts), so that both flavours behave identically and
 * only their client adapter and options differ (../s3/, ../minio/: client.ts, errors.ts,
 * options.ts, index.ts). The files here: this one (the Driver methods), ./write-session.ts,
 * ./read.ts, ./copy.ts, ./bucket.ts (what they share), ./errors.ts (the S3 error table),
 * ./quirks.ts (vendor table), ./options.ts (tuning keys), ./resources.ts (`ByteStash`).
 *
 * Layout: key `a/b.bin` is the object `<prefix>a/b.bin` in the bucket.
 *
 * Object Lock (option `objectLock`, ./object-lock.ts): the bucket is checked before the first
 * write, every object of a copy is written with its retention, and `delete` refuses a key with a
 * version still locked (`E_RETAINED`) without removing anything.
 *
 * Writes:
 * - An object of 0 or 1 part is sent at `commit` as one PutObject with `Content-MD5` and the
 *   hash in its metadata. The part is held in memory until then (the hash is only known at
 *   commit): the caller's own buffer when it lets the session hold it (`PartWriteOptions.hold`:
 *   the engine keeps its pooled chunk for the session), else a copy in a buffer that the driver
 *   reuses (./resources.ts `ByteStash`); one per open single-part session.
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
import type { Readable } from 'node:stream';
import { throwIfAborted } from '../../errors.js';
import { badArgument, checkDriverPrefix, checkReadRange, checkWriteShape, driverClosedError, etagOfAnyFingerprint, isTempPath, partialPathOf } from '../toolkit/index.js';
import { checkKey } from '../keys.js';
import type { Capabilities, Committed, CopyWithinOptions, Driver, Entry, ListOptions, ReadOptions, SignalOptions, WriteOptions, WriteSession } from '../types.js';
import type { Location } from '../location.js';
import { Bucket } from './bucket.js';
import { isAccessDenied } from './errors.js';
import { LockControl, type ObjectLockSettings } from './object-lock.js';
import { copyObject } from './copy.js';
import { COPIES_PER_UPLOAD_SLOT } from './options.js';
import { S3_LIMITS } from './quirks.js';
import { readObject } from './read.js';
import type { ByteStash } from './resources.js';
import type { ObjectStore, StoredObject } from './store.js';
import { openObjectWrite } from './write-session.js';

export { HASH_METADATA } from './bucket.js';

/** Writes up to this size do not wait for the payload probe (see `openWrite`): their Content-MD5 costs next to nothing. */
export const SMALL_WRITE_BYTES = 64 * 1024;

/** Entries whose stored hash `list` fetches at once (HEAD per object, `maxConcurrency` in flight). */
const LIST_BATCH = 64;

export interface ObjectDriverSettings {
  /** `''` or `folder/` inside the bucket. */
  readonly prefix: string;
  /** For humans and manifests: `s3://bucket/prefix @ endpoint`. No credentials. */
  readonly description: string;
  /** Endpoint, bucket and prefix as data (../location.ts `objectStoreLocation`): one for every flavour. */
  readonly location: Location;
  /**
   * Most uploads (PutObject, UploadPart) in flight at once through this driver, whatever the
   * engine asks for (more wait here); also the HEADs `list` runs at once, and `capabilities.maxConcurrency`.
   */
  readonly maxConcurrency: number;
  readonly maxParts: number;
  readonly listPageSize: number;
  /** Receives one-line warnings (versioned bucket, refused removals). @default writes to stderr */
  readonly warn?: (line: string) => void;
  /** Lock every object of a copy (S3 Object Lock; ./object-lock.ts). @default no locks */
  readonly objectLock?: ObjectLockSettings;
}

/** `a/b.bin` -> `a/.b.bin.offsite-partial` (the one rule of src/drivers/toolkit/temp-names.ts). */
export function tempKeyOf(key: string): string {
  return partialPathOf(key);
}

export class ObjectDriver implements Driver {
  readonly description: string;
  readonly location: Location;
  readonly capabilities: Capabilities;
  readonly #bucket: Bucket;
  readonly #settings: ObjectDriverSettings;
  /** With the `objectLock` option: see ../types.ts `ObjectLock`. */
  readonly objectLock: LockControl | undefined;
  #bucketChecked = false;
  #closed = false;
  /** When this driver was made (ms): leftover temp objects older than this are swept by `list`. */
  readonly #startedMs = Date.now();
  /** Temp objects whose removal was refused: not tried again by this driver. */
  readonly #keptTemps = new Set<string>();

  constructor(readonly name: string, store: ObjectStore, settings: ObjectDriverSettings) {
    this.#settings = settings;
    this.#bucket = new Bucket(name, store, settings.prefix, settings.listPageSize, settings.maxConcurrency, settings.warn, settings.objectLock);
    this.objectLock = settings.objectLock === undefined ? undefined : new LockControl(this.#bucket, settings.objectLock);
    this.description = settings.description;
    this.location = settings.location;
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
      copyConcurrency: settings.maxConcurrency * COPIES_PER_UPLOAD_SLOT,
      conditionalReads: true,
      // Parts carry Content-MD5 unless the server is known to check signed payloads (./store.ts
      // `payloadCheck`, settled by the first write): an encrypting wrapper asks at each file
      // whether to compute the MD5 while it seals (either answer is safe: a given MD5 is sent, a
      // missing one is computed when needed).
      get partMd5(): boolean {
        return store.payloadCheck === 'md5';
      },
      // The other answer: parts carry their signed SHA-256, which the same wrapper can take while it seals.
      get partSha256(): boolean {
        return store.payloadCheck === 'sha256';
      },
    };
  }

  /** Uploads in flight right now (for tests). */
  get uploadsInFlight(): number {
    return this.#bucket.uploadsInFlight;
  }

  /** Where single-part sessions keep their bytes until commit (for tests). */
  get stash(): ByteStash {
    return this.#bucket.stash;
  }

  #checkOpen(signal: AbortSignal | undefined, action: string): void {
    throwIfAborted(signal, `${this.name}: ${action}`);
    if (this.#closed) throw driverClosedError({ driver: this.name, action });
  }

  /** A 404 on an object may really be a missing bucket (HEAD has no body to say which): ask once. */
  async #checkBucket(signal: AbortSignal | undefined, fullKey: string): Promise<void> {
    if (this.#bucketChecked) return;
    if (!(await this.#bucket.store.bucketExists(signal))) throw this.#bucket.failWith('NoSuchBucket', 'check bucket', fullKey);
    this.#bucketChecked = true;
  }

  /**
   * Lists with ListObjectsV2 (all pages), skipping folder markers (`.../`), our temp objects and
   * keys the contract cannot express (`a//b`). The stored hash needs one HEAD per object: they
   * run `maxConcurrency` at a time, `LIST_BATCH` entries ahead, so memory stays bounded. With
   * `hashes: false` there are none: entries carry key, size and mtime from the pages alone.
   * Failure: classified errors (NoSuchBucket is `permanent`); a missing prefix yields nothing.
   */
  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<Entry> {
    const { prefix: root } = this.#bucket;
    const full = root + prefix;
    try {
      checkDriverPrefix(this.name, prefix);
      this.#checkOpen(options.signal, 'list');
      let batch: StoredObject[] = [];
      const temps = new Map<string, StoredObject>();
      const leftovers: StoredObject[] = [];
      for await (const object of this.#listed(full, options)) {
        const key = object.key.slice(root.length);
        if (!object.key.startsWith(root) || key.endsWith('/')) continue;
        if (isTempPath(key)) {
          if (object.mtimeMs < this.#startedMs && !this.#keptTemps.has(object.key)) temps.set(object.key, object);
          continue;
        }
        if (!isSafeKey(key)) continue;
        const temp = temps.size === 0 ? undefined : temps.get(partialPathOf(object.key));
        if (temp !== undefined && temp.size === object.size && temp.mtimeMs <= object.mtimeMs) leftovers.push(temp);
        if (options.hashes === false) {
          yield this.#bucket.entry(key, object);
          continue;
        }
        batch.push(object);
        if (batch.length >= LIST_BATCH) {
          yield* await this.#withHashes(batch, options.signal);
          batch = [];
        }
      }
      yield* await this.#withHashes(batch, options.signal);
      await this.#sweep(leftovers, options.signal);
    } catch (err) {
      throw this.#bucket.fail(err, 'list', full);
    }
  }

  /**
   * The objects `list` looks at: one flat listing, or, when the caller limits the folders it wants
   * (`descend`) and the store lists by level, a walk one level (one `Delimiter: '/'` listing) at
   * a time into only the folders it wants. A reuse index over 30 earlier copies of 100,000 files
   * then costs a page per copy, not 3,000 pages (see `reusableCopies` in src/core/reuse-copies.ts).
   */
  async *#listed(full: string, options: ListOptions): AsyncIterable<StoredObject> {
    const { prefix: root, store, listPageSize } = this.#bucket;
    if (options.descend === undefined || store.listLevel === undefined) {
      yield* store.list(full, listPageSize, options.signal);
      return;
    }
    const pending = [full.slice(0, full.lastIndexOf('/') + 1)];
    for (let level = pending.pop(); level !== undefined; level = pending.pop()) {
      for await (const item of store.listLevel(level, listPageSize, options.signal)) {
        if (!('folder' in item)) {
          if (item.key.startsWith(full)) yield item;
          continue;
        }
        const folder = item.folder;
        if (!folder.startsWith(root) || folder.length === root.length) continue;
        const relevant = folder.startsWith(full) || full.startsWith(folder);
        if (relevant && options.descend(folder.slice(root.length, -1))) pending.push(folder);
      }
    }
  }

  /**
   * Removes temp objects left by earlier runs whose final object was written from them: a temp
   * object older than this driver, of the final object's size, no newer than the final object
   * (the copy was made from it), and still the same when looked at again right before. Such a
   * temp object is never resumed (resumable state is an open multipart upload, not an object,
   * and is never touched here) and no live run needs it (a run writing the key again completes
   * a new temp object, newer than the final one). They are left by a crash between copy and
   * delete, or by a refused delete (see bucket.ts `dropTemp`). A refusal is warned, not thrown.
   */
  async #sweep(leftovers: readonly StoredObject[], signal: AbortSignal | undefined): Promise<void> {
    for (const temp of leftovers) {
      const now = await this.#bucket.store.head(temp.key, signal);
      // HEAD's Last-Modified has whole seconds, listings may have milliseconds.
      if (now?.size !== temp.size || Math.floor(now.mtimeMs / 1000) !== Math.floor(temp.mtimeMs / 1000)) continue;
      try {
        await this.#bucket.removeKey(temp.key, signal);
      } catch (err) {
        if (!isAccessDenied(this.#bucket.store.describeError(err))) throw err;
        this.#keptTemps.add(temp.key);
        this.#bucket.refused('sweep', temp.size,
          () => `cannot delete leftover temp object s3://${this.#bucket.store.bucket}/${temp.key} of an earlier run: s3:DeleteObject is denied; offsite needs s3:DeleteObject on ${this.#bucket.scope}`,
          (count, total) => `${count} leftover temp object(s) (${total}) stay in s3://${this.#bucket.store.bucket}/${this.#bucket.prefix} (s3:DeleteObject is denied)`);
      }
    }
  }

  async #withHashes(batch: StoredObject[], signal: AbortSignal | undefined): Promise<Entry[]> {
    const { prefix: root, store } = this.#bucket;
    const out: Array<Entry | undefined> = new Array(batch.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < batch.length; i = next++) {
        const object = batch[i] as StoredObject;
        const head = await store.head(object.key, signal);
        out[i] = head === undefined ? undefined : this.#bucket.entry(object.key.slice(root.length), head);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#settings.maxConcurrency, batch.length) }, worker));
    return out.filter((e): e is Entry => e !== undefined);
  }

  /** HEAD. Missing key: `undefined` (after checking once that the bucket exists). */
  async stat(key: string, options: SignalOptions = {}): Promise<Entry | undefined> {
    const full = this.#bucket.fullKey(key);
    try {
      this.#checkOpen(options.signal, 'stat');
      const head = await this.#bucket.store.head(full, options.signal);
      if (head === undefined) {
        await this.#checkBucket(options.signal, full);
        return undefined;
      }
      return this.#bucket.entry(key, head);
    } catch (err) {
      throw this.#bucket.fail(err, 'stat', full);
    }
  }

  /**
   * Ranged GetObjects (./read.ts), in pieces of `pieceBytes` into buffers from `allocate`. Missing
   * key: `not-found`; past the end: an empty stream. With `ifFingerprint` (an ETag fingerprint of
   * this driver), every GET carries `If-Match`: another object under the key is `E_READ_SOURCE_CHANGED`.
   */
  async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    const full = this.#bucket.fullKey(key);
    const context = { driver: this.name, key, action: 'read' };
    const { offset, length } = checkReadRange(options, context);
    const etag = options.ifFingerprint === undefined ? undefined : etagOfAnyFingerprint(options.ifFingerprint);
    if (options.ifFingerprint !== undefined && etag === undefined) throw badArgument(context, `ifFingerprint ${JSON.stringify(options.ifFingerprint)} is not an ETag fingerprint of this driver`);
    try {
      this.#checkOpen(options.signal, 'read');
    } catch (err) {
      throw this.#bucket.fail(err, 'read', full);
    }
    return readObject(this.#bucket, full, {
      offset, length, signal: options.signal, pieceBytes: options.pieceBytes, allocate: options.allocate, ...(etag !== undefined ? { etag } : {}),
    });
  }

  /**
   * Starts or resumes a write (./write-session.ts). Refuses bad sizes and layouts S3 cannot hold
   * (parts below 5 MiB when there are several, above 5 GiB, more than `maxParts`). IO only for
   * multi-part objects: listing open uploads of the temp key and aborting stale ones (and, at a
   * server outside the vendor table, the one probe of ./bucket.ts `checkPayloads`, which writes
   * up to `SMALL_WRITE_BYTES` do not wait for).
   */
  async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    const full = this.#bucket.fullKey(key);
    const { size, partBytes } = checkWriteShape(options, Number.MAX_SAFE_INTEGER, { driver: this.name, key, action: 'open write' });
    this.#checkOpen(options.signal, 'open write');
    await this.objectLock?.check(options);
    // Until it is known whether the server checks signed payloads, uploads carry Content-MD5,
    // which every S3 checks (./store.ts `payloadCheck`): a small write, whose MD5 costs nothing,
    // does not wait for the probe (a run's first write is its lock: one round trip less before
    // its copies start); a larger one does, so that its parts need no MD5 where the server checks
    // signed payloads. Never rejects.
    const probing = this.#bucket.checkPayloads(options.signal);
    if (size > SMALL_WRITE_BYTES) await probing;
    return openObjectWrite(this.#bucket, key, full, size, partBytes, this.capabilities.maxParts, options.signal);
  }

  /** DeleteObject, plus the resumable state of the key (open uploads, a completed temp object). */
  async delete(key: string, options: SignalOptions = {}): Promise<void> {
    const full = this.#bucket.fullKey(key);
    try {
      this.#checkOpen(options.signal, 'delete');
      await Promise.all([this.#bucket.removeKey(full, options.signal), this.#bucket.removeTemp(partialPathOf(full), options.signal)]);
    } catch (err) {
      throw this.#bucket.failNeeding('s3:DeleteObject', err, 'delete', full);
    }
  }

  /**
   * Server-side copy with the source's metadata (so its stored hash), checked against `expect`
   * first; `not-found` when the source is missing (./copy.ts). Resolves with the copy's fingerprint.
   */
  async copyWithin(fromKey: string, toKey: string, options: CopyWithinOptions = {}): Promise<Committed> {
    const from = this.#bucket.fullKey(fromKey);
    const to = this.#bucket.fullKey(toKey);
    try {
      this.#checkOpen(options.signal, 'copy');
      await this.objectLock?.check(options);
    } catch (err) {
      throw this.#bucket.fail(err, `copy to ${to}`, from);
    }
    return copyObject(this.#bucket, from, to, options.expect, options.signal);
  }

  /**
   * Nothing to do: an object is durable once the server acknowledged its commit (PutObject or
   * CompleteMultipartUpload + CopyObject). Here so that callers and wrappers treat every driver alike.
   */
  async sync(_options?: SignalOptions): Promise<void> {}

  /** Closes the client adapter; later calls fail with `E_CLOSED`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#bucket.summarizeRefusals();
    this.#bucket.store.close();
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
