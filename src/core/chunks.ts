/**
 * Reading objects as fixed-size chunks, and hashing them. Shared by replication (source reads),
 * adoption of already-present files and deep verification (destination reads).
 */
import type { Readable } from 'node:stream';
import { OffsiteError, throwIfAborted } from '../errors.js';
import type { Driver } from '../drivers/types.js';
import { getHasher } from '../hash/xxh64.js';

/**
 * Cuts a stream into chunks of exactly `chunkBytes` (the last one shorter). Rejects with kind
 * `integrity` when the stream ends before `size` bytes or runs past them: the object changed
 * while it was read.
 */
export async function* chunksOf(stream: Readable, size: number, chunkBytes: number, what: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  let chunk = Buffer.allocUnsafe(Math.min(chunkBytes, size));
  let filled = 0;
  let total = 0;
  try {
    for await (const piece of stream) {
      throwIfAborted(signal, what);
      let data = piece as Buffer;
      total += data.length;
      if (total > size) throw sizeChanged(what, size, `more than ${size}`);
      while (data.length > 0) {
        const take = Math.min(chunk.length - filled, data.length);
        data.copy(chunk, filled, 0, take);
        filled += take;
        data = data.subarray(take);
        if (filled === chunk.length) {
          yield chunk;
          const remaining = size - (total - data.length);
          chunk = Buffer.allocUnsafe(Math.min(chunkBytes, Math.max(remaining, 0)));
          filled = 0;
        }
      }
    }
  } finally {
    stream.destroy();
  }
  if (total !== size) throw sizeChanged(what, size, String(total));
}

function sizeChanged(what: string, expected: number, actual: string): OffsiteError {
  return new OffsiteError('E_SIZE_CHANGED', `${what}: expected ${expected} bytes, read ${actual}: it changed while being read`, { kind: 'integrity' });
}

export interface ObjectHashes {
  readonly hash: string;
  readonly chunks: string[];
}

/** Reads a whole object and returns its file hash and chunk hashes. */
export async function hashObject(driver: Driver, key: string, size: number, chunkBytes: number, signal?: AbortSignal): Promise<ObjectHashes> {
  const hasher = await getHasher();
  const file = hasher.create();
  const chunks: string[] = [];
  const stream = await driver.openRead(key, { signal });
  for await (const chunk of chunksOf(stream, size, chunkBytes, `${driver.name}: ${key}`, signal)) {
    file.update(chunk);
    chunks.push(hasher.hash(chunk));
  }
  return { hash: file.digest(), chunks };
}
