/**
 * Deep verify through the driver's own hashing (`Driver.readHashes`: the local driver reads into
 * the hash module's memory, no stream) finds what the read stream finds, and says it the same way:
 * which file, which chunk and its bytes for a flipped byte (the first chunk, a middle one, the
 * shorter last one), a file longer or shorter than recorded. The same copy is verified through a
 * bandwidth-limited stack (no `readHashes`: read through its paced stream) for comparison. An abort
 * stops the verify.
 */
import assert from 'node:assert/strict';
import { appendFileSync, closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { replicate } from '../../src/core/replicate.js';
import { verifyCopy, type Damage } from '../../src/core/verify.js';
import { LocalDriver } from '../../src/drivers/local/index.js';
import type { Driver, FileHashes, ReadHashesOptions, ReadOptions } from '../../src/drivers/types.js';
import { createRateLimiter, withBandwidthLimit } from '../../src/drivers/wrappers/bwlimit.js';
import { OffsiteError } from '../../src/errors.js';
import { manifestKey } from '../../src/manifest/manifest.js';
import { readManifestStreamed } from '../../src/manifest/read.js';

const NAME = 'read_hashes_2025_07_02';
const KiB = 1024;
const CHUNK = 64 * KiB;

/** A local driver that counts how the data files are read. */
class CountingDriver extends LocalDriver {
  hashed = 0;
  streamed = 0;
  /** Called before each `readHashes`. */
  onReadHashes: (() => void) | undefined;

  override readHashes(key: string, options: ReadHashesOptions): Promise<FileHashes> {
    this.hashed++;
    this.onReadHashes?.();
    return super.readHashes(key, options);
  }

  override openRead(key: string, options?: ReadOptions): Promise<Readable> {
    if (!key.includes('/.offsite/')) this.streamed++;
    return super.openRead(key, options);
  }
}

let dir: string;
let copyRoot: string;
/** Manifest paths and sizes of the copy's files, largest first. */
let files: { path: string; size: number }[];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'offsite-read-hashes-'));
  await generateBackup({ root: join(dir, 'source'), name: NAME, files: 24, totalBytes: 3 * 1024 * KiB, largestFileBytes: 700 * KiB, seed: 31 });
  copyRoot = join(dir, 'copy');
  const source = new LocalDriver('source', { root: join(dir, 'source'), maxConcurrency: 8 });
  const made = await replicate({ source, backup: NAME, destinations: [new LocalDriver('copy', { root: copyRoot, maxConcurrency: 8 })], quietPeriodMs: 0, chunkBytes: CHUNK });
  assert.equal(made.destinations[0]?.status, 'complete', JSON.stringify(made.destinations[0]?.errors));
  const manifest = await readManifestStreamed(new LocalDriver('copy', { root: copyRoot, maxConcurrency: 8 }), manifestKey(NAME));
  assert.ok(manifest, 'the copy has a manifest');
  assert.equal(manifest.chunkBytes, CHUNK);
  files = manifest.files.map((f) => ({ path: f.path, size: f.size })).sort((a, b) => b.size - a.size);
  assert.ok((files[0]?.size ?? 0) > 4 * CHUNK + 100 && (files[1]?.size ?? 0) > 2 * CHUNK, `files of several chunks: ${files.slice(0, 3).map((f) => f.size).join(', ')}`);
});
after(() => { rmSync(dir, { recursive: true, force: true }); });

const hashing = (): CountingDriver => new CountingDriver('copy', { root: copyRoot, maxConcurrency: 8 });
/** The same copy through a paced stack: no `readHashes`, read through its stream. */
const streaming = (): { driver: Driver; counts: CountingDriver } => {
  const counts = hashing();
  return { driver: withBandwidthLimit(counts, [createRateLimiter(1024 ** 3)], { limitReads: true }), counts };
};

