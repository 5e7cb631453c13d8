/** The retry layer's time limit (`maxRetryMs`, the CLI's --timeout / options.timeout). */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { withRetry } from '../../src/drivers/wrappers/retry.js';
import { DriverError } from '../../src/errors.js';
import type { Driver } from '../../src/drivers/types.js';

function alwaysFailing(): { driver: Driver; calls: () => number } {
  let calls = 0;
  const fail = async (): Promise<never> => { calls++; throw new DriverError('E_TRANSIENT', 'x: connection reset', { kind: 'retryable' }); };
  const driver = {
    name: 'x', description: 'x', capabilities: {} as Driver['capabilities'],
    stat: fail, openRead: fail, openWrite: fail, delete: fail, close: async () => undefined,
    list: () => ({ [Symbol.asyncIterator]: () => ({ next: fail }) }),
  } as unknown as Driver;
  return { driver, calls: () => calls };
}

it('stops retrying once an operation has kept failing for maxRetryMs, with retries left', async () => {
  const { driver, calls } = alwaysFailing();
  const started = Date.now();
  const err = await withRetry(driver, { retries: 1000, baseDelayMs: 20, maxDelayMs: 40, maxRetryMs: 300 }).stat('k').then(() => undefined, (e: unknown) => e as DriverError);
  const elapsed = Date.now() - started;
  assert.ok(err instanceof DriverError);
  assert.equal(err.kind, 'retryable');
  assert.match(err.message, /\(after \d+ retries over 0 s\)$/);
  assert.ok(elapsed >= 300 && elapsed < 2000, `gave up after ${elapsed} ms`);
  assert.ok(calls() > 2 && calls() < 1000, `${calls()} attempts`);
});
