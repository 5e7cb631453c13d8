/**
 * S3 Object Lock for the object-store driver (the `objectLock` option of `s3` destinations):
 * every object of a backup copy, its manifest included, is written with a retention (mode
 * GOVERNANCE or COMPLIANCE, retain-until = time of the write + `retain`), so that nobody holding
 * the destination's credentials (ransomware on the production network included) can delete or
 * overwrite that version before the date: S3 refuses DeleteObject with a VersionId, and a plain
 * DeleteObject or PutObject only adds a delete marker or a newer version on top of it.
 *
 * What is locked (`isLockedKey`): keys inside a backup folder (`NAME/...`), except offsite's own
 * bookkeeping under `NAME/.offsite/` (the lock record, progress checkpoints, the prune tombstone),
 * which must stay removable; the manifest `NAME/.offsite/manifest.json` is locked. Multipart
 * uploads go to a temp key (never locked) and are copied onto the final key with the retention.
 * Root records (`.offsite/pruned.json`, `.offsite/audit.json`) are not locked.
 *
 * The bucket is checked once per driver before the first write (`checkBucket`): versioning must
 * be enabled and Object Lock on, and the bucket must have no default retention rule (it would lock
 * the temp objects and records too, which offsite could then not remove). Each refusal says what
 * to do.
 *
 * Deletes (`lockedVersions`): in lock mode the driver looks at the retention of every version of
 * a key before removing any (a HEAD per version); when one is still locked it removes nothing and
 * throws `E_RETAINED` naming the date, so offsite never even tries to delete a locked version and
 * never uncovers an older version by removing the newer one.
 *
 * `LockControl` is what the driver offers as its `objectLock` member (src/drivers/types.ts
 * `ObjectLock`): prune and audit read the lock state of a copy and audit extends it.
 */
import { DriverError } from '../../errors.js';
import { checkDriverPrefix, isTempPath } from '../toolkit/index.js';
import type { KeyRetention, ObjectLock, ObjectLockMode, SignalOptions } from '../types.js';
import type { Bucket } from './bucket.js';
import { isAccessDenied } from './errors.js';
import type { Retention, StoredVersion } from './store.js';

/** The `objectLock` option of a destination. */
export interface ObjectLockSettings {
  readonly mode: ObjectLockMode;
  /** How long each object stays locked after it is written, in ms. */
  readonly retainMs: number;
}

const BOOKKEEPING_DIR = '.offsite';
/** Heads of one listing batch in flight at once in `retentions`. */
const BATCH = 64;

/**
 * Whether offsite locks `key` (relative to the driver's prefix): inside a backup folder and not
 * offsite's bookkeeping, except the manifest (src/manifest/manifest.ts `manifestKey`).
 */
export function isLockedKey(key: string): boolean {
  const segments = key.split('/');
  if (segments.length < 2) return false;
  const at = segments.indexOf(BOOKKEEPING_DIR);
  if (at === -1) return true;
  return at >= 1 && at === segments.length - 2 && segments[at + 1] === 'manifest.json';
}

