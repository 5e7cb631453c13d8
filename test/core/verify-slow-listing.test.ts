/**
 * A deep verify reads files back while the copy's listing is still coming (src/core/verify.ts),
 * and keeps the record of each file read before the listing showed it. With a listing slower than
 * the reads, those records must not pile up to the whole manifest (issue 13): beyond
 * `MAX_FILES_READ_BEFORE_LISTED` the reads wait for the listing, and the copy is still judged whole.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { replicate } from '../../src/core/replicate.js';
import { MAX_FILES_READ_BEFORE_LISTED, verifyCopy } from '../../src/core/verify.js';
import { LocalDriver } from '../../src/drivers/local/index.js';
import type { Entry, FileHashes, ListOptions, ReadHashesOptions, ReadOptions } from '../../src/drivers/types.js';

const NAME = 'slow_listing_2025_07_01';
const CONCURRENCY = 4;

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** A local copy whose listing shows nothing until the reads have stopped coming; counts the data files read before that. */
class SlowListingDriver extends LocalDriver {
  dataReads = 0;
  readsBeforeListing: number | undefined;

  override openRead(key: string, options?: ReadOptions): Promise<Readable> {
    if (!key.includes('/.offsite/')) this.dataReads++;
    return super.openRead(key, options);
  }

  /** How a deep verify reads a local copy's data files (they are hashed in the driver). */
  override readHashes(key: string, options: ReadHashesOptions): Promise<FileHashes> {
    this.dataReads++;
    return super.readHashes(key, options);
  }

  override async *list(prefix: string, options?: ListOptions): AsyncIterable<Entry> {
    // Held until no read has started for a while: as far as the reads go without the listing.
    let seen = -1;
    while (seen !== this.dataReads) {
      seen = this.dataReads;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    this.readsBeforeListing = this.dataReads;
    yield* super.list(prefix, options);
  }
}

describe('deep verify with a listing slower than the reads', () => {
  it(`reads at most ${MAX_FILES_READ_BEFORE_LISTED} files (and those in flight) ahead of the listing, and finds the copy whole`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-slow-listing-'));
    dirs.push(dir);
    const files = MAX_FILES_READ_BEFORE_LISTED + 300;
    await generateBackup({ root: join(dir, 'source'), name: NAME, files, totalBytes: files * 512, largestFileBytes: 2048, seed: 29 });
    const source = new LocalDriver('source', { root: join(dir, 'source'), maxConcurrency: 8 });
    const copy = new LocalDriver('copy', { root: join(dir, 'copy'), maxConcurrency: 8 });
    const made = await replicate({ source, backup: NAME, destinations: [copy], quietPeriodMs: 0 });
    assert.equal(made.destinations[0]?.status, 'complete', JSON.stringify(made.destinations[0]?.errors));
    const slow = new SlowListingDriver('copy', { root: join(dir, 'copy'), maxConcurrency: 8 });
    const result = await verifyCopy({ driver: slow, backup: NAME, level: 'deep', concurrency: CONCURRENCY });
    assert.equal(result.status, 'ok', JSON.stringify(result.damage.slice(0, 3)));
    assert.ok(result.filesRead > MAX_FILES_READ_BEFORE_LISTED + CONCURRENCY, `read back ${result.filesRead} files`);
    assert.equal(result.filesRead, result.filesChecked);
    assert.ok(slow.readsBeforeListing !== undefined && slow.readsBeforeListing <= MAX_FILES_READ_BEFORE_LISTED + CONCURRENCY, `${slow.readsBeforeListing} files read before the listing showed any`);
  });
});
