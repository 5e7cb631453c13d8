/**
 * The engine tells a destination that it will copy (`Driver.prepareCopies`, src/core/destination-state.ts)
 * as soon as it has found files to reuse there, before its lock is taken: an SFTP server's copy
 * connection is then open by the first copy. Not told: a destination that reuses nothing (policy
 * `off`, no earlier copy), a dry run, a copy already up to date.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateChain } from '../../scripts/gen-nightly.js';
import { replicate } from '../../src/core/replicate.js';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import type { Driver } from '../../src/drivers/types.js';
import { ForwardingDriver } from '../../src/drivers/wrappers/forwarding.js';

const NIGHT1 = 'backup_2025_12_01_02_00_00';
const NIGHT2 = 'backup_2025_12_02_02_00_00';
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** A destination that counts the hints, and whether a lock was written before each (it must not be needed). */
class Hinted extends ForwardingDriver {
  hints = 0;
  copiesBeforeHint = 0;
  copies = 0;
  prepareCopies(): void { this.hints++; }
  protected override forwardCopyWithin(...args: Parameters<ForwardingDriver['forwardCopyWithin']>): ReturnType<ForwardingDriver['forwardCopyWithin']> {
    if (this.hints === 0) this.copiesBeforeHint++;
    this.copies++;
    return super.forwardCopyWithin(...args);
  }
}

describe('replicate: prepareCopies', () => {
  it('is called once at a destination with files to reuse, before its first copy; not without reuse, nor in a dry run or when up to date', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-prepare-copies-'));
    dirs.push(dir);
    const root = join(dir, 'source');
    await generateChain({ root, names: [NIGHT1, NIGHT2], totalBytes: 2 * 1024 * 1024, largestFileBytes: 256 * 1024, changed: 0.2, seed: 5 });
    const source = await createLocalDriver('source', { type: 'local', root });
    const disk = (): Promise<Driver> => createLocalDriver('disk', { type: 'local', root: join(dir, 'disk') });

    const first = new Hinted(await disk());
    assert.equal((await replicate({ source, backup: NIGHT1, destinations: [first], quietPeriodMs: 0, reuse: { disk: 'copy' } })).destinations[0]?.status, 'complete');
    assert.equal(first.hints, 0, 'night 1: no earlier copy, nothing to reuse');

    const dry = new Hinted(await disk());
    await replicate({ source, backup: NIGHT2, destinations: [dry], quietPeriodMs: 0, dryRun: true, reuse: { disk: 'copy' } });
    assert.equal(dry.hints, 0, 'a dry run copies nothing');

    // Another destination holding night 1, where night 2 is sent with reuse off.
    const other = new Hinted(await createLocalDriver('disk', { type: 'local', root: join(dir, 'other') }));
    await replicate({ source, backup: NIGHT1, destinations: [other], quietPeriodMs: 0 });
    const sent = await replicate({ source, backup: NIGHT2, destinations: [other], quietPeriodMs: 0, reuse: { disk: 'off' } });
    assert.equal(sent.destinations[0]?.status, 'complete');
    assert.equal(other.hints, 0, 'reuse off');

    const second = new Hinted(await disk());
    const result = await replicate({ source, backup: NIGHT2, destinations: [second], quietPeriodMs: 0, reuse: { disk: 'copy' } });
    assert.equal(result.destinations[0]?.status, 'complete');
    assert.ok((result.destinations[0]?.filesReused ?? 0) > 0, 'night 2 reused files');
    assert.equal(second.hints, 1);
    assert.ok(second.copies > 0);
    assert.equal(second.copiesBeforeHint, 0, 'told before its first copy');

    const again = new Hinted(await disk());
    assert.equal((await replicate({ source, backup: NIGHT2, destinations: [again], quietPeriodMs: 0, reuse: { disk: 'copy' } })).destinations[0]?.status, 'up-to-date');
    assert.equal(again.hints, 0, 'up to date: nothing to copy');
  });
});
