/**
 * The reuse index (src/core/reuse-index.ts, src/core/reuse-copies.ts): lookup order, what must match, and bounded memory with
 * 30 earlier copies of 100,000 files each (generated manifests, heap measured).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildReuseIndex } from '../../src/core/reuse-copies.js';
import { createReuseIndex, isContentEtag } from '../../src/core/reuse-index.js';
import { createDriver } from '../../src/drivers/index.js';
import { buildManifestBody, manifestKey, writeManifestAt } from '../../src/manifest/manifest.js';
import type { ManifestFile } from '../../src/manifest/manifest.js';

const CHUNK = 8 * 1024 * 1024;

/** A full garbage collection, so the measurement counts what the index keeps, not garbage not yet collected. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

function hex(n: number): string {
  return `xxh64:${n.toString(16).padStart(16, '0')}`;
}

function file(path: string, content: number, size = 1000 + content): ManifestFile {
  return { path, size, hash: hex(content), chunks: [hex(content + 0x1000000)] };
}

describe('reuse index', () => {
  it('finds the same path in the newest copy first, then the same contents anywhere', async () => {
    const index = await createReuseIndex();
    index.add({ backup: 'night3', chunkBytes: CHUNK, files: [file('a/1', 1), file('a/2', 2), file('a/dup', 1)] });
    index.add({ backup: 'night2', chunkBytes: CHUNK, files: [file('a/1', 1), file('old/9', 9)] });
    assert.deepEqual(index.find(file('a/1', 1), CHUNK), { backup: 'night3', path: 'a/1' });
    assert.deepEqual(index.find(file('a/dup', 1), CHUNK), { backup: 'night3', path: 'a/dup' }, 'same path in the newest copy wins');
    assert.deepEqual(index.find(file('new/place', 9), CHUNK), { backup: 'night2', path: 'old/9' }, 'by (size, hash) in an older copy');
    assert.deepEqual(index.find(file('b/moved', 2), CHUNK), { backup: 'night3', path: 'a/2' });
    assert.equal(index.size, 3, 'identical contents are kept once');
  });

  it('needs the same size, whole hash, chunk hashes and chunk size', async () => {
    const index = await createReuseIndex();
    index.add({ backup: 'n1', chunkBytes: CHUNK, files: [file('x', 5)] });
    assert.ok(index.find(file('x', 5), CHUNK));
    assert.equal(index.find({ ...file('x', 5), size: 1 }, CHUNK), undefined, 'size differs');
    assert.equal(index.find({ ...file('x', 5), hash: hex(6) }, CHUNK), undefined, 'whole hash differs');
    assert.equal(index.find({ ...file('x', 5), chunks: [hex(7)] }, CHUNK), undefined, 'a chunk hash differs');
    assert.equal(index.find(file('x', 5), CHUNK / 2), undefined, 'chunk size differs');
  });

  it('before the read: the newest copy\'s same path with the same size, and whether any copy has a file of a size', async () => {
    const index = await createReuseIndex();
    index.add({ backup: 'night3', chunkBytes: CHUNK, files: [file('a/1', 1)] });
    index.add({ backup: 'night2', chunkBytes: CHUNK, files: [file('old/9', 9)] });
    assert.deepEqual(index.candidate('a/1', 1001), { backup: 'night3', path: 'a/1' });
    assert.equal(index.candidate('a/1', 1002), undefined, 'another size');
    assert.equal(index.candidate('old/9', 1009), undefined, 'only the newest copy is looked up by path');
    assert.ok(index.mayHold(1009) && index.mayHold(1001));
    const absent = Array.from({ length: 1000 }, (_, i) => 5000 + i).filter((size) => index.mayHold(size));
    assert.ok(absent.length < 50, `sizes never indexed are mostly ruled out (${absent.length} of 1000 maybe)`);
  });

  it('a candidate is trusted only while its fingerprint is the one its manifest recorded', async () => {
    const index = await createReuseIndex();
    index.add({ backup: 'n1', chunkBytes: CHUNK, files: [{ ...file('x', 5), destinationFingerprint: 'local:1005:1:7' }, file('y', 6)] });
    const x = index.match(file('x', 5), CHUNK);
    assert.equal(x?.fingerprint, 'local:1005:1:7', 'the match carries the recorded fingerprint (copyWithin expects it)');
    assert.equal(index.match(file('elsewhere', 5), CHUNK)?.fingerprint, 'local:1005:1:7', 'also when found by content');
    const y = index.match(file('y', 6), CHUNK);
    assert.ok(y && y.fingerprint === undefined, 'no fingerprint recorded: trusted on size, like older records');
  });

  it('trustEtags: the newest copy\'s hashes of a path whose source showed the same content-MD5 ETag', async () => {
    const md5 = (n: number): string => n.toString(16).padStart(32, '0');
    const etag = (n: number, size: number): string => `etag:${md5(n)}:${size}`;
    assert.ok(isContentEtag(etag(1, 10)));
    assert.ok(!isContentEtag(`etag:${md5(1)}-3:10`), 'a multipart ETag is no content MD5');
    assert.ok(!isContentEtag('local:10:1:2') && !isContentEtag(undefined));
    const two = { ...file('b', 2), chunks: [hex(20), hex(21)], sourceFingerprint: etag(2, 1002) };
    const files = [{ ...file('a', 1), sourceFingerprint: etag(1, 1001) }, two, { ...file('c', 3), sourceFingerprint: `etag:${md5(3)}-2:1003` }];
    const index = await createReuseIndex({ sourceEtags: true });
    index.add({ backup: 'night2', chunkBytes: CHUNK, files });
    index.add({ backup: 'night1', chunkBytes: CHUNK, files: [{ ...file('old', 4), sourceFingerprint: etag(4, 1004) }] });
    assert.deepEqual(index.known('b', 1002, etag(2, 1002), CHUNK), { same: true, hash: two.hash, chunks: two.chunks });
    assert.deepEqual(index.known('a', 1001, etag(9, 1001), CHUNK), { same: false }, 'another ETag: other bytes');
    assert.equal(index.known('a', 1001, etag(1, 1001), CHUNK / 2), undefined, 'another chunk size');
    assert.equal(index.known('a', 1000, etag(1, 1000), CHUNK), undefined, 'another size');
    assert.equal(index.known('c', 1003, `etag:${md5(3)}-2:1003`, CHUNK), undefined, 'a multipart ETag is never trusted');
    assert.equal(index.known('old', 1004, etag(4, 1004), CHUNK), undefined, 'only the newest copy is looked up');
    assert.deepEqual(index.find(file('b', 2), CHUNK), undefined, 'chunks are part of the content');
    assert.deepEqual(index.find(two, CHUNK), { backup: 'night2', path: 'b' });
    const plain = await createReuseIndex();
    plain.add({ backup: 'night2', chunkBytes: CHUNK, files });
    assert.equal(plain.known('b', 1002, etag(2, 1002), CHUNK), undefined, 'off unless asked for');
  });

  it('streams the manifests of a destination; a damaged one adds nothing, however far it was read', async () => {
    const root = mkdtempSync(join(tmpdir(), 'reuse-index-'));
    try {
      const driver = await createDriver('vault', { type: 'local', root });
      const write = (backup: string, files: ManifestFile[], kind: 'complete' | 'progress' = 'complete') => writeManifestAt(driver, manifestKey(backup), buildManifestBody({
        kind, backup, source: 'src', chunkBytes: CHUNK, files, createdAt: new Date(0), backupTime: new Date(0).toISOString(),
      }), { pretty: false });
      await write('n3', [file('a/1', 1), file('a/2', 2)]);
      await write('n2', [file('b/3', 3), file('b/4', 4)]);
      await write('n1', [file('c/5', 5)]);
      await write('n0', [file('d/6', 6)], 'progress');
      // n2 damaged after its records: its digest no longer matches.
      const path = join(root, 'n2', '.offsite', 'manifest.json');
      writeFileSync(path, readFileSync(path, 'utf8').replace('"b/4"', '"b/9"'));
      const skipped: string[] = [];
      const index = await buildReuseIndex(driver, ['n3', 'n2', 'n1', 'n0'], { onSkipped: (backup) => skipped.push(backup) });
      assert.deepEqual(skipped, ['n2']);
      assert.deepEqual(index.backups, ['n3', 'n1']);
      assert.deepEqual(index.find(file('x', 1), CHUNK), { backup: 'n3', path: 'a/1' });
      assert.deepEqual(index.find(file('x', 5), CHUNK), { backup: 'n1', path: 'c/5' }, 'found past the damaged copy');
      assert.equal(index.find(file('x', 3), CHUNK), undefined, 'nothing of the damaged copy');
      assert.equal(index.find(file('x', 6), CHUNK), undefined, 'nothing of a copy that is not complete');
      assert.equal(index.size, 3);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('undo takes out a copy begun last and keeps the others findable', async () => {
    const index = await createReuseIndex();
    index.add({ backup: 'n2', chunkBytes: CHUNK, files: Array.from({ length: 300 }, (_, i) => file(`a/${i}`, i)) });
    const copy = index.begin('n1', CHUNK);
    for (let i = 200; i < 600; i++) copy.add(file(`b/${i}`, i));
    copy.undo();
    assert.deepEqual(index.backups, ['n2']);
    assert.equal(index.size, 300);
    for (let i = 0; i < 300; i++) assert.deepEqual(index.find(file('x', i), CHUNK), { backup: 'n2', path: `a/${i}` });
    assert.equal(index.find(file('x', 450), CHUNK), undefined);
    index.add({ backup: 'n0', chunkBytes: CHUNK, files: [file('c/1', 1000)] });
    assert.deepEqual(index.find(file('x', 1000), CHUNK), { backup: 'n0', path: 'c/1' });
  });

  it('gives back every path whole, however paths share their beginnings (front-coded storage)', async () => {
    const index = await createReuseIndex();
    // Sorted paths sharing long prefixes, prefixes that end inside a multi-byte character
    // ('é' and 'ê' share their first UTF-8 byte), paths that are prefixes of others, 1,000 files.
    const names = ['a', 'a/b', 'a/b/c', 'caf\u00e9/1', 'caf\u00ea/1', '\u65e5\u672c/\u{1f600}', '\u65e5\u672c/\u{1f601}'];
    const paths = [...names, ...Array.from({ length: 1000 }, (_, i) => `binlogs/insert_log/44990/44991/${Math.floor(i / 7)}/101/${i}`)].sort();
    index.add({ backup: 'n3', chunkBytes: CHUNK, files: paths.map((p, i) => file(p, i)) });
    // An older copy: the same paths with other contents, then a few of its own; a copy undone midway.
    index.add({ backup: 'n2', chunkBytes: CHUNK, files: [...paths.map((p, i) => file(p, 5000 + i)), file('zz/old', 9000)] });
    const undone = index.begin('n1', CHUNK);
    for (let i = 0; i < 37; i++) undone.add(file(`q/${i}`, 7000 + i));
    undone.undo();
    index.add({ backup: 'n0', chunkBytes: CHUNK, files: [file('zz/older/\u00e9', 9001)] });
    paths.forEach((p, i) => {
      assert.deepEqual(index.candidate(p, 1000 + i), { backup: 'n3', path: p }, `by path: ${p}`);
      assert.deepEqual(index.find(file(p, i), CHUNK), { backup: 'n3', path: p });
      assert.deepEqual(index.find(file('elsewhere', 5000 + i), CHUNK), { backup: 'n2', path: p }, `by contents in the older copy: ${p}`);
    });
    assert.equal(index.candidate('a/b/', 1001), undefined, 'a path that only begins like one held is not it');
    assert.equal(index.candidate('caf\u00e8/1', 1003), undefined);
    assert.deepEqual(index.find(file('x', 9000), CHUNK), { backup: 'n2', path: 'zz/old' });
    assert.deepEqual(index.find(file('x', 9001), CHUNK), { backup: 'n0', path: 'zz/older/\u00e9' });
    assert.equal(index.find(file('x', 7003), CHUNK), undefined, 'nothing of the undone copy');
  });

  it('keeps at most maxEntries contents, newest copies first', async () => {
    const index = await createReuseIndex({ maxEntries: 2 });
    index.add({ backup: 'new', chunkBytes: CHUNK, files: [file('a', 1), file('b', 2)] });
    index.add({ backup: 'old', chunkBytes: CHUNK, files: [file('c', 3)] });
    assert.equal(index.size, 2);
    assert.ok(index.find(file('z', 2), CHUNK));
    assert.equal(index.find(file('c', 3), CHUNK), undefined);
  });

  it('stays small with 30 earlier copies of 100,000 files each (10% changed a night)', async () => {
    const files = 100_000;
    const nights = 30;
    collectGarbage();
    const before = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    const index = await createReuseIndex();
    let next = files;
    const current = Array.from({ length: files }, (_, i) => i);
    // Each night's records made and dropped in a function of their own: a loop's last records may
    // stay reachable from its frame, and the measure is of the index, not of the test's records.
    const addNight = (night: number): void => {
      // Every record with a destination fingerprint as S3 makes them (the index keeps it).
      const manifestFiles = current.map((content, i) => ({
        ...file(`binlogs/insert_log/449900000000000001/449900000000000002/${i % 97}/4499000000${String(i).padStart(8, '0')}/101/${content}`, content),
        destinationFingerprint: `etag:${content.toString(16).padStart(32, '0')}:${1000 + content}`,
      }));
      index.add({ backup: `backup_night_${night}`, chunkBytes: CHUNK, files: manifestFiles });
    };
    for (let night = nights; night >= 1; night--) { // newest first
      addNight(night);
      for (let i = night % 10; i < files; i += 10) current[i] = next++; // older nights differ in 10%
    }
    // Buffers the index outgrew are freed, and uncounted, a moment after the collection that finds them.
    collectGarbage();
    await new Promise((resolve) => setImmediate(resolve));
    collectGarbage();
    const used = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - before;
    process.stdout.write(`# reuse index: ${index.size} distinct contents over ${nights} x ${files} files: ${(used / 1024 / 1024).toFixed(1)} MiB heap + array buffers\n`);
    assert.equal(index.size, files + (nights - 1) * files / 10);
    assert.ok(used < 150 * 1024 * 1024, `the index used ${(used / 1024 / 1024).toFixed(1)} MiB`);
  });
});
