/**
 * Retention policy for `offsite prune`: which backup copies to keep. Pure (no IO, no clock
 * except through arguments), with the semantics of restic's `forget --keep-*`, so that anyone
 * who knows restic's policy knows this one:
 *
 * - The backups are sorted newest first (ties: by name, descending).
 * - Each rule has a budget (a count; -1 = unlimited; 0 = rule off) and a bucket function:
 *   `last` = every backup is its own bucket, `hourly` = local Y-M-D H, `daily` = local Y-M-D,
 *   `weekly` = ISO 8601 week-year + week (weeks start on Monday; 2024-12-30 is in week 1 of
 *   2025), `monthly` = local Y-M, `yearly` = local Y.
 * - Walking the list newest to oldest, a rule keeps a backup when the rule still has budget and
 *   the backup's bucket differs from the bucket of the last backup that same rule kept; keeping
 *   uses one unit of the budget. So each rule keeps the newest backup of each of its N newest
 *   buckets (restic: "for the last n days which have one or more snapshots, keep only the most
 *   recent one for each day").
 * - The oldest backup of all is also kept by any rule that still has budget left when the walk
 *   reaches it, even if its bucket was already kept (reason "oldest daily snapshot" etc.): with
 *   budget to spare, the longest history wins. (restic >= 0.16 does this.)
 * - `keepWithin` keeps every backup newer than (latest backup time - duration), where the latest
 *   backup is the newest one that is not in the future; the duration is calendar based
 *   (`1y6m` = one year and six months back, not 548 days).
 * - A backup is kept when at least one rule keeps it; the reasons list every rule that did, in
 *   the order within, last, hourly, daily, weekly, monthly, yearly (restic's wording:
 *   "daily snapshot", "weekly snapshot", "within 30d", ...).
 * - An empty policy (every count 0 and no keepWithin) is refused, as restic refuses it ("no
 *   policy was specified"): a prune that removes everything is never what was meant.
 * - Any non-empty policy keeps the newest backup.
 *
 * Time zone: buckets use the LOCAL time of the process, like restic (so run with `TZ=UTC` to
 * bucket by UTC days; milvus-backup's timestamped names are UTC). Pass `utc: true` to bucket in
 * UTC regardless of the process (tests do).
 */
import { UsageError } from '../errors.js';

export interface RetentionPolicy {
  /** Keep the N newest backups. */
  readonly keepLast?: number;
  /** Keep the newest backup of each of the N newest hours that have one. */
  readonly keepHourly?: number;
  /** ... of each of the N newest days that have one. */
  readonly keepDaily?: number;
  /** ... of each of the N newest ISO weeks that have one. */
  readonly keepWeekly?: number;
  /** ... of each of the N newest months that have one. */
  readonly keepMonthly?: number;
  /** ... of each of the N newest years that have one. */
  readonly keepYearly?: number;
  /** Keep every backup newer than this before the newest backup (see `parseRetentionDuration`). */
  readonly keepWithin?: RetentionDuration;
}

/** A calendar duration: restic's `1y5m7d2h` (m = months). */
export interface RetentionDuration {
  readonly years: number;
  readonly months: number;
  readonly days: number;
  readonly hours: number;
}

export interface RetentionItem {
  readonly name: string;
  readonly time: Date;
}

export interface RetentionDecision {
  readonly name: string;
  readonly time: Date;
  readonly keep: boolean;
  /** Why it is kept (empty when removed), e.g. `["daily snapshot", "monthly snapshot"]`. */
  readonly reasons: readonly string[];
}

export interface RetentionOptions {
  /** Bucket in UTC instead of the process's local time zone. @default false */
  readonly utc?: boolean;
  /** "Now", for `keepWithin` (a backup in the future never counts as the latest). @default new Date() */
  readonly now?: Date;
}

type Rule = 'last' | 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';

const RULES: readonly { readonly rule: Rule; readonly option: keyof RetentionPolicy; readonly flag: string }[] = [
  { rule: 'last', option: 'keepLast', flag: '--keep-last' },
  { rule: 'hourly', option: 'keepHourly', flag: '--keep-hourly' },
  { rule: 'daily', option: 'keepDaily', flag: '--keep-daily' },
  { rule: 'weekly', option: 'keepWeekly', flag: '--keep-weekly' },
  { rule: 'monthly', option: 'keepMonthly', flag: '--keep-monthly' },
  { rule: 'yearly', option: 'keepYearly', flag: '--keep-yearly' },
];

