/**
 * Key rules shared by every driver: a key is relative, `/`-separated, and can never leave the
 * driver's root. Checked before any IO.
 */
import { KeyError } from '../errors.js';

/** Throws `KeyError` unless `key` is a safe relative key (see src/drivers/types.ts). */
export function checkKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) throw new KeyError(String(key), 'empty key');
  if (key.includes('\0')) throw new KeyError(key, 'contains a NUL byte');
  if (key.includes('\\')) throw new KeyError(key, 'contains a backslash');
  if (key.startsWith('/')) throw new KeyError(key, 'absolute keys would leave the root');
  // Segment by segment without splitting: every driver call checks its key (several per copied file).
  for (let start = 0; start <= key.length;) {
    const slash = key.indexOf('/', start);
    const end = slash < 0 ? key.length : slash;
    const length = end - start;
    const dots = length <= 2 && key.charCodeAt(start) === 46 && (length === 1 || key.charCodeAt(start + 1) === 46); // '.' or '..'
    if (dots && length === 2) throw new KeyError(key, '".." would leave the root');
    if (length === 0 || dots) throw new KeyError(key, 'empty or "." path segment');
    start = end + 1;
  }
  return key;
}

/** Checks a list prefix: `''` or a safe key prefix (a trailing `/` is allowed). */
export function checkPrefix(prefix: string): string {
  if (prefix === '') return prefix;
  checkKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
  return prefix;
}

/** Number of parts for an object of `size` bytes cut into `partBytes` parts. */
export function partCount(size: number, partBytes: number): number {
  return size === 0 ? 0 : Math.ceil(size / partBytes);
}

/** Byte range `[start, end)` of part `index`. */
export function partRange(index: number, size: number, partBytes: number): { start: number; end: number } {
  const start = index * partBytes;
  return { start, end: Math.min(size, start + partBytes) };
}
