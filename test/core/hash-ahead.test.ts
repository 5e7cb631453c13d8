/**
 * Source hashes read ahead for reuse (issue 12, src/core/hash-ahead.ts): a destination that may
 * reuse has its likely kept files hashed while its lock settles, each read once at the source;
 * what such a read finds is checked as a shared read's is (a file rewritten after the listing
 * fails with E_SOURCE_CHANGED and is not reused; a file of the same path and size with other bytes
 * is sent from a second read); destinations share the reads, and a cursor asks at most its window
 * beyond the file its copies reached.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { generateChain } from '../../scripts/gen-nightly.js';
import { ChunkPool } from '../../src/core/buffers.js';
import { hashObject } from '../../src/core/chunks.js';
import type { FeedFile } from '../../src/core/fanout.js';
import { HashAhead } from '../../src/core/hash-ahead.js';
import { lockKey } from '../../src/core/lock.js';
import { replicate } from '../../src/core/replicate.js';
import { LocalDriver } from '../../src/drivers/local/index.js';
import type { ReadOptions } from '../../src/drivers/types.js';
import { manifestKey } from '../../src/manifest/manifest.js';
import { flipByte } from '../helpers/nights.js';

const NIGHT1 = 'backup_2025_11_01_02_00_00';
const NIGHT2 = 'backup_2025_11_02_02_00_00';
const CHUNK = 64 * 1024;
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** A local driver that notes when each key's reads start, and may run a hook first. */
class WatchedDriver extends LocalDriver {
  readonly reads: { key: string; at: number }[] = [];
  beforeRead?: (key: string) => void;

  override async openRead(key: string, options?: ReadOptions): Promise<Readable> {
    this.reads.push({ key, at: performance.now() });
    this.beforeRead?.(key);
    return super.openRead(key, options);
  }

  readsOf(key: string): number {
    return this.reads.filter((r) => r.key === key).length;
  }
}

/** Nights 1 and 2 (night 2 keeps most of night 1's files at the same paths) and a destination holding night 1. */
async function setup(label: string): Promise<{ dir: string; source: WatchedDriver; disk: WatchedDriver }> {
  const dir = mkdtempSync(join(tmpdir(), `offsite-hash-ahead-${label}-`));
  dirs.push(dir);
  const root = join(dir, 'source');
  await generateChain({ root, names: [NIGHT1, NIGHT2], totalBytes: 2 * 1024 * 1024, largestFileBytes: 256 * 1024, changed: 0.2, seed: 41 });
  const source = new WatchedDriver('source', { root, maxConcurrency: 4 });
  const disk = new WatchedDriver('disk', { root: join(dir, 'disk'), maxConcurrency: 4 });
  const first = await replicate({ source, backup: NIGHT1, destinations: [disk], quietPeriodMs: 0, chunkBytes: CHUNK });
  assert.equal(first.destinations[0]?.status, 'complete');
  source.reads.length = 0;
  disk.reads.length = 0;
  return { dir, source, disk };
}

/** The kept files of night 2 (same bytes at the same path in night 1), largest first. */
function keptFiles(dir: string, files: readonly string[]): string[] {
  const root = join(dir, 'source');
  return files.filter((path) => {
    const before = join(root, NIGHT1, path);
    return existsSync(before) && readFileSync(before).equals(readFileSync(join(root, NIGHT2, path)));
  }).sort((a, b) => statSync(join(root, NIGHT2, b)).size - statSync(join(root, NIGHT2, a)).size);
}

