/**
 * The driver contract: the only way the engine touches storage. Every driver (local, sftp, s3,
 * minio) implements `Driver` and can act as a source and as a destination. The engine never
 * knows which driver it talks to: it reads `capabilities` (data) and error `kind`s
 * (src/errors.ts), never a driver's name.
 *
 * Keys are relative to the driver's root, `/`-separated, without a leading `/`, without empty,
 * `.` or `..` segments and without NUL or `\` (see `checkKey` in ./keys.ts). A driver refuses
 * any other key with a `KeyError` (kind `permanent`) before doing any IO, so no key can leave
 * the root.
 *
 * Failure behaviour common to all methods:
 * - Errors are `DriverError`s (or subclasses) whose `kind` the driver chose by classifying its
 *   SDK's error: `retryable` for resets/timeouts/5xx/throttling, `auth` for refused
 *   credentials or host keys, `permanent` for everything retrying cannot fix (no bucket,
 *   permission denied, disk full), `integrity` for bytes that do not match.
 * - Messages name the driver instance and the key, and never contain secrets.
 * - Every method honours `signal`: once it fires the call rejects with `AbortedError` soon.
 * - Refusals that are the same on every driver have one code and one kind, raised through the
 *   driver toolkit (src/drivers/toolkit/errors.ts has the table): bad arguments
 *   `E_BAD_ARGUMENT` (`fatal`), a part missing at commit `E_MISSING_PART` (`fatal`: the caller's
 *   bug, so resumable state is kept), a wrong stored size `E_SIZE_MISMATCH` (`integrity`), a
 *   finished session `E_SESSION_CLOSED` and a closed driver `E_CLOSED` (`fatal`). The
 *   conformance suite checks them.
 */

import type { Readable } from 'node:stream';
import type { Identity, Location } from './location.js';

/** What a key holds (`Driver.whatIsAt`); src/drivers/toolkit/path-types.ts has the helpers. */
export type PathType = 'file' | 'folder' | 'fifo' | 'socket' | 'device' | 'other' | 'missing';

/** What a driver can do. Plain data: the engine branches on it, tests skip by it. */
export interface Capabilities {
  /** `openRead` honours `offset`/`length` without reading the skipped bytes. */
  readonly rangeReads: boolean;
  /**
   * `openWrite` finds what an earlier, interrupted run left for the same key (a partial temp
   * file, an open multipart upload) and reports it in `WriteSession.resumableParts`.
   */
  readonly resumableWrites: boolean;
  /** Nothing is visible under the final key before `commit` resolves. */
  readonly atomicCommit: boolean;
  /** `commit({hash})` stores our whole-file hash with the object, and `stat`/`list` return it. */
  readonly storedHash: boolean;
  /** `copyWithin` is implemented (server-side copy, hardlink, copy-data...). */
  readonly serverSideCopy: boolean;
  /** Smallest part the driver accepts (all but the last part). 1 when there is no limit. */
  readonly minPartBytes: number;
  /** Largest part the driver accepts. */
  readonly maxPartBytes: number;
  /** Most parts one object may have (S3: 10,000). `Infinity` when there is no limit. */
  readonly maxParts: number;
  /** Parts of one session may be written concurrently and out of order. */
  readonly parallelPartWrites: boolean;
  /** A sensible number of concurrent operations (files or parts) against this driver. */
  readonly maxConcurrency: number;
  /**
   * Server-side copies (`copyWithin`) worth running at once, when more than `maxConcurrency`:
   * an object store's copy moves no bytes through this machine and only waits on the server, so
   * reusing thousands of files is bound by round trips. @default maxConcurrency
   */
  readonly copyConcurrency?: number;
  /**
   * `openRead` honours `ReadOptions.ifFingerprint`: every byte it delivers comes from the object
   * that had that fingerprint (object stores: `If-Match` with the ETag on every GET), so a caller
   * needs no `stat` after the read to know that the object did not change meanwhile. @default false
   */
  readonly conditionalReads?: boolean;
  /**
   * The driver sends each part with its MD5 (object stores: `Content-MD5`, and the ETag that
   * `matches` compares), and takes it from `PartWriteOptions.md5` / `PartMatchOptions.md5` when
   * the caller has it, instead of reading the part again. @default false
   */
  readonly partMd5?: boolean;
  /**
   * The driver sends each part with the signed SHA-256 of its bytes (object stores whose server
   * checks signed payloads: `x-amz-content-sha256`), and takes it from `PartWriteOptions.sha256`
   * when the caller has it, instead of hashing the part again on the calling thread. May change
   * during a run (an object store learns it at its first write): a caller asks per file, and
   * either answer is safe. @default false
   */
  readonly partSha256?: boolean;
}

