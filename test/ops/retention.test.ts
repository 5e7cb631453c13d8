/**
 * The retention policy (src/ops/retention.ts) against tables of dated backups and the keeps
 * restic's `forget` would choose: month and ISO-week boundaries (also across a year end),
 * several backups a day, unlimited budgets, the "oldest" rule, keep-within, rules combined, the
 * local time zone, and refusal of an empty or malformed policy. Buckets are computed in UTC
 * (`utc: true`) unless a test is about the local time zone, so results do not depend on the
 * machine's TZ.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError } from '../../src/errors.js';
import {
  applyRetention, checkPolicy, describePolicy, isoWeek, parseRetentionDuration, type RetentionItem, type RetentionPolicy,
} from '../../src/ops/retention.js';

/** `2025-01-02 02:00` (UTC) -> an item named after it. */
function item(when: string): RetentionItem {
  return { name: `b_${when.replace(/[-: ]/g, '_')}`, time: new Date(`${when.replace(' ', 'T')}:00Z`) };
}

/** when -> reasons ('' = removed), newest first, as applyRetention returns them. */
function plan(whens: readonly string[], policy: RetentionPolicy, options: { now?: Date } = {}): [string, string][] {
  return applyRetention(whens.map(item), policy, { utc: true, ...options }).map((d) => [
    d.time.toISOString().slice(0, 16).replace('T', ' '), d.reasons.join(', '),
  ]);
}

