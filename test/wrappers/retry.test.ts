/**
 * The retry layer (src/drivers/wrappers/retry.ts) over a local driver with injected faults
 * (./flaky.ts): what is retried and how often, what goes through at once, backoff and jitter,
 * part-level retries, read streams that resume at their offset, list, abort during backoff.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import type { Driver } from '../../src/drivers/types.js';
import { backoffDelayMs, withRetry, type RetryInfo, type RetryPolicy } from '../../src/drivers/wrappers/retry.js';
import { AbortedError, OffsiteError, UsageError, type ErrorKind } from '../../src/errors.js';
import { getHasher } from '../../src/hash/xxh64.js';
import { hashOf, listAll, partOf, putObject, readAll, readKey, seededBytes } from '../conformance/suite.js';
import { FlakyDriver, INJECTED } from './flaky.js';

const scratch: string[] = [];
after(async () => {
  for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
});

interface Setup {
  readonly flaky: FlakyDriver;
  readonly driver: Driver;
  readonly sleeps: number[];
  readonly retries: RetryInfo[];
}

/** A local driver behind the flaky double behind the retry layer; sleeps are recorded, not slept. */
async function setup(policy: RetryPolicy = {}): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'offsite-retry-'));
  scratch.push(dir);
  const flaky = new FlakyDriver(await createLocalDriver('disk', { type: 'local', root: join(dir, 'root') }));
  const sleeps: number[] = [];
  const retries: RetryInfo[] = [];
  const driver = withRetry(flaky, {
    random: () => 0.5,
    sleep: async (ms, signal) => {
      if (signal?.aborted) throw new AbortedError('test sleep');
      sleeps.push(ms);
    },
    onRetry: (info) => retries.push(info),
    ...policy,
  });
  return { flaky, driver, sleeps, retries };
}

