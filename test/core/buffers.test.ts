/** The chunk pool: small buffers are charged their own size, chunk-sized ones come from the pool. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChunkPool } from '../../src/core/buffers.js';

const MiB = 1024 * 1024;

describe('ChunkPool', () => {
  it('charges a small buffer its size, so many small files fit the budget at once', async () => {
    const pool = new ChunkPool(8 * MiB, 64 * MiB);
    const small = Array.from({ length: 1000 }, () => pool.allocate(4096));
    assert.equal(pool.inUse, 1000);
    assert.equal(pool.inUseBytes, 1000 * 4096);
    const started = Date.now();
    await pool.room(5000);
    assert.ok(Date.now() - started < 100, 'room() does not wait for 4 MB of small buffers');
    for (const b of small) pool.release(b);
    assert.equal(pool.inUse, 0);
    assert.equal(pool.inUseBytes, 0);
  });

  it('counts references: a buffer goes back only when every holder released it', () => {
    const pool = new ChunkPool(8 * MiB, 64 * MiB);
    const b = pool.allocate(100);
    pool.retain(b, 2);
    pool.release(b.subarray(0, 10)); // views of the same memory count as the buffer
    pool.release(b);
    assert.equal(pool.inUseBytes, 100);
    pool.release(b);
    assert.equal(pool.inUseBytes, 0);
    pool.release(b); // extra releases and foreign buffers are ignored
    pool.release(Buffer.alloc(10));
    assert.equal(pool.inUseBytes, 0);
  });

  it('takes large buffers from the pool, charged a whole chunk, and reuses them', () => {
    const pool = new ChunkPool(8 * MiB, 64 * MiB);
    const a = pool.allocate(8 * MiB);
    const b = pool.allocate(2 * MiB); // above chunk/8: a pooled chunk, cut to size
    assert.equal(b.length, 2 * MiB);
    assert.equal(pool.inUseBytes, 16 * MiB);
    pool.release(a);
    pool.release(b);
    assert.equal(pool.inUseBytes, 0);
    const c = pool.allocate(8 * MiB);
    assert.ok(c.buffer === a.buffer || c.buffer === b.buffer, 'a released chunk is reused');
    const huge = pool.allocate(9 * MiB); // larger than a chunk: not pooled, not charged
    assert.equal(huge.length, 9 * MiB);
    assert.equal(pool.inUseBytes, 8 * MiB);
  });

  it('reuses the memory of released small buffers, never that of one still held', () => {
    const pool = new ChunkPool(8 * MiB, 64 * MiB);
    const a = pool.allocate(4096);
    const held = pool.allocate(4000);
    pool.retain(a);
    pool.release(a);
    const b = pool.allocate(4096);
    assert.notEqual(b.buffer, a.buffer, 'a buffer with a reference left is not handed out again');
    pool.release(a);
    const c = pool.allocate(3000); // the same size class (4 KiB)
    assert.equal(c.buffer, a.buffer, 'a released small buffer is reused');
    assert.equal(c.length, 3000);
    assert.equal(pool.inUseBytes, 4000 + 4096 + 3000, 'charged their own sizes');
    assert.notEqual(held.buffer, c.buffer);
    for (const x of [held, b, c]) pool.release(x);
    assert.equal(pool.inUseBytes, 0);
    // What is kept free is bounded: 1,000 released 64 KiB buffers are not all kept.
    const many = Array.from({ length: 1000 }, () => pool.allocate(64 * 1024));
    for (const x of many) pool.release(x);
    const again = Array.from({ length: 1000 }, () => pool.allocate(64 * 1024));
    const reused = new Set(many.map((x) => x.buffer));
    const hits = again.filter((x) => reused.has(x.buffer)).length;
    assert.ok(hits > 0 && hits <= (8 * MiB) / (64 * 1024), `${hits} reused`);
  });

  it('room() waits while the budget is used up, and resumes on release', async () => {
    const pool = new ChunkPool(1 * MiB, 2 * MiB);
    const a = pool.allocate(MiB);
    pool.allocate(MiB);
    let resolved = false;
    const waiting = pool.room(5000).then(() => { resolved = true; });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(resolved, false);
    pool.release(a);
    await waiting;
    assert.equal(resolved, true);
  });

  it('drops its free chunk buffers once none has been taken for a while, and keeps them while in demand', async () => {
    const pool = new ChunkPool(MiB, 8 * MiB, { idleFreeMs: 1000 });
    const first = [pool.allocate(MiB), pool.allocate(MiB), pool.allocate(MiB)];
    for (const b of first) pool.release(b);
    assert.equal(pool.freeChunks, 3);
    // Taken again every 40 ms (well under the idle time): still pooled, the same memory.
    const memory = new Set(first.map((b) => b.buffer));
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 40));
      const b = pool.allocate(MiB);
      assert.ok(memory.has(b.buffer), `round ${i}: a free chunk is reused while chunks are in demand`);
      pool.release(b);
      assert.equal(pool.freeChunks, 3);
    }
    const deadline = Date.now() + 5000;
    while (pool.freeChunks > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(pool.freeChunks, 0, 'idle free chunks are dropped');
    const later = pool.allocate(MiB);
    assert.ok(!memory.has(later.buffer), 'a chunk taken after the trim is new memory');
    pool.release(later);
    assert.equal(pool.inUseBytes, 0);
  });
});
