/**
 * A slow destination never holds back the others (issue 16), tested by function, not by time: a
 * destination whose writes wait on a gate the test controls (or a bandwidth limit far below the
 * other's speed) is detached; the fast one gets its manifest while the slow one is still writing;
 * the chunk pool's peak stays within the budget; the source is read at most once more per
 * destination that read alone; both copies deep-verify once the slow one is let go.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { ChunkPool } from '../../src/core/buffers.js';
import { Fanout } from '../../src/core/fanout.js';
import { Ledger } from '../../src/core/ledger.js';
import { replicate, type ReplicateEvent } from '../../src/core/replicate.js';
import { verifyCopy } from '../../src/core/verify.js';
import { LocalDriver } from '../../src/drivers/local/index.js';
import type { WriteOptions, WriteSession } from '../../src/drivers/types.js';
import { createRateLimiter, withBandwidthLimit } from '../../src/drivers/wrappers/index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const NAME = 'fanout_2025_06_02';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** A local destination whose data writes (not its lock, checkpoints or manifest) wait until the test opens its gate. */
class GatedDriver extends LocalDriver {
  private open = false;
  private waiting: (() => void)[] = [];
  writesStarted = 0;

  release(): void {
    this.open = true;
    for (const wake of this.waiting) wake();
    this.waiting = [];
  }

  override async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    const session = await super.openWrite(key, options);
    if (key.includes('/.offsite/')) return session;
    const write = session.write.bind(session);
    session.write = async (index, bytes, writeOptions) => {
      this.writesStarted++;
      if (!this.open) await new Promise<void>((resolve) => this.waiting.push(resolve));
      return write(index, bytes, writeOptions);
    };
    return session;
  }
}

async function setup(label: string, totalBytes: number, largestFileBytes?: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), `offsite-fanout-${label}-`));
  dirs.push(dir);
  await generateBackup({ root: join(dir, 'source'), name: NAME, totalBytes, largestFileBytes, seed: 16 });
  return dir;
}

async function deepVerify(driver: LocalDriver): Promise<void> {
  const result = await verifyCopy({ driver, backup: NAME, level: 'deep' });
  assert.equal(result.status, 'ok', `${driver.name}: ${JSON.stringify(result.damage)} ${result.message ?? ''}`);
}