/** One stored object (a file, never a folder). */
export interface Entry {
  /** Relative to the driver root, `/`-separated. */
  readonly key: string;
  /** Bytes. */
  readonly size: number;
  /** Last modification, milliseconds since the epoch. */
  readonly mtimeMs: number;
  /** Our whole-file hash (`xxh64:<16 hex>`), when the driver stores one (`storedHash`). */
  readonly hash?: string;
  /**
   * A cheap summary of the stored file from the same listing or stat (never an extra request),
   * that changes when the file is rewritten: `local:<size>:<mtime ns>:<inode>`,
   * `sftp:<size>:<mtime s>`, `etag:<etag>:<size>` (see src/drivers/toolkit/fingerprint.ts).
   * Compared only for equality, with fingerprints of the same driver. Absent when the driver (or
   * the server) gives nothing to build one from. A fingerprint is never proof of the bytes.
   */
  readonly fingerprint?: string;
}

/** S3 Object Lock modes: GOVERNANCE can be lifted by a user with s3:BypassGovernanceRetention, COMPLIANCE by nobody. */
export type ObjectLockMode = 'GOVERNANCE' | 'COMPLIANCE';

/** The lock of one stored object (its current version): no `untilMs` when it has none. */
export interface KeyRetention {
  readonly key: string;
  readonly mode?: ObjectLockMode;
  /** Until when (ms since the epoch) it cannot be deleted or overwritten; may be in the past. */
  readonly untilMs?: number;
}

/**
 * A destination whose objects are written with an S3 Object Lock retention (the `objectLock`
 * option; src/drivers/object-store/object-lock.ts). The driver itself locks what it writes and
 * refuses (`E_RETAINED`, kind `permanent`, nothing removed) to delete a key that has a version
 * still locked; this member lets prune and audit see and extend the locks.
 */
export interface ObjectLock {
  readonly mode: ObjectLockMode;
  /** How long each object stays locked after it is written, ms. */
  readonly retainMs: number;
  /** Rejects (`E_OBJECT_LOCK`, `permanent`, saying what to do) when the bucket cannot hold locked objects. Asked once. */
  check(options?: SignalOptions): Promise<void>;
  /** Whether the driver locks `key` (backup data and manifests, not offsite's bookkeeping). */
  locks(key: string): boolean;
  /** The lock of every object under `prefix` (a folder prefix ending in `/`) that the driver locks. */
  retentions(prefix: string, options?: SignalOptions): AsyncIterable<KeyRetention>;
  /** Extends the lock of `key` to `untilMs` unless it already lasts longer; resolves with the lock it has then. */
  extend(key: string, untilMs: number, options?: SignalOptions): Promise<KeyRetention>;
}

export interface SignalOptions {
  readonly signal?: AbortSignal;
}