describe('hashing ahead for reuse', () => {
  it('reads kept files while the lock settles, each once, and reuses them', async () => {
    const { source, disk } = await setup('settle');
    const result = await replicate({
      source, backup: NIGHT2, destinations: [disk], quietPeriodMs: 0, chunkBytes: CHUNK, reuse: { disk: 'copy' }, lock: { settleMs: 400 },
    });
    const copy = result.destinations[0];
    assert.equal(copy?.status, 'complete', JSON.stringify(copy?.errors));
    const reused = (copy?.reused ?? []).map((r) => r.path);
    assert.ok(reused.length >= 5, `kept files reused (${reused.length})`);
    // The lock is read twice: the look for a holder before it is written, then its read-back after the settle delay.
    const lockReads = disk.reads.filter((r) => r.key === lockKey(NIGHT2));
    assert.equal(lockReads.length, 3, 'read before writing, read back, read at release');
    const readBack = (lockReads[1] as { at: number }).at;
    const early = reused.filter((path) => source.reads.some((r) => r.key === `${NIGHT2}/${path}` && r.at < readBack));
    assert.ok(early.length > 0, 'kept files were read before the lock was read back');
    for (const path of reused) assert.equal(source.readsOf(`${NIGHT2}/${path}`), 1, `${path} read once`);
  });

  it('a kept file rewritten at the source after the listing fails with E_SOURCE_CHANGED and is not reused', async () => {
    const { dir, source, disk } = await setup('changed');
    const victim = keptFiles(dir, (await listed(source)).map((f) => f.path))[0] as string;
    const path = join(dir, 'source', NIGHT2, victim);
    source.beforeRead = (key) => {
      if (key !== `${NIGHT2}/${victim}` || source.readsOf(key) > 1) return;
      flipByte(path); // same size, other bytes, another mtime
      const later = new Date(statSync(path).mtimeMs + 5000);
      utimesSync(path, later, later);
    };
    const result = await replicate({ source, backup: NIGHT2, destinations: [disk], quietPeriodMs: 0, chunkBytes: CHUNK, reuse: { disk: 'copy' } });
    const copy = result.destinations[0];
    assert.equal(copy?.status, 'failed');
    assert.ok(copy?.errors.some((e) => e.code === 'E_SOURCE_CHANGED' && e.path === victim), JSON.stringify(copy?.errors));
    assert.ok(!(copy?.reused ?? []).some((r) => r.path === victim), 'not recorded as reused');
    assert.ok(!existsSync(join(dir, 'disk', NIGHT2, victim)), 'nothing under its name');
    assert.ok(!existsSync(join(dir, 'disk', manifestKey(NIGHT2))), 'no manifest');
  });

  it('a file of the same path and size with other bytes is hashed ahead, then sent from a second read', async () => {
    const { dir, source, disk } = await setup('differs');
    const victim = keptFiles(dir, (await listed(source)).map((f) => f.path))[0] as string;
    flipByte(join(dir, 'source', NIGHT2, victim));
    const result = await replicate({ source, backup: NIGHT2, destinations: [disk], quietPeriodMs: 0, chunkBytes: CHUNK, reuse: { disk: 'copy' } });
    const copy = result.destinations[0];
    assert.equal(copy?.status, 'complete', JSON.stringify(copy?.errors));
    assert.ok(!(copy?.reused ?? []).some((r) => r.path === victim), 'not reused');
    assert.equal(source.readsOf(`${NIGHT2}/${victim}`), 2, 'hashed ahead, then read again to be sent');
    assert.ok(readFileSync(join(dir, 'disk', NIGHT2, victim)).equals(readFileSync(join(dir, 'source', NIGHT2, victim))), 'the new bytes are there');
  });
});

describe('HashAhead', () => {
  it('reads a file once for every destination that asks, at most a window ahead, with the hashes of a whole read', async () => {
    const { source } = await setup('unit');
    const files = (await listed(source)).filter((f) => f.size > 0);
    const ahead = new HashAhead({ source, backup: NIGHT2, chunkBytes: CHUNK });
    try {
      const one = ahead.cursor(files, () => true, 3);
      const two = ahead.cursor(files, (f) => f !== files[1], 3);
      await new Promise((resolve) => setTimeout(resolve, 200));
      const started = new Set(source.reads.map((r) => r.key));
      assert.deepEqual([...started].sort(), files.slice(0, 4).map((f) => `${NIGHT2}/${f.path}`).sort(), 'the first three each cursor wants, once each');
      const pool = new ChunkPool(CHUNK);
      for (let i = 0; i < 6; i++) {
        const file = files[i] as FeedFile;
        const [a, b] = [one.reach(i), two.reach(i)];
        assert.ok(a !== undefined, `file ${i} asked for by the first cursor`);
        assert.equal(b === undefined, i === 1, `file ${i} asked for by the second unless it does not want it`);
        const expected = await hashObject(source, `${NIGHT2}/${file.path}`, file.size, pool);
        assert.deepEqual(await a, expected);
        if (b !== undefined) assert.deepEqual(await b, expected);
      }
      for (const file of files.slice(0, 6)) assert.equal(source.readsOf(`${NIGHT2}/${file.path}`), 2, `${file.path}: read once ahead, once here`);
      one.close();
      two.close();
      const before = source.reads.length;
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(source.reads.length <= before, 'closed cursors ask for nothing more');
    } finally {
      ahead.close();
    }
  });

  it('a closed run tells whoever waits for a read not started yet', async () => {
    const { source } = await setup('close');
    const files = (await listed(source)).filter((f) => f.size > 0);
    // Enough files that some wait behind the reads in flight.
    const ahead = new HashAhead({ source, backup: NIGHT2, chunkBytes: CHUNK });
    const cursor = ahead.cursor(files, () => true, files.length);
    const all = files.map((_, i) => cursor.reach(i));
    ahead.close();
    const settled = await Promise.allSettled(all.map((p) => p ?? Promise.resolve(undefined)));
    assert.equal(settled.length, files.length, 'every one settles');
    assert.ok(settled.some((s) => s.status === 'rejected'), 'the ones not read are refused');
  });
});

/** The files of night 2 as the engine sees them (size, mtime, fingerprint), in listing order. */
async function listed(source: LocalDriver): Promise<FeedFile[]> {
  const files: FeedFile[] = [];
  for await (const entry of source.list(`${NIGHT2}/`)) {
    files.push({ path: entry.key.slice(NIGHT2.length + 1), size: entry.size, mtimeMs: entry.mtimeMs, ...(entry.fingerprint !== undefined ? { fingerprint: entry.fingerprint } : {}) });
  }
  return files;
}