describe('a slow destination never holds back the others', () => {
  it('the fast copy is complete while the slow one is stuck; memory within budget; source read at most (1 + detached) x', async () => {
    const dir = await setup('gate', 12 * MiB);
    const chunkBytes = 256 * KiB;
    const budget = 2 * MiB;
    const source = new LocalDriver('source', { root: join(dir, 'source'), maxConcurrency: 8 });
    const fast = new LocalDriver('fast', { root: join(dir, 'fast'), maxConcurrency: 8 });
    const slow = new GatedDriver('slow', { root: join(dir, 'slow'), maxConcurrency: 8 });
    const events: ReplicateEvent[] = [];
    let fastDone!: () => void;
    const fastDoneSeen = new Promise<void>((resolve) => { fastDone = resolve; });
    const running = replicate({
      source, backup: NAME, destinations: [fast, slow], quietPeriodMs: 0, chunkBytes, memoryBudgetBytes: budget,
      lagToleranceMs: 200, checkpointIntervalMs: 100,
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'destination-done' && e.destination === 'fast') fastDone();
      },
    });
    await fastDoneSeen;
    // The slow destination has not written a single part yet, and the fast one is complete.
    assert.ok(existsSync(join(dir, 'fast', NAME, '.offsite', 'manifest.json')), 'the fast manifest is written while the slow one waits');
    assert.ok(!existsSync(join(dir, 'slow', NAME, '.offsite', 'manifest.json')));
    assert.ok(slow.writesStarted > 0, 'the slow destination is in the middle of writing');
    await deepVerify(fast);
    assert.ok(events.some((e) => e.type === 'detached' && e.destination === 'slow'), 'the slow destination was detached');

    slow.release();
    const result = await running;
    assert.deepEqual(result.destinations.map((d) => d.status), ['complete', 'complete'], JSON.stringify(result.destinations.map((d) => d.errors)));
    await deepVerify(slow);
    const [fastResult, slowResult] = result.destinations;
    assert.ok((slowResult?.detachments ?? 0) >= 1);
    assert.equal(result.detachments, (slowResult?.detachments ?? 0) + (fastResult?.detachments ?? 0));
    assert.ok((slowResult?.bytesReadAlone ?? 0) > 0);
    assert.equal(result.destinationsReadAlone, (fastResult?.bytesReadAlone ?? 0) > 0 ? 2 : 1);
    assert.ok(result.bytesRead <= (1 + result.destinationsReadAlone) * result.bytes, `read ${result.bytesRead} bytes of a ${result.bytes}-byte backup`);
    assert.ok(result.bytesRead >= result.bytes);
    assert.ok(result.peakBufferBytes > 0);
    assert.ok(result.peakBufferBytes <= budget, `peak ${result.peakBufferBytes} > budget ${budget}`);
  });

  it('with large files: the fast destination moves on to the next files while the slow one is stuck in a large one', async () => {
    const dir = await setup('large', 24 * MiB);
    const chunkBytes = 256 * KiB;
    const budget = 2 * MiB;
    const source = new LocalDriver('source', { root: join(dir, 'source'), maxConcurrency: 8 });
    const fast = new LocalDriver('fast', { root: join(dir, 'fast'), maxConcurrency: 8 });
    const slow = new GatedDriver('slow', { root: join(dir, 'slow'), maxConcurrency: 8 });
    const fastFiles: string[] = [];
    let fastDone!: () => void;
    const fastDoneSeen = new Promise<void>((resolve) => { fastDone = resolve; });
    const running = replicate({
      source, backup: NAME, destinations: [slow, fast], quietPeriodMs: 0, chunkBytes, memoryBudgetBytes: budget,
      fileConcurrency: 2, lagToleranceMs: 200,
      onEvent: (e) => {
        if (e.type === 'file-done' && e.destination === 'fast') fastFiles.push(e.path);
        if (e.type === 'destination-done' && e.destination === 'fast') fastDone();
      },
    });
    await fastDoneSeen;
    assert.ok(fastFiles.length > 4, `fast copied ${fastFiles.length} files`);
    assert.ok(existsSync(join(dir, 'fast', NAME, '.offsite', 'manifest.json')));
    slow.release();
    const result = await running;
    assert.deepEqual(result.destinations.map((d) => d.status), ['complete', 'complete']);
    await deepVerify(fast);
    await deepVerify(slow);
    assert.ok(result.bytesRead <= (1 + result.destinationsReadAlone) * result.bytes);
    assert.ok(result.peakBufferBytes <= budget, `peak ${result.peakBufferBytes} > budget ${budget}`);
  });

  it('the time a destination holds up shared reads adds up over waits, less half the time since', () => {
    // A destination that frees a chunk just before each single wait runs out never trips the
    // per-wait tolerance; the sum over its waits does, once it holds the others up most of the time.
    const fanout = new Fanout({ source: new LocalDriver('source', { root: tmpdir(), maxConcurrency: 1 }), backup: NAME, chunkBytes: MiB, pool: new ChunkPool(MiB, 8 * MiB), lagToleranceMs: 500 });
    const slow = new Ledger(fanout);
    const often = new Ledger(fanout);
    let now = 1_000_000;
    for (let i = 0; i < 10; i++) {
      slow.heldUp(now, now + 400); // holds up a read 400 ms of every 500
      often.heldUp(now, now + 200); // 200 ms of every 500: less than half the time
      now += 500;
    }
    assert.ok(slow.lagMs(now) > 500, `held up 80% of the time: ${slow.lagMs(now)} ms`);
    assert.ok(often.lagMs(now) < 100, `held up 40% of the time: ${often.lagMs(now)} ms`);
    // Reads held up at the same time count once.
    const together = new Ledger(fanout);
    together.heldUp(now, now + 300);
    together.heldUp(now + 100, now + 300);
    assert.equal(together.lagMs(now + 300), 300);
    assert.ok(slow.lagMs(now + 10_000) === 0, 'forgiven in time');
  });

  it('with a bandwidth limit far below the other destination: manifests in order, memory within budget', async () => {
    const dir = await setup('bwlimit', 6 * MiB);
    const chunkBytes = 256 * KiB;
    const budget = 2 * MiB;
    const source = new LocalDriver('source', { root: join(dir, 'source'), maxConcurrency: 8 });
    const fast = new LocalDriver('fast', { root: join(dir, 'fast'), maxConcurrency: 8 });
    const slowInner = new LocalDriver('slow', { root: join(dir, 'slow'), maxConcurrency: 8 });
    // 1 MiB/s: the slow copy takes ~6 s, far longer than the fast one even on a loaded machine (at
    // 2 MiB/s, load ~25 on 2 cores once made the fast copy as slow as the limited one).
    const slow = withBandwidthLimit(slowInner, [createRateLimiter(1 * MiB)]);
    const done: string[] = [];
    let slowManifestWhenFastDone: boolean | undefined;
    const result = await replicate({
      source, backup: NAME, destinations: [slow, fast], quietPeriodMs: 0, chunkBytes, memoryBudgetBytes: budget, lagToleranceMs: 200,
      onEvent: (e) => {
        if (e.type !== 'destination-done') return;
        done.push(e.destination);
        if (e.destination === 'fast') slowManifestWhenFastDone = existsSync(join(dir, 'slow', NAME, '.offsite', 'manifest.json'));
      },
    });
    assert.deepEqual(result.destinations.map((d) => d.status), ['complete', 'complete']);
    assert.deepEqual(done, ['fast', 'slow'], 'the fast destination finished first');
    assert.equal(slowManifestWhenFastDone, false, 'the slow one was still writing when the fast one was complete');
    await deepVerify(fast);
    await deepVerify(slowInner);
    assert.ok(result.bytesRead <= (1 + result.destinationsReadAlone) * result.bytes);
    assert.ok(result.peakBufferBytes <= budget, `peak ${result.peakBufferBytes} > budget ${budget}`);
  });
});
