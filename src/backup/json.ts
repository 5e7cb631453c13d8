/**
 * Lossless reading of milvus-backup meta JSON.
 *
 * Why not `JSON.parse`: milvus-backup writes int64 values (collection, partition, segment and
 * log IDs, TSO timestamps, sizes) as bare JSON numbers, and the IDs are 18-digit values above
 * 2^53 that `JSON.parse` silently rounds (458930418862440449 becomes ...448). A rounded ID
 * names a different file, so every integer is kept as its exact decimal text.
 *
 * Representation: every JSON integer literal (no fraction, no exponent) comes back as a
 * `string` holding exactly the digits written in the file (`-1`, `0`, `458930418862440448`);
 * numbers with a fraction or exponent come back as JS `number`s (milvus-backup writes none that
 * matter). Since Go's `encoding/json` writes int64 as numbers and `protojson` would write them
 * as strings, this also makes both spellings look the same to the code that reads them.
 */
import { parse } from 'lossless-json';
import { BackupError, errorKind, throwIfAborted } from '../errors.js';
import { flatString } from '../strings.js';
import type { Driver, SignalOptions } from '../drivers/types.js';

/** Meta files larger than this are refused rather than read into memory (E_META_TOO_LARGE). */
export const MAX_META_BYTES = 512 * 1024 * 1024;

const INTEGER = /^-?\d+$/;

function parseNumber(text: string): unknown {
  return INTEGER.test(text) ? text : Number(text);
}

/**
 * lossless-json builds every string one character at a time (`result += char`), so each string
 * longer than a few characters is a rope of one V8 cons cell per character: the `log_path` of
 * every binlog cost ~3 KB of heap, 100 MB at 20,000 files (issue 13). `flatString` makes V8
 * flatten the rope in place, after which its cells are garbage (the `value | 0` of the
 * `flatstr` package, used before, is skipped by optimized code).
 */
function flattenStrings(_key: string, value: unknown): unknown {
  if (typeof value === 'string') flatString(value);
  return value;
}

const QUOTE = 0x22;
/** Objects with more keys go to the lossless parser (the duplicate check here is quadratic). */
const MAX_FAST_KEYS = 256;
const BACKSLASH = 0x5c;

/** True for the characters a JSON number token is made of. */
function isNumberCharacter(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || code === 0x2d || code === 0x2b || code === 0x2e || code === 0x65 || code === 0x45;
}

/**
 * The fast way to the lossless result (issue 13): `text` with every integer literal written as a
 * JSON string, so that the native `JSON.parse` gives what the lossless parser gives (integers as
 * their exact decimal text, other numbers as numbers) in a fraction of its time and garbage: it
 * builds every string one character at a time, and took seconds and hundreds of MB for the
 * full_meta.json of 100,000 binlogs. `undefined` when only the lossless parser can answer exactly:
 * a key that appears twice in one object (it refuses different values), a key with an escape or
 * named `__proto__`, an integer with a leading zero, an object with hundreds of keys; then it
 * runs instead. Text that is not JSON may come back quoted: `JSON.parse` then rejects it, and the
 * lossless parser reports the error.
 */
export function quoteIntegers(text: string): string | undefined {
  // The result in flat pieces of ~64 K characters: a piece per integer would be millions of
  // small strings, alive together until the end.
  const pieces: string[] = [];
  let piece = '';
  const append = (part: string): void => {
    piece += part;
    if (piece.length >= 65536) {
      flatString(piece);
      pieces.push(piece);
      piece = '';
    }
  };
  /** Keys of the objects being read, innermost last. */
  const keys: string[][] = [];
  let copiedTo = 0;
  let i = 0;
  const length = text.length;
  while (i < length) {
    const code = text.charCodeAt(i);
    if (code === QUOTE) {
      const start = i;
      let escaped = false;
      for (i++; i < length; i++) {
        const c = text.charCodeAt(i);
        if (c === BACKSLASH) { escaped = true; i++; continue; }
        if (c === QUOTE) break;
      }
      i++;
      let next = i;
      while (next < length && isWhitespaceCode(text.charCodeAt(next))) next++;
      if (text.charCodeAt(next) === 0x3a && keys.length > 0) { // a key
        const key = text.slice(start + 1, i - 1);
        const own = keys[keys.length - 1] as string[];
        if (escaped || key === '__proto__' || own.length >= MAX_FAST_KEYS || own.includes(key)) return undefined;
        own.push(key);
      }
    } else if (code === 0x7b) { // {
      keys.push([]);
      i++;
    } else if (code === 0x7d) { // }
      keys.pop();
      i++;
    } else if (isNumberCharacter(code)) {
      const start = i;
      while (i < length && isNumberCharacter(text.charCodeAt(i))) i++;
      let digits = true;
      for (let j = code === 0x2d ? start + 1 : start; j < i; j++) {
        const c = text.charCodeAt(j);
        if (c < 0x30 || c > 0x39) { digits = false; break; }
      }
      const first = code === 0x2d ? start + 1 : start;
      if (digits && i > first) {
        if (text.charCodeAt(first) === 0x30 && i > first + 1) return undefined; // leading zero
        append(`${text.slice(copiedTo, start)}"${text.slice(start, i)}"`);
        copiedTo = i;
      }
    } else {
      i++;
    }
  }
  if (copiedTo === 0) return text;
  pieces.push(piece, text.slice(copiedTo));
  return pieces.join('');
}

