/**
 * The lock's `onWritten` (src/core/lock.ts): a run reads its destination again while its lock
 * settles (src/core/destination-state.ts), so the call must come once the lock is written (an
 * earlier holder's writes have all landed by then) and before the read-back decides; a lock lost
 * in the race still called it, and the caller drops what it started.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { acquireLock, lockKey } from '../../src/core/lock.js';
import { LocalDriver } from '../../src/drivers/local/index.js';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function destination(): { dir: string; driver: LocalDriver } {
  const dir = mkdtempSync(join(tmpdir(), 'offsite-lock-settle-'));
  dirs.push(dir);
  return { dir, driver: new LocalDriver('d1', { root: dir, maxConcurrency: 4 }) };
}

describe('lock onWritten', () => {
  it('is called once, with this run\'s lock written, before the settle delay has passed', async () => {
    const { dir, driver } = destination();
    const file = join(dir, lockKey('b1'));
    const calls: { token: string; at: number }[] = [];
    const started = Date.now();
    const lock = await acquireLock(driver, 'b1', {
      settleMs: 400,
      onWritten: () => calls.push({ token: (JSON.parse(readFileSync(file, 'utf8')) as { token: string }).token, at: Date.now() - started }),
    });
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.token, lock.info.token, 'the lock there is this run\'s when it is called');
    assert.ok((calls[0]?.at ?? Infinity) < Date.now() - started - 300, `called before the settle delay (at ${calls[0]?.at} ms)`);
    await lock.release();
    assert.ok(!existsSync(file));
  });

  it('is called even when the lock is then lost to a racing run, which keeps it', async () => {
    const { dir, driver } = destination();
    const file = join(dir, lockKey('b1'));
    let called = 0;
    const foreign = { token: 'other-run', owner: 'someone', host: 'elsewhere', pid: 1, time: new Date().toISOString() };
    // The racing run's write lands while this one settles.
    const taking = acquireLock(driver, 'b1', { settleMs: 300, onWritten: () => { called++; setTimeout(() => writeFileSync(file, JSON.stringify(foreign)), 50); } });
    await assert.rejects(taking, (err: Error & { code?: string }) => err.code === 'E_LOCKED');
    assert.equal(called, 1);
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { token: string }).token, 'other-run');
  });
});
