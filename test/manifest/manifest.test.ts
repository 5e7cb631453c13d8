/**
 * The manifest encoding: the streamed encoder must produce exactly what the plain definition
 * gives (digest = XXH64 of `canonicalJson` of everything but the digest; bytes =
 * `JSON.stringify(manifest, null, 1)`), for ordinary records and odd ones; decoding checks it;
 * journal keys round-trip.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { getHasher } from '../../src/hash/xxh64.js';
import {
  buildManifestBody, canonicalJson, decodeManifest, encodeManifest, manifestDigest, ManifestError, progressJournalKey,
  progressJournalSequence, type ManifestBody, type ManifestFile,
} from '../../src/manifest/manifest.js';

function record(i: number, chunks = 1): ManifestFile {
  const hex = (n: number) => `xxh64:${n.toString(16).padStart(16, '0')}`;
  return { path: `binlogs/insert_log/1/2/${i}/0/${1000 + i}`, size: i * 7, hash: hex(i), chunks: Array.from({ length: chunks }, (_, c) => hex(i * 31 + c)) };
}

async function reference(body: ManifestBody): Promise<{ bytes: Buffer; digest: string }> {
  const hasher = await getHasher();
  const digest = hasher.hash(Buffer.from(canonicalJson(body)));
  return { bytes: Buffer.from(`${JSON.stringify({ ...body, digest }, null, 1)}\n`), digest };
}

const odd: ManifestFile[] = [
  { path: 'meta/"quoted"\\ and \u00e9\u4e2d \ud83d\ude00.json', size: 0, hash: 'xxh64:0000000000000000', chunks: [] },
  { path: 'a/files":[]', size: 5, hash: 'xxh64:00000000000000ff', chunks: ['xxh64:00000000000000ff'] },
  // A record with an unknown field (a newer offsite), and one with its fields in another order.
  { path: 'b/extra', size: 1, hash: 'xxh64:0000000000000001', chunks: ['xxh64:0000000000000001'], note: 'x' } as ManifestFile,
  { chunks: ['xxh64:0000000000000002'], size: 2, path: 'c/reordered', hash: 'xxh64:0000000000000002' } as ManifestFile,
];

describe('manifest encoding', () => {
  for (const [name, files] of [['no files', []], ['one file', [record(1)]], ['many files, several chunks', Array.from({ length: 300 }, (_, i) => record(i, i % 4))], ['odd records', odd]] as const) {
    it(`matches the plain definition: ${name}`, async () => {
      const body = buildManifestBody({ kind: 'complete', backup: 'b1', source: 'local:/src "x"', chunkBytes: 8 << 20, files, createdAt: new Date(0), backupTime: '2024-01-01T00:00:00.000Z' });
      const expected = await reference(body);
      const encoded = await encodeManifest(body);
      assert.equal(encoded.digest, expected.digest);
      assert.equal(await manifestDigest(body), expected.digest);
      if (files !== odd) assert.equal(encoded.bytes.toString(), expected.bytes.toString());
      assert.deepEqual(JSON.parse(encoded.bytes.toString()), JSON.parse(expected.bytes.toString()));
      const compact = await encodeManifest(body, { pretty: false });
      assert.deepEqual(JSON.parse(compact.bytes.toString()), JSON.parse(expected.bytes.toString()));
      const decoded = await decodeManifest(compact.bytes, 'test');
      assert.equal(decoded.digest, expected.digest);
      assert.equal(decoded.files.length, files.length);
    });
  }

  it('a body larger than one 64 KB piece encodes the same (pieces join at any character)', async () => {
    const files = Array.from({ length: 3000 }, (_, i) => ({ ...record(i, 3), path: `d/\u00e9\ud83d\ude00/${i}` }));
    const body = buildManifestBody({ kind: 'progress', backup: 'b1', source: 's', chunkBytes: 1024, files, includesThrough: 7 });
    const expected = await reference(body);
    const encoded = await encodeManifest(body);
    assert.ok(encoded.bytes.length > 3 * 65536);
    assert.equal(encoded.bytes.toString(), expected.bytes.toString());
    assert.equal((await decodeManifest(encoded.bytes, 'test')).includesThrough, 7);
  });

  it('decoding still detects a changed byte, and malformed content', async () => {
    const body = buildManifestBody({ kind: 'complete', backup: 'b1', source: 's', chunkBytes: 1024, files: [record(1), record(2)] });
    const { bytes } = await encodeManifest(body);
    const changed = Buffer.from(bytes.toString().replace('"size": 7', '"size": 8'));
    await assert.rejects(decodeManifest(changed, 'here'), (err: unknown) => err instanceof ManifestError && /digest mismatch/.test(err.message));
    const noFiles = JSON.parse(bytes.toString()) as Record<string, unknown>;
    noFiles['files'] = 'none';
    await assert.rejects(decodeManifest(Buffer.from(JSON.stringify(noFiles)), 'here'), ManifestError);
  });

  it('journal keys carry their sequence; other keys are not journal entries', () => {
    assert.equal(progressJournalKey('b1', 12), 'b1/.offsite/progress-00000012.json');
    assert.equal(progressJournalSequence('b1', progressJournalKey('b1', 12)), 12);
    assert.equal(progressJournalSequence('b1', progressJournalKey('b1', 123456789)), 123456789);
    for (const key of ['b1/.offsite/progress.json', 'b1/.offsite/progress-12.json', 'b2/.offsite/progress-00000012.json', 'b1/.offsite/progress-0000001x.json', 'b1/x/progress-00000001.json']) {
      assert.equal(progressJournalSequence('b1', key), undefined, key);
    }
  });
});
