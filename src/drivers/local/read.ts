/**
 * The read pipeline of the `local` driver: opening a key's file without following a symlink
 * that leads outside the root, and streaming a byte range of it with positional reads (the
 * skipped bytes are never read) into buffers of the caller's choosing, or hashing the whole file
 * in place (`readLocalHashes`, the driver's `readHashes`).
 */
import { constants } from 'node:fs';
import { Readable } from 'node:stream';
import { AbortedError, DriverError, throwIfAborted } from '../../errors.js';
import type { HashArena } from '../../hash/xxh64.js';
import { notAFileError, notFoundError, pathTypeOf, type ErrorContext } from '../toolkit/index.js';
import type { FileHashes, ReadHashesOptions, ReadOptions } from '../types.js';
import { classifyFsError, errnoOf, isMissing } from './errors.js';
import type { FsOps } from './fsops.js';
import type { LocalTree } from './tree.js';

/**
 * Flags of every open for reading. `O_NONBLOCK` so that a FIFO in place of a file is never
 * waited on: without it, open(2) of a FIFO blocks until a writer comes (forever, and with the
 * synchronous metadata calls of ./fsops.ts the whole process with it). The descriptor is then
 * refused by its fstat; on a regular file the flag changes nothing.
 */
const READ_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;
/** Bytes per read when streaming a file. */
const READ_CHUNK_BYTES = 256 * 1024;
/** Largest read piece a caller may ask for (`ReadOptions.pieceBytes`). */
const MAX_READ_PIECE_BYTES = 64 * 1024 * 1024;

/**
 * A stream of `[offset, offset + length)` of `key` (to the end without `length`), arguments
 * already checked. Rejects with kind `not-found` when the file (or a parent) is missing, and
 * with `E_NOT_A_FILE` (kind `not-found`, naming what is there) when the key holds a folder, a
 * FIFO or another special file (never waited on: see `READ_FLAGS`), with a `KeyError` for a
 * symlink leading outside the root. Read errors mid-way destroy
 * the stream with a classified `DriverError`; the signal destroys it with `AbortedError`.
 */
export async function openLocalRead(tree: LocalTree, key: string, offset: number, length: number | undefined, options: ReadOptions, context: ErrorContext): Promise<Readable> {
  const { signal } = options;
  const ops = tree.ops;
  const { fd, size: fileSize } = await openLocalFile(tree, key, signal, context);
  // Bounded by the size at open, so no buffer is taken for a read that would find nothing;
  // a file that grows meanwhile is read up to that size (callers compare sizes anyway).
  const end = Math.min(length === undefined ? Infinity : offset + length, Math.max(fileSize, offset));
  const pieceBytes = Math.min(Math.max(options.pieceBytes ?? READ_CHUNK_BYTES, 4096), MAX_READ_PIECE_BYTES);
  const allocate = options.allocate ?? Buffer.allocUnsafe;
  const stream = Readable.from(readRange(ops, fd, offset, end, pieceBytes, allocate, context), { objectMode: false, highWaterMark: 1 });
  const onAbort = (): void => { stream.destroy(new AbortedError(`${context.driver}: read ${key}`)); };
  signal?.addEventListener('abort', onAbort, { once: true });
  // 'close' comes once, after the generator has finished (a destroyed stream waits for the
  // read in flight): the descriptor is closed exactly once and never read after.
  stream.once('close', () => {
    signal?.removeEventListener('abort', onAbort);
    ops.close(fd).catch(() => undefined);
  });
  return stream;
}

/**
 * Opens `key`'s file for reading, with the checks of every read (see `openLocalRead`): a symlink
 * is followed only when it stays inside the root, anything but a regular file is refused (a FIFO
 * never waited on). The descriptor and the file's size at open; the caller closes it.
 */
export async function openLocalFile(tree: LocalTree, key: string, signal: AbortSignal | undefined, context: ErrorContext): Promise<{ readonly fd: number; readonly size: number }> {
  const ops = tree.ops;
  // A socket (or a device without a driver) cannot be opened at all: ENXIO/ENODEV, named here.
  const notOpenable = async (path: string, err: unknown): Promise<never> => {
    const info = ['ENXIO', 'ENODEV'].includes(errnoOf(err) ?? '') ? await ops.stat(path) : undefined;
    throw info !== undefined && !info.isFile() ? notAFileError(context, pathTypeOf(info)) : err;
  };
  const fd = await tree.atKey(key, context, async (path, realRoot) => {
    try {
      return await ops.open(path, READ_FLAGS | constants.O_NOFOLLOW);
    } catch (err) {
      if (!['ELOOP', 'EMLINK'].includes(errnoOf(err) ?? '')) return isMissing(err) ? undefined : notOpenable(path, err);
    }
    // A symlink: followed when it stays inside the root.
    const real = await ops.realpath(path);
    if (real === undefined) return undefined;
    tree.checkInside(key, real, realRoot);
    return ops.open(real, READ_FLAGS).catch((err: unknown) => (isMissing(err) ? undefined : notOpenable(real, err)));
  });
  if (fd === undefined) throw notFoundError(context);
  try {
    const info = await ops.fstat(fd);
    if (!info.isFile()) throw notAFileError(context, pathTypeOf(info));
    throwIfAborted(signal, `${context.driver}: ${context.action} ${key}`);
    return { fd, size: info.size };
  } catch (err) {
    await ops.close(fd).catch(() => undefined);
    throw err;
  }
}

