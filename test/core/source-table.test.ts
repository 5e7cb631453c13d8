/**
 * The source's files held in one table for a replicate run (src/core/source-table.ts,
 * src/core/run-files.ts `backupFiles`): every file the engine sees gives back exactly what the
 * source listed (path, size, mtime, fingerprint, and that fingerprint as the one its records
 * keep), in the order of the run's sorted paths; the table refuses paths out of order; and a
 * source file rewritten after the listing (same size) is still caught by the read's guard.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { inspectBackup } from '../../src/backup/index.js';
import { FingerprintColumn } from '../../src/core/fingerprint-column.js';
import { replicate } from '../../src/core/replicate.js';
import { backupFiles } from '../../src/core/run-files.js';
import { SourceTable, SourceTableBuilder } from '../../src/core/source-table.js';
import { createLocalDriver } from '../../src/drivers/local/index.js';

const NAME = 'backup_2025_12_01_02_00_00';
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

describe('SourceTable', () => {
  it('gives back every file exactly as listed, in the order of its sorted paths', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-source-table-'));
    dirs.push(dir);
    await generateBackup({ root: dir, name: NAME, files: 3000, totalBytes: 3 * 1024 * 1024, seed: 5 });
    const source = await createLocalDriver('source', { type: 'local', root: dir });
    const listed = (await inspectBackup(source, NAME, { quietPeriodMs: 0 })).files;
    const run = await backupFiles(source, NAME, 0);
    assert.equal(run.filesInPathOrder, true);
    const paths = run.paths;
    assert.ok(paths !== undefined, 'the paths are held by the table');
    assert.equal(run.files.length, listed.length);
    assert.ok(listed.length > 2000, `a backup of many files (${listed.length})`);
    for (let i = 0; i < listed.length; i++) {
      const want = listed[i] as (typeof listed)[number];
      const file = run.files[i] as (typeof run.files)[number];
      const path = want.key.slice(NAME.length + 1);
      assert.equal(file.path, path);
      assert.equal(file.size, want.size);
      assert.equal(file.mtimeMs, want.mtimeMs);
      assert.ok(want.fingerprint !== undefined && want.fingerprint.startsWith('local:'));
      assert.equal(file.fingerprint, want.fingerprint);
      assert.equal(file.recordedSource, want.fingerprint);
      assert.equal(paths.at(i), path);
    }
    // Found by place (from the back, so that no path asked for last is the answer).
    for (let i = listed.length - 1; i >= 0; i -= 7) assert.equal(paths.indexOf((listed[i] as (typeof listed)[number]).key.slice(NAME.length + 1)), i);
    assert.equal(paths.indexOf('meta/no_such_file.json'), -1);
  });

  it('keeps fingerprints of other drivers, and refuses a path out of order or twice', () => {
    const table = new SourceTable();
    const files = [
      { path: 'a', size: 1, mtimeMs: 1.5, fingerprint: 'etag:0123456789abcdef0123456789abcdef:1' },
      { path: 'b/é', size: 0, mtimeMs: 0 },
      { path: 'b/😀', size: 2 ** 40, mtimeMs: 1764931200123, fingerprint: 'sftp:1099511627776:1764931200' },
    ];
    for (const f of files) table.add(f);
    table.seal();
    assert.equal(table.totalBytes, 1 + 2 ** 40);
    files.forEach((f, i) => {
      assert.equal(table.pathAt(i), f.path);
      assert.equal(table.sizeAt(i), f.size);
      assert.equal(table.mtimeAt(i), f.mtimeMs);
      assert.equal(table.fingerprintAt(i), f.fingerprint);
    });
    const other = new SourceTable();
    other.add({ path: 'b', size: 1, mtimeMs: 1 });
    assert.throws(() => other.add({ path: 'a', size: 1, mtimeMs: 1 }), /not sorted, or twice/);
    assert.throws(() => other.add({ path: 'b', size: 1, mtimeMs: 1 }), /not sorted, or twice/);
  });

  it('sorts files listed out of order (by code units, not UTF-8 bytes), and refuses one listed twice', () => {
    const listed = ['b/2', 'b/1', 'a-b', 'a/b', '\ue000', '😀', 'a'].map((path, i) => ({ path, size: i, mtimeMs: i * 1.5, fingerprint: `local:${i}:${i}000:${i + 9}` }));
    const builder = new SourceTableBuilder();
    for (const f of listed) builder.add(f);
    const table = builder.finish('test');
    const sorted = [...listed].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    assert.deepEqual(Array.from({ length: table.count }, (_, i) => ({ path: table.pathAt(i), size: table.sizeAt(i), mtimeMs: table.mtimeAt(i), fingerprint: table.fingerprintAt(i) })), sorted);
    assert.equal(table.sortedPaths().indexOf('😀'), sorted.findIndex((f) => f.path === '😀'));
    // Sorted as they come: kept in the table from the start.
    const inOrder = new SourceTableBuilder();
    for (const f of sorted) inOrder.add(f);
    const direct = inOrder.finish('test');
    assert.deepEqual(Array.from({ length: direct.count }, (_, i) => direct.pathAt(i)), sorted.map((f) => f.path));
    const twice = new SourceTableBuilder();
    for (const path of ['a', 'b', 'a']) twice.add({ path, size: 1, mtimeMs: 1 });
    assert.throws(() => twice.finish('source: x'), (err: Error & { code?: string }) => err.code === 'E_SOURCE_LISTING' && /source: x: the source listed a twice/.test(err.message));
  });

  it('a fingerprint with a lone surrogate comes back as it was given', () => {
    const column = new FingerprintColumn(4);
    column.set(0, 'etag:\ud800x:1');
    column.set(1, 'etag:ab:1');
    column.set(0, 'etag:cd:2');
    column.set(2, 'x\udfff');
    assert.equal(column.get(0), 'etag:cd:2');
    assert.equal(column.get(1), 'etag:ab:1');
    assert.equal(column.get(2), 'x\udfff');
    assert.equal(column.get(3), undefined);
  });

  it('a source file rewritten after the listing, same size, is not recorded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-source-table-'));
    dirs.push(dir);
    const root = join(dir, 'source');
    await generateBackup({ root, name: NAME, files: 40, totalBytes: 256 * 1024, seed: 6 });
    const source = await createLocalDriver('source', { type: 'local', root });
    const disk = await createLocalDriver('disk', { type: 'local', root: join(dir, 'disk') });
    const listed = (await inspectBackup(source, NAME, { quietPeriodMs: 0 })).files;
    const victim = listed.filter((f) => f.key.includes('/binlogs/') && f.size > 0).at(-1);
    assert.ok(victim !== undefined);
    // Rewritten while the run lists and plans: same size, other mtime, before its read.
    const rewrite = (): void => {
      writeFileSync(join(root, victim.key), Buffer.alloc(victim.size, 7));
      utimesSync(join(root, victim.key), new Date(victim.mtimeMs + 5000), new Date(victim.mtimeMs + 5000));
    };
    let done = false;
    const result = await replicate({
      source, backup: NAME, destinations: [disk], quietPeriodMs: 0, fileConcurrency: 1,
      onEvent: (e) => { if (e.type === 'plan' && !done) { done = true; rewrite(); } },
    });
    const errors = result.destinations[0]?.errors ?? [];
    assert.equal(result.destinations[0]?.status, 'failed');
    assert.ok(errors.some((e) => e.code === 'E_SOURCE_CHANGED' && e.path === victim.key.slice(NAME.length + 1)), JSON.stringify(errors));
  });
});
