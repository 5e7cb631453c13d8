/**
 * The streamed manifest writer (src/manifest/write-stream.ts) writes exactly the bytes of
 * `writeManifestAt` for the same body, pretty or not, in one part or several, from records made
 * on demand (one pass, or two over one part); it refuses records out of order or not matching
 * the head. The engine's compact record store (src/core/records.ts) gives back every record
 * field for field.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RecordStore } from '../../src/core/records.js';
import { LocalDriver } from '../../src/drivers/local/index.js';
import { buildManifestBody, decodeManifest, writeManifestAt, type ManifestFile } from '../../src/manifest/manifest.js';
import { writeManifestStreamed, type ManifestHead } from '../../src/manifest/write-stream.js';

const dir = mkdtempSync(join(tmpdir(), 'offsite-write-stream-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const driver = new LocalDriver('disk', { root: dir, maxConcurrency: 4 });

const hex = (n: number): string => `xxh64:${n.toString(16).padStart(16, '0')}`;

function record(i: number, chunks = 1): ManifestFile {
  const hash = hex(i * 7919);
  return {
    path: `binlogs/insert_log/1/2/${String(i).padStart(6, '0')}/0/${1000 + i}`, size: i * 7, hash,
    chunks: chunks === 1 ? [hash] : Array.from({ length: chunks }, (_, c) => hex(i * 31 + c)),
    sourceFingerprint: `local:${i * 7}:1700000000000000000:${i}`, destinationFingerprint: `local:${i * 7}:1700000000000000001:${i + 5}`,
  };
}

const odd: ManifestFile[] = [
  { path: 'a/files":[]', size: 5, hash: 'xxh64:00000000000000ff', chunks: ['xxh64:00000000000000ff'] },
  { path: 'b/extra', size: 1, hash: 'xxh64:0000000000000001', chunks: ['xxh64:0000000000000001'], note: 'x' } as ManifestFile,
  { chunks: ['xxh64:0000000000000002'], size: 2, path: 'c/reordered', hash: 'xxh64:0000000000000002' } as ManifestFile,
  { path: 'meta/"quoted"\\ and \u00e9\u4e2d \ud83d\ude00.json', size: 0, hash: 'xxh64:0000000000000000', chunks: [] },
];

function headOf(files: readonly ManifestFile[], extra: Partial<ManifestHead> = {}): ManifestHead {
  return {
    kind: 'complete', backup: 'b1', source: 'local:/src "x"', createdAt: '2026-01-01T00:00:00.000Z', backupTime: '2025-12-31T00:00:00.000Z',
    chunkBytes: 8 << 20, fileCount: files.length, totalBytes: files.reduce((sum, f) => sum + f.size, 0), ...extra,
  };
}

describe('writeManifestStreamed', () => {
  const cases: [string, ManifestFile[], Partial<ManifestHead>][] = [
    ['no files', [], {}],
    ['a few files, some of several chunks', Array.from({ length: 50 }, (_, i) => record(i, 1 + (i % 3))), {}],
    ['odd records', odd, {}],
    ['a progress checkpoint', Array.from({ length: 20 }, (_, i) => record(i)), { kind: 'progress', includesThrough: 12, backupTime: undefined }],
    // Over 1 MiB pretty-printed: written in several parts.
    ['30,000 files (several parts)', Array.from({ length: 30_000 }, (_, i) => record(i)), {}],
  ];
  for (const [name, files, extra] of cases) {
    for (const pretty of [true, false]) {
      it(`writes the bytes writeManifestAt writes: ${name}${pretty ? '' : ', not pretty'}`, async () => {
        const head = headOf(files, extra);
        const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
        const body = buildManifestBody({ ...head, files, createdAt: new Date(head.createdAt) });
        const expected = await writeManifestAt(driver, 'plain/m.json', body, { pretty });
        let passes = 0;
        const digest = await writeManifestStreamed(driver, 'streamed/m.json', head, () => { passes++; return sorted.values(); }, { pretty });
        assert.equal(digest, expected.digest);
        const streamedBytes = readFileSync(join(dir, 'streamed/m.json')).length;
        // Records made on demand: once (digest and bytes in one pass), twice when the bytes exceed one part of 1 MiB.
        assert.equal(passes, streamedBytes > 1024 * 1024 ? 2 : 1);
        const streamed = readFileSync(join(dir, 'streamed/m.json'));
        assert.equal(streamed.toString(), readFileSync(join(dir, 'plain/m.json')).toString());
        assert.equal((await decodeManifest(streamed, 'test')).fileCount, files.length);
      });
    }
  }

  it('refuses records out of order, or other than the head says, and leaves nothing behind', async () => {
    const files = [record(1), record(2)];
    await assert.rejects(writeManifestStreamed(driver, 'bad/a.json', headOf(files), () => [files[1] as ManifestFile, files[0] as ManifestFile]), /out of order/);
    await assert.rejects(writeManifestStreamed(driver, 'bad/b.json', headOf(files), () => [files[0] as ManifestFile]), /records are 1 of/);
    assert.equal(await driver.stat('bad/a.json'), undefined);
    assert.equal(await driver.stat('bad/b.json'), undefined);
  });
});

describe('RecordStore', () => {
  it('gives back every record field for field, replaced ones as last set, odd ones as they came', () => {
    const store = new RecordStore();
    const records = [
      ...Array.from({ length: 3000 }, (_, i) => record(i, 1 + (i % 4 === 0 ? 2 : 0))),
      { path: 'empty', size: 0, hash: 'xxh64:ef46db3751d8e999', chunks: [] },
      { path: 'no-fingerprints', size: 3, hash: 'xxh64:00000000000000aa', chunks: ['xxh64:00000000000000aa'] },
      { path: 'upper-case hash', size: 3, hash: 'xxh64:00000000000000AA', chunks: ['xxh64:00000000000000AA'] },
      { path: 'chunk differs', size: 3, hash: 'xxh64:00000000000000aa', chunks: ['xxh64:00000000000000ab'] },
      ...odd,
    ];
    for (const r of records) store.set(r);
    const replaced = { ...record(5), hash: hex(1), chunks: [hex(1)] };
    store.set(replaced);
    const expected = new Map(records.map((r) => [r.path, r]));
    expected.set(replaced.path, replaced);
    assert.equal(store.size, expected.size);
    for (const [path, r] of expected) assert.deepEqual(store.get(path), r, path);
    assert.deepEqual([...store.values()].map((r) => r.path), [...expected.keys()]);
    const paths = store.sortedPaths();
    assert.deepEqual(paths, [...expected.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    assert.deepEqual([...store.inOrder(paths)], paths.map((p) => expected.get(p)));
    assert.equal(store.bytesOf(paths), [...expected.values()].reduce((sum, r) => sum + r.size, 0));
    assert.equal(store.get('missing'), undefined);
    assert.equal(store.has('missing'), false);
  });

  it('with the paths known in advance, finds them without a map and still takes others', () => {
    const records = Array.from({ length: 2000 }, (_, i) => record(i));
    const known = records.map((r) => r.path).sort();
    const store = new RecordStore(known);
    assert.equal(store.size, 0);
    assert.equal(store.has(known[0] as string), false, 'a known path is not recorded until set');
    assert.equal(store.get(known[5] as string), undefined);
    // Recorded out of order, half of them, plus paths that were not known.
    const half = records.filter((_, i) => i % 2 === 1).reverse();
    for (const r of half) store.set(r);
    for (const r of odd) store.set(r);
    store.set({ ...half[0] as ManifestFile, hash: hex(2), chunks: [hex(2)] });
    assert.equal(store.size, half.length + odd.length);
    for (const r of records) assert.equal(store.has(r.path), half.includes(r), r.path);
    assert.deepEqual(store.get((half[1] as ManifestFile).path), half[1]);
    assert.equal(store.get((half[0] as ManifestFile).path)?.hash, hex(2), 'replaced');
    for (const r of odd) assert.deepEqual(store.get(r.path), r);
    const expectedPaths = [...half.map((r) => r.path), ...odd.map((r) => r.path)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    assert.deepEqual(store.sortedPaths(), expectedPaths);
    assert.deepEqual([...store.values()].map((r) => r.path), [...half.map((r) => r.path).sort(), ...odd.map((r) => r.path)], 'known paths in their order, then the others');
    assert.deepEqual([...store.inOrder(expectedPaths)].map((r) => r.path), expectedPaths);
    assert.throws(() => [...store.inOrder([known[0] as string])], /no record of/);
  });

  it('gives back where a reused file came from, from the same path of a copy or from another path', () => {
    const records = Array.from({ length: 300 }, (_, i) => record(i));
    const known = records.map((r) => r.path).sort();
    const store = new RecordStore(known);
    const reused = records.map((r, i): ManifestFile => (i % 3 === 0 ? r
      : i % 3 === 1 ? { ...r, reusedFrom: `backup_2026_01_${String(1 + (i % 5)).padStart(2, '0')}_02_00_00/${r.path}` }
        : { ...r, reusedFrom: `backup_2026_01_01_02_00_00/${i % 2 === 0 ? 'other/' : ''}${r.path.slice(1)}` }));
    for (const r of reused) store.set(r);
    for (const r of reused) assert.deepEqual(store.get(r.path), r, r.path);
    assert.deepEqual([...store.inOrder(known)], known.map((p) => reused.find((r) => r.path === p)));
    assert.deepEqual([...store.reused()], known.map((p) => reused.find((r) => r.path === p) as ManifestFile)
      .filter((r) => r.reusedFrom !== undefined).map((r) => ({ path: r.path, from: r.reusedFrom })));
    // Set again without reuse: the record says nothing of where it came from any more.
    const plain = records[1] as ManifestFile;
    store.set(plain);
    assert.deepEqual(store.get(plain.path), plain);
  });

  it('ignores known paths that are not sorted (every path then goes through the map)', () => {
    const store = new RecordStore(['b', 'a']);
    store.set({ path: 'a', size: 1, hash: hex(1), chunks: [hex(1)] });
    store.set({ path: 'b', size: 2, hash: hex(2), chunks: [hex(2)] });
    assert.deepEqual([...store.values()].map((r) => r.path), ['a', 'b']);
    assert.equal(store.size, 2);
  });
});
