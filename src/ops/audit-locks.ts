/**
 * The S3 Object Lock part of `offsite audit`, for destinations with the `objectLock` option:
 * after the copies are checked, each copy's lock is read (one HEAD per object: ./object-locks.ts)
 * and reported (`AuditCopy.lock`), with a warning when
 *
 * - the retention policy given to audit (the same `--keep-*` options as prune) still keeps the
 *   copy but some of its objects are not locked (written before `objectLock` was set, or their
 *   lock has passed): they can be deleted by anyone with the destination's credentials;
 * - the lock ends before the policy would drop the copy (estimated by `keepUntil`: a rule keeping
 *   N days keeps a copy about N days from its time). A copy kept without a time limit (an
 *   unlimited count, or `--keep-last` alone) gets no such warning: no lock can last "for ever";
 *   `--extend-locks` keeps extending it, and the first warning shows once its objects are unlocked.
 *
 * `--extend-locks` extends the lock of every object of each copy the policy still keeps to the
 * date the policy keeps it until (or, when that is unknown or unlimited, or has passed, to now +
 * the destination's `retain`), with PutObjectRetention; locks that already last longer are left
 * as they are. Copies the policy removes are not extended: their locks run out and prune removes
 * them. Run it from the same cron job as audit, so locks keep pace with the policy.
 */
import type { Driver, ObjectLock } from '../drivers/types.js';
import { AbortedError, errorMessage, UsageError } from '../errors.js';
import { ManifestError, manifestKey, readManifestAt } from '../manifest/manifest.js';
import type { AuditCopy, AuditLock } from './audit-result.js';
import { copyLock, keepUntil } from './object-locks.js';
import { copyTime } from './prune.js';
import { applyRetention, checkPolicy, type RetentionDecision, type RetentionPolicy } from './retention.js';

export interface LockAuditOptions {
  /** The retention policy (as given to prune): which copies are still kept, and until about when. */
  readonly policy?: RetentionPolicy;
  /** Extend the locks of the copies the policy keeps (needs `policy`). */
  readonly extendLocks?: boolean;
  /** Bucket days/weeks/months in UTC (as prune's `utc`). @default false */
  readonly utc?: boolean;
  readonly now: Date;
  readonly signal?: AbortSignal;
}

/** A lock ending less than this before the policy's date is not worth a warning (the date is an estimate). */
const SLACK_MS = 60_000;

/** Copy states that have a manifest, so objects to look at. */
const WITH_OBJECTS = new Set<AuditCopy['state']>(['ok', 'repaired', 'damaged']);

/** Refuses `--extend-locks` without a policy (before any work). */
export function checkLockOptions(options: Pick<LockAuditOptions, 'policy' | 'extendLocks'>): void {
  if (options.policy !== undefined) checkPolicy(options.policy);
  if (options.extendLocks && options.policy === undefined) {
    throw new UsageError('--extend-locks needs the retention policy (the --keep-* options you give prune) to know which copies are still kept');
  }
}

/** `copies` with `lock` set for every copy with objects at a destination with Object Lock. */
export async function withLockStates(copies: readonly AuditCopy[], destinations: readonly Driver[], options: LockAuditOptions): Promise<AuditCopy[]> {
  const out = [...copies];
  for (const driver of destinations) {
    const lock = driver.objectLock;
    if (lock === undefined) continue;
    const here = out.map((copy, index) => ({ copy, index })).filter(({ copy }) => copy.destination === driver.name && WITH_OBJECTS.has(copy.state));
    const decisions = options.policy === undefined ? undefined : await decide(driver, here.map(({ copy }) => copy.backup), options.policy, options);
    for (const { copy, index } of here) out[index] = { ...copy, lock: await lockOf(lock, copy.backup, decisions?.get(copy.backup), options) };
  }
  return out;
}

/** The policy's decision for each copy (by the time in its manifest or name, as prune). */
async function decide(driver: Driver, backups: readonly string[], policy: RetentionPolicy, options: LockAuditOptions): Promise<Map<string, RetentionDecision>> {
  const items: { name: string; time: Date }[] = [];
  for (const name of backups) {
    try {
      const manifest = await readManifestAt(driver, manifestKey(name), { signal: options.signal });
      const time = manifest ? copyTime(name, manifest) : undefined;
      if (time) items.push({ name, time: time.time });
    } catch (err) {
      if (!(err instanceof ManifestError)) throw err;
    }
  }
  return new Map(applyRetention(items, policy, { utc: options.utc, now: options.now }).map((d) => [d.name, d]));
}

const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : Number.isFinite(ms) ? new Date(ms).toISOString() : 'for ever');
const day = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

async function lockOf(lock: ObjectLock, backup: string, decision: RetentionDecision | undefined, options: LockAuditOptions): Promise<AuditLock> {
  const nowMs = options.now.getTime();
  const kept = decision !== undefined && decision.keep;
  const keep = decision !== undefined && decision.keep && options.policy !== undefined ? keepUntil(decision.time, decision.reasons, options.policy) : undefined;
  try {
    let state = await copyLock(lock, backup, nowMs, options.signal);
    let extendedTo: number | undefined;
    if (options.extendLocks && kept) {
      // Whole seconds: what S3 stores, so that the next audit finds exactly this date.
      const target = Math.ceil((keep !== undefined && Number.isFinite(keep) && keep > nowMs ? keep : nowMs + lock.retainMs) / 1000) * 1000;
      let extended = false;
      for await (const r of lock.retentions(`${backup}/`, { signal: options.signal })) {
        if (r.untilMs !== undefined && r.untilMs >= target) continue;
        await lock.extend(r.key, target, { signal: options.signal });
        extended = true;
      }
      if (extended) {
        extendedTo = target;
        state = await copyLock(lock, backup, nowMs, options.signal);
      }
    }
    let warning: string | undefined;
    if (kept && state.unlocked > 0) {
      warning = `${state.unlocked} of ${state.objects} object(s) not locked (written before objectLock was set, or their lock has passed) though the retention policy keeps this copy: anyone with the destination's credentials can delete them; offsite audit --extend-locks locks them again`;
    } else if (kept && keep !== undefined && Number.isFinite(keep) && state.protectedUntilMs !== undefined && state.protectedUntilMs < keep - SLACK_MS) {
      warning = `the lock ends ${day(state.protectedUntilMs)}, before the retention policy would drop this copy (about ${day(keep)}); offsite audit --extend-locks extends it`;
    }
    return {
      state: state.objects > 0 && state.unlocked === 0 ? 'locked' : state.unlocked < state.objects ? 'partly' : 'unlocked',
      objects: state.objects, unlocked: state.unlocked, modes: state.modes,
      ...(state.protectedUntilMs !== undefined ? { protectedUntil: iso(state.protectedUntilMs) } : {}),
      ...(state.lockedUntilMs !== undefined ? { lockedUntil: iso(state.lockedUntilMs) } : {}),
      ...(keep !== undefined ? { keptUntil: iso(keep) } : {}),
      ...(extendedTo !== undefined ? { extendedTo: iso(extendedTo) } : {}),
      ...(warning !== undefined ? { warning } : {}),
    };
  } catch (err) {
    if (err instanceof AbortedError) throw err;
    return { state: 'error', objects: 0, unlocked: 0, modes: [], warning: `could not read the Object Lock state: ${errorMessage(err)}` };
  }
}
