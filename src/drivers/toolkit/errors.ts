/**
 * Error context and the errors every driver raises the same way, so that one refusal has one
 * code and one kind whichever driver raises it (the conformance suite checks them):
 *
 * | what                                   | code              | kind        |
 * |----------------------------------------|-------------------|-------------|
 * | a bad argument (size, offset, part...) | `E_BAD_ARGUMENT`  | `fatal`     |
 * | a part missing at commit               | `E_MISSING_PART`  | `fatal`     |
 * | the stored size is not `size` at commit| `E_SIZE_MISMATCH` | `integrity` |
 * | a call on a finished write session     | `E_SESSION_CLOSED`| `fatal`     |
 * | a call on a closed driver              | `E_CLOSED`        | `fatal`     |
 * | a key that is not there                | `E_NOT_FOUND`     | `not-found` |
 * | a key holding a folder, FIFO, device...| `E_NOT_A_FILE`    | `not-found` |
 * | a key refused (escapes the root...)    | `E_BAD_KEY`       | `permanent` |
 * | a copy source not as `expect` says     | `E_COPY_SOURCE_CHANGED` | `integrity` |
 * | a read not of the `ifFingerprint` object| `E_READ_SOURCE_CHANGED` | `integrity` |
 *
 * Why `fatal` for a missing part: it is the caller's bug (commit before every part was written
 * or confirmed), not bad stored bytes. The engine aborts a write session (and so deletes its
 * resumable temp file or multipart upload) only on `integrity`; a `fatal` error keeps what was
 * stored, so a fixed caller, or the next run, can still resume it. `integrity` stays reserved
 * for bytes that do not add up (a size mismatch, a part changed on the server).
 *
 * Driver-specific classification (errno codes, SFTP statuses, S3 codes) stays in each driver's
 * errors.ts; the steps they share are here (`passThrough`, `firstLine`, `redact`, `errnoOf`).
 */
import { AbortedError, DriverError, KeyError, OffsiteError } from '../../errors.js';
import type { CopyExpectation } from '../types.js';

/** Where an error happened, for its message: `nas: a/b.bin: write: disk full (ENOSPC)`. */
export interface ErrorContext {
  /** The driver instance's name (`nas`, `cloud`...). */
  readonly driver: string;
  readonly action: string;
  readonly key?: string;
}

/** `driver: key: action` (or `driver: action` without a key): the start of every message. */
export function where(context: ErrorContext): string {
  return context.key === undefined ? `${context.driver}: ${context.action}` : `${context.driver}: ${context.key}: ${context.action}`;
}

/** A bad argument from the caller (a bug): `E_BAD_ARGUMENT`, kind `fatal`. */
export function badArgument(context: ErrorContext, message: string): DriverError {
  return new DriverError('E_BAD_ARGUMENT', `${where(context)}: ${message}`, { kind: 'fatal' });
}

/**
 * A commit with parts neither written nor confirmed in this session: `E_MISSING_PART`, kind
 * `fatal` (see the file comment: it keeps the resumable state). `why` ("was never written")
 * defaults to the usual case.
 */
export function missingPartError(context: ErrorContext, missing: readonly number[], parts: number, why?: string): DriverError {
  const list = missing.length > 5 ? `${missing.slice(0, 5).join(', ')}... (${missing.length} in all)` : missing.join(', ');
  const one = missing.length === 1;
  const reason = why ?? `${one ? 'was' : 'were'} neither written nor confirmed by matches() in this session`;
  return new DriverError('E_MISSING_PART', `${where(context)}: cannot commit: ${one ? 'part' : 'parts'} ${list} of ${parts} ${reason}`, { kind: 'fatal' });
}

/** The stored object or temp file does not have the size the session was opened with: `integrity`. */
export function sizeMismatchError(context: ErrorContext, what: string, found: number | string, expected: number): DriverError {
  return new DriverError('E_SIZE_MISMATCH', `${where(context)}: ${what} has ${found} bytes, expected ${expected}`, { kind: 'integrity' });
}

