/**
 * Hashes of objects read in chunks: the file hash is XXH64 of the whole object whether it has
 * one chunk (taken from that chunk's hash, not hashed twice) or several (streamed).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ChunkPool } from '../../src/core/buffers.js';
import { hashObject } from '../../src/core/chunks.js';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import { getHasher } from '../../src/hash/xxh64.js';

const dir = mkdtempSync(join(tmpdir(), 'offsite-chunks-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('hashObject', () => {
  it('gives the whole-object XXH64 and one hash per chunk, for one chunk, several, and none', async () => {
    const hasher = await getHasher();
    const driver = await createLocalDriver('d', { type: 'local', root: dir });
    const pool = new ChunkPool(1024, 8192);
    for (const size of [0, 1, 31, 32, 33, 1023, 1024, 1025, 2048, 5000]) {
      const bytes = Buffer.alloc(size);
      for (let i = 0; i < size; i++) bytes[i] = (i * 131 + size) & 0xff;
      writeFileSync(join(dir, `o${size}`), bytes);
      const got = await hashObject(driver, `o${size}`, size, pool);
      const chunks: string[] = [];
      for (let at = 0; at < size; at += 1024) chunks.push(hasher.hash(bytes.subarray(at, at + 1024)));
      assert.equal(got.hash, hasher.create().update(bytes).digest(), `size ${size}`);
      assert.equal(got.hash, hasher.hash(bytes), `size ${size}: one-shot and streaming agree`);
      assert.deepEqual(got.chunks, chunks, `size ${size}`);
    }
    assert.equal(pool.inUseBytes, 0);
  });
});
