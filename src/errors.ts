/**
 * Error classes shared by the whole project. Every error that can reach a user is an
 * `OffsiteError` with a stable `code`, a `kind` that says how the engine should react, and a
 * one-line message that names what is wrong and what to do. The CLI (src/cli/exit.ts) is the
 * only place that maps them to exit codes.
 */
import { setMaxListeners } from 'node:events';

/**
 * How the engine reacts to an error:
 * - `not-found`: the thing is not there (a driver's `stat` returns `undefined` instead).
 * - `retryable`: a transient fault (reset, timeout, 5xx, throttling): retry with backoff.
 * - `permanent`: retrying will not help (no such bucket, permission denied, disk full).
 * - `auth`: credentials or host key refused; never retried.
 * - `integrity`: bytes do not match their hash or size; never retried blindly.
 * - `fatal`: a bug or an impossible state; stop everything.
 */
export type ErrorKind = 'not-found' | 'retryable' | 'permanent' | 'auth' | 'integrity' | 'fatal';

export interface OffsiteErrorOptions {
  readonly kind?: ErrorKind;
  readonly cause?: unknown;
}

export class OffsiteError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  constructor(code: string, message: string, options: OffsiteErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.kind = options.kind ?? 'fatal';
  }
}

/** Bad command-line usage or configuration: exit code 2. */
export class UsageError extends OffsiteError {
  constructor(message: string, options: OffsiteErrorOptions = {}) {
    super('E_USAGE', message, { kind: 'permanent', ...options });
  }
}

/** A configuration file that cannot be read or is invalid: exit code 2. */
export class ConfigError extends OffsiteError {
  constructor(message: string, options: OffsiteErrorOptions = {}) {
    super('E_CONFIG', message, { kind: 'permanent', ...options });
  }
}

/** A backup that is not complete, or whose meta is malformed: exit code 1. */
export class BackupError extends OffsiteError {
  constructor(code: string, message: string, options: OffsiteErrorOptions = {}) {
    super(code, message, { kind: 'permanent', ...options });
  }
}

/** An error raised by a driver; `kind` says whether to retry. */
export class DriverError extends OffsiteError {
  constructor(code: string, message: string, options: OffsiteErrorOptions = {}) {
    super(code, message, { kind: 'permanent', ...options });
  }
}

/** A key that would leave the destination or source root (`../`, absolute, NUL...). */
export class KeyError extends DriverError {
  constructor(key: string, why: string) {
    super('E_BAD_KEY', `key ${JSON.stringify(key)} refused: ${why}`, { kind: 'permanent' });
  }
}

/** The operation was cancelled through its AbortSignal. */
export class AbortedError extends OffsiteError {
  constructor(what = 'operation') {
    super('E_ABORTED', `${what} aborted`, { kind: 'fatal' });
  }
}

/** Throws an AbortedError when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what?: string): void {
  if (signal?.aborted) throw new AbortedError(what);
}

/**
 * A signal that fires when `own` or `outer` (the run's, when there is one) does. Like the CLI's
 * run signal, it takes any number of listeners: every concurrent read, write and sleep of a part
 * of the run listens on it, far more than node's default of 10 (beyond which it prints a
 * MaxListenersExceededWarning on stderr, seen in a sharded run under load).
 */
export function eitherSignal(own: AbortSignal, outer: AbortSignal | undefined): AbortSignal {
  const signal = outer === undefined ? own : AbortSignal.any([outer, own]);
  setMaxListeners(0, signal);
  return signal;
}

/** The kind of any thrown value; plain errors count as `fatal` unless they carry a kind. */
export function errorKind(err: unknown): ErrorKind {
  if (err instanceof OffsiteError) return err.kind;
  return 'fatal';
}

/** A one-line message for any thrown value, never a stack trace. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? String(err);
  return String(err);
}