/** Options of `WriteSession.write`. */
export interface PartWriteOptions extends SignalOptions {
  /**
   * Lets the session keep `bytes` after `write` settles without copying them: the caller then
   * leaves them unchanged until the returned function is called (once). A session that needs a
   * part's bytes later (a single-part S3 object is sent at `commit`, when its hash is known) calls
   * it; without it, such a session copies the bytes. Wrappers that hand the session other bytes
   * than the caller's must not pass the caller's `hold` on.
   */
  readonly hold?: () => () => void;
  /**
   * The MD5 of exactly `bytes`, when the caller took it already (the encryption wrapper, in the
   * pass that seals the part, ./wrappers/encrypt.ts): a driver with `capabilities.partMd5` sends it
   * instead of hashing the part again; others ignore it. A wrong one makes the server refuse the
   * part (kind `integrity`). Wrappers that hand the session other bytes must not pass it on.
   */
  readonly md5?: PartMd5;
  /**
   * The SHA-256 of exactly `bytes` (hex), when the caller took it already (the encryption
   * wrapper, in the pass that seals the part): a driver with `capabilities.partSha256` signs it
   * as the payload hash instead of hashing the part again; others ignore it. A wrong one makes
   * the server refuse the upload (kind `integrity`). Wrappers that hand the session other bytes
   * must not pass it on.
   */
  readonly sha256?: string;
}

/** Options of `WriteSession.matches`. */
export interface PartMatchOptions extends SignalOptions {
  /** The MD5 of exactly `bytes`, as `PartWriteOptions.md5`: a driver that compares parts by MD5 (`capabilities.partMd5`) uses it. */
  readonly md5?: PartMd5;
}

/** The MD5 of a part's bytes: hex (an S3 ETag) and base64 (`Content-MD5`). */
export interface PartMd5 {
  readonly hex: string;
  readonly base64: string;
}

/** Options of `copyWithin`. */
export interface CopyWithinOptions extends SignalOptions {
  /**
   * Make the copy a hard link to the source where the driver and its file system can (local:
   * `link(2)`; sftp: `hardlink@openssh.com`), a copy otherwise; object stores always copy. Only
   * for a destination whose `reuse` policy is `link`: the two names then share their blocks, so
   * one damaged block damages both. @default false
   */
  readonly link?: boolean;
  /**
   * Only a copy inside the storage will do: where the driver would move the bytes through this
   * machine instead (sftp without `copy-data`), reject with `E_NO_SERVER_COPY` (kind `permanent`)
   * and leave `toKey` as it was. The engine's reuse asks for this: sending the file costs less
   * than reading it back and writing it again. @default false
   */
  readonly serverOnly?: boolean;
  /**
   * What the caller recorded of `fromKey` (the engine's reuse: the file's record in another copy's
   * manifest). The driver makes sure the copy is of exactly that, so the caller needs no `stat`
   * of its own: the source must have `size` bytes, the stored hash `hash` where the driver keeps
   * one (a missing one is accepted), and when `fingerprint` is given, that `Entry.fingerprint`.
   * Drivers check it on the look at the source they take anyway, or make the copy conditional on
   * it (object stores: `x-amz-copy-source-if-match` with the ETag in the fingerprint, no look at
   * the source first). A source that is not that rejects with `E_COPY_SOURCE_CHANGED` (kind
   * `integrity`); `toKey` is then as it was, or gone when the copy had to be made to find out.
   * @default no check
   */
  readonly expect?: CopyExpectation;
}

/** See `CopyWithinOptions.expect`. */
export interface CopyExpectation {
  readonly size: number;
  readonly hash?: string;
  readonly fingerprint?: string;
}

export interface ListOptions extends SignalOptions {
  /**
   * The root itself must be there: when it is missing or is not a folder, `list` rejects (a
   * `DriverError`, kind `not-found` or `permanent`, naming the root) instead of yielding nothing.
   * For a source, where "nothing" would read as "no backups" (an unmounted share, a typo).
   * Drivers without folders (object stores) ignore it. @default false
   */
  readonly requireRoot?: boolean;
  /**
   * When given, an entry the driver refuses to list (a symlink leading outside the root) is
   * passed here with the refusal and skipped, instead of failing the whole listing; callers
   * decide what it means (a stray link next to the backups is a warning, one inside a backup
   * refuses that backup). @default undefined: the listing rejects with the refusal
   */
  readonly onRefused?: (key: string, error: Error) => void;
  /**
   * Whether entries must carry `hash` (the stored hash). False when the caller needs keys and
   * sizes only: a driver that fetches the stored hash with a request per entry (object stores: a
   * HEAD each) then leaves it out, and the listing costs its pages only. @default true
   */
  readonly hashes?: boolean;
  /**
   * A hint for drivers that walk a folder tree one folder at a time (sftp: round trips per
   * folder): a folder key (`a/b`, no trailing slash) for which it returns false need not be
   * walked, because the caller wants nothing under it. Object stores that can list one level
   * (`Delimiter: '/'`) walk the wanted folders that way instead of listing every key. Drivers may
   * ignore it, so the caller still filters what it gets. @default every folder is walked
   */
  readonly descend?: (folder: string) => boolean;
}