async function rejection(action: () => Promise<unknown>): Promise<OffsiteError> {
  try {
    await action();
  } catch (err) {
    assert.ok(err instanceof OffsiteError, `expected an OffsiteError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}

describe('withRetry', () => {
  it('backoffDelayMs: full jitter under an exponential cap that stops at maxDelayMs', () => {
    const half = (): number => 0.5;
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffDelayMs(a, 250, 10_000, half)), [125, 250, 500, 1000, 2000, 4000, 5000, 5000]);
    assert.equal(backoffDelayMs(3, 250, 10_000, () => 0), 0);
    assert.equal(backoffDelayMs(3, 250, 10_000, () => 0.999999), 999);
    assert.equal(backoffDelayMs(60, 250, 10_000, () => 0.999999), 9999, 'no overflow for large attempts');
  });

  it('keeps name, description and capabilities; has copyWithin only when the driver has it', async () => {
    const { flaky, driver } = await setup();
    assert.equal(driver.name, 'disk');
    assert.equal(driver.description, flaky.description);
    assert.equal(driver.capabilities, flaky.capabilities);
    assert.equal(typeof driver.copyWithin, 'function');
    const bare: Driver = { ...flaky, name: 'bare', description: 'bare', location: flaky.location, capabilities: flaky.capabilities, list: () => flaky.list(''), stat: (k) => flaky.stat(k), openRead: (k) => flaky.openRead(k), openWrite: (k, o) => flaky.openWrite(k, o), delete: (k) => flaky.delete(k), sync: () => flaky.sync(), close: () => flaky.close() };
    delete (bare as { copyWithin?: unknown }).copyWithin;
    assert.equal(withRetry(bare).copyWithin, undefined);
  });

  it('retries retryable errors with growing jittered delays, and reports each retry', async () => {
    const { flaky, driver, sleeps, retries } = await setup();
    await putObject(driver, 'a/file', seededBytes(100, 1));
    const before = flaky.count('stat a/file');
    flaky.fail('stat', 3);
    assert.equal((await driver.stat('a/file'))?.size, 100);
    assert.equal(flaky.count('stat a/file') - before, 4, 'three failures, then success');
    assert.deepEqual(sleeps, [125, 250, 500]);
    assert.deepEqual(retries.map((r) => [r.op, r.key, r.attempt, r.delayMs]), [['stat', 'a/file', 1, 125], ['stat', 'a/file', 2, 250], ['stat', 'a/file', 3, 500]]);
    assert.equal((retries[0]?.error as OffsiteError).code, INJECTED);
  });

  for (const kind of ['auth', 'permanent', 'integrity', 'not-found', 'fatal'] as const satisfies readonly ErrorKind[]) {
    it(`lets a ${kind} error through at once, unchanged`, async () => {
      const { flaky, driver, sleeps } = await setup();
      flaky.fail('delete', 5, kind);
      const err = await rejection(() => driver.delete('x'));
      assert.equal(err.kind, kind);
      assert.equal(err.code, INJECTED);
      assert.doesNotMatch(err.message, /retries/);
      assert.equal(flaky.count('delete'), 1);
      assert.deepEqual(sleeps, []);
    });
  }

  it('after the last retry rethrows the last error with its kind and "(after N retries)"', async () => {
    const { flaky, driver, sleeps } = await setup({ retries: 3 });
    flaky.fail('stat', 10);
    const err = await rejection(() => driver.stat('k'));
    assert.equal(err.kind, 'retryable');
    assert.equal(err.code, INJECTED);
    assert.match(err.message, /^disk: k: injected retryable fault in stat \(after 3 retries\)$/);
    assert.equal(flaky.count('stat'), 4);
    assert.equal(sleeps.length, 3);

    const once = await setup({ retries: 1 });
    once.flaky.fail('stat', 2);
    assert.match((await rejection(() => once.driver.stat('k'))).message, /\(after 1 retry\)$/);
  });

  it('retries: 0 turns retrying off and leaves the message alone', async () => {
    const { flaky, driver, sleeps } = await setup({ retries: 0 });
    flaky.fail('stat', 1);
    const err = await rejection(() => driver.stat('k'));
    assert.equal(err.message, 'disk: k: injected retryable fault in stat');
    assert.deepEqual(sleeps, []);
  });

  it('refuses a bad policy with a UsageError', () => {
    const flaky = { name: 'x' } as Driver;
    for (const policy of [{ retries: -1 }, { retries: 1.5 }, { baseDelayMs: Number.NaN }, { maxDelayMs: -5 }, { retries: Infinity }]) {
      assert.throws(() => withRetry(flaky, policy), UsageError, JSON.stringify(policy));
    }
  });

  it('a failed part is retried as that part only; open, matches and commit are retried too', async () => {
    const { flaky, driver } = await setup();
    const data = seededBytes(3000, 2);
    flaky.fail('openWrite', 1);
    const session = await driver.openWrite('obj', { size: 3000, partBytes: 1000 });
    await session.write(0, partOf(data, 0, 1000));
    flaky.fail('write', 2);
    await session.write(1, partOf(data, 1, 1000));
    flaky.fail('write', 1, 'retryable', 'after'); // stored, but the answer was lost
    await session.write(2, partOf(data, 2, 1000));
    flaky.fail('matches', 1);
    assert.equal(await session.matches(0, partOf(data, 0, 1000)), true);
    flaky.fail('commit', 2);
    await session.commit({ hash: await hashOf(data) });
    assert.deepEqual(flaky.log.filter((l) => !l.startsWith('stat')), [
      'openWrite obj', 'openWrite obj',
      'write obj 0', 'write obj 1', 'write obj 1', 'write obj 1', 'write obj 2', 'write obj 2',
      'matches obj 0', 'matches obj 0',
      'commit obj', 'commit obj', 'commit obj',
    ]);
    assert.ok((await readKey(driver, 'obj')).equals(data));
  });

  it('delete and copyWithin are retried', async () => {
    const { flaky, driver } = await setup();
    await putObject(driver, 'src', seededBytes(10, 3));
    flaky.fail('copyWithin', 2);
    await driver.copyWithin?.('src', 'dst');
    flaky.fail('delete', 2);
    await driver.delete('src');
    assert.equal(flaky.count('copyWithin'), 3);
    assert.equal(flaky.count('delete'), 3);
    assert.deepEqual((await listAll(driver, '')).map((e) => e.key), ['dst']);
  });

  it('readHashes is retried as a whole call; onBytes is told each byte once; other kinds go through at once', async () => {
    const { flaky, driver, retries } = await setup();
    const data = seededBytes(300_000, 5);
    await putObject(driver, 'h', data);
    const hasher = await getHasher();
    // Fails after the call went through: its bytes were told once already.
    flaky.fail('readHashes', 2, 'retryable', 'after');
    let told = 0;
    const found = await driver.readHashes?.('h', { size: data.length, chunkBytes: 100_000, whole: true, onBytes: (n) => { told += n; } });
    assert.deepEqual(found, { chunks: [0, 1, 2].map((i) => hasher.hash(data.subarray(i * 100_000, (i + 1) * 100_000))), hash: hasher.hash(data) });
    assert.equal(flaky.count('readHashes'), 3);
    assert.equal(told, data.length, 'no byte told twice');
    assert.deepEqual(retries.map((r) => [r.op, r.key]), [['readHashes', 'h'], ['readHashes', 'h']]);
    flaky.fail('readHashes', 1, 'integrity');
    assert.equal((await rejection(() => driver.readHashes?.('h', { size: data.length, chunkBytes: 100_000 }) as Promise<unknown>)).kind, 'integrity');
    assert.equal(flaky.count('readHashes'), 4);
    assert.equal((await rejection(() => driver.readHashes?.('h', { size: data.length + 1, chunkBytes: 100_000 }) as Promise<unknown>)).code, 'E_SIZE_CHANGED', 'a wrong size is not retried');
    assert.equal(flaky.count('readHashes'), 5);
  });

  describe('openRead', () => {
    const data = seededBytes(1_000_000, 4);

    it('retries the open; a missing key is not-found at once', async () => {
      const { flaky, driver } = await setup();
      await putObject(driver, 'big', data);
      flaky.fail('openRead', 2);
      assert.ok((await readKey(driver, 'big')).equals(data));
      assert.equal(flaky.count('openRead'), 3);
      const err = await rejection(() => driver.openRead('missing'));
      assert.equal(err.kind, 'not-found');
      assert.equal(flaky.count('openRead missing'), 1);
    });

    it('a stream that breaks mid-way resumes at the byte it stopped at', async () => {
      const { flaky, driver, retries } = await setup();
      await putObject(driver, 'big', data);
      flaky.failReadsAfter(300_000, 2);
      const got = await readAll(await driver.openRead('big'));
      assert.equal(got.length, data.length);
      assert.ok(got.equals(data), 'bytes differ after resuming');
      assert.deepEqual(flaky.log.filter((l) => l.startsWith('openRead')), ['openRead big 0+-', 'openRead big 300000+-', 'openRead big 600000+-']);
      assert.deepEqual(retries.map((r) => [r.op, r.offset, r.attempt]), [['read', 300_000, 1], ['read', 600_000, 1]]);
    });

    it('resumes a range read with the remaining length, and a bare close counts as a fault', async () => {
      const { flaky, driver } = await setup();
      await putObject(driver, 'big', data);
      flaky.failReadsAfter(100_000, 1, 'close').failReadsAfter(50_000, 1);
      const got = await readAll(await driver.openRead('big', { offset: 1000, length: 400_000 }));
      assert.ok(got.equals(data.subarray(1000, 401_000)));
      assert.deepEqual(flaky.log.filter((l) => l.startsWith('openRead')), ['openRead big 1000+400000', 'openRead big 101000+300000', 'openRead big 151000+250000']);
    });

    it('a non-retryable stream error ends the stream with that error, without reopening', async () => {
      const { flaky, driver } = await setup();
      await putObject(driver, 'big', data);
      flaky.failReadsAfter(200_000, 1, 'integrity');
      const err = await rejection(async () => readAll(await driver.openRead('big')));
      assert.equal(err.kind, 'integrity');
      assert.equal(flaky.count('openRead'), 1);
    });

    it('gives up after `retries` consecutive failures without progress, but progress renews the budget', async () => {
      const stuck = await setup({ retries: 2 });
      await putObject(stuck.driver, 'big', data);
      stuck.flaky.failReadsAfter(100_000, 1).failReadsAfter(0, 5);
      const err = await rejection(async () => readAll(await stuck.driver.openRead('big')));
      assert.equal(err.kind, 'retryable');
      assert.match(err.message, /\(after 2 retries\)$/);
      assert.equal(stuck.flaky.count('openRead'), 3, 'the first open (which moved on), then two reopens that delivered nothing');

      const moving = await setup({ retries: 1 });
      await putObject(moving.driver, 'big', data);
      moving.flaky.failReadsAfter(150_000, 6);
      assert.ok((await readAll(await moving.driver.openRead('big'))).equals(data), 'six faults with only one retry each, each after progress');
      assert.equal(moving.flaky.count('openRead'), 7);
    });

    it('a reopen that fails retryably counts towards the budget and is retried', async () => {
      const { flaky, driver } = await setup({ retries: 3 });
      await putObject(driver, 'big', data);
      flaky.failReadsAfter(500_000, 1);
      const stream = await driver.openRead('big');
      flaky.fail('openRead', 2);
      assert.ok((await readAll(stream)).equals(data));
      assert.equal(flaky.count('openRead'), 4);
    });

    it('an abort during the backoff destroys the stream with AbortedError at once', async () => {
      const { flaky, driver } = await setup({ sleep: undefined, baseDelayMs: 60_000, maxDelayMs: 60_000 });
      await putObject(driver, 'big', data);
      flaky.failReadsAfter(100_000, 1);
      const controller = new AbortController();
      const stream = await driver.openRead('big', { signal: controller.signal });
      const started = Date.now();
      setTimeout(() => controller.abort(), 50);
      const err = await rejection(() => readAll(stream));
      assert.ok(err instanceof AbortedError, `${err.code}: ${err.message}`);
      assert.ok(Date.now() - started < 2000, 'prompt');
      assert.equal(flaky.count('openRead'), 1, 'never reopened');
    });

    it('destroying the stream during the backoff stops it: no reopen happens later', async () => {
      const { flaky, driver } = await setup({ sleep: undefined, baseDelayMs: 100, maxDelayMs: 100, random: () => 0.99 });
      await putObject(driver, 'big', data);
      flaky.failReadsAfter(0, 1);
      const stream = await driver.openRead('big');
      stream.resume();
      await new Promise((resolve) => setTimeout(resolve, 20));
      stream.destroy();
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(flaky.count('openRead'), 1);
    });
  });

  describe('list', () => {
    it('retries a list that fails before yielding anything', async () => {
      const { flaky, driver } = await setup();
      for (const key of ['p/a', 'p/b', 'p/c']) await putObject(driver, key, seededBytes(5, 5));
      flaky.fail('list', 2);
      assert.deepEqual((await listAll(driver, 'p/')).map((e) => e.key), ['p/a', 'p/b', 'p/c']);
      assert.equal(flaky.count('list p/'), 3);
    });

    it('rethrows a failure after the first entry instead of repeating entries', async () => {
      const { flaky, driver, sleeps } = await setup();
      for (const key of ['p/a', 'p/b']) await putObject(driver, key, seededBytes(5, 6));
      flaky.fail('list', 1, 'retryable', 'after');
      const seen: string[] = [];
      const err = await rejection(async () => {
        for await (const entry of driver.list('p/')) seen.push(entry.key);
      });
      assert.equal(err.kind, 'retryable');
      assert.equal(seen.length, 2);
      assert.equal(flaky.count('list'), 1);
      assert.deepEqual(sleeps, []);
    });
  });

  it('an abort during a backoff sleep rejects at once with AbortedError', async () => {
    const { flaky, driver } = await setup({ sleep: undefined, baseDelayMs: 60_000, maxDelayMs: 60_000, random: () => 0.99 });
    flaky.fail('stat', 1);
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 50);
    const err = await rejection(() => driver.stat('k', { signal: controller.signal }));
    assert.ok(err instanceof AbortedError);
    assert.ok(Date.now() - started < 2000);
    assert.equal(flaky.count('stat'), 1);
  });

  it('an onRetry callback that throws does not break the retry', async () => {
    const { flaky, driver } = await setup({ onRetry: () => { throw new Error('logger broke'); } });
    flaky.fail('stat', 1);
    assert.equal(await driver.stat('nothing'), undefined);
  });
});