/** `2026-01-31 14:05:09 UTC`: how lock dates appear in messages. */
export function lockDate(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** The retention a write of `full` (a full key) gets now, or `undefined` when it is not locked. */
export function retentionFor(bucket: Bucket, full: string): Retention | undefined {
  const lock = bucket.lock;
  if (lock === undefined || !isLockedKey(full.slice(bucket.prefix.length))) return undefined;
  // Whole seconds, as S3 stores the date.
  return { mode: lock.mode, untilMs: Math.ceil((Date.now() + lock.retainMs) / 1000) * 1000 };
}

/**
 * Makes sure `full` (just written by a server-side copy) carries `retention`: Ceph RGW 16 ignores
 * the Object Lock headers of CopyObject (found by test/e2e/object-lock-s3.test.ts), so after a
 * copy the lock is read back (HEAD) and, when it is missing or shorter, set with
 * PutObjectRetention. Nothing to do without `retention`.
 */
export async function ensureRetention(bucket: Bucket, full: string, retention: Retention | undefined, signal: AbortSignal | undefined): Promise<void> {
  const { store } = bucket;
  if (retention === undefined || store.retention === undefined || store.putRetention === undefined) return;
  const held = await store.retention(full, undefined, signal);
  if (held !== undefined && held.mode === retention.mode && held.untilMs >= retention.untilMs) return;
  await store.putRetention(full, retention, signal);
}

function lockError(bucket: Bucket, why: string, what: string): DriverError {
  return new DriverError('E_OBJECT_LOCK', `${bucket.driver}: bucket ${bucket.store.bucket} at ${bucket.store.endpoint} ${why}, so objectLock cannot make the copies there immutable: ${what}`, { kind: 'permanent' });
}

/**
 * Checks that the bucket can hold locked objects: versioning enabled, Object Lock enabled, no
 * default retention rule. Rejects with `E_OBJECT_LOCK` (kind `permanent`) saying what to do;
 * other failures (network) reject classified and are asked again next time.
 */
export async function checkBucket(bucket: Bucket, signal: AbortSignal | undefined): Promise<void> {
  const { store } = bucket;
  const name = store.bucket;
  if (store.lockConfiguration === undefined) throw lockError(bucket, 'is reached through a client without Object Lock support', 'use a destination of type s3');
  let config;
  try {
    config = await store.lockConfiguration(signal);
  } catch (err) {
    if (isAccessDenied(store.describeError(err))) {
      throw lockError(bucket, 'does not let offsite read its Object Lock configuration (s3:GetBucketObjectLockConfiguration is denied)', `grant s3:GetBucketObjectLockConfiguration on ${name}`);
    }
    throw bucket.fail(err, 'read Object Lock configuration');
  }
  if (!config.enabled) {
    throw lockError(bucket, 'does not have Object Lock enabled',
      `create a bucket with it (aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket; on Ceph RGW and MinIO the same flag), ` +
      `or on AWS turn it on for this versioned bucket (aws s3api put-object-lock-configuration --bucket ${name} --object-lock-configuration ObjectLockEnabled=Enabled), ` +
      `or remove "objectLock" from destination ${bucket.driver}`);
  }
  const versioning = await bucket.versioning(signal);
  if (versioning !== 'enabled') {
    throw lockError(bucket, `has versioning ${versioning === 'suspended' ? 'suspended' : 'off'}`,
      `Object Lock protects versions, so enable versioning (aws s3api put-bucket-versioning --bucket ${name} --versioning-configuration Status=Enabled)`);
  }
  if (config.defaultRule !== undefined) {
    const span = config.defaultRule.days !== undefined ? `${config.defaultRule.days} days` : `${config.defaultRule.years ?? '?'} years`;
    throw lockError(bucket, `has a default retention rule (${config.defaultRule.mode}, ${span})`,
      `it would also lock offsite's temporary objects and records, which must stay removable; offsite sets each object's retention itself (objectLock.retain), ` +
      `so remove the rule (aws s3api put-object-lock-configuration --bucket ${name} --object-lock-configuration ObjectLockEnabled=Enabled)`);
  }
}

/**
 * The versions of `full` that are still locked (by their HEAD, one per version that is not a
 * delete marker), checked before any of them is removed. Empty when none is.
 */
export async function lockedVersions(bucket: Bucket, full: string, versions: readonly StoredVersion[], signal: AbortSignal | undefined): Promise<Retention[]> {
  const { store } = bucket;
  if (store.retention === undefined) return [];
  const now = Date.now();
  const locked: Retention[] = [];
  for (const v of versions) {
    if (v.deleteMarker) continue;
    const retention = await store.retention(full, v.versionId, signal);
    if (retention !== undefined && retention.untilMs > now) locked.push(retention);
  }
  return locked;
}

/** `E_RETAINED`: `full` has versions locked until `untilMs`; nothing of it was removed. */
export function retainedError(bucket: Bucket, full: string, locked: readonly Retention[]): DriverError {
  const until = Math.max(...locked.map((r) => r.untilMs));
  const modes = [...new Set(locked.map((r) => r.mode))].join('/');
  const error = new DriverError('E_RETAINED',
    `${bucket.driver}: s3://${bucket.store.bucket}/${full} is locked (Object Lock ${modes}) until ${lockDate(until)}: offsite does not delete it before then; a prune after that date removes it`,
    { kind: 'permanent' });
  return Object.assign(error, { untilMs: until });
}

/** The driver's `objectLock` member (src/drivers/types.ts `ObjectLock`). */
export class LockControl implements ObjectLock {
  readonly mode: ObjectLockMode;
  readonly retainMs: number;
  #checked: Promise<void> | undefined;

  constructor(private readonly bucket: Bucket, settings: ObjectLockSettings) {
    this.mode = settings.mode;
    this.retainMs = settings.retainMs;
  }

  /** `checkBucket`, once per driver (a failure other than a refusal is asked again next time). */
  check(options: SignalOptions = {}): Promise<void> {
    this.#checked ??= checkBucket(this.bucket, options.signal).catch((err: unknown) => {
      if (!(err instanceof DriverError && err.code === 'E_OBJECT_LOCK')) this.#checked = undefined;
      throw err;
    });
    return this.#checked;
  }

  locks(key: string): boolean {
    return isLockedKey(key);
  }

  /**
   * The lock of every object under `prefix` that offsite locks (ListObjectsV2, then one HEAD per
   * object, `maxConcurrency` at a time, `BATCH` ahead: memory stays bounded). An object without a
   * retention is yielded without `untilMs`.
   */
  async *retentions(prefix: string, options: SignalOptions = {}): AsyncIterable<KeyRetention> {
    const { bucket } = this;
    const root = bucket.prefix;
    const full = root + checkDriverPrefix(bucket.driver, prefix);
    const head = bucket.store.retention?.bind(bucket.store);
    if (head === undefined) return;
    try {
      let batch: string[] = [];
      const flush = async (): Promise<KeyRetention[]> => {
        const out: KeyRetention[] = new Array(batch.length);
        let next = 0;
        const worker = async (): Promise<void> => {
          for (let i = next++; i < batch.length; i = next++) {
            const key = batch[i] as string;
            const r = await head(root + key, undefined, options.signal);
            out[i] = r === undefined ? { key } : { key, mode: r.mode, untilMs: r.untilMs };
          }
        };
        await Promise.all(Array.from({ length: Math.min(bucket.maxConcurrency, batch.length) }, worker));
        batch = [];
        return out;
      };
      for await (const object of bucket.store.list(full, bucket.listPageSize, options.signal)) {
        const key = object.key.slice(root.length);
        if (!object.key.startsWith(root) || key.endsWith('/') || isTempPath(key) || !isLockedKey(key)) continue;
        batch.push(key);
        if (batch.length >= BATCH) yield* await flush();
      }
      yield* await flush();
    } catch (err) {
      throw bucket.fail(err, 'read Object Lock retention', full);
    }
  }

  /**
   * Extends the lock of `key` to `untilMs` when it ends earlier (PutObjectRetention, the mode it
   * has, else the configured one); a lock that already lasts longer is left alone. Resolves with
   * the lock it has afterwards.
   */
  async extend(key: string, untilMs: number, options: SignalOptions = {}): Promise<KeyRetention> {
    const { bucket } = this;
    const full = bucket.fullKey(key);
    const { store } = bucket;
    try {
      const now = await store.retention?.(full, undefined, options.signal);
      if (now !== undefined && now.untilMs >= untilMs) return { key, mode: now.mode, untilMs: now.untilMs };
      const wanted: Retention = { mode: now?.mode ?? this.mode, untilMs };
      await store.putRetention?.(full, wanted, options.signal);
      return { key, mode: wanted.mode, untilMs };
    } catch (err) {
      throw bucket.failNeeding('s3:PutObjectRetention', err, 'extend Object Lock retention', full);
    }
  }
}