export interface ReadOptions extends SignalOptions {
  /** First byte to read. @default 0 */
  readonly offset?: number;
  /** Bytes to read from `offset`; to the end when omitted. */
  readonly length?: number;
  /**
   * Preferred size of the pieces the stream yields (a hint: the engine reads in chunks of this
   * size, and pieces of exactly that size are passed on without copying). Drivers may ignore it.
   */
  readonly pieceBytes?: number;
  /**
   * Where to get the buffers the stream yields (a hint, for buffer reuse: the caller releases
   * them). Drivers that read into buffers of their own choosing use it instead of allocating.
   */
  readonly allocate?: (size: number) => Buffer;
  /**
   * Read only the object whose `Entry.fingerprint` (from this driver's `list` or `stat`) is this.
   * A driver with `capabilities.conditionalReads` rejects the read, or fails the stream, with
   * `E_READ_SOURCE_CHANGED` (kind `integrity`) as soon as the object is another; other drivers
   * ignore it (the caller checks with a `stat` after the read instead).
   */
  readonly ifFingerprint?: string;
}

/** Options of `Driver.readHashes`. */
export interface ReadHashesOptions extends SignalOptions {
  /**
   * The bytes the object must hold (the size its record gives). An object of another size, at the
   * open or at any moment of the read, rejects with `E_SIZE_CHANGED` (kind `integrity`): no hash
   * is ever given for bytes that were not read, nor for a read that stopped short of the end.
   */
  readonly size: number;
  /** Bytes per chunk hashed on its own (the manifest's chunk size); the last chunk is shorter. */
  readonly chunkBytes: number;
  /** Also the XXH64 of the whole object (`FileHashes.hash`). @default false */
  readonly whole?: boolean;
  /** Told the bytes read and hashed so far, piece by piece (progress). */
  readonly onBytes?: (bytes: number) => void;
}

/** What `Driver.readHashes` read: the hashes the manifest records for a file. */
export interface FileHashes {
  /** XXH64 of each chunk of `ReadHashesOptions.chunkBytes`, in order (`xxh64:<hex>`); none for an empty object. */
  readonly chunks: string[];
  /** XXH64 of the whole object, when `whole` was asked for. */
  readonly hash?: string;
}

export interface WriteOptions extends SignalOptions {
  /** Exact size of the finished object in bytes; `commit` fails when the parts do not add up. */
  readonly size: number;
  /**
   * Bytes per part: every part but the last has exactly this size, the last has the rest. A
   * zero-byte object has no parts. The engine picks it from `capabilities` (min/max part
   * size, max parts).
   */
  readonly partBytes: number;
  /**
   * A hint for wrappers, ignored by drivers: this is a small bookkeeping object of our own (the
   * lock file) that must not wait behind the bandwidth limit, or a stop (SIGTERM) would wait for
   * it. Never set it for backup data or manifests.
   */
  readonly unpaced?: boolean;
}

/** Hash recorded at commit time. */
export interface CommitOptions extends SignalOptions {
  /** Whole-file hash, `xxh64:<16 hex>`. Drivers with `storedHash` keep it with the object. */
  readonly hash: string;
}

/**
 * What `commit` may tell about the object it made, when the driver knows it without another
 * request: its `Entry.fingerprint` (the one `stat` would return now). Saves the engine a `stat`
 * per file; the conformance suite checks that it equals `stat`'s.
 */