/** Parses restic's duration form: one or more of `<n>y`, `<n>m` (months), `<n>d`, `<n>h`, e.g. `1y6m`, `30d`, `36h`. */
export function parseRetentionDuration(text: string): RetentionDuration {
  const trimmed = text.trim();
  const parts = { y: 0, m: 0, d: 0, h: 0 };
  const seen = new Set<string>();
  const re = /(\d+)([ymdh])/gy;
  let at = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(trimmed)) !== null) {
    const unit = m[2] as keyof typeof parts;
    if (seen.has(unit)) break;
    seen.add(unit);
    parts[unit] = Number(m[1]);
    at = re.lastIndex;
  }
  if (trimmed === '' || at !== trimmed.length || seen.size === 0) {
    throw new UsageError(`invalid duration "${text}": use a number followed by y (years), m (months), d (days) or h (hours), each unit at most once, e.g. 1y6m, 30d, 36h`);
  }
  return { years: parts.y, months: parts.m, days: parts.d, hours: parts.h };
}

/** `1y6m`-style text of a duration (units that are 0 left out; `0h` for an all-zero one). */
export function formatRetentionDuration(d: RetentionDuration): string {
  const text = `${d.years ? `${d.years}y` : ''}${d.months ? `${d.months}m` : ''}${d.days ? `${d.days}d` : ''}${d.hours ? `${d.hours}h` : ''}`;
  return text || '0h';
}

function isZeroDuration(d: RetentionDuration | undefined): boolean {
  return !d || (d.years === 0 && d.months === 0 && d.days === 0 && d.hours === 0);
}

/** Throws a UsageError naming the bad option, or the missing policy. */
export function checkPolicy(policy: RetentionPolicy): void {
  for (const { option, flag } of RULES) {
    const n = policy[option];
    if (n === undefined) continue;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < -1) {
      throw new UsageError(`${flag} must be a whole number >= 0, or -1 / "unlimited" for no limit (got ${String(n)})`);
    }
  }
  const w = policy.keepWithin;
  if (w && [w.years, w.months, w.days, w.hours].some((n) => !Number.isInteger(n) || n < 0)) {
    throw new UsageError('--keep-within must be made of whole, non-negative numbers of years, months, days and hours');
  }
  if (isEmptyPolicy(policy)) {
    throw new UsageError('no policy was specified: give at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly (a number, or "unlimited") or --keep-within; nothing was removed');
  }
}

/** True when no rule would keep anything: every count 0 (or absent) and no keepWithin. */
export function isEmptyPolicy(policy: RetentionPolicy): boolean {
  return RULES.every(({ option }) => !policy[option]) && isZeroDuration(policy.keepWithin);
}

/** restic-style one-line description: `keep 7 daily, 4 weekly, all monthly snapshots and all snapshots within 30d of the newest`. */
export function describePolicy(policy: RetentionPolicy): string {
  const words: Record<Rule, string> = { last: 'latest', hourly: 'hourly', daily: 'daily', weekly: 'weekly', monthly: 'monthly', yearly: 'yearly' };
  const counts = RULES.flatMap(({ rule, option }) => {
    const n = policy[option] as number | undefined;
    if (!n) return [];
    return [`${n === -1 ? 'all' : n} ${words[rule]}`];
  });
  let text = counts.length > 0 ? `${counts.join(', ')} snapshots` : '';
  if (!isZeroDuration(policy.keepWithin)) {
    text += `${text ? ' and ' : ''}all snapshots within ${formatRetentionDuration(policy.keepWithin as RetentionDuration)} of the newest`;
  }
  return text ? `keep ${text}` : 'remove';
}

interface Fields { year: number; month: number; day: number; hour: number }

