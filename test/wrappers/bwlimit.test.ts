/**
 * The bandwidth limit layer (src/drivers/wrappers/bwlimit.ts): the token bucket on a virtual
 * clock (exact numbers), then real writes and reads through local drivers with generous time
 * bounds (this is not a benchmark: it shows a limit is applied, shared, and not absurdly slow).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import type { Driver } from '../../src/drivers/types.js';
import { createRateLimiter, takeFromAll, withBandwidthLimit, type RateLimiter } from '../../src/drivers/wrappers/bwlimit.js';
import { AbortedError, OffsiteError, UsageError } from '../../src/errors.js';
import { partOf, putObject, readAll, readKey, seededBytes } from '../conformance/suite.js';
import { FlakyDriver, INJECTED } from './flaky.js';

const KiB = 1024;
const MiB = 1024 * 1024;

const scratch: string[] = [];
after(async () => {
  for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
});
async function localDriver(name = 'disk'): Promise<Driver> {
  const dir = await mkdtemp(join(tmpdir(), 'offsite-bwlimit-'));
  scratch.push(dir);
  return createLocalDriver(name, { type: 'local', root: join(dir, 'root') });
}

/** A limiter on a virtual clock: sleeping advances the clock; every sleep is recorded. */
function virtualLimiter(bytesPerSecond: number, burstBytes?: number): { limiter: RateLimiter; clock: { now: number }; sleeps: number[] } {
  const clock = { now: 0 };
  const sleeps: number[] = [];
  const limiter = createRateLimiter(bytesPerSecond, {
    burstBytes,
    now: () => clock.now,
    sleep: async (ms) => {
      sleeps.push(ms);
      clock.now += ms;
    },
  });
  return { limiter, clock, sleeps };
}

