/**
 * The read pipeline of the `sftp` driver: pipelined SFTP READ requests at any offset, whose
 * replies land directly in the buffers of the pieces the stream yields, with bounded read-ahead.
 * `readRange` also serves write sessions that compare a resumable part (`matches`).
 */
import { Readable } from 'node:stream';
import type { Stats } from 'ssh2';
import { AbortedError, DriverError, throwIfAborted } from '../../errors.js';
import { notAFileError, notFoundError, pathTypeOf, type ErrorContext } from '../toolkit/index.js';
import type { ReadOptions } from '../types.js';
import { settle, type ConnectionPool, type SftpHandle } from './connection.js';
import { foldersOf, type SftpTree } from './tree.js';

/** Byte counters, for tests and benchmarks (what actually went over the wire as file data). */
export interface SftpTransferCounters {
  /** Bytes sent in SFTP WRITE requests that the server acknowledged. */
  bytesWritten: number;
  /** Bytes received in SFTP READ replies (reads and `matches` checks). */
  bytesRead: number;
}

/** How `readRange` cuts and buffers what it reads. */
export interface ReadShape {
  /** Most READ requests in flight. */
  readonly concurrency: number;
  /** Bytes per READ request. */
  readonly requestBytes: number;
  /** Bytes per yielded piece (the last one may be shorter). */
  readonly pieceBytes: number;
  /** Where piece buffers come from. */
  readonly allocate: (size: number) => Buffer;
}

/** Smallest and largest piece `openRead` yields when the caller asks for a `pieceBytes`. */
const MIN_PIECE_BYTES = 4096;
const MAX_PIECE_BYTES = 64 * 1024 * 1024;

/** What `openSftpRead` needs from the driver. */
export interface ReadSetup {
  readonly tree: SftpTree;
  readonly pool: ConnectionPool;
  readonly concurrencyPerFile: number;
  readonly requestBytes: number;
  readonly counters: SftpTransferCounters;
}

/**
 * Streams `[offset, offset + length)` of `key` (arguments already checked; to the end when
 * `length` is omitted, clipped to the file's size just before the open) in pieces of
 * `pieceBytes` (default `requestBytes`) taken from `allocate` when given. A missing key rejects
 * with `not-found`, as does (code `E_NOT_A_FILE`, naming it) a key holding a folder, a FIFO or
 * another special file, which is never opened; a file that shrinks while being read fails the stream with kind `integrity`;
 * a lost connection fails it with kind `retryable`. The connection is held until the stream closes.
 */
