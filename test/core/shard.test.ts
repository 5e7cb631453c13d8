/**
 * The shard split (src/core/shard.ts) is the documented one, so that any implementation can
 * reproduce it: XXH64 of the path's UTF-8 bytes with seed 0, as an unsigned 64-bit integer,
 * modulo n. Checked against XXH64's published test values, not against our own output.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileListDigest, parseShardKey, parseShardSpec, shardCheckpointKeys, shardOfPath } from '../../src/core/shard.js';
import { getHasher } from '../../src/hash/xxh64.js';

describe('shard split', () => {
  it('is XXH64 (seed 0) of the UTF-8 path modulo n', async () => {
    const hasher = await getHasher();
    // Reference values of XXH64 with seed 0 (xxHash's own test vectors).
    const reference: [string, bigint][] = [['', 0xef46db3751d8e999n], ['abc', 0x44bc2cf5ad770999n]];
    for (const [text, value] of reference) {
      for (const n of [1, 2, 3, 7, 1000, 9973]) assert.equal(shardOfPath(hasher, text, n), Number(value % BigInt(n)), `${JSON.stringify(text)} mod ${n}`);
    }
    // UTF-8, not UTF-16: a non-ASCII path hashes its UTF-8 bytes.
    const path = 'binlogs/insert_log/ä/1';
    assert.equal(shardOfPath(hasher, path, 9973), Number(BigInt(`0x${hasher.hash(Buffer.from(path, 'utf8')).slice(6)}`) % 9973n));
    assert.notEqual(hasher.hash(Buffer.from(path, 'utf8')), hasher.hash(Buffer.from(path, 'utf16le')));
  });

  it('splits a backup\'s paths between all shards', async () => {
    const hasher = await getHasher();
    const paths = Array.from({ length: 400 }, (_, i) => `binlogs/insert_log/449/450/451/${1000 + i}/100/${i}`);
    const counts = new Array<number>(4).fill(0);
    for (const p of paths) { const i = shardOfPath(hasher, p, 4); counts[i] = (counts[i] ?? 0) + 1; }
    assert.equal(counts.reduce((a, b) => a + b, 0), paths.length);
    assert.ok(counts.every((c) => c > 50), `roughly even: ${counts.join(', ')}`);
  });

  it('parses i/n and auto', () => {
    assert.deepEqual(parseShardSpec('2/5'), { index: 2, count: 5 });
    assert.deepEqual(parseShardSpec('auto', { JOB_COMPLETION_INDEX: '0', JOB_COMPLETIONS: '3' }), { index: 0, count: 3 });
    assert.throws(() => parseShardSpec('5/5'), /out of range for 5 shards/);
    assert.throws(() => parseShardSpec('-1/5'), /expects i\/n/);
    assert.throws(() => parseShardSpec('auto', { JOB_COMPLETION_INDEX: 'x', JOB_COMPLETIONS: '3' }), /must be whole numbers/);
    assert.throws(() => parseShardSpec('auto', { JOB_COMPLETIONS: '3' }), /JOB_COMPLETION_INDEX is not set/);
  });

  it('keeps each shard\'s objects in a folder of its own', () => {
    const keys = shardCheckpointKeys('b_1', { index: 3, count: 8 });
    assert.equal(keys.progress, 'b_1/.offsite/shards/3-of-8/progress.json');
    assert.equal(keys.journal(12), 'b_1/.offsite/shards/3-of-8/progress-00000012.json');
    assert.equal(keys.sequenceOf('b_1/.offsite/shards/3-of-8/progress-00000012.json'), 12);
    assert.equal(keys.sequenceOf('b_1/.offsite/shards/2-of-8/progress-00000012.json'), undefined, 'another shard\'s journal is not ours');
    assert.equal(keys.sequenceOf('b_1/.offsite/progress-00000012.json'), undefined, 'nor the copy\'s own');
    assert.deepEqual(parseShardKey('b_1', 'b_1/.offsite/shards/3-of-8/done.json'), { index: 3, count: 8, rest: 'done.json' });
    assert.equal(parseShardKey('b_1', 'b_1/.offsite/manifest.json'), undefined);
  });

  it('digests a file list whatever its order, and sees a changed size', async () => {
    const a = [{ path: 'meta/a.json', size: 1 }, { path: 'binlogs/x', size: 2 }];
    assert.equal(await fileListDigest(a), await fileListDigest([...a].reverse()));
    assert.notEqual(await fileListDigest(a), await fileListDigest([{ path: 'meta/a.json', size: 1 }, { path: 'binlogs/x', size: 3 }]));
  });
});
