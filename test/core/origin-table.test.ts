/**
 * The compact table of an origin manifest's records (src/core/origin-table.ts): it gives back
 * every field the engine uses exactly as the records had it, whatever their shape, finds records
 * by path whatever their order, and refuses a manifest naming a path twice.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OriginTable } from '../../src/core/origin-table.js';
import type { ManifestFile } from '../../src/manifest/manifest.js';

function hashOf(i: number): string {
  return `xxh64:${(i * 2654435761 % 2 ** 32).toString(16).padStart(8, '0')}${(i * 40503 % 2 ** 32).toString(16).padStart(8, '0')}`;
}

/** Records of every shape the table keeps apart: one chunk, none, several, a hash written another way, with and without fingerprints and MACs. */
function records(count: number): ManifestFile[] {
  const files: ManifestFile[] = [];
  for (let i = 0; i < count; i++) {
    const hash = hashOf(i);
    const path = `binlogs/insert_log/${i % 7}/ü€${i % 3 === 0 ? '😀' : ''}/${String(i).padStart(6, '0')}`;
    const chunks = i % 11 === 0 ? [] : i % 13 === 0 ? [hashOf(i + 1), hashOf(i + 2)] : [hash];
    files.push({
      path, size: i * 3, hash: i % 17 === 0 ? hash.toUpperCase() : hash, chunks,
      ...(i % 2 === 0 ? { sourceFingerprint: `local:${i}:${i * 7}:${i * 13}` } : {}),
      ...(i % 5 === 0 ? { mac: `mac:${i}` } : {}),
      destinationFingerprint: `dropped:${i}`,
    });
  }
  return files;
}

describe('OriginTable', () => {
  it('gives back each record field for field, found by path, past its first capacity', () => {
    const files = records(5000);
    const table = OriginTable.of(files, 'test');
    assert.equal(table.count, files.length);
    assert.equal(table.hasMacs, true);
    for (const [i, f] of files.entries()) {
      const at = table.indexOf(f.path);
      assert.equal(at, i, f.path);
      assert.equal(table.pathAt(at), f.path);
      assert.equal(table.sizeAt(at), f.size);
      assert.equal(table.hashAt(at), f.hash);
      assert.deepEqual(table.chunksAt(at), f.chunks);
      assert.equal(table.sourceFingerprintAt(at), f.sourceFingerprint);
      assert.equal(table.macAt(at), f.mac);
      assert.equal(table.hasMacAt(at), f.mac !== undefined);
      assert.equal(table.listedSizeAt(at), undefined, 'nothing listed yet');
    }
    for (const missing of ['binlogs/insert_log/0/ü€😀', 'binlogs/insert_log/0/ü€😀/0000000', '', 'zzz']) assert.equal(table.indexOf(missing), -1, missing);
    assert.equal(OriginTable.of(records(4).filter((f) => f.mac === undefined), 'test').hasMacs, false);
  });

  it('finds records that did not come sorted, and keeps them in their order', () => {
    const files = records(300).reverse();
    const table = OriginTable.of(files, 'test');
    for (const [i, f] of files.entries()) assert.equal(table.indexOf(f.path), i, f.path);
    assert.deepEqual(Array.from({ length: table.count }, (_, i) => table.pathAt(i)), files.map((f) => f.path));
  });

  it('keeps what the listing shows of each file', () => {
    const files = records(50);
    const table = OriginTable.of(files, 'test');
    table.setListed(3, 9, 1234.5, 'local:9:1234:77');
    table.setListed(4, 12, 99, undefined);
    assert.deepEqual([table.listedSizeAt(3), table.listedMtimeAt(3), table.listedFingerprintAt(3)], [9, 1234.5, 'local:9:1234:77']);
    assert.deepEqual([table.listedSizeAt(4), table.listedMtimeAt(4), table.listedFingerprintAt(4)], [12, 99, undefined]);
    assert.deepEqual([table.listedSizeAt(5), table.listedMtimeAt(5), table.listedFingerprintAt(5)], [undefined, 0, undefined]);
    // The record's own fields are untouched by what was listed.
    assert.equal(table.sourceFingerprintAt(4), files[4]?.sourceFingerprint);
  });

  it('refuses a manifest that names a path twice (kind integrity), sorted or not', () => {
    const files = records(20);
    for (const twice of [[...files.slice(0, 10), files[9] as ManifestFile, ...files.slice(10)], [files[5] as ManifestFile, ...files]]) {
      assert.throws(() => OriginTable.of(twice, 'disk: b/.offsite/manifest.json'), (err: Error & { kind?: string }) => {
        assert.equal(err.kind, 'integrity');
        assert.match(err.message, /^disk: b\/\.offsite\/manifest\.json: the manifest lists .* twice/);
        return true;
      });
    }
  });
});