export interface Committed {
  readonly fingerprint?: string;
  /**
   * What was stored, when it is not the bytes the session was given (an encrypting destination,
   * src/drivers/wrappers/encrypt.ts): the record that proves the stored object without the key.
   */
  readonly stored?: StoredRecord;
}

/** The stored (encrypted) object behind a plain file, as its manifest record keeps it. */
export interface StoredRecord {
  /** Bytes stored. */
  readonly size: number;
  /** XXH64 of the stored bytes, `xxh64:<hex>`. */
  readonly hash: string;
  /** XXH64 of each stored chunk (`DriverEncryption.storedChunkBytes` each, the last one shorter). */
  readonly chunks: readonly string[];
  /** Keyed MAC of the plaintext, `hmac-sha256:<hex>` (src/crypto/format.ts `fileMac`). */
  readonly mac: string;
}

/**
 * A destination that encrypts what it stores (its `encryption` option; src/drivers/wrappers/encrypt.ts).
 * The driver itself reads and writes plaintext (with plain sizes); what it stores, and what an
 * auditor without the key checks, is `stored`.
 */
export interface DriverEncryption {
  /** The stored format (`ENCRYPTION_SCHEME` of src/crypto/format.ts). */
  readonly scheme: string;
  /** Plain bytes per sealed chunk. */
  readonly chunkBytes: number;
  /** Stored bytes per sealed chunk (all but a file's last). */
  readonly storedChunkBytes: number;
  /** The Ed25519 public key that checks this destination's manifests (base64 of 32 bytes). */
  readonly publicKey: string;
  /** The driver under the encryption: the stored bytes, as an auditor without the key reads them. */
  readonly stored: Driver;
  /** Signs a manifest's SHA-256 (src/manifest/signature.ts); base64. */
  sign(bytes: Buffer): string;
  /**
   * From now on a whole read of `key` must decrypt to the plaintext whose MAC is `mac` (the one
   * its manifest records), or the read fails with kind `integrity` at its end.
   */
  expect(key: string, mac: string): void;
  /**
   * The keyed plaintext MAC (`StoredRecord.mac`) of a plain file of `size` bytes, from its bytes
   * in order (pieces of any size), as sealing it here would record it: how the engine finds a
   * file an earlier copy holds with the same plaintext (reuse), from the one source read.
   */
  plaintextMac(size: number): { update(bytes: Uint8Array): void; digest(): string };
  /**
   * Reads the stored object under `key` once, opening (and so checking) every chunk: the
   * XXH64 of its plaintext (whole and per `chunkBytes` chunk, as the engine hashes a source
   * file) and the record of what is stored. How a file committed but not yet recorded (a run
   * killed before its checkpoint) is adopted with the same proof as a plain one: its bytes read
   * and hashed. Rejects with kind `integrity` when a chunk fails its check or the object is not
   * `size` plain bytes, `not-found` when it is gone.
   */
  inspect(key: string, size: number, options: { readonly chunkBytes: number } & SignalOptions): Promise<{ readonly plain: { readonly hash: string; readonly chunks: string[] }; readonly stored: StoredRecord }>;
}

/**
 * One object being written. Parts are numbered from 0; part `i` covers bytes
 * `[i * partBytes, min(size, (i + 1) * partBytes))`.
 *
 * Nothing is visible under `key` until `commit` resolves (when `atomicCommit`). If the process
 * dies at any moment, the final key either does not exist or holds the whole, committed object;
 * what was written so far stays as resumable state (temp file, open multipart upload) that a
 * later `openWrite` of the same key reports in `resumableParts`.
 */
