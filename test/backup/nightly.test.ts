/**
 * The nightly chain of scripts/gen-nightly.ts: the next night keeps most files byte for byte at
 * the same paths, changes about the share asked for, and is a complete backup for inspection.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { inspectBackup } from '../../src/backup/index.js';
import { generateChain, generateNextNight, type NextNightResult } from '../../scripts/gen-nightly.js';
import { createFsSource } from './fs-source.js';
import { NOW, OLD, gen, tempRoot } from './helpers.js';

/** Relative path -> sha256 of every file under `dir`. */
async function digests(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (folder: string): Promise<void> => {
    for (const dirent of await readdir(folder, { withFileTypes: true })) {
      const path = join(folder, dirent.name);
      if (dirent.isDirectory()) await walk(path);
      else out.set(relative(dir, path).split(sep).join('/'), createHash('sha256').update(await readFile(path)).digest('hex'));
    }
  };
  await walk(dir);
  return out;
}

/** Bytes of `next` that are not in `prev` at the same path with the same contents, and the total. */
async function changedShare(prev: string, next: string): Promise<{ share: number; kept: string[]; changedBytes: number; total: number }> {
  const before = await digests(prev);
  const after = await digests(next);
  let changedBytes = 0;
  let total = 0;
  const kept: string[] = [];
  for (const [rel, digest] of after) {
    const size = (await readFile(join(next, rel))).length;
    total += size;
    if (before.get(rel) === digest) kept.push(rel); else changedBytes += size;
  }
  return { share: changedBytes / total, kept, changedBytes, total };
}

const SHAPE = { totalBytes: 2 * 1024 * 1024, files: 150, collections: 2 } as const;

describe('nightly chain (gen-nightly)', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('nightly')));
  after(() => cleanup());

  it('keeps files byte for byte, changes the share asked for, and makes a complete backup', async () => {
    const first = await gen(root, 'night_1', { ...SHAPE, variant: 'head', seed: 3 });
    for (const [name, from, changed] of [['night_2', first.dir, 0.1], ['night_3', join(root, 'night_2'), 0.3]] as const) {
      const night = await generateNextNight({ from, root, name, changed, seed: 4, mtimeMs: OLD });
      const measured = await changedShare(from, night.dir);
      assert.ok(Math.abs(measured.share - changed) < 0.01, `${name}: ${(100 * measured.share).toFixed(2)}% changed, asked ${100 * changed}%`);
      assert.equal(measured.changedBytes, night.chain.changedBytes, 'the result says what changed');
      assert.equal(measured.total, night.bytes);
      assert.equal(measured.kept.length, night.chain.keptFiles, 'every file the generator kept is byte-identical at the same path');
      assert.ok(measured.kept.every((rel) => rel.startsWith('binlogs/')), 'meta files are all new');
      // The shape of a next night: compaction, new segments, deletes; IDs above the previous night's.
      const prevIds = new Set([...(await digests(from)).keys()].flatMap((rel) => rel.split('/')).filter((p) => /^\d{18}$/.test(p)));
      const maxPrev = [...prevIds].reduce((a, b) => (BigInt(b) > a ? BigInt(b) : a), 0n);
      const c = night.chain;
      assert.ok(c.compactedSegments.length > 0 && c.compactedInto.length > 0, 'some segments compacted');
      assert.ok(c.compactedSegments.every((id) => prevIds.has(id) && !night.ids.segments.includes(id)), 'compacted segments are gone');
      assert.ok([...c.compactedInto, ...c.newSegments, ...c.newL0Segments].every((id) => BigInt(id) > maxPrev && !prevIds.has(id)), 'new IDs above the old ones');
      assert.ok(c.newSegments.length > 0 && c.deltaLogsAdded > 0 && c.newL0Segments.length > 0, JSON.stringify(c));
      assert.ok(c.removedL0Segments.length > 0 && c.removedL0Segments.every((id) => !night.ids.l0Segments.includes(id)), 'old L0 segments applied');
      // A complete backup: every log_size matches its file, the meta parses.
      const inspection = await inspectBackup(createFsSource(root), name, { nowMs: NOW });
      assert.equal(inspection.state, 'complete', inspection.reason);
      assert.equal(inspection.binlogCount, night.binlogs);
    }
  });

  it('is deterministic from the previous night and the seed; another seed differs', async () => {
    const [night1] = await generateChain({ root: join(root, 'a'), names: ['n_1'], ...SHAPE, variant: 'storage-v2', seed: 5, mtimeMs: OLD });
    const one = await generateNextNight({ from: night1.dir, root: join(root, 'b'), name: 'n_2', seed: 9, mtimeMs: OLD });
    const two = await generateNextNight({ from: night1.dir, root: join(root, 'c'), name: 'n_2', seed: 9, mtimeMs: OLD, concurrency: 1 });
    const other = await generateNextNight({ from: night1.dir, root: join(root, 'd'), name: 'n_2', seed: 10, mtimeMs: OLD });
    assert.deepEqual(await digests(one.dir), await digests(two.dir));
    assert.notDeepEqual(await digests(one.dir), await digests(other.dir));
    assert.equal((await inspectBackup(createFsSource(join(root, 'b')), 'n_2', { nowMs: NOW })).state, 'complete');
    await assert.rejects(generateNextNight({ from: night1.dir, root: join(root, 'a'), name: 'n_1' }), /previous night itself/);
  });

  it('works from the CLI (--from PREV --changed P%), with the chain figures in --json', async () => {
    const first = await gen(join(root, 'cli'), 'cli_1', { ...SHAPE, variant: 'v0.4.3', seed: 6 });
    const script = fileURLToPath(new URL('../../scripts/gen-backup.js', import.meta.url));
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, [script, '--root', join(root, 'cli'), '--name', 'cli_2', '--from', first.dir, '--changed', '20%', '--seed', '2', '--json']);
    const night = JSON.parse(stdout) as NextNightResult;
    assert.equal(night.variant, 'v0.4.3');
    assert.ok(Math.abs((await changedShare(first.dir, night.dir)).share - 0.2) < 0.01);
    assert.equal((await inspectBackup(createFsSource(join(root, 'cli')), 'cli_2', { nowMs: Date.now() + 3_600_000 })).state, 'complete');
    await assert.rejects(run(process.execPath, [script, '--root', root, '--name', 'x', '--from', first.dir, '--changed', '95%']), /0% to 90%/);
    await assert.rejects(run(process.execPath, [script, '--root', root, '--name', 'x', '--from', first.dir, '--size', '1MiB']), /drop --size/);
  });
});
