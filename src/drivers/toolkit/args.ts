/**
 * Argument checks every driver makes the same way, before any IO. A bad argument is the
 * caller's bug: `E_BAD_ARGUMENT`, kind `fatal` (./errors.ts), whichever driver and method.
 */
import { checkKey, checkPrefix } from '../keys.js';
import { OffsiteError } from '../../errors.js';
import { badArgument, type ErrorContext } from './errors.js';
import { checkNotTempName } from './temp-names.js';

/** `value` when it is a non-negative safe integer (a byte count or offset); else `E_BAD_ARGUMENT`. */
export function checkByteCount(value: unknown, what: string, context: ErrorContext): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw badArgument(context, `${what} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

/** `offset` (default 0) and `length` of `openRead`, checked. */
export function checkReadRange(options: { readonly offset?: unknown; readonly length?: unknown }, context: ErrorContext): { offset: number; length: number | undefined } {
  const offset = checkByteCount(options.offset ?? 0, 'offset', context);
  const length = options.length === undefined ? undefined : checkByteCount(options.length, 'length', context);
  return { offset, length };
}

/** `size` and `partBytes` of `openWrite`, checked: `partBytes` within `1..maxPartBytes`. */
export function checkWriteShape(options: { readonly size: unknown; readonly partBytes: unknown }, maxPartBytes: number, context: ErrorContext): { size: number; partBytes: number } {
  const size = checkByteCount(options.size, 'size', context);
  const partBytes = checkByteCount(options.partBytes, 'partBytes', context);
  if (partBytes < 1 || partBytes > maxPartBytes) throw badArgument(context, `partBytes must be 1..${maxPartBytes}, got ${partBytes}`);
  return { size, partBytes };
}

/** True when `key` is a safe key (../keys.ts); for skipping names a listing cannot express as keys. */
export function isSafeKey(key: string): boolean {
  try {
    checkKey(key);
    return true;
  } catch {
    return false;
  }
}

/** Adds the driver's name in front of a `KeyError` from ../keys.ts. */
function named<T>(driver: string, check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof OffsiteError && !err.message.startsWith(`${driver}: `)) err.message = `${driver}: ${err.message}`;
    throw err;
  }
}

/**
 * Refuses (`KeyError`, `E_BAD_KEY`, kind `permanent`) a key that could leave the root
 * (../keys.ts) or whose last segment is one of our temp names; the message names the driver.
 */
export function checkDriverKey(driver: string, key: string): string {
  named(driver, () => checkKey(key));
  checkNotTempName(driver, key);
  return key;
}

/** Refuses a list prefix that could leave the root, with the driver's name in the message. */
export function checkDriverPrefix(driver: string, prefix: string): string {
  return named(driver, () => checkPrefix(prefix));
}
