/**
 * Durability through the wrappers: the engine calls `driver.sync()` before it records files as
 * done and before it writes a manifest, and it is handed wrapped drivers
 * (withRetry(withBandwidthLimit(driver))). The retry layer must pass `sync` through, and never
 * retry it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { replicate } from '../../src/core/replicate.js';
import { LocalDriver } from '../../src/drivers/local/index.js';
import { withRetry } from '../../src/drivers/wrappers/index.js';
import { DriverError } from '../../src/errors.js';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

class CountingDriver extends LocalDriver {
  syncs = 0;
  failNext = false;
  override async sync(): Promise<void> {
    this.syncs++;
    if (this.failNext) {
      this.failNext = false;
      throw new DriverError('E_TRANSIENT', 'disk: sync: I/O error (EIO)', { kind: 'retryable' });
    }
    await super.sync();
  }
}

describe('sync through the retry layer', () => {
  it('is passed through, and not retried', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-retry-sync-'));
    dirs.push(dir);
    const inner = new CountingDriver('disk', { root: dir, maxConcurrency: 8 });
    const wrapped = withRetry(inner, { retries: 5, sleep: async () => undefined });
    assert.equal(typeof wrapped.sync, 'function');
    await wrapped.sync();
    assert.equal(inner.syncs, 1);
    inner.failNext = true;
    await assert.rejects(wrapped.sync(), /EIO/);
    assert.equal(inner.syncs, 2, 'a failed sync is not retried');
  });

  it('replicate through withRetry syncs the destination before its manifest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-retry-sync-'));
    dirs.push(dir);
    await generateBackup({ root: join(dir, 'source'), name: 'b1', totalBytes: 64 * 1024, seed: 3 });
    const source = withRetry(new LocalDriver('source', { root: join(dir, 'source'), maxConcurrency: 8 }));
    const dest = new CountingDriver('d1', { root: join(dir, 'dest'), maxConcurrency: 8 });
    const result = await replicate({ source, backup: 'b1', destinations: [withRetry(dest)], quietPeriodMs: 0 });
    assert.equal(result.destinations[0]?.status, 'complete');
    assert.ok(dest.syncs >= 1, `syncs: ${dest.syncs}`);
  });
});