export interface WriteSession {
  readonly key: string;
  readonly size: number;
  readonly partBytes: number;
  /**
   * Parts that an earlier, interrupted run may already have stored for this key, as found at
   * the destination itself (never from a local journal). They are candidates, not promises:
   * the engine confirms each with `matches` before skipping it. Empty when nothing was found
   * or the driver cannot resume.
   */
  readonly resumableParts: ReadonlySet<number>;
  /**
   * True when part `index` is already stored with exactly `bytes` (compared by reading it
   * back or by a stored checksum such as an S3 part ETag). False when it is missing or
   * differs; a driver may then discard later resumable parts that depend on it.
   */
  matches(index: number, bytes: Uint8Array, options?: PartMatchOptions): Promise<boolean>;
  /**
   * Stores part `index`. Writing the same part twice is harmless (the last write wins).
   * Only when `capabilities.parallelPartWrites` may several `write` calls be in flight.
   * Failure leaves the session usable for another `write` of the same part (a retry).
   * The driver must not keep or touch `bytes` once the returned promise settles (the engine
   * reuses the buffer) unless it called `options.hold`; the same holds for `matches`.
   */
  write(index: number, bytes: Uint8Array, options?: PartWriteOptions): Promise<void>;
  /**
   * Makes the object appear under `key`, atomically, with all parts `0..n-1`. Rejects (and
   * leaves no final object) when parts are missing (`E_MISSING_PART`, `fatal`; what was stored
   * stays resumable) or the stored size is not `size` (`integrity`). Only parts written or
   * confirmed with `matches` in this session count.
   * Durable once the driver's next `Driver.sync()` resolves (at once, on drivers whose `sync` is
   * a no-op because the server acknowledged it durably).
   */
  commit(options: CommitOptions): Promise<Committed | void>;
  /**
   * Stops writing and releases handles, but keeps what was stored so that a later run can
   * resume it. Never throws; idempotent.
   */
  suspend(): Promise<void>;
  /** Stops writing and removes everything this session (or an earlier one) stored. Idempotent. */
  abort(): Promise<void>;
}

