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
import { hashObject, readChunkHashes } from '../../src/core/chunks.js';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import { getHasher, HashArena } from '../../src/hash/xxh64.js';
import { createRateLimiter, withBandwidthLimit } from '../../src/drivers/wrappers/index.js';

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

describe('readChunkHashes', () => {
  const sizes = [0, 1, 31, 32, 33, 4095, 4096, 4097, 10_000, 3 * 4096 + 5, 40_000];

  async function expected(bytes: Buffer, chunkBytes: number): Promise<string[]> {
    const hasher = await getHasher();
    const chunks: string[] = [];
    for (let at = 0; at < bytes.length; at += chunkBytes) chunks.push(hasher.hash(bytes.subarray(at, at + chunkBytes)));
    return chunks;
  }

  it('gives the XXH64 of every chunk and of the whole, for pieces smaller, larger and across chunks, in the arena or not', async () => {
    const hasher = await getHasher();
    const driver = await createLocalDriver('d', { type: 'local', root: dir });
    // Pieces (slots) of 4096 bytes against chunks of 1000, 4096 and 10,000; 2 slots: most reads fall back to buffers outside the arena.
    for (const slots of [2, 64]) {
      const arena = new HashArena(slots, 4096);
      for (const chunkBytes of [1000, 4096, 10_000]) {
        for (const size of sizes) {
          const bytes = Buffer.alloc(size);
          for (let i = 0; i < size; i++) bytes[i] = (i * 151 + size) & 0xff;
          writeFileSync(join(dir, `r${size}`), bytes);
          const whole = arena.create();
          const got: string[] = [];
          for await (const hash of readChunkHashes(driver, `r${size}`, size, chunkBytes, arena, 'test', undefined, whole)) got.push(hash);
          assert.deepEqual(got, await expected(bytes, chunkBytes), `size ${size}, chunks of ${chunkBytes}, ${slots} slots`);
          assert.equal(whole.digest(), hasher.hash(bytes), `size ${size}: the whole`);
        }
        assert.equal(arena.freeSlots, slots, 'every slot back once the reads are done');
      }
    }
  });

  it('keeps a slot until every slice of its piece was passed on (a bandwidth limit slices pieces)', async () => {
    const inner = await createLocalDriver('d', { type: 'local', root: dir });
    // Slices of 256 KiB: pieces of 1 MiB arrive in four; four files read at once share 3 slots.
    const driver = withBandwidthLimit(inner, [createRateLimiter(1024 * 1024 * 1024)], { limitReads: true });
    const arena = new HashArena(3, 1024 * 1024);
    const files = [0, 1, 2, 3].map((n) => {
      const bytes = Buffer.alloc(3 * 1024 * 1024 + n * 1000);
      for (let i = 0; i < bytes.length; i += 4) bytes.writeUInt32LE((i * 2654435761 + n) >>> 0, i);
      writeFileSync(join(dir, `s${n}`), bytes);
      return { key: `s${n}`, bytes };
    });
    await Promise.all(files.map(async ({ key, bytes }) => {
      const got: string[] = [];
      for await (const hash of readChunkHashes(driver, key, bytes.length, 1024 * 1024, arena, 'test')) got.push(hash);
      assert.deepEqual(got, await expected(bytes, 1024 * 1024), key);
    }));
    assert.equal(arena.freeSlots, 3);
  });

  it('rejects a file shorter than expected (kind integrity), and abandons the slots of a read stopped early', async () => {
    const driver = await createLocalDriver('d', { type: 'local', root: dir });
    writeFileSync(join(dir, 'short'), Buffer.alloc(5000, 7));
    const arena = new HashArena(4, 4096);
    await assert.rejects(async () => { for await (const hash of readChunkHashes(driver, 'short', 6000, 4096, arena, 'test')) void hash; }, (err: unknown) => (err as { kind?: string }).kind === 'integrity');
    for await (const hash of readChunkHashes(driver, 'short', 5000, 1000, arena, 'test')) { void hash; break; }
    assert.ok(arena.freeSlots < 4, 'a slot the stopped read held is not handed out again');
  });
});