function isWhitespaceCode(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x09 || code === 0x0d;
}

/** 1-based line and column of a 0-based character position in `text`. */
function lineColumn(text: string, position: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(position, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) { line++; lineStart = i + 1; }
  }
  return { line, column: end - lineStart + 1 };
}

/**
 * Parses meta JSON text losslessly (see the module comment). `file` names the file in the
 * error. Malformed JSON throws `BackupError` `E_META_MALFORMED`: "FILE is malformed JSON at
 * line L, column C (position P): what was expected".
 */
export function parseMetaText(text: string, file: string): unknown {
  const quoted = quoteIntegers(text);
  if (quoted !== undefined) {
    try {
      return JSON.parse(quoted) as unknown;
    } catch {
      // Malformed: the lossless parser below says where, in the words the errors have always used.
    }
  }
  return parseLossless(text, file);
}

/** The lossless parser's result, or its error as `E_META_MALFORMED` with the line and column. */
function parseLossless(text: string, file: string): unknown {
  try {
    return parse(text, flattenStrings, parseNumber);
  } catch (err) {
    const raw = err instanceof Error ? err.message : String(err);
    const match = / at position (\d+)\s*$/.exec(raw);
    if (match) {
      const position = Number(match[1]);
      const { line, column } = lineColumn(text, position);
      const what = raw.slice(0, match.index);
      throw new BackupError('E_META_MALFORMED',
        `${file} is malformed JSON at line ${line}, column ${column} (position ${position}): ${what}`, { cause: err });
    }
    throw new BackupError('E_META_MALFORMED', `${file} is malformed JSON: ${raw}`, { cause: err });
  }
}

/**
 * Reads the object `key` through `source` and parses it losslessly (integers as strings, see
 * the module comment).
 *
 * Errors:
 * - missing object: `BackupError` `E_META_MISSING` (kind `not-found`);
 * - bigger than `MAX_META_BYTES`: `E_META_TOO_LARGE`;
 * - not UTF-8, or not JSON: `E_META_MALFORMED` naming the file and the position;
 * - any other driver error (network, permissions, abort) is rethrown unchanged, so that its
 *   `kind` (retryable...) still reaches the engine.
 */
export async function readMetaJson(source: Driver, key: string, options: ReadMetaOptions = {}): Promise<unknown> {
  const label = options.label ?? key;
  // Only one form of the file is held while the next is made (issue 13: at 100,000 binlogs
  // full_meta.json is ~19 MB, and bytes, text, quoted text and the parsed tree together were the
  // peak of a whole replicate run): the bytes go once decoded, the text once quoted. Meta that
  // only the lossless parser can read, or that is malformed, is read again for it.
  let text: string | undefined = decodeMeta(await readMetaBytes(source, key, label, options), label);
  const quoted = quoteIntegers(text);
  if (quoted !== undefined) {
    text = undefined;
    try {
      return JSON.parse(quoted) as unknown;
    } catch {
      // Malformed: the lossless parser says where (below).
    }
  }
  return parseLossless(text ?? decodeMeta(await readMetaBytes(source, key, label, options), label), label);
}

/** `bytes` as UTF-8 text; not UTF-8 is `E_META_MALFORMED`. */
export function decodeMeta(bytes: Buffer, label: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch (err) {
    throw new BackupError('E_META_MALFORMED', `${label} is malformed: not valid UTF-8`, { cause: err });
  }
}

export interface ReadMetaOptions extends SignalOptions {
  /** How errors name the file (default: the key), e.g. `meta/full_meta.json` relative to `NAME/`. */
  readonly label?: string;
  /**
   * The file's size as a listing showed it: the bytes are then read into one buffer of that size
   * (a file that has grown or shrunk since is still read whole). @default unknown
   */
  readonly expectedBytes?: number;
  /**
   * A buffer the bytes may be read into when it is large enough (with `expectedBytes`), and where
   * a larger buffer read into is left for the next read. Only for reads whose result is no longer
   * used when the next one with the same holder starts: the bytes are overwritten.
   */
  readonly reuse?: ReusableBuffer;
}

