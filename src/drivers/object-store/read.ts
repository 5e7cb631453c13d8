/**
 * The read pipeline of the object-store driver: `openRead` as a ranged GetObject whose stream
 * errors are classified and which the abort signal destroys.
 */
import { PassThrough, type Readable } from 'node:stream';
import { AbortedError } from '../../errors.js';
import type { Bucket } from './bucket.js';

/**
 * GetObject with a Range header for `[offset, offset + length)` (to the end when `length` is
 * undefined) of the full key `full`. Missing key: `not-found`. Reading at or past the end gives an
 * empty stream. Stream errors are classified; the signal destroys the stream with AbortedError.
 * The caller has checked the arguments and that the driver is open.
 */
export async function readObject(bucket: Bucket, full: string, offset: number, length: number | undefined, signal: AbortSignal | undefined): Promise<Readable> {
  const { store } = bucket;
  let body: Readable;
  try {
    if (length === 0) {
      if ((await store.head(full, signal)) === undefined) throw bucket.failWith('NoSuchKey', 'read', full);
      return emptyStream();
    }
    try {
      body = await store.get(full, offset, length === undefined ? undefined : offset + length, signal);
    } catch (err) {
      const failure = store.describeError(err);
      if (failure.code !== 'InvalidRange' && failure.status !== 416) throw err;
      // Past the end (or an empty object): empty when the object exists.
      const head = await store.head(full, signal);
      if (head === undefined) throw bucket.failWith('NoSuchKey', 'read', full);
      if (offset >= head.size) return emptyStream();
      throw err;
    }
  } catch (err) {
    throw bucket.fail(err, 'read', full);
  }
  return guard(bucket, body, full, signal);
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
