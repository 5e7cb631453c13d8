/**
 * The read pipeline of the object-store driver: `openRead` as ranged GetObjects whose errors are
 * classified and which the abort signal ends.
 *
 * With `pieceBytes` (the engine reads in chunks of that size) an object is read as a series of
 * ranged GETs of one piece each, every piece received straight into a buffer of exactly its size
 * (from the caller's `allocate`, so into its chunk pool): the engine takes such pieces as they
 * are, without cutting or copying them again. One piece is read ahead: while the caller works on
 * piece k, piece k+1 is received, and the GET of piece k+2 is already sent, its answer waiting
 * unread on its socket, so no round trip separates two pieces and the memory held is that of a
 * stream with one piece of read-ahead (what the engine's chunk budget counts on: src/core/fanout.ts).
 *
 * Consistency: every GET after the first carries `If-Match` with the ETag of the first answer (or
 * the one `ifFingerprint` names, on every GET, the first included), so the pieces of one read are
 * always of one and the same object: an object rewritten in between fails the read with
 * `E_READ_SOURCE_CHANGED` (kind `integrity`) instead of mixing two versions.
 */
import { PassThrough, Readable } from 'node:stream';
import { AbortedError, DriverError } from '../../errors.js';
import { readSourceChangedError, type ErrorContext } from '../toolkit/index.js';
import type { Bucket } from './bucket.js';
import type { S3Failure } from './errors.js';
import type { StoredBody } from './store.js';

/** What `readObject` reads. */
export interface ObjectRead {
  readonly offset: number;
  /** To the end when undefined. */
  readonly length: number | undefined;
  readonly signal?: AbortSignal;
  /** The ETag the object must have (`ReadOptions.ifFingerprint`). */
  readonly etag?: string;
  /** `ReadOptions.pieceBytes`: read in pieces of this size (with a known `length`). */
  readonly pieceBytes?: number;
  /** `ReadOptions.allocate`: where the pieces' buffers come from. */
  readonly allocate?: (size: number) => Buffer;
}

/**
 * GetObject with a Range header for `[offset, offset + length)` (to the end when `length` is
 * undefined) of the full key `full`, in pieces with `pieceBytes` (see the file comment). Missing
 * key: `not-found`. Reading at or past the end gives an empty stream, a range past the end the
 * bytes there are. Errors are classified; an object that is not the one `etag` names (or, between
 * pieces, not the one the first piece came from) is `E_READ_SOURCE_CHANGED`; the signal destroys
 * the stream with AbortedError. The caller has checked the arguments and that the driver is open.
 */
export async function readObject(bucket: Bucket, full: string, read: ObjectRead): Promise<Readable> {
  const { store } = bucket;
  const { offset, length, signal, etag } = read;
  const context: ErrorContext = { driver: bucket.driver, action: 'read', key: full };
  const pieceBytes = read.pieceBytes !== undefined && read.pieceBytes > 0 && length !== undefined ? read.pieceBytes : undefined;
  const firstEnd = length === undefined ? undefined : offset + Math.min(length, pieceBytes ?? length);
  let first: StoredBody;
  try {
    if (length === 0) {
      const head = await store.head(full, signal);
      if (head === undefined) throw bucket.failWith('NoSuchKey', 'read', full);
      if (etag !== undefined && head.etag !== etag) throw readSourceChangedError(context);
      return emptyStream();
    }
    try {
      first = await store.get(full, offset, firstEnd, signal, etag);
    } catch (err) {
      const failure = store.describeError(err);
      if (isPreconditionFailed(failure)) throw readSourceChangedError(context);
      if (failure.code !== 'InvalidRange' && failure.status !== 416) throw err;
      // Past the end (or an empty object): empty when the object exists.
      const head = await store.head(full, signal);
      if (head === undefined) throw bucket.failWith('NoSuchKey', 'read', full);
      if (etag !== undefined && head.etag !== etag) throw readSourceChangedError(context);
      if (offset >= head.size) return emptyStream();
      throw err;
    }
  } catch (err) {
    throw bucket.fail(err, 'read', full);
  }
  // A server that ignores If-Match is caught here all the same.
  if (etag !== undefined && first.etag !== undefined && first.etag !== etag) {
    first.body.destroy();
    throw readSourceChangedError(context);
  }
  if (pieceBytes === undefined || length === undefined) return guard(bucket, first.body, full, signal);
  return new PiecedRead(bucket, full, context, { offset, length, pieceBytes, signal, allocate: read.allocate }, first, etag ?? first.etag);
}

/** The server's answer to a GET whose `If-Match` ETag the object no longer has. */
function isPreconditionFailed(failure: S3Failure): boolean {
  return failure.status === 412 || failure.code === 'PreconditionFailed';
}

interface PieceSpec {
  readonly offset: number;
  readonly length: number;
  readonly pieceBytes: number;
  readonly signal: AbortSignal | undefined;
  readonly allocate: ((size: number) => Buffer) | undefined;
}

/** A GET of one piece: its answer (once the headers are in). */
interface PendingPiece {
  readonly start: number;
  readonly end: number;
  readonly answer: Promise<StoredBody | undefined>;
}