function elapsed(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/** Writes `data` as one object in `partBytes` parts, parts one after the other. */
async function writeObject(driver: Driver, key: string, data: Buffer, partBytes: number): Promise<void> {
  const session = await driver.openWrite(key, { size: data.length, partBytes });
  for (let index = 0; index * partBytes < data.length; index++) await session.write(index, partOf(data, index, partBytes));
  await session.commit({ hash: 'xxh64:0000000000000000' });
}

describe('createRateLimiter (virtual clock)', () => {
  it('starts empty: the first bytes already wait', async () => {
    const { limiter, clock } = virtualLimiter(1000);
    await limiter.take(500);
    assert.equal(clock.now, 500);
    await limiter.take(1500);
    assert.equal(clock.now, 2000);
  });

  it('an idle spell buys at most burstBytes', async () => {
    const { limiter, clock, sleeps } = virtualLimiter(1000);
    assert.equal(limiter.burstBytes, 1000, 'one second worth');
    clock.now += 60_000;
    await limiter.take(1000);
    assert.deepEqual(sleeps, [], 'the burst passes at once');
    await limiter.take(250);
    assert.deepEqual(sleeps, [250], 'then the rate applies again');
    assert.equal(createRateLimiter(100 * MiB).burstBytes, 4 * MiB, 'the default burst is capped at 4 MiB');
    assert.equal(createRateLimiter(100, { burstBytes: 7 }).burstBytes, 7);
  });

  it('paces a large take in slices of at most 256 KiB instead of one long sleep', async () => {
    const { limiter, clock, sleeps } = virtualLimiter(8 * MiB);
    await limiter.take(8 * MiB);
    assert.equal(sleeps.length, 32);
    assert.ok(sleeps.every((ms) => ms <= 32), JSON.stringify(sleeps));
    assert.ok(Math.abs(clock.now - 1000) <= 32, `8 MiB at 8 MiB/s took ${clock.now} virtual ms`);
  });

  it('refuses rates that are not positive finite numbers', () => {
    for (const rate of [0, -1, Number.NaN, Infinity]) assert.throws(() => createRateLimiter(rate), UsageError, String(rate));
    assert.throws(() => createRateLimiter(100, { burstBytes: 0 }), UsageError);
  });

  it('an aborted signal rejects with AbortedError; a wait cut short gives its bytes back', async () => {
    const limiter = createRateLimiter(10_000);
    await assert.rejects(limiter.take(10, AbortSignal.abort()), AbortedError);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    let started = process.hrtime.bigint();
    await assert.rejects(limiter.take(10_000, controller.signal), AbortedError);
    assert.ok(elapsed(started) < 500, `abort took ${elapsed(started)} ms`);
    started = process.hrtime.bigint();
    await limiter.take(100);
    assert.ok(elapsed(started) < 300, `the next small take waited ${elapsed(started)} ms: the aborted bytes were not given back`);
  });

  it('serves concurrent takers slice by slice: a small take is not stuck behind a large one', async () => {
    const limiter = createRateLimiter(8 * MiB);
    let largeDone = 0;
    let smallDone = 0;
    const started = process.hrtime.bigint();
    const large = limiter.take(2 * MiB).then(() => { largeDone = elapsed(started); });
    await new Promise((resolve) => setTimeout(resolve, 10));
    await limiter.take(256 * KiB).then(() => { smallDone = elapsed(started); });
    await large;
    assert.ok(smallDone < largeDone, `small ${smallDone} ms, large ${largeDone} ms`);
    assert.ok(largeDone > 200, `2 MiB + 256 KiB at 8 MiB/s took only ${largeDone} ms`);
  });

  it('takeFromAll waits for the slowest limiter and charges every one of them', async () => {
    const fast = virtualLimiter(10_000);
    const slow = virtualLimiter(1000);
    await takeFromAll([fast.limiter, slow.limiter], 2000);
    assert.equal(slow.clock.now, 2000);
    assert.equal(fast.clock.now, 200);
  });
});

describe('withBandwidthLimit', () => {
  it('keeps name, description, capabilities and copyWithin; no limiters = the driver itself', async () => {
    const inner = await localDriver();
    const limited = withBandwidthLimit(inner, [createRateLimiter(MiB)]);
    assert.equal(limited.name, inner.name);
    assert.equal(limited.description, inner.description);
    assert.equal(limited.capabilities, inner.capabilities);
    assert.equal(typeof limited.copyWithin, 'function');
    assert.equal(withBandwidthLimit(inner, []), inner);
  });

  it('4 MiB written through an 8 MiB/s limiter takes about half a second; unlimited is faster', async () => {
    const data = seededBytes(4 * MiB, 1);
    let started = process.hrtime.bigint();
    await writeObject(await localDriver(), 'free', data, MiB);
    const unlimitedMs = elapsed(started);
    const limited = withBandwidthLimit(await localDriver(), [createRateLimiter(8 * MiB)]);
    started = process.hrtime.bigint();
    await writeObject(limited, 'slow', data, MiB);
    const limitedMs = elapsed(started);
    assert.ok(limitedMs > 380 && limitedMs < 2000, `limited: ${limitedMs} ms`);
    assert.ok(limitedMs > unlimitedMs, `limited ${limitedMs} ms vs unlimited ${unlimitedMs} ms`);
    assert.ok((await readKey(limited, 'slow')).equals(data));
  });

  it('one 8 MiB part is paced like smaller ones', async () => {
    const data = seededBytes(8 * MiB, 2);
    const limited = withBandwidthLimit(await localDriver(), [createRateLimiter(16 * MiB)]);
    const started = process.hrtime.bigint();
    await writeObject(limited, 'one-part', data, 8 * MiB);
    const ms = elapsed(started);
    assert.ok(ms > 380 && ms < 2000, `8 MiB at 16 MiB/s: ${ms} ms`);
  });

  it('a limiter shared by two drivers caps their sum; a per-destination limiter caps only its own', async () => {
    const total = createRateLimiter(8 * MiB);
    const a = withBandwidthLimit(await localDriver('a'), [total]);
    const b = withBandwidthLimit(await localDriver('b'), [total]);
    let started = process.hrtime.bigint();
    await Promise.all([writeObject(a, 'x', seededBytes(2 * MiB, 3), 512 * KiB), writeObject(b, 'x', seededBytes(2 * MiB, 4), 512 * KiB)]);
    const sharedMs = elapsed(started);
    assert.ok(sharedMs > 380 && sharedMs < 2000, `2 x 2 MiB through one 8 MiB/s limiter: ${sharedMs} ms`);

    const roomy = createRateLimiter(256 * MiB);
    const slowOne = withBandwidthLimit(await localDriver('slow'), [roomy, createRateLimiter(4 * MiB)]);
    const fastOne = withBandwidthLimit(await localDriver('fast'), [roomy, createRateLimiter(256 * MiB)]);
    started = process.hrtime.bigint();
    let fastMs = 0;
    let slowMs = 0;
    await Promise.all([
      writeObject(slowOne, 'x', seededBytes(MiB, 5), 256 * KiB).then(() => { slowMs = elapsed(started); }),
      writeObject(fastOne, 'x', seededBytes(MiB, 6), 256 * KiB).then(() => { fastMs = elapsed(started); }),
    ]);
    assert.ok(slowMs > 190, `1 MiB at 4 MiB/s: ${slowMs} ms`);
    assert.ok(fastMs < slowMs, `the destination with room (${fastMs} ms) is not held back by the slow one (${slowMs} ms)`);
  });

  it('reads are paced only with limitReads, and arrive intact (ranges too)', async () => {
    const inner = await localDriver();
    const data = seededBytes(2 * MiB, 7);
    await putObject(inner, 'obj', data);
    const writesOnly = withBandwidthLimit(inner, [createRateLimiter(4 * MiB)]);
    let started = process.hrtime.bigint();
    assert.ok((await readKey(writesOnly, 'obj')).equals(data));
    assert.ok(elapsed(started) < 300, `an unpaced read took ${elapsed(started)} ms`);
    const paced = withBandwidthLimit(inner, [createRateLimiter(8 * MiB)], { limitReads: true });
    started = process.hrtime.bigint();
    assert.ok((await readKey(paced, 'obj')).equals(data));
    const ms = elapsed(started);
    assert.ok(ms > 190 && ms < 2000, `2 MiB read at 8 MiB/s: ${ms} ms`);
    assert.ok((await readKey(paced, 'obj', 1000, 300_000)).equals(data.subarray(1000, 301_000)));
  });

  it('an abort while a write waits for bandwidth rejects at once and writes nothing', async () => {
    const flaky = new FlakyDriver(await localDriver());
    const limited = withBandwidthLimit(flaky, [createRateLimiter(64 * KiB)]);
    const session = await limited.openWrite('obj', { size: MiB, partBytes: MiB });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    const started = process.hrtime.bigint();
    await assert.rejects(session.write(0, seededBytes(MiB, 8), { signal: controller.signal }), AbortedError);
    assert.ok(elapsed(started) < 1000);
    assert.equal(flaky.count('write'), 0);
    await session.abort();
  });

  it('a paced read stream passes the inner stream\'s error through unchanged', async () => {
    const flaky = new FlakyDriver(await localDriver());
    await putObject(flaky, 'obj', seededBytes(600_000, 9));
    flaky.failReadsAfter(300_000, 1, 'retryable');
    const limited = withBandwidthLimit(flaky, [createRateLimiter(256 * MiB)], { limitReads: true });
    await assert.rejects(readAll(await limited.openRead('obj')), (err: unknown) => err instanceof OffsiteError && err.code === INJECTED && err.kind === 'retryable');
  });
});