/**
 * One buffer for meta files read one after another and dropped after their check (segment_meta,
 * then full_meta, when a backup is inspected): a buffer of their own each held both, since the
 * first, already garbage, stays allocated until the collector runs (~19 MB each at 100,000
 * binlogs, issue 13).
 */
export interface ReusableBuffer {
  buffer?: Buffer;
  /**
   * The size of the largest file to be read into it (when known, up to `MAX_META_BYTES`): the
   * first read allocates that much, so a larger file read later does not need a buffer of its own.
   */
  readonly largestBytes?: number;
}

/**
 * One buffer of an expected size that a driver's read fills in place: `allocate` hands out its
 * next bytes in order (a driver may ask for pieces ahead of those it has yielded), and `take`
 * moves each piece yielded to where the bytes so far end (a short read leaves a gap; a piece
 * from elsewhere, from a driver that ignores `allocate`, is copied). Bytes beyond the expected
 * size are kept aside and joined at the end.
 *
 * Why (issue 13): pieces gathered and then concatenated held every meta file twice, the pieces
 * staying allocated until the garbage collector found them: at 100,000 binlogs full_meta.json
 * and segment_meta.json are ~19 MB each, read one after the other at the end of a pull.
 */
class ExpectedBytes {
  readonly #whole: Buffer;
  #handedOut = 0;
  #filled = 0;
  readonly #beyond: Buffer[] = [];

  constructor(bytes: number, reuse?: ReusableBuffer) {
    const kept = reuse?.buffer;
    if (kept !== undefined && kept.length >= bytes) {
      this.#whole = kept.subarray(0, bytes);
    } else {
      const largest = reuse?.largestBytes;
      const fresh = Buffer.allocUnsafe(largest !== undefined && largest > bytes && largest <= MAX_META_BYTES ? largest : bytes);
      if (reuse !== undefined) reuse.buffer = fresh;
      this.#whole = fresh.subarray(0, bytes);
    }
  }

  readonly allocate = (size: number): Buffer => {
    if (this.#handedOut + size > this.#whole.length) return Buffer.allocUnsafe(size);
    const piece = this.#whole.subarray(this.#handedOut, this.#handedOut + size);
    this.#handedOut += size;
    return piece;
  };

  take(piece: Buffer): void {
    const whole = this.#whole;
    if (this.#beyond.length === 0 && this.#filled + piece.length <= whole.length) {
      if (piece.buffer !== whole.buffer || piece.byteOffset !== whole.byteOffset + this.#filled) piece.copy(whole, this.#filled);
      this.#filled += piece.length;
      return;
    }
    this.#beyond.push(Buffer.from(piece));
  }

  bytes(): Buffer {
    const read = this.#whole.subarray(0, this.#filled);
    return this.#beyond.length === 0 ? read : Buffer.concat([read, ...this.#beyond]);
  }
}

/** Reads a whole meta object (bounded by MAX_META_BYTES). */
export async function readMetaBytes(source: Driver, key: string, label: string, options: ReadMetaOptions): Promise<Buffer> {
  throwIfAborted(options.signal, `reading ${key}`);
  const expected = options.expectedBytes;
  const into = expected !== undefined && Number.isSafeInteger(expected) && expected > 0 && expected <= MAX_META_BYTES ? new ExpectedBytes(expected, options.reuse) : undefined;
  let stream;
  try {
    stream = await source.openRead(key, { signal: options.signal, ...(into ? { allocate: into.allocate } : {}) });
  } catch (err) {
    if (errorKind(err) === 'not-found') {
      throw new BackupError('E_META_MISSING', `${label} missing`, { kind: 'not-found', cause: err });
    }
    throw err;
  }
  const parts: Buffer[] = [];
  let total = 0;
  try {
    for await (const part of stream) {
      const buf = Buffer.isBuffer(part) ? part : Buffer.from(part as Uint8Array);
      total += buf.length;
      if (total > MAX_META_BYTES) {
        throw new BackupError('E_META_TOO_LARGE', `${label} is larger than ${MAX_META_BYTES} bytes: not a meta file`);
      }
      if (into) into.take(buf);
      else parts.push(buf);
    }
  } finally {
    stream.destroy();
  }
  return into ? into.bytes() : Buffer.concat(parts, total);
}
