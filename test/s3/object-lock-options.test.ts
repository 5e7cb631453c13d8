/**
 * S3 Object Lock without a server: the `objectLock` key of `type: s3` (read, refused, read twice
 * as the config loader does), which keys offsite locks, and the retention policy's estimate of
 * how long it keeps a copy (what audit compares locks with).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeSection } from '../../src/config/schema.js';
import { isLockedKey } from '../../src/drivers/object-store/object-lock.js';
import { parseS3Options } from '../../src/drivers/s3/index.js';
import { S3_SCHEMA } from '../../src/drivers/s3/options.js';
import { ConfigError } from '../../src/errors.js';
import { keepUntil } from '../../src/ops/object-locks.js';
import { parseRetentionDuration } from '../../src/ops/retention.js';

const base = { type: 's3', bucket: 'bkt', endpoint: 'http://127.0.0.1:7480' };

describe('objectLock option of type s3', () => {
  it('reads mode and retain, also after the config loader normalized the section', () => {
    const section = { ...base, objectLock: { mode: 'governance', retain: '30d' } };
    assert.deepEqual(parseS3Options('cloud', section).objectLock, { mode: 'GOVERNANCE', retainMs: 30 * 86_400_000 });
    const normal = normalizeSection(S3_SCHEMA, section, { section: 'destinations.cloud', type: 's3' });
    assert.deepEqual(parseS3Options('cloud', normal).objectLock, { mode: 'GOVERNANCE', retainMs: 30 * 86_400_000 });
    assert.deepEqual(parseS3Options('cloud', { ...base, objectLock: { mode: 'COMPLIANCE', retain: 90 } }).objectLock, { mode: 'COMPLIANCE', retainMs: 90_000 });
    assert.equal(parseS3Options('cloud', base).objectLock, undefined, 'off by default');
  });

  for (const [what, value, message] of [
    ['a wrong mode', { mode: 'LEGAL', retain: '1d' }, /"objectLock" must be .*"mode" must be GOVERNANCE or COMPLIANCE, got "LEGAL"/],
    ['no retain', { mode: 'GOVERNANCE' }, /"retain" must be a duration like 30d, got null/],
    ['a retain that is no duration', { mode: 'GOVERNANCE', retain: '30 days' }, /"retain" must be a duration like 30d, 12h or 90s, got "30 days"/],
    ['a retain below a second', { mode: 'GOVERNANCE', retain: '10ms' }, /"retain" must be from 1s to 36500d/],
    ['an unknown key', { mode: 'GOVERNANCE', retain: '1d', days: 3 }, /unknown key "days" \(known: mode, retain\)/],
    ['not a mapping', 'GOVERNANCE', /"objectLock" must be \{ mode: GOVERNANCE \| COMPLIANCE, retain: DURATION \}/],
  ] as const) {
    it(`refuses ${what}`, () => {
      assert.throws(() => parseS3Options('cloud', { ...base, objectLock: value }), (err: unknown) => err instanceof ConfigError && message.test(err.message));
    });
  }
});

describe('which keys offsite locks', () => {
  it('backup data and manifests, not its bookkeeping or root records', () => {
    for (const key of ['b/meta/backup_meta.json', 'b/binlogs/insert_log/1/2/3/4/5', 'b/.offsite/manifest.json']) assert.equal(isLockedKey(key), true, key);
    for (const key of ['b/.offsite/lock.json', 'b/.offsite/progress.json', 'b/.offsite/pruning.json', '.offsite/pruned.json', '.offsite/audit.json', 'top-level-file', 'b/.offsite/x/manifest.json']) {
      assert.equal(isLockedKey(key), false, key);
    }
  });
});

describe('until when a retention policy keeps a copy', () => {
  const time = new Date('2025-01-15T02:00:00Z');
  it('the longest of the rules that keep it, counted from its time', () => {
    assert.equal(keepUntil(time, ['daily snapshot'], { keepDaily: 7 }), Date.parse('2025-01-22T02:00:00Z'));
    assert.equal(keepUntil(time, ['daily snapshot', 'weekly snapshot'], { keepDaily: 7, keepWeekly: 4 }), Date.parse('2025-02-12T02:00:00Z'));
    assert.equal(keepUntil(time, ['oldest monthly snapshot'], { keepMonthly: 12 }), Date.parse('2026-01-15T02:00:00Z'));
    assert.equal(keepUntil(time, ['within 1y6m'], { keepWithin: parseRetentionDuration('1y6m') }), Date.parse('2026-07-15T02:00:00Z'));
    assert.equal(keepUntil(time, ['monthly snapshot'], { keepMonthly: -1 }), Infinity);
    assert.equal(keepUntil(time, ['last snapshot'], { keepLast: 3 }), undefined, 'a count of copies says nothing about time');
  });
});
