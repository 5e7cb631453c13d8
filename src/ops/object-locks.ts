/**
 * The S3 Object Lock state of backup copies, for prune and audit (destinations with the
 * `objectLock` option: src/drivers/object-store/object-lock.ts; `Driver.objectLock` in
 * src/drivers/types.ts).
 *
 * - `copyLock` reads the lock of every object of a copy that the driver locks (its data files and
 *   its manifest): the copy is protected until the EARLIEST of them ends (one unlocked file can be
 *   deleted), and cannot be removed before the LATEST has ended.
 * - `retainedUntil` is what prune asks before it touches a copy: the manifest alone first (it is
 *   written last, so it is normally locked longest), then every object only when the manifest's
 *   lock has passed (an extended or rewritten file may still be locked).
 * - `keepUntil` estimates until when a retention policy keeps a copy it keeps now, for audit's
 *   warning and `--extend-locks`.
 */
import type { Driver, KeyRetention, ObjectLock, ObjectLockMode } from '../drivers/types.js';
import { manifestKey, OFFSITE_DIR } from '../manifest/manifest.js';
import type { RetentionPolicy } from './retention.js';

/** The lock of one copy. */
export interface CopyLock {
  /** Objects the driver locks in this copy (data files and the manifest). */
  readonly objects: number;
  /** Of those, how many have no lock or one that has passed. */
  readonly unlocked: number;
  /** The earliest end of a lock still in force (ms); absent when none is. */
  readonly protectedUntilMs?: number;
  /** The latest end of any lock (ms): the copy cannot be removed before it; absent when no object has a lock. */
  readonly lockedUntilMs?: number;
  readonly modes: readonly ObjectLockMode[];
}

/** Reads the lock of every locked object of `backup` (see the file comment). */
export async function copyLock(lock: ObjectLock, backup: string, nowMs: number, signal?: AbortSignal): Promise<CopyLock> {
  let objects = 0;
  let unlocked = 0;
  let earliest: number | undefined;
  let latest: number | undefined;
  const modes = new Set<ObjectLockMode>();
  for await (const r of lock.retentions(`${backup}/`, { signal })) {
    objects++;
    if (r.mode !== undefined) modes.add(r.mode);
    if (r.untilMs !== undefined) latest = Math.max(latest ?? r.untilMs, r.untilMs);
    if (r.untilMs === undefined || r.untilMs <= nowMs) unlocked++;
    else earliest = Math.min(earliest ?? r.untilMs, r.untilMs);
  }
  return {
    objects, unlocked, ...(earliest !== undefined ? { protectedUntilMs: earliest } : {}), ...(latest !== undefined ? { lockedUntilMs: latest } : {}), modes: [...modes].sort(),
  };
}

/**
 * Until when `backup` at `driver` cannot be removed because an object of it is still locked, or
 * `undefined` when nothing is (or the driver locks nothing). See the file comment.
 */
export async function retainedUntil(driver: Driver, backup: string, nowMs: number, signal?: AbortSignal): Promise<{ untilMs: number; mode: string } | undefined> {
  const lock = driver.objectLock;
  if (lock === undefined) return undefined;
  const manifest = manifestKey(backup);
  let found: KeyRetention | undefined;
  for await (const r of lock.retentions(`${backup}/${OFFSITE_DIR}/`, { signal })) if (r.key === manifest) found = r;
  if (found?.untilMs !== undefined && found.untilMs > nowMs) return { untilMs: found.untilMs, mode: found.mode ?? lock.mode };
  const all = await copyLock(lock, backup, nowMs, signal);
  if (all.lockedUntilMs === undefined || all.lockedUntilMs <= nowMs) return undefined;
  return { untilMs: all.lockedUntilMs, mode: all.modes.join('/') || lock.mode };
}

const DAY_MS = 86_400_000;

/** `time` moved by whole calendar months (UTC). */
function addMonths(time: Date, months: number): number {
  const t = new Date(time.getTime());
  t.setUTCMonth(t.getUTCMonth() + months);
  return t.getTime();
}

/**
 * Until when `policy` will keep a copy of `time` that it keeps now by `reasons` (prune's wording:
 * `daily snapshot`, `oldest monthly snapshot`, `within 30d`...), assuming a new backup at least
 * once per period of each rule: a rule keeping the newest copy of each of the N newest days keeps
 * it about N days from its time. The longest of its rules wins; a rule with an unlimited count
 * keeps it for ever (`Infinity`); `last` (a count of copies, not of time) adds nothing, so a copy
 * kept only by it gets `undefined`.
 */
export function keepUntil(time: Date, reasons: readonly string[], policy: RetentionPolicy): number | undefined {
  let until: number | undefined;
  const take = (ms: number): void => { until = Math.max(until ?? ms, ms); };
  const count = (n: number | undefined): number => (n === undefined ? 0 : n < 0 ? Infinity : n);
  const t = time.getTime();
  for (const reason of reasons) {
    if (/hourly/.test(reason)) take(t + count(policy.keepHourly) * 3_600_000);
    else if (/daily/.test(reason)) take(t + count(policy.keepDaily) * DAY_MS);
    else if (/weekly/.test(reason)) take(t + count(policy.keepWeekly) * 7 * DAY_MS);
    else if (/monthly/.test(reason)) take(count(policy.keepMonthly) === Infinity ? Infinity : addMonths(time, count(policy.keepMonthly)));
    else if (/yearly/.test(reason)) take(count(policy.keepYearly) === Infinity ? Infinity : addMonths(time, 12 * count(policy.keepYearly)));
    else if (/^within/.test(reason) && policy.keepWithin !== undefined) {
      const w = policy.keepWithin;
      take(addMonths(time, 12 * w.years + w.months) + w.days * DAY_MS + w.hours * 3_600_000);
    }
  }
  return until;
}
