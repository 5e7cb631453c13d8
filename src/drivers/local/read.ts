/**
 * The read pipeline of the `local` driver: opening a key's file without following a symlink
 * that leads outside the root, and streaming a byte range of it with positional reads (the
 * skipped bytes are never read) into buffers of the caller's choosing.
 */
import { constants } from 'node:fs';
import { Readable } from 'node:stream';
import { AbortedError, throwIfAborted } from '../../errors.js';
import { notAFileError, notFoundError, pathTypeOf, type ErrorContext } from '../toolkit/index.js';
import type { ReadOptions } from '../types.js';
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
  let fileSize: number;
  try {
    const info = await ops.fstat(fd);
    if (!info.isFile()) throw notAFileError(context, pathTypeOf(info));
    fileSize = info.size;
    throwIfAborted(signal, `${context.driver}: read ${key}`);
  } catch (err) {
    await ops.close(fd).catch(() => undefined);
    throw err;
  }
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