/** Positional reads of `[start, end)` (to EOF when `end` is Infinity) in bounded chunks. */
async function* readRange(ops: FsOps, fd: number, start: number, end: number, pieceBytes: number, allocate: (size: number) => Buffer, context: ErrorContext): AsyncGenerator<Buffer> {
  let position = start;
  while (position < end) {
    const buffer = allocate(Math.min(pieceBytes, end - position));
    let bytesRead: number;
    try {
      bytesRead = await ops.pread(fd, buffer, 0, buffer.length, position);
    } catch (err) {
      throw classifyFsError(err, context);
    }
    if (bytesRead === 0) return;
    position += bytesRead;
    yield buffer.subarray(0, bytesRead);
  }
}

/**
 * Bytes per read of `readLocalHashes`, and of each slot of its hash arena. A piece this large is
 * read on the thread pool (./fsops.ts `SMALL_READ_BYTES`), so the copy out of the page cache runs
 * beside the event loop, which hashes the piece read before (a file of at most
 * `SMALL_READ_BYTES` is one synchronous read).
 */
export const HASH_PIECE_BYTES = 1024 * 1024;
/** Arena slots: two per file being hashed (the piece hashed, the one read meanwhile), for the engine's default 8 files at once. */
export const HASH_ARENA_SLOTS = 16;
/** Bytes read before the event loop is given a turn (synchronous reads would hold it for a whole file). */
const HASH_YIELD_BYTES = 8 * 1024 * 1024;

/**
 * `Driver.readHashes` of the local driver (arguments already checked): opens `key` as every read
 * does (`openLocalFile`), reads it with positional reads into `arena`'s slots (the XXH64 module's
 * own memory, hashed where the bytes land: no stream, no copy) and hashes each chunk of
 * `chunkBytes`; the next piece is read while one is hashed when reads go to the thread pool.
 * The file must hold `size` bytes at the open and at the end, and the reads must find them all:
 * otherwise `E_SIZE_CHANGED` (kind `integrity`). Read errors are classified; the signal is
 * checked after every piece. The descriptor is closed, and the slots returned, only once no read
 * is in flight.
 */
export async function readLocalHashes(tree: LocalTree, key: string, options: ReadHashesOptions, arena: HashArena, context: ErrorContext): Promise<FileHashes> {
  const { size, chunkBytes, signal } = options;
  const ops = tree.ops;
  const { fd, size: atOpen } = await openLocalFile(tree, key, signal, context);
  const what = `${context.driver}: ${key}`;
  const slots: Buffer[] = [];
  let reading: Promise<number> | undefined;
  try {
    if (atOpen !== size) throw sizeChanged(`${what}: expected ${size} bytes, the file holds ${atOpen}`);
    const whole = options.whole ? arena.create() : undefined;
    const chunks: string[] = [];
    if (size > 0) {
      const slotBytes = Math.min(arena.slotBytes, chunkBytes, size);
      slots.push(arena.allocate(slotBytes), arena.allocate(slotBytes));
    }
    /** A read of the next piece at `at`: never past the end of its chunk, so a piece is in one chunk. */
    const readAt = (at: number, buffer: Buffer): Promise<number> => {
      const length = Math.min(buffer.length, chunkBytes - (at % chunkBytes), size - at);
      return ops.pread(fd, buffer, 0, length, at);
    };
    let position = 0;
    let turn = 0;
    let chunk = arena.create();
    let inChunk = 0;
    let sinceTurn = 0;
    reading = size > 0 ? readAt(0, slots[0] as Buffer) : undefined;
    while (position < size) {
      const buffer = slots[turn] as Buffer;
      let bytesRead: number;
      try {
        bytesRead = await (reading as Promise<number>);
      } catch (err) {
        throw classifyFsError(err, context);
      } finally {
        reading = undefined;
      }
      if (bytesRead === 0) throw sizeChanged(`${what}: expected ${size} bytes, read ${position}: it changed while being read`);
      throwIfAborted(signal, `${context.driver}: ${context.action} ${key}`);
      const next = position + bytesRead;
      turn ^= 1;
      if (next < size) reading = readAt(next, slots[turn] as Buffer);
      const piece = bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      chunk.update(piece);
      whole?.update(piece);
      inChunk += bytesRead;
      position = next;
      if (inChunk === chunkBytes || position === size) {
        chunks.push(chunk.digest());
        if (position < size) chunk = arena.create();
        inChunk = 0;
      }
      options.onBytes?.(bytesRead);
      sinceTurn += bytesRead;
      if (sinceTurn >= HASH_YIELD_BYTES && position < size) {
        sinceTurn = 0;
        await new Promise<void>((resolve) => { setImmediate(resolve); });
      }
    }
    // A file that grew (or was cut and refilled) while it was read is not the one recorded.
    const atEnd = (await ops.fstat(fd)).size;
    if (atEnd !== size) throw sizeChanged(`${what}: expected ${size} bytes, the file holds ${atEnd} after the read: it changed while being read`);
    return whole === undefined ? { chunks } : { chunks, hash: whole.digest() };
  } finally {
    if (reading !== undefined) await reading.catch(() => 0);
    for (const slot of slots) arena.release(arena.slotOf(slot));
    await ops.close(fd).catch(() => undefined);
  }
}

function sizeChanged(message: string): DriverError {
  return new DriverError('E_SIZE_CHANGED', message, { kind: 'integrity' });
}
