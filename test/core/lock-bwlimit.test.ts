/**
 * Issue 11, finding 6: the lock file must never wait behind the bandwidth limit, and releasing it
 * must not wait for a refresh stuck there, so that SIGTERM is obeyed promptly under a small
 * `--bwlimit`. The limiter is put deep in debt by other writers, as a run's parts do.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { acquireLock, lockKey } from '../../src/core/lock.js';
import { LocalDriver } from '../../src/drivers/local/index.js';
import { createRateLimiter, withBandwidthLimit, withRetry } from '../../src/drivers/wrappers/index.js';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

describe('the lock under a bandwidth limit in debt', () => {
  it('is refreshed without waiting for the limit, and released at once after a stop', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-lock-bw-'));
    dirs.push(dir);
    const limiter = createRateLimiter(1024); // 1 KiB/s
    const driver = withRetry(withBandwidthLimit(new LocalDriver('d1', { root: dir, maxConcurrency: 4 }), [limiter]));
    const lock = await acquireLock(driver, 'b1', { settleMs: 10, refreshMs: 100 });
    const file = join(dir, lockKey('b1'));
    const firstTime = (JSON.parse(readFileSync(file, 'utf8')) as { time: string }).time;

    // 30 KiB of parts queued by "other files": about 30 s of debt at 1 KiB/s.
    const stop = new AbortController();
    const queued = Array.from({ length: 30 }, () => limiter.take(1024, stop.signal).catch(() => undefined));
    await new Promise((r) => setTimeout(r, 600));
    const refreshedTime = (JSON.parse(readFileSync(file, 'utf8')) as { time: string }).time;
    assert.notEqual(refreshedTime, firstTime, 'the lock was refreshed while the limit was in debt');

    stop.abort();
    const started = Date.now();
    await lock.release();
    const tookMs = Date.now() - started;
    assert.ok(tookMs < 2000, `release took ${tookMs} ms`);
    assert.ok(!existsSync(file), 'the lock file is gone');
    await Promise.all(queued);
  });
});
