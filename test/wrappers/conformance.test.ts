/**
 * The driver conformance suite over the wrapper layers, on local folders: wrapping must not
 * change the contract. Run over the plain retry layer, over the bandwidth limit layer (reads
 * paced too), and over retry + a driver that injects seeded retryable faults into every kind of
 * call and into read streams, so that the contract is shown to hold THROUGH retries. Every
 * stack also runs the "keeps every member of the driver it wraps" case (./members.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import type { Driver } from '../../src/drivers/types.js';
import { createRateLimiter, withBandwidthLimit } from '../../src/drivers/wrappers/bwlimit.js';
import { withRetry } from '../../src/drivers/wrappers/retry.js';
import { runConformance } from '../conformance/suite.js';
import { wrapDriver } from '../../src/runtime/drivers.js';
import { FlakyDriver } from './flaky.js';
import { checkKeepsMembers } from './members.js';

const scratch: string[] = [];
async function localDriver(): Promise<Driver> {
  const dir = await mkdtemp(join(tmpdir(), 'offsite-wrapped-'));
  scratch.push(dir);
  return createLocalDriver('disk', { type: 'local', root: join(dir, 'root') });
}
const cleanup = async (): Promise<void> => {
  for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
};
const noWait = { baseDelayMs: 0, maxDelayMs: 0 };

/** The stacks, each as a function of the driver it wraps. */
const retryOnly = (inner: Driver): Driver => withRetry(inner);
const limitOnly = (inner: Driver): Driver => withBandwidthLimit(inner, [createRateLimiter(1024 ** 3), createRateLimiter(512 * 1024 ** 2)], { limitReads: true });
const retryOverLimit = (inner: Driver): Driver => withRetry(withBandwidthLimit(inner, [createRateLimiter(1024 ** 3)]), { retries: 8, ...noWait });

runConformance('withRetry(local)', { create: async () => retryOnly(await localDriver()), cleanup });
runConformance('withBandwidthLimit(local, reads too)', { create: async () => limitOnly(await localDriver()), cleanup });

checkKeepsMembers('withRetry', retryOnly, { realInner: localDriver });
// A read that hashes without handing over the bytes would bypass the paced `openRead`.
const paced = ['readHashes'];
checkKeepsMembers('withBandwidthLimit', limitOnly, { realInner: localDriver, withheld: paced });
checkKeepsMembers('withRetry(withBandwidthLimit)', retryOverLimit, { realInner: localDriver, withheld: paced });
// The stack every command gets from src/runtime/drivers.ts.
const runtimeStack = (inner: Driver): Driver => wrapDriver(inner, { limiters: [createRateLimiter(1024 ** 3), createRateLimiter(1024 ** 3)], limitReads: true, retries: 3 });
runConformance('runtime wrapDriver(local): retry + total and own bandwidth limits', { create: async () => runtimeStack(await localDriver()), cleanup });
checkKeepsMembers('runtime wrapDriver', runtimeStack, { realInner: localDriver, withheld: paced });
checkKeepsMembers('runtime wrapDriver without a bandwidth limit', (inner) => wrapDriver(inner, { retries: 3 }), { realInner: localDriver });
checkKeepsMembers('withRetry(withBandwidthLimit(flaky))', (inner) => retryOverLimit(new FlakyDriver(inner)), { realInner: localDriver, withheld: paced });

const flakies: FlakyDriver[] = [];
function flaky(inner: Driver, seed: number): FlakyDriver {
  const driver = new FlakyDriver(inner).randomFaults({ seed, probability: 0.2 });
  flakies.push(driver);
  return driver;
}
let seed = 1;
runConformance('withRetry(flaky(local)) with seeded retryable faults', {
  create: async () => withRetry(flaky(await localDriver(), seed++), { retries: 8, ...noWait }),
  cleanup,
});

runConformance('withRetry(withBandwidthLimit(flaky(local)))', {
  create: async () => withRetry(
    withBandwidthLimit(flaky(await localDriver(), 1000 + seed++), [createRateLimiter(1024 ** 3)], { limitReads: true }),
    { retries: 8, ...noWait },
  ),
  cleanup,
});

it('the seeded faults were really injected (and survived) in the runs above', () => {
  const injected = flakies.reduce((sum, d) => sum + d.injected, 0);
  assert.ok(injected >= 50, `only ${injected} faults injected`);
  console.log(`# ${injected} retryable faults injected into ${flakies.length} flaky drivers`);
});