/**
 * `copyWithin`'s `expect` (../types.ts `CopyWithinOptions`) against the source as the driver
 * found it (`size`, stored `hash`, `fingerprint`): nothing when it holds, else the refusal
 * (`E_COPY_SOURCE_CHANGED`, `integrity`: the caller sends the file instead), saying what differs.
 */
export function checkCopySource(context: ErrorContext, expect: CopyExpectation | undefined, found: { size: number; hash?: string; fingerprint?: string }): void {
  if (expect === undefined) return;
  const why = found.size !== expect.size ? `has ${found.size} bytes, not ${expect.size}`
    : expect.hash !== undefined && found.hash !== undefined && found.hash !== expect.hash ? `has the stored hash ${found.hash}, not ${expect.hash}`
      : expect.fingerprint !== undefined && found.fingerprint !== expect.fingerprint ? 'changed since it was recorded (another fingerprint)'
        : undefined;
  if (why !== undefined) throw copySourceChangedError(context, why);
}

/** The refusal of `checkCopySource`, for drivers that find out otherwise (a conditional copy refused). */
export function copySourceChangedError(context: ErrorContext, why: string): DriverError {
  return new DriverError('E_COPY_SOURCE_CHANGED', `${where(context)}: the copy source ${why}; nothing was copied`, { kind: 'integrity' });
}

/**
 * A conditional read (`ReadOptions.ifFingerprint`) found another object under the key: it was
 * rewritten since it was listed (`E_READ_SOURCE_CHANGED`, `integrity`).
 */
export function readSourceChangedError(context: ErrorContext): DriverError {
  return new DriverError('E_READ_SOURCE_CHANGED', `${where(context)}: the object changed since it was listed (another ETag); read it again once it is stable`, { kind: 'integrity' });
}

/** A call on a write session that was committed, suspended or aborted. */
export function sessionClosedError(context: ErrorContext, state: string): DriverError {
  return new DriverError('E_SESSION_CLOSED', `${where(context)}: the write session is already ${state}`, { kind: 'fatal' });
}

/** A call on a driver after `close()`. */
export function driverClosedError(context: ErrorContext): DriverError {
  return new DriverError('E_CLOSED', `${where(context)}: the driver is already closed`, { kind: 'fatal' });
}

/** A `not-found` error for a key that does not exist (or is a folder). */
export function notFoundError(context: ErrorContext): DriverError {
  return new DriverError('E_NOT_FOUND', `${where(context)}: not found`, { kind: 'not-found' });
}

/** A `KeyError` whose message starts with the driver's name, like every other driver error. */
export function keyError(driver: string, key: string, why: string): KeyError {
  const err = new KeyError(key, why);
  err.message = `${driver}: ${err.message}`;
  return err;
}

/** True for an error of kind `not-found` (classified by a driver). */
export function isNotFound(err: unknown): boolean {
  return (err as { kind?: unknown } | null)?.kind === 'not-found';
}

/** For `.catch()`: `undefined` for a `not-found` error, anything else is thrown again. */
export function missingAsUndefined(err: unknown): undefined {
  if (isNotFound(err)) return undefined;
  throw err;
}

/**
 * The first step of every driver's classifier: an `OffsiteError` is already classified and
 * passes through; node's `AbortError` becomes an `AbortedError` naming where. `undefined` for
 * anything else (the driver's own tables decide).
 */
export function passThrough(err: unknown, context: ErrorContext): OffsiteError | undefined {
  if (err instanceof OffsiteError) return err;
  if ((err as { name?: unknown } | null)?.name === 'AbortError') return new AbortedError(where(context));
  return undefined;
}

/** The first line of an error's message, trimmed (messages are one line; stacks never shown). */
export function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return (message.split('\n')[0] ?? '').trim();
}

/** The errno code (`ENOENT`, `ECONNRESET`...) of a node error, if any. */
export function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Removes every occurrence of the given secrets (3 characters or more) from a message. */
export function redact(message: string, secrets: readonly (string | undefined)[]): string {
  let out = message;
  for (const secret of secrets) {
    if (secret && secret.length >= 3) out = out.split(secret).join('***');
  }
  return out;
}