/** The pieces of one read, in order, one piece ahead (see the file comment). */
class PiecedRead extends Readable {
  /** Start of the next piece to request. */
  #next: number;
  readonly #end: number;
  /** The GET sent for the piece after the one being received, if any. */
  #ahead: PendingPiece | undefined;
  /** The piece being received (its body), to destroy on abort. */
  #receiving: Readable | undefined;
  #onAbort: (() => void) | undefined;

  constructor(
    private readonly bucket: Bucket,
    private readonly full: string,
    private readonly context: ErrorContext,
    private readonly spec: PieceSpec,
    first: StoredBody,
    /** Every GET after the first must find this ETag (none when the server gave none). */
    private readonly etag: string | undefined,
  ) {
    // One byte: `_read` runs exactly when the caller has taken the last piece (one piece of read-ahead).
    super({ highWaterMark: 1 });
    this.#end = spec.offset + spec.length;
    const firstEnd = Math.min(this.#end, spec.offset + spec.pieceBytes);
    this.#next = firstEnd;
    this.#ahead = { start: spec.offset, end: firstEnd, answer: Promise.resolve(first) };
    const { signal } = spec;
    if (signal !== undefined) {
      this.#onAbort = () => this.destroy(new AbortedError(`${bucket.driver}: read`));
      if (signal.aborted) queueMicrotask(this.#onAbort);
      else signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Sends the GET of the next piece (when there is one); its body waits unread until its turn. */
  #request(): PendingPiece | undefined {
    if (this.#next >= this.#end) return undefined;
    const start = this.#next;
    const end = Math.min(this.#end, start + this.spec.pieceBytes);
    this.#next = end;
    const answer = this.bucket.store.get(this.full, start, end, this.spec.signal, this.etag).then((body) => {
      if (this.destroyed) body.body.destroy();
      return body;
    }, (err: unknown) => {
      const failure = this.bucket.store.describeError(err);
      if (isPreconditionFailed(failure)) throw readSourceChangedError(this.context);
      // A range wholly past the end: the object is shorter than asked; the read ends there.
      if (failure.code === 'InvalidRange' || failure.status === 416) return undefined;
      throw this.bucket.fail(err, 'read', this.full);
    });
    answer.catch(() => undefined);
    return { start, end, answer };
  }

  override _read(): void {
    const piece = this.#ahead;
    if (piece === undefined) {
      this.push(null);
      return;
    }
    this.#ahead = undefined;
    void this.#receive(piece);
  }

  async #receive(piece: PendingPiece): Promise<void> {
    try {
      const answer = await piece.answer;
      if (this.destroyed) return;
      if (answer === undefined) {
        this.push(null);
        return;
      }
      if (this.etag !== undefined && answer.etag !== undefined && answer.etag !== this.etag) {
        answer.body.destroy();
        throw readSourceChangedError(this.context);
      }
      // The next GET goes out now, so that its answer is there when this piece is handed on.
      this.#ahead = this.#request();
      const bytes = await this.#fill(answer.body, piece.end - piece.start);
      if (this.destroyed) return;
      if (bytes.length < piece.end - piece.start) this.#dropAhead(); // the object ends here
      this.push(bytes);
    } catch (err) {
      this.destroy(err as Error);
    }
  }

  /** The body of one piece in one buffer of its size (shorter when the object ends sooner). */
  #fill(body: Readable, size: number): Promise<Buffer> {
    const buffer = this.spec.allocate?.(size) ?? Buffer.allocUnsafe(size);
    this.#receiving = body;
    return new Promise<Buffer>((resolve, reject) => {
      let filled = 0;
      body.on('data', (data: Buffer) => {
        if (filled + data.length > size) {
          body.destroy();
          reject(new DriverError('E_S3', `${this.context.driver}: ${this.full}: read: the server sent more bytes than the range asked for (${size}); check that it supports ranged GETs`, { kind: 'permanent' }));
          return;
        }
        data.copy(buffer, filled);
        filled += data.length;
      });
      body.once('end', () => {
        this.#receiving = undefined;
        resolve(filled === size ? buffer : buffer.subarray(0, filled));
      });
      body.once('error', (err) => {
        this.#receiving = undefined;
        reject(this.spec.signal?.aborted ? new AbortedError(`${this.bucket.driver}: read`) : this.bucket.fail(err, 'read', this.full));
      });
    });
  }

  /** Gives up the GET sent ahead (its answer is never read). */
  #dropAhead(): void {
    const ahead = this.#ahead;
    this.#ahead = undefined;
    void ahead?.answer.then((answer) => answer?.body.destroy(), () => undefined);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#onAbort !== undefined) this.spec.signal?.removeEventListener('abort', this.#onAbort);
    this.#receiving?.destroy();
    this.#dropAhead();
    callback(error);
  }
}

/** The body behind a PassThrough that classifies its errors and ends on abort. */
function guard(bucket: Bucket, body: Readable, full: string, signal: AbortSignal | undefined): Readable {
  const out = new PassThrough();
  const onAbort = (): void => {
    out.destroy(new AbortedError(`${bucket.driver}: read`));
    body.destroy();
  };
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort, { once: true });
  body.on('error', (err) => out.destroy(signal?.aborted ? new AbortedError(`${bucket.driver}: read`) : bucket.fail(err, 'read', full)));
  out.on('close', () => {
    signal?.removeEventListener('abort', onAbort);
    body.destroy();
  });
  body.pipe(out);
  return out;
}

function emptyStream(): Readable {
  const stream = new PassThrough();
  stream.end();
  return stream;
}
