/**
 * The retry layer's read stream and the engine's memory gate: the wrapped stream must not read
 * (and so take pool buffers) before its reader asks, also after a reopen, and must end.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { ChunkPool } from '../../src/core/buffers.js';
import { readChunks } from '../../src/core/chunks.js';
import type { Driver, ReadOptions } from '../../src/drivers/types.js';
import { withRetry } from '../../src/drivers/wrappers/index.js';
import { DriverError } from '../../src/errors.js';

const PIECE = 4096;

/** A driver whose objects are `size` bytes of pieces from `allocate`, counting the pieces made; the first read breaks after `breakAfter` pieces. */
function fakeSource(size: number, breakAfter?: number): { driver: Driver; made: () => number } {
  let made = 0;
  let broken = false;
  const driver = {
    name: 'fake', description: 'fake',
    capabilities: { rangeReads: true, resumableWrites: false, atomicCommit: true, storedHash: false, serverSideCopy: false, minPartBytes: 1, maxPartBytes: 2 ** 31, maxParts: Infinity, parallelPartWrites: false, maxConcurrency: 1 },
    openRead: async (_key: string, options: ReadOptions = {}) => {
      const start = options.offset ?? 0;
      const end = start + (options.length ?? size - start);
      const allocate = options.allocate ?? Buffer.allocUnsafe;
      const breakHere = breakAfter !== undefined && !broken;
      broken ||= breakHere;
      return Readable.from((async function* () {
        let pieces = 0;
        for (let at = start; at < end; at += PIECE) {
          if (breakHere && pieces === breakAfter) throw new DriverError('E_RESET', 'connection reset', { kind: 'retryable' });
          const piece = allocate(Math.min(PIECE, end - at)).fill(1);
          made++;
          pieces++;
          yield piece;
        }
      })(), { objectMode: false, highWaterMark: 1 });
    },
  } as unknown as Driver;
  return { driver, made: () => made };
}

const ticks = async (n: number) => { for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r)); };

describe('retry layer read stream', () => {
  it('reads nothing before the reader asks, and little ahead of it', async () => {
    const { driver, made } = fakeSource(64 * PIECE);
    const stream = await withRetry(driver, { retries: 2 }).openRead('k', { pieceBytes: PIECE });
    await ticks(20);
    assert.equal(made(), 0, 'no piece read before anyone reads');
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    await ticks(20);
    assert.ok(made() <= 3, `at most a couple of pieces read ahead, got ${made()}`);
    stream.destroy();
  });

  it('a reopened stream flows again when the reader was waiting, and ends', async () => {
    const { driver, made } = fakeSource(40 * PIECE, 5);
    const pool = new ChunkPool(PIECE, 8 * PIECE);
    const retrying = withRetry(driver, { retries: 3, sleep: async () => undefined });
    let bytes = 0;
    for await (const chunk of readChunks(retrying, 'k', 40 * PIECE, pool, 'k')) {
      bytes += chunk.length;
      pool.release(chunk);
    }
    assert.equal(bytes, 40 * PIECE);
    assert.equal(made(), 40, 'each piece read once (the broken read made 5)');
    assert.equal(pool.inUseBytes, 0);
  });

  it('an empty object ends', async () => {
    const { driver } = fakeSource(0);
    const stream = await withRetry(driver, { retries: 2 }).openRead('k', { length: 0 });
    const parts: unknown[] = [];
    for await (const part of stream) parts.push(part);
    assert.deepEqual(parts, []);
  });
});