function fieldsOf(time: Date, utc: boolean): Fields {
  return utc
    ? { year: time.getUTCFullYear(), month: time.getUTCMonth() + 1, day: time.getUTCDate(), hour: time.getUTCHours() }
    : { year: time.getFullYear(), month: time.getMonth() + 1, day: time.getDate(), hour: time.getHours() };
}

/** ISO 8601 week-year and week of a calendar date (proleptic Gregorian; no time zone involved). */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const dayMs = 86_400_000;
  const date = Date.UTC(year, month - 1, day);
  const weekday = (new Date(date).getUTCDay() + 6) % 7; // Monday 0 .. Sunday 6
  const thursday = date + (3 - weekday) * dayMs; // the week belongs to the year of its Thursday
  const weekYear = new Date(thursday).getUTCFullYear();
  const week = Math.floor((thursday - Date.UTC(weekYear, 0, 1)) / dayMs / 7) + 1;
  return { year: weekYear, week };
}

function bucketOf(rule: Rule, f: Fields, index: number): string {
  switch (rule) {
    case 'last': return String(index);
    case 'hourly': return `${f.year}-${f.month}-${f.day} ${f.hour}`;
    case 'daily': return `${f.year}-${f.month}-${f.day}`;
    case 'weekly': { const w = isoWeek(f.year, f.month, f.day); return `${w.year}-W${w.week}`; }
    case 'monthly': return `${f.year}-${f.month}`;
    case 'yearly': return String(f.year);
  }
}

/** `time` minus a calendar duration, in local time (or UTC), the way Go's AddDate normalises (Mar 31 - 1m = Mar 2/3). */
function subtractDuration(time: Date, d: RetentionDuration, utc: boolean): Date {
  const t = new Date(time.getTime());
  if (utc) t.setUTCFullYear(t.getUTCFullYear() - d.years, t.getUTCMonth() - d.months, t.getUTCDate() - d.days);
  else t.setFullYear(t.getFullYear() - d.years, t.getMonth() - d.months, t.getDate() - d.days);
  return new Date(t.getTime() - d.hours * 3_600_000);
}

/**
 * Applies `policy` to `items`. Returns one decision per item, newest first. Throws a UsageError
 * for an empty or malformed policy. Items with an invalid date are refused (the caller decides
 * what a backup's time is).
 */
export function applyRetention(items: readonly RetentionItem[], policy: RetentionPolicy, options: RetentionOptions = {}): RetentionDecision[] {
  checkPolicy(policy);
  for (const item of items) {
    if (!(item.time instanceof Date) || Number.isNaN(item.time.getTime())) throw new UsageError(`retention: ${item.name} has no valid time`);
  }
  const utc = options.utc ?? false;
  const sorted = [...items].sort((a, b) => b.time.getTime() - a.time.getTime() || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
  if (sorted.length === 0) return [];

  const budgets = RULES.map(({ rule, option }) => ({ rule, left: (policy[option] as number | undefined) ?? 0, last: undefined as string | undefined }));
  let within: Date | undefined;
  let withinText = '';
  if (!isZeroDuration(policy.keepWithin)) {
    const nowMs = (options.now ?? new Date()).getTime();
    const latest = sorted.find((i) => i.time.getTime() <= nowMs);
    // Every backup in the future: none is "the latest", so all of them are within (restic's zero time).
    within = latest ? subtractDuration(latest.time, policy.keepWithin as RetentionDuration, utc) : new Date(-8.64e15);
    withinText = `within ${formatRetentionDuration(policy.keepWithin as RetentionDuration)}`;
  }

  return sorted.map((item, index) => {
    const reasons: string[] = [];
    if (within && item.time.getTime() > within.getTime()) reasons.push(withinText);
    const fields = fieldsOf(item.time, utc);
    const oldest = index === sorted.length - 1;
    for (const b of budgets) {
      if (b.left === 0) continue;
      const bucket = bucketOf(b.rule, fields, index);
      if (bucket === b.last && !oldest) continue;
      reasons.push(`${bucket === b.last ? 'oldest ' : ''}${b.rule === 'last' ? 'last' : b.rule} snapshot`);
      b.last = bucket;
      if (b.left > 0) b.left--;
    }
    return { name: item.name, time: item.time, keep: reasons.length > 0, reasons };
  });
}
