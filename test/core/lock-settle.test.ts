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

describe('lock releaseAfter', () => {
  /** The local driver, with the lock's reads and deletes seen as they happen. */
  function watched(driver: LocalDriver): { driver: LocalDriver; seen: string[] } {
    const seen: string[] = [];
    const proxy = new Proxy(driver, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        if (property === 'openRead' || property === 'delete') {
          return (key: string, ...rest: unknown[]) => { seen.push(`${property} ${key}`); return (value as (...a: unknown[]) => unknown).call(target, key, ...rest); };
        }
        return (value as (...args: unknown[]) => unknown).bind(target);
      },
    });
    return { driver: proxy, seen };
  }

  it('keeps the lock until the work has ended, reading it back meanwhile, then removes it', async () => {
    const { dir, driver: local } = destination();
    const { driver, seen } = watched(local);
    const key = lockKey('b1');
    const lock = await acquireLock(driver, 'b1', { settleMs: 10 });
    seen.length = 0;
    let finish!: () => void;
    const work = new Promise<void>((resolve) => { finish = resolve; });
    const releasing = lock.releaseAfter(work);
    while (!seen.includes(`openRead ${key}`)) await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(seen, [`openRead ${key}`], 'read back while the work goes on, not deleted');
    assert.ok(existsSync(join(dir, key)), 'the lock is there until the work has ended');
    finish();
    await releasing;
    assert.deepEqual(seen, [`openRead ${key}`, `delete ${key}`]);
    assert.ok(!existsSync(join(dir, key)));
    await lock.release(); // the same release: nothing more
    assert.equal(seen.length, 2);
  });

  it('removes the lock when the work fails too, and never rejects', async () => {
    const { dir, driver } = destination();
    const lock = await acquireLock(driver, 'b1', { settleMs: 10 });
    await lock.releaseAfter(Promise.reject(new Error('manifest write failed')));
    assert.ok(!existsSync(join(dir, lockKey('b1'))));
  });

  it('leaves a lock that another run holds (taken over before the read-back)', async () => {
    const { dir, driver } = destination();
    const file = join(dir, lockKey('b1'));
    const lock = await acquireLock(driver, 'b1', { settleMs: 10 });
    const foreign = { token: 'other-run', owner: 'someone', host: 'elsewhere', pid: 1, time: new Date().toISOString() };
    writeFileSync(file, JSON.stringify(foreign));
    await lock.releaseAfter(Promise.resolve());
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { token: string }).token, 'other-run');
  });
});