export async function openSftpRead(setup: ReadSetup, key: string, offset: number, length: number | undefined, options: ReadOptions, context: ErrorContext): Promise<Readable> {
  const { tree, pool } = setup;
  const path = tree.join(key);
  const conn = await pool.acquire();
  let handle: SftpHandle | undefined;
  try {
    // The key's LSTAT goes out with the folder checks; the OPEN only once the key is known to be
    // a regular file: OpenSSH's sftp-server opens a FIFO with a blocking open(2), which would
    // hang the session's one server process. Two round trips, as an OPEN then FSTAT took.
    const own = settle(conn.call<Stats>(context, (sftp, done) => sftp.lstat(path, done)));
    const folder = await settle(tree.checkFolder(conn, foldersOf(key), context, false));
    const found = await own;
    if (!folder.ok) throw folder.error;
    if (folder.value === 'missing') throw notFoundError(context);
    if (!found.ok) throw found.error;
    let stats = found.value;
    if (stats.isSymbolicLink()) {
      const target = await tree.followLink(conn, key, context);
      if (target === undefined) throw notFoundError(context);
      stats = target.stats;
    }
    if (!stats.isFile()) throw notAFileError(context, pathTypeOf(stats));
    handle = await conn.open(context, path, 'r');
    const openHandle = handle;
    const end = length === undefined ? stats.size : Math.min(stats.size, offset + length);
    const pieceBytes = Math.min(Math.max(options.pieceBytes ?? setup.requestBytes, MIN_PIECE_BYTES), MAX_PIECE_BYTES);
    const shape: ReadShape = {
      concurrency: setup.concurrencyPerFile,
      requestBytes: setup.requestBytes,
      pieceBytes,
      allocate: options.allocate ?? Buffer.allocUnsafe,
    };
    const chunks = readRange(openHandle, offset, Math.max(offset, end), shape, context, setup.counters, options.signal);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      void openHandle.close(context);
      pool.release(conn);
    };
    const stream = Readable.from(releasing(chunks, release), { objectMode: false, highWaterMark: 1 });
    // A stream destroyed before its first read never runs the generator's `finally`.
    stream.once('close', release);
    if (options.signal) {
      const signal = options.signal;
      const onAbort = (): void => {
        stream.destroy(new AbortedError(`${context.driver}: read ${key}`));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return stream;
  } catch (err) {
    void handle?.close(context);
    pool.release(conn);
    throw conn.classify(err, context);
  }
}

/**
 * Reads `[start, end)` of an open file as ordered pieces of `pieceBytes`, with up to
 * `concurrency` READ requests in flight; the server's replies land directly in the piece
 * buffers. Read-ahead stops at about two pieces plus the requests in flight, so a slow consumer
 * bounds memory. Short replies are completed with follow-up reads; an early end of file
 * rejects with kind `integrity`.
 */
export async function* readRange(
  handle: SftpHandle,
  start: number,
  end: number,
  shape: ReadShape,
  context: ErrorContext,
  counters: SftpTransferCounters,
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  interface Piece {
    readonly buffer: Buffer;
    readonly position: number;
    filled: number;
    failure?: unknown;
    wake?: () => void;
  }
  const pieces: Piece[] = []; // allocated, not yet yielded, in file order
  let queuedBytes = 0;
  let nextPiece = start;
  let issuing: Piece | undefined;
  let issued = 0; // bytes of `issuing` already requested
  let inFlight = 0;
  let stopped = false;
  const readAhead = shape.concurrency * shape.requestBytes + shape.pieceBytes;

  /** Reads `[offset, offset + length)` of a piece, following up on short replies. */
  const readInto = (piece: Piece, offset: number, length: number): void => {
    inFlight++;
    handle
      .call<number>(context, (sftp, raw, done) => sftp.read(raw, piece.buffer, offset, length, piece.position + offset, (err, bytesRead) => done(err, bytesRead)))
      .then(
        (bytesRead) => {
          inFlight--;
          if (stopped) return;
          counters.bytesRead += bytesRead;
          if (bytesRead === 0) {
            piece.failure ??= new DriverError(
              'E_SHORT_READ',
              `${context.driver}: ${context.key}: ${context.action}: the file ended at byte ${piece.position + offset}, expected ${end}`,
              { kind: 'integrity' },
            );
          } else if (bytesRead < length) {
            readInto(piece, offset + bytesRead, length - bytesRead);
          }
          piece.filled += bytesRead;
          piece.wake?.();
          pump();
        },
        (err: unknown) => {
          inFlight--;
          piece.failure ??= err;
          piece.wake?.();
        },
      );
  };

  const pump = (): void => {
    while (!stopped && inFlight < shape.concurrency) {
      if (!issuing || issued >= issuing.buffer.length) {
        if (nextPiece >= end || queuedBytes >= readAhead) return;
        const length = Math.min(shape.pieceBytes, end - nextPiece);
        issuing = { buffer: shape.allocate(length), position: nextPiece, filled: 0 };
        pieces.push(issuing);
        queuedBytes += length;
        nextPiece += length;
        issued = 0;
      }
      const length = Math.min(shape.requestBytes, issuing.buffer.length - issued);
      readInto(issuing, issued, length);
      issued += length;
    }
  };

  const onAbort = (): void => {
    for (const piece of pieces) piece.wake?.();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    pump();
    while (pieces.length > 0) {
      const head = pieces[0] as Piece;
      while (head.failure === undefined && head.filled < head.buffer.length) {
        throwIfAborted(signal, `${context.driver}: ${context.key}: ${context.action}`);
        await new Promise<void>((resolve) => {
          head.wake = resolve;
        });
        head.wake = undefined;
      }
      if (head.failure !== undefined) throw head.failure;
      pieces.shift();
      queuedBytes -= head.buffer.length;
      pump();
      throwIfAborted(signal, `${context.driver}: ${context.key}: ${context.action}`);
      yield head.buffer;
    }
  } finally {
    stopped = true;
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Wraps an async iterator so that `onDone` runs exactly once however iteration ends. */
async function* releasing<T>(source: AsyncGenerator<T>, onDone: () => void): AsyncGenerator<T> {
  try {
    yield* source;
  } finally {
    onDone();
  }
}