export interface Driver {
  /** The instance name from the config (`nas`, `cloud`, `source`...): used in messages. */
  readonly name: string;
  /** Where this driver points, for humans and manifests; never contains secrets. Never parsed. */
  readonly description: string;
  /**
   * Where this driver points, as data (./location.ts): what overlap checks compare. Known at
   * construction, without IO.
   */
  readonly location: Location;
  readonly capabilities: Capabilities;
  /**
   * Every object whose key starts with `prefix` (a folder prefix ending in `/`, or `''` for
   * all), recursively, in no particular order. Folders, folder markers and our own temp/partial
   * objects are not listed. A missing prefix yields nothing (not an error), unless
   * `requireRoot` asks about the root itself (see `ListOptions`).
   */
  list(prefix: string, options?: ListOptions): AsyncIterable<Entry>;
  /** The entry for `key`, or `undefined` when it does not exist (never a not-found error). */
  stat(key: string, options?: SignalOptions): Promise<Entry | undefined>;
  /**
   * What `key` holds, for a message that must name it ("binlog X is a FIFO", not "X missing"):
   * asked only about a key that a listing did not show. Never opens the path (a FIFO would block
   * the open). Drivers with a real file tree (local, sftp) have it; object stores, whose
   * listings show all there is, leave it out. A symlink that stays inside the root is followed;
   * one leading outside rejects with a `KeyError`. `missing` also when a folder above is missing.
   */
  whatIsAt?(key: string, options?: SignalOptions): Promise<PathType>;
  /**
   * A stream of the object's bytes from `offset` (for `length` bytes). A missing key rejects
   * with kind `not-found`. A stream error mid-way carries a `kind` like any other error.
   */
  openRead(key: string, options?: ReadOptions): Promise<Readable>;
  /**
   * Reads the whole object under `key` and hashes it as the engine hashes a file (XXH64 of each
   * chunk, and of the whole with `whole`), without handing its bytes to the caller: a driver that
   * can read and hash more cheaply than through `openRead`'s stream (local: positional reads into
   * the hash module's own memory, no stream) has it; the engine's deep checks (verify, audit
   * read-back) use it when it is there and read the stream otherwise. Opens `key` exactly as
   * `openRead` does (the same refusals: kind `not-found` for a missing key or a special file,
   * `KeyError` for a symlink leading outside the root). Rejects with `E_SIZE_CHANGED` (kind
   * `integrity`) when the object does not hold exactly `size` bytes (see `ReadHashesOptions.size`),
   * with a classified `DriverError` for a failed read, with `AbortedError` soon after `signal`
   * fires. Reads only; leaves nothing open behind.
   *
   * Wrappers pass it on only when the bytes they would read are the driver's as they are, paced as
   * the driver reads them: a wrapper that changes the bytes (encryption) or the pace of reads
   * (bandwidth limit) leaves it out, so the engine reads through its `openRead`
   * (src/drivers/wrappers/forwarding.ts `forwardsReadHashes`).
   */
  readHashes?(key: string, options: ReadHashesOptions): Promise<FileHashes>;
  /** Starts (or resumes) writing `key`. See `WriteSession`. */
  openWrite(key: string, options: WriteOptions): Promise<WriteSession>;
  /** Removes `key`; resolves when it is already gone. Also removes resumable state for it. */
  delete(key: string, options?: SignalOptions): Promise<void>;
  /**
   * Makes every commit that resolved before this call durable (on local disks one
   * filesystem-wide flush instead of one fsync per file, which costs a device cache flush each).
   * Every driver has it: a driver whose commits are durable when they resolve (server
   * acknowledgement: sftp, s3, minio) makes it a documented no-op. The engine calls it before it
   * records files as done (progress checkpoint) and before and after it writes a manifest, so a
   * wrapper that dropped it would silently turn durability off (which is why wrappers extend
   * src/drivers/wrappers/forwarding.ts). Rejects with the classified error of a failed flush;
   * callers must not retry it (the kernel may have dropped the pages it failed to write).
   */
  sync(options?: SignalOptions): Promise<void>;
  /**
   * Server-side copy inside the same driver (no bytes through this machine where the storage
   * can; only when `capabilities.serverSideCopy`). Like a write, `toKey` appears only whole (temp
   * name + rename, or an atomic server copy) and replaces what was there; the result is checked
   * (size, and the stored hash or ETag where the storage has one: `integrity` otherwise). A missing
   * source rejects with `not-found` and leaves `toKey` as it was; a key escaping the root with a
   * `KeyError`. After a crash at most a temp file (local, sftp) or an open multipart upload (object
   * stores) is left, which later writes and deletes of `toKey` clean up as usual. Resolves, like
   * `commit`, with the new object's fingerprint when the driver knows it without another request
   * (the conformance suite checks that it equals `stat`'s). Durable, like a commit, once the
   * driver's next `sync()` resolves.
   */
  copyWithin?(fromKey: string, toKey: string, options?: CopyWithinOptions): Promise<Committed | void>;
  /**
   * A hint: `copyWithin` calls are coming (the engine found files to reuse at this destination),
   * so open now what they need and is opened on demand otherwise (SFTP: the copy connection and
   * its channels, src/drivers/sftp/copy-channels.ts), while the run still waits on other things
   * (its lock). Changes nothing at the storage, never throws, and costs nothing where there is
   * nothing to open; a driver that opens nothing leaves it out. Idempotent.
   */
  prepareCopies?(): void;
  /**
   * What the storage says the root really is (./location.ts `Identity`): the real path with
   * symlinks resolved, and on local disks the (device, inode) of the root and of the folders
   * above it. Drivers whose location is their identity (object stores) leave it out. Reads only;
   * a root that does not exist yet is resolved through its deepest existing folder. Rejects like
   * any other call when the storage cannot be reached (SFTP: the connection's error).
   */
  identify?(options?: SignalOptions): Promise<Identity>;
  /** Present when the destination encrypts what it stores: see `DriverEncryption`. */
  readonly encryption?: DriverEncryption;
  /** Present when the destination locks what it writes (S3 Object Lock): see `ObjectLock`. */
  readonly objectLock?: ObjectLock;
  /** Releases connections. Idempotent. */
  close(): Promise<void>;
}

/** Builds a driver from its (already validated) config section. */
export type DriverFactory = (name: string, section: Readonly<Record<string, unknown>>) => Promise<Driver>;