function expectUsage(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

describe('retention: restic forget semantics', () => {
  it('daily/weekly/monthly across a month end and an ISO year end (the README example)', () => {
    const backups = [
      '2024-11-15 02:00', '2024-11-30 02:00', '2024-12-29 02:00', '2024-12-30 02:00',
      '2024-12-31 02:00', '2025-01-01 02:00', '2025-01-01 14:00', '2025-01-02 02:00',
    ];
    assert.deepEqual(plan(backups, { keepDaily: 3, keepWeekly: 2, keepMonthly: 3 }), [
      ['2025-01-02 02:00', 'daily snapshot, weekly snapshot, monthly snapshot'],
      ['2025-01-01 14:00', 'daily snapshot'],
      ['2025-01-01 02:00', ''], // same day as the one above, which is newer
      ['2024-12-31 02:00', 'daily snapshot, monthly snapshot'], // December's newest
      ['2024-12-30 02:00', ''], // ISO week 2025-W01, like 2025-01-02; daily budget used up
      ['2024-12-29 02:00', 'weekly snapshot'], // 2024-W52
      ['2024-11-30 02:00', 'monthly snapshot'],
      ['2024-11-15 02:00', ''], // every budget used up
    ]);
  });

  it('the input order does not matter; the result is newest first, ties by name', () => {
    const items = [item('2025-03-01 10:00'), item('2025-03-03 10:00'), item('2025-03-02 10:00')];
    const twin = { name: 'a_twin', time: new Date('2025-03-03T10:00:00Z') };
    const decisions = applyRetention([...items, twin], { keepLast: 2 }, { utc: true });
    assert.deepEqual(decisions.map((d) => [d.name, d.keep]), [
      ['b_2025_03_03_10_00', true], ['a_twin', true], ['b_2025_03_02_10_00', false], ['b_2025_03_01_10_00', false],
    ]);
  });

  it('several backups on one day: the newest of each day is the daily one', () => {
    const backups = ['2025-05-01 01:00', '2025-05-01 12:00', '2025-05-01 23:59', '2025-05-02 00:00', '2025-05-02 06:00', '2025-05-03 09:00'];
    assert.deepEqual(plan(backups, { keepDaily: 2 }), [
      ['2025-05-03 09:00', 'daily snapshot'],
      ['2025-05-02 06:00', 'daily snapshot'],
      ['2025-05-02 00:00', ''],
      ['2025-05-01 23:59', ''],
      ['2025-05-01 12:00', ''],
      ['2025-05-01 01:00', ''],
    ]);
  });

  it('hourly buckets are clock hours', () => {
    assert.deepEqual(plan(['2025-05-01 10:05', '2025-05-01 10:55', '2025-05-01 11:00', '2025-05-01 11:59'], { keepHourly: 5 }), [
      ['2025-05-01 11:59', 'hourly snapshot'],
      ['2025-05-01 11:00', ''],
      ['2025-05-01 10:55', 'hourly snapshot'],
      ['2025-05-01 10:05', 'oldest hourly snapshot'], // budget left at the oldest: kept too
    ]);
  });

  it('ISO weeks: 2024-12-30 is in week 1 of 2025, with 2025-01-05; 2024-12-28 is in 2024-W52', () => {
    assert.deepEqual(plan(['2024-12-28 12:00', '2024-12-30 12:00', '2025-01-05 12:00', '2025-01-06 12:00', '2025-01-04 12:00'], { keepWeekly: 3 }), [
      ['2025-01-06 12:00', 'weekly snapshot'], // 2025-W02 (a Monday)
      ['2025-01-05 12:00', 'weekly snapshot'], // 2025-W01 (a Sunday)
      ['2025-01-04 12:00', ''],
      ['2024-12-30 12:00', ''], // still 2025-W01, though in December
      ['2024-12-28 12:00', 'weekly snapshot'], // 2024-W52
    ]);
    assert.deepEqual(isoWeek(2024, 12, 30), { year: 2025, week: 1 });
    assert.deepEqual(isoWeek(2024, 12, 29), { year: 2024, week: 52 });
    assert.deepEqual(isoWeek(2021, 1, 3), { year: 2020, week: 53 });
    assert.deepEqual(isoWeek(2027, 1, 1), { year: 2026, week: 53 });
    assert.deepEqual(isoWeek(2026, 1, 1), { year: 2026, week: 1 });
    assert.deepEqual(isoWeek(2008, 12, 29), { year: 2009, week: 1 });
  });

  it('isoWeek agrees with an independent ordinal-date computation for every day 1999..2031', () => {
    const dayMs = 86_400_000;
    const weeksIn = (y: number): number => {
      const p = (n: number) => (n + Math.floor(n / 4) - Math.floor(n / 100) + Math.floor(n / 400)) % 7;
      return p(y) === 4 || p(y - 1) === 3 ? 53 : 52;
    };
    let checked = 0;
    for (let t = Date.UTC(1999, 0, 1); t <= Date.UTC(2031, 11, 31); t += dayMs) {
      const d = new Date(t);
      const y = d.getUTCFullYear();
      const ordinal = Math.round((t - Date.UTC(y, 0, 1)) / dayMs) + 1;
      const weekday = d.getUTCDay() || 7;
      let week = Math.floor((ordinal - weekday + 10) / 7);
      let year = y;
      if (week < 1) { year = y - 1; week = weeksIn(year); } else if (week > weeksIn(y)) { year = y + 1; week = 1; }
      assert.deepEqual(isoWeek(y, d.getUTCMonth() + 1, d.getUTCDate()), { year, week }, d.toISOString());
      checked++;
    }
    assert.ok(checked > 12_000);
  });

  it('month boundaries: the last minute of January and the first of February are different months; leap day', () => {
    const backups = ['2024-01-31 23:59', '2024-02-01 00:00', '2024-02-29 12:00', '2024-03-01 00:00'];
    assert.deepEqual(plan(backups, { keepMonthly: 2 }), [
      ['2024-03-01 00:00', 'monthly snapshot'],
      ['2024-02-29 12:00', 'monthly snapshot'],
      ['2024-02-01 00:00', ''],
      ['2024-01-31 23:59', ''], // budget used up
    ]);
    assert.deepEqual(plan(backups, { keepMonthly: 3 }).map(([, r]) => r), ['monthly snapshot', 'monthly snapshot', '', 'monthly snapshot']);
  });

  it('the oldest backup is kept by a rule that still has budget, even in an already kept bucket', () => {
    const backups = ['2024-02-10 00:00', '2024-02-20 00:00', '2024-03-05 00:00', '2024-03-10 00:00'];
    assert.deepEqual(plan(backups, { keepMonthly: 5 }), [
      ['2024-03-10 00:00', 'monthly snapshot'],
      ['2024-03-05 00:00', ''],
      ['2024-02-20 00:00', 'monthly snapshot'],
      ['2024-02-10 00:00', 'oldest monthly snapshot'],
    ]);
    assert.deepEqual(plan(backups, { keepMonthly: 2 }).at(-1), ['2024-02-10 00:00', ''], 'no budget left: removed');
  });

  it('unlimited (-1) keeps the newest of every bucket, and the oldest', () => {
    const backups = ['2023-06-01 00:00', '2023-06-15 00:00', '2023-12-24 00:00', '2024-01-02 00:00', '2024-01-20 00:00', '2025-07-07 00:00'];
    assert.deepEqual(plan(backups, { keepYearly: -1 }), [
      ['2025-07-07 00:00', 'yearly snapshot'],
      ['2024-01-20 00:00', 'yearly snapshot'],
      ['2024-01-02 00:00', ''],
      ['2023-12-24 00:00', 'yearly snapshot'],
      ['2023-06-15 00:00', ''],
      ['2023-06-01 00:00', 'oldest yearly snapshot'],
    ]);
    assert.equal(plan(backups, { keepLast: -1 }).every(([, r]) => r === 'last snapshot'), true, 'keep-last unlimited keeps all');
  });

  it('keep-last combined with monthly: reasons list every rule that kept a backup, in restic order', () => {
    const backups = ['2024-10-31 00:00', '2024-11-29 00:00', '2024-11-30 00:00', '2024-12-01 00:00', '2024-12-02 00:00'];
    assert.deepEqual(plan(backups, { keepLast: 2, keepMonthly: 2 }), [
      ['2024-12-02 00:00', 'last snapshot, monthly snapshot'],
      ['2024-12-01 00:00', 'last snapshot'],
      ['2024-11-30 00:00', 'monthly snapshot'],
      ['2024-11-29 00:00', ''],
      ['2024-10-31 00:00', ''],
    ]);
  });

  it('keep-within counts back from the newest backup that is not in the future, by calendar', () => {
    const now = new Date('2025-06-10T00:00:00Z');
    const backups = ['2025-06-01 23:00', '2025-06-02 01:00', '2025-06-03 00:00', '2025-06-09 00:00', '2025-06-20 00:00'];
    assert.deepEqual(plan(backups, { keepWithin: parseRetentionDuration('7d') }, { now }), [
      ['2025-06-20 00:00', 'within 7d'], // in the future: not "the newest", but newer than the cutoff
      ['2025-06-09 00:00', 'within 7d'], // the newest: cutoff 2025-06-02 00:00
      ['2025-06-03 00:00', 'within 7d'],
      ['2025-06-02 01:00', 'within 7d'],
      ['2025-06-01 23:00', ''],
    ]);
    // Months are calendar months, normalised like Go's AddDate: 2025-03-31 minus 1 month = "02-31" = 03-03.
    assert.deepEqual(plan(['2025-03-02 12:00', '2025-03-03 00:00', '2025-03-04 00:00', '2025-03-31 00:00'], { keepWithin: parseRetentionDuration('1m') }, { now }).map(([, r]) => r),
      ['within 1m', 'within 1m', '', '']);
  });

  it('keep-within and counts together', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    assert.deepEqual(plan(['2025-01-15 00:00', '2025-05-01 00:00', '2025-12-20 00:00', '2025-12-30 00:00'], { keepWithin: parseRetentionDuration('2d'), keepYearly: 1 }, { now }), [
      ['2025-12-30 00:00', 'within 2d, yearly snapshot'],
      ['2025-12-20 00:00', ''],
      ['2025-05-01 00:00', ''],
      ['2025-01-15 00:00', ''],
    ]);
  });

  it('buckets follow the local time zone of the process, like restic (utc: false)', () => {
    const saved = process.env['TZ'];
    try {
      process.env['TZ'] = 'Asia/Tokyo'; // UTC+9, no DST
      // 2025-01-01 20:00 UTC is 2025-01-02 05:00 in Tokyo: the same Tokyo day as 2025-01-02 10:00 UTC (19:00).
      const items = [
        { name: 'late_utc_new_year', time: new Date('2025-01-01T20:00:00Z') },
        { name: 'next_day_utc', time: new Date('2025-01-02T10:00:00Z') },
        { name: 'earlier', time: new Date('2025-01-01T10:00:00Z') },
      ];
      const local = applyRetention(items, { keepDaily: 2 }).map((d) => [d.name, d.keep]);
      assert.deepEqual(local, [['next_day_utc', true], ['late_utc_new_year', false], ['earlier', true]], 'Tokyo days: Jan 2 (two backups), Jan 1 (one)');
      const utc = applyRetention(items, { keepDaily: 2 }, { utc: true }).map((d) => [d.name, d.keep]);
      assert.deepEqual(utc, [['next_day_utc', true], ['late_utc_new_year', true], ['earlier', false]], 'UTC days: Jan 2 (one), Jan 1 (two)');
    } finally {
      if (saved === undefined) delete process.env['TZ'];
      else process.env['TZ'] = saved;
    }
  });

  it('properties on random data: the newest is always kept, a rule keeps at most its count, raising a count never removes more', () => {
    let seed = 12345;
    const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
    const rules = ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly'] as const;
    for (let round = 0; round < 300; round++) {
      const items: RetentionItem[] = Array.from({ length: 1 + rand(40) }, (_, i) => ({
        name: `n${i}`, time: new Date(Date.UTC(2022, 0, 1) + rand(3 * 365 * 24) * 3_600_000 + rand(3_600_000)),
      }));
      const policy: Record<string, number> = {};
      for (const r of rules) if (rand(2)) policy[r] = rand(6);
      if (Object.values(policy).every((n) => n === 0)) policy['keepDaily'] = 1 + rand(4);
      const decisions = applyRetention(items, policy, { utc: true });
      assert.equal(decisions.length, items.length);
      assert.equal(decisions[0]?.keep, true, 'the newest is kept');
      const budget = Object.values(policy).reduce((a, b) => a + b, 0);
      assert.ok(decisions.filter((d) => d.keep).length <= budget, 'no more kept than the counts allow');
      const keptBefore = new Set(decisions.filter((d) => d.keep).map((d) => d.name));
      const raised = rules[rand(rules.length)] as string;
      const more = applyRetention(items, { ...policy, [raised]: (policy[raised] ?? 0) + 1 }, { utc: true });
      for (const name of keptBefore) assert.ok(more.find((d) => d.name === name)?.keep, `raising ${raised} keeps ${name}`);
    }
  });

  it('refuses an empty policy, like restic ("no policy was specified")', () => {
    expectUsage(() => applyRetention([item('2025-01-01 00:00')], {}), /^no policy was specified: give at least one of --keep-last/);
    expectUsage(() => applyRetention([], { keepDaily: 0, keepWithin: parseRetentionDuration('0d') }), /no policy was specified/);
    expectUsage(() => checkPolicy({ keepDaily: -2 }), /--keep-daily must be a whole number >= 0, or -1/);
    expectUsage(() => checkPolicy({ keepWeekly: 1.5 }), /--keep-weekly must be a whole number/);
    assert.deepEqual(applyRetention([], { keepLast: 1 }), [], 'no backups: nothing to decide');
  });

  it('parses restic durations (m = months) and refuses anything else', () => {
    assert.deepEqual(parseRetentionDuration('1y6m'), { years: 1, months: 6, days: 0, hours: 0 });
    assert.deepEqual(parseRetentionDuration('2d36h'), { years: 0, months: 0, days: 2, hours: 36 });
    assert.deepEqual(parseRetentionDuration('7d1y'), { years: 1, months: 0, days: 7, hours: 0 });
    for (const bad of ['', '5', '1w', '1m1m', '1.5d', '-1d', 'd', '1d ']) {
      if (bad === '1d ') { assert.deepEqual(parseRetentionDuration(bad).days, 1, 'surrounding spaces are fine'); continue; }
      expectUsage(() => parseRetentionDuration(bad), /^invalid duration ".*": use a number followed by y \(years\), m \(months\)/);
    }
  });

  it('describes a policy the way restic does', () => {
    assert.equal(describePolicy({ keepDaily: 7, keepWeekly: 4, keepMonthly: -1 }), 'keep 7 daily, 4 weekly, all monthly snapshots');
    assert.equal(describePolicy({ keepLast: 1, keepWithin: parseRetentionDuration('30d') }), 'keep 1 latest snapshots and all snapshots within 30d of the newest');
  });
});