function flipByte(path: string, offset: number): void {
  const fd = openSync(join(copyRoot, NAME, path), 'r+');
  try {
    const byte = Buffer.alloc(1);
    assert.equal(readSync(fd, byte, 0, 1, offset), 1);
    byte[0] = (byte[0] as number) ^ 0x10;
    writeSync(fd, byte, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

/** The damage found by a deep verify through each path, checked to be the same; and that each path was the one taken. */
async function damageBothWays(): Promise<readonly Damage[]> {
  const direct = hashing();
  const byHashes = await verifyCopy({ driver: direct, backup: NAME, level: 'deep', concurrency: 4 });
  assert.ok(direct.hashed > 0 && direct.streamed === 0, `read through readHashes only (${direct.hashed} hashed, ${direct.streamed} streamed)`);
  const paced = streaming();
  assert.equal(paced.driver.readHashes, undefined);
  const byStream = await verifyCopy({ driver: paced.driver, backup: NAME, level: 'deep', concurrency: 4 });
  assert.ok(paced.counts.streamed > 0 && paced.counts.hashed === 0, `read through the stream only (${paced.counts.hashed} hashed, ${paced.counts.streamed} streamed)`);
  assert.deepEqual(byHashes.damage, byStream.damage, 'the same damage through readHashes and through the stream');
  assert.equal(byHashes.status, byStream.status);
  return byHashes.damage;
}

describe('deep verify through the driver\'s readHashes', () => {
  it('finds an intact copy intact, every file read through readHashes', async () => {
    const driver = hashing();
    const result = await verifyCopy({ driver, backup: NAME, level: 'deep', concurrency: 4 });
    assert.equal(result.status, 'ok', JSON.stringify(result.damage));
    assert.equal(result.filesRead, files.length);
    assert.equal(result.bytesChecked, files.reduce((sum, f) => sum + f.size, 0));
    assert.equal(driver.hashed, files.length);
    assert.equal(driver.streamed, 0);
  });

  it('locates a flipped byte by file and chunk: the first chunk, a middle one, the shorter last one', async () => {
    const [large, second, third] = files as [{ path: string; size: number }, { path: string; size: number }, { path: string; size: number }];
    flipByte(large.path, 2 * CHUNK + 123);
    flipByte(second.path, 7);
    flipByte(third.path, third.size - 1);
    const lastChunk = Math.ceil(third.size / CHUNK) - 1;
    const damage = await damageBothWays();
    const found = new Map(damage.map((d) => [d.path, d]));
    assert.equal(damage.length, 3, JSON.stringify(damage));
    assert.deepEqual(
      { problem: found.get(large.path)?.problem, chunk: found.get(large.path)?.chunk, offset: found.get(large.path)?.offset, length: found.get(large.path)?.length },
      { problem: 'chunk', chunk: 2, offset: 2 * CHUNK, length: CHUNK },
    );
    assert.match(found.get(large.path)?.message ?? '', new RegExp(`^${large.path}: chunk 2 \\(bytes ${2 * CHUNK}\\.\\.${3 * CHUNK - 1}\\) differs: expected xxh64:[0-9a-f]{16}, found xxh64:[0-9a-f]{16}$`));
    assert.deepEqual([found.get(second.path)?.chunk, found.get(second.path)?.offset, found.get(second.path)?.length], [0, 0, Math.min(CHUNK, second.size)]);
    assert.deepEqual([found.get(third.path)?.chunk, found.get(third.path)?.offset, found.get(third.path)?.length], [lastChunk, lastChunk * CHUNK, third.size - lastChunk * CHUNK]);
    // Flipped back: intact again.
    flipByte(large.path, 2 * CHUNK + 123);
    flipByte(second.path, 7);
    flipByte(third.path, third.size - 1);
    assert.deepEqual(await damageBothWays(), []);
  });

  it('reports a file longer or shorter than recorded as such, never as intact', async () => {
    const [, longer, shorter] = files as [unknown, { path: string; size: number }, { path: string; size: number }];
    const cut = readFileSync(join(copyRoot, NAME, shorter.path)).subarray(shorter.size - 1);
    appendFileSync(join(copyRoot, NAME, longer.path), Buffer.from([1]));
    truncateSync(join(copyRoot, NAME, shorter.path), shorter.size - 1);
    try {
      const damage = await damageBothWays();
      assert.deepEqual(damage.map((d) => [d.path, d.problem]).sort(), [[longer.path, 'size'], [shorter.path, 'size']].sort());
      assert.equal(statSync(join(copyRoot, NAME, longer.path)).size, longer.size + 1);
    } finally {
      truncateSync(join(copyRoot, NAME, longer.path), longer.size);
      appendFileSync(join(copyRoot, NAME, shorter.path), cut);
    }
    assert.deepEqual(await damageBothWays(), [], 'intact again');
  });

  it('stops when its signal fires: rejects with E_ABORTED', async () => {
    const driver = hashing();
    const stop = new AbortController();
    driver.onReadHashes = () => { if (driver.hashed === 3) stop.abort(); };
    await assert.rejects(
      verifyCopy({ driver, backup: NAME, level: 'deep', concurrency: 2, signal: stop.signal }),
      (err: unknown) => err instanceof OffsiteError && err.code === 'E_ABORTED',
    );
    assert.ok(driver.hashed < files.length, `stopped after ${driver.hashed} of ${files.length} files`);
  });
});
