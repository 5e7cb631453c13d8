/**
 * Reading objects as fixed-size chunks, and hashing them. Shared by replication (source reads),
 * adoption of already-present files and deep verification (destination reads).
 */
import type { Readable } from 'node:stream';
import { OffsiteError, throwIfAborted } from '../errors.js';
import type { Driver } from '../drivers/types.js';
import { getHasher, type HashArena, type StreamingHash } from '../hash/xxh64.js';
import type { ChunkPool } from './buffers.js';

/**
 * Cuts a stream into chunks of exactly `chunkBytes` (the last one shorter). Rejects with kind
 * `integrity` when the stream ends before `size` bytes or runs past them: the object changed
 * while it was read.
 */
export async function* chunksOf(stream: Readable, size: number, chunkBytes: number, what: string, pool: ChunkPool, signal?: AbortSignal, ahead?: ReadAhead): AsyncGenerator<Buffer> {
  let chunk: Buffer | undefined;
  let filled = 0;
  let total = 0;
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  try {
    while (true) {
      await pool.room();
      const next = await iterator.next();
      if (next.done) break;
      throwIfAborted(signal, what);
      let data = next.value;
      total += data.length;
      if (total > size) {
        pool.release(data);
        throw sizeChanged(what, size, `more than ${size}`);
      }
      ahead?.handedOn(data);
      if (!chunk && data.length === Math.min(chunkBytes, size - total + data.length)) {
        // A piece that is exactly the next chunk (drivers honour `pieceBytes`): no copy.
        yield data;
        continue;
      }
      const piece = data;
      while (data.length > 0) {
        chunk ??= pool.allocate(Math.min(chunkBytes, size - (total - data.length)));
        const take = Math.min(chunk.length - filled, data.length);
        data.copy(chunk, filled, 0, take);
        filled += take;
        data = data.subarray(take);
        if (filled === chunk.length) {
          const full = chunk;
          chunk = undefined;
          filled = 0;
          yield full;
        }
      }
      pool.release(piece);
    }
  } finally {
    if (chunk) pool.release(chunk);
    stream.destroy();
    ahead?.forgetRest();
  }
  if (total !== size) throw sizeChanged(what, size, String(total));
}

/**
 * The pool buffers a driver allocated for one read and has not handed over yet (its read-ahead).
 * When the read stops early they are never released by anyone: `forgetRest` takes them out of
 * the budget, so an abandoned read does not hold budget for the rest of the run.
 */
export class ReadAhead {
  private readonly held = new Set<ArrayBufferLike>();
  constructor(private readonly pool: ChunkPool) {}

  allocate = (size: number): Buffer => {
    const buffer = this.pool.allocate(size);
    if (this.pool.owns(buffer)) this.held.add(buffer.buffer);
    return buffer;
  };

  /** The stream handed this piece over: its holder releases it from now on. */
  handedOn(piece: Uint8Array): void {
    this.held.delete(piece.buffer);
  }

  forgetRest(): void {
    for (const backing of this.held) this.pool.forget(new Uint8Array(backing, 0, 0));
    this.held.clear();
  }
}

/**
 * Opens `key` and yields its chunks from `pool` (see `chunksOf`); the caller releases each. With
 * `ifFingerprint`, a driver with `conditionalReads` reads only the object of that fingerprint
 * (`ReadOptions.ifFingerprint`).
 */
export async function* readChunks(driver: Driver, key: string, size: number, pool: ChunkPool, what: string, signal?: AbortSignal, ifFingerprint?: string): AsyncGenerator<Buffer> {
  const ahead = new ReadAhead(pool);
  const stream = await driver.openRead(key, { signal, length: size, pieceBytes: pool.chunkBytes, allocate: ahead.allocate, ...(ifFingerprint !== undefined ? { ifFingerprint } : {}) });
  yield* chunksOf(stream, size, pool.chunkBytes, what, pool, signal, ahead);
}

/**
 * Reads `key` and yields the XXH64 hash of each chunk of `chunkBytes` (the last one shorter)
 * without ever gathering a chunk: the driver reads into `arena`'s slots (`ReadOptions.allocate`)
 * and every piece is hashed where it landed, whatever the pieces' sizes (a piece may end inside a
 * chunk or hold several). `whole`, when given, is fed every byte too (the file hash). With
 * `ifFingerprint`, as `readChunks`. Rejects
 * with kind `integrity` when the stream ends before `size` bytes or runs past them (as
 * `chunksOf`). The slots go back to the arena as their bytes are passed on (`ArenaRead`).
 */
export async function* readChunkHashes(
  driver: Driver, key: string, size: number, chunkBytes: number, arena: HashArena, what: string, signal?: AbortSignal, whole?: StreamingHash, ifFingerprint?: string,
): AsyncGenerator<string> {
  const buffers = arena.read();
  const stream = await driver.openRead(key, { signal, length: size, pieceBytes: arena.slotBytes, allocate: buffers.allocate, ...(ifFingerprint !== undefined ? { ifFingerprint } : {}) });
  let chunk = arena.create();
  let inChunk = 0;
  let total = 0;
  let ended = false;
  try {
    for await (const piece of stream as AsyncIterable<Buffer>) {
      throwIfAborted(signal, what);
      total += piece.length;
      if (total > size) throw sizeChanged(what, size, `more than ${size}`);
      whole?.update(piece);
      let data: Buffer = piece;
      while (data.length > 0) {
        const take = Math.min(chunkBytes - inChunk, data.length);
        chunk.update(take === data.length ? data : data.subarray(0, take));
        inChunk += take;
        data = data.subarray(take);
        if (inChunk === chunkBytes) {
          yield chunk.digest();
          chunk = arena.create();
          inChunk = 0;
        }
      }
      buffers.passedOn(piece.length);
    }
    ended = true;
  } finally {
    if (ended) buffers.finish();
    stream.destroy();
  }
  if (total !== size) throw sizeChanged(what, size, String(total));
  if (inChunk > 0) yield chunk.digest();
}

function sizeChanged(what: string, expected: number, actual: string): OffsiteError {
  return new OffsiteError('E_SIZE_CHANGED', `${what}: expected ${expected} bytes, read ${actual}: it changed while being read`, { kind: 'integrity' });
}

export interface ObjectHashes {
  readonly hash: string;
  readonly chunks: string[];
}

/** Reads a whole object and returns its file hash and chunk hashes. */
export async function hashObject(driver: Driver, key: string, size: number, pool: ChunkPool, signal?: AbortSignal): Promise<ObjectHashes> {
  const hasher = await getHasher();
  // An object of one chunk has that chunk's hash (XXH64 of the same bytes): hashed once.
  const file = size > pool.chunkBytes ? hasher.create() : undefined;
  const chunks: string[] = [];
  for await (const chunk of readChunks(driver, key, size, pool, `${driver.name}: ${key}`, signal)) {
    file?.update(chunk);
    chunks.push(hasher.hash(chunk));
    pool.release(chunk);
  }
  return { hash: file ? file.digest() : chunks[0] ?? hasher.hash(new Uint8Array(0)), chunks };
}
