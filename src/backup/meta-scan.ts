/**
 * Reading milvus-backup's big meta files without building their whole tree (issue 13).
 *
 * At 100,000 binlogs `full_meta.json` and `segment_meta.json` are ~19 MB each. Parsed whole (the
 * text, the text with its integers quoted, and the tree: an object per binlog with its
 * `log_path`) one of them took ~100 MB of heap, and `list` or `audit` inspect two backups at once.
 * Only a little of it is needed: the IDs and sizes of every binlog, once, and that every level
 * file has the right shape.
 *
 * So the bytes are kept (a Buffer, outside the V8 heap) and checked once to be JSON that the
 * fast path of ./json.ts reads exactly as the lossless parser would; the objects on the way down
 * to the large lists (the top level, each collection, each partition) become plain objects whose
 * list members are `LazyArray`s; each element of such a list (a segment with its binlogs) is
 * parsed only when it is visited, and dropped after. The walk in ./meta.ts works unchanged on
 * them. A file the check refuses (not JSON, not UTF-8, a byte order mark, a duplicate or escaped
 * key, `__proto__`, a number with a leading zero) is parsed whole exactly as before
 * (`parseMetaText`), so its value, or its error with line and column, is the same as ever.
 */
import { isUtf8 } from 'node:buffer';
import type { Driver } from '../drivers/types.js';
import { BACKSLASH, CLOSE_ARRAY, CLOSE_OBJECT, COLON, COMMA, isSpace, OPEN_ARRAY, OPEN_OBJECT, QUOTE } from '../manifest/json-stream.js';
import { decodeMeta, parseMetaText, readMetaBytes, type ReadMetaOptions } from './json.js';

/**
 * Which members become lazy lists: `key -> what their elements are`. An element is `parse`d
 * when visited, `opaque` (an object stands for itself as `{}`, only its shape is checked: it was
 * already checked to be JSON), or walked further by another spec.
 */
export type LazySpec = { readonly [key: string]: LazySpec | 'parse' | 'opaque' };

/** An array of JSON values made one at a time as they are visited (see the file comment). */
export class LazyArray {
  constructor(readonly length: number, private readonly at: (index: number) => unknown) {}

  forEach(visit: (value: unknown, index: number) => void): void {
    for (let i = 0; i < this.length; i++) visit(this.at(i), i);
  }
}


function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

/** Thrown inside the check: the file goes to the whole parse. */
class NotFast extends Error {}

/**
 * Checks that `b` is one JSON value (strictly as `JSON.parse` wants it) that the fast path reads
 * exactly as the lossless parser: no duplicate, escaped or `__proto__` key, no leading zero.
 */
function checkFast(b: Buffer): boolean {
  let i = 0;
  const n = b.length;
  const ws = (): void => { while (i < n && isSpace(b[i])) i++; };
  /** Skips a string at `i` (on its opening quote); returns whether it had an escape. */
  const string = (): boolean => {
    i++;
    let escaped = false;
    while (true) {
      if (i >= n) throw new NotFast();
      const c = b[i] as number;
      if (c === QUOTE) { i++; return escaped; }
      if (c < 0x20) throw new NotFast();
      if (c === BACKSLASH) {
        escaped = true;
        const e = b[i + 1];
        if (e === 0x75) { // \uXXXX
          for (let k = 2; k < 6; k++) {
            const h = b[i + k];
            if (h === undefined || !((h >= 0x30 && h <= 0x39) || (h >= 0x41 && h <= 0x46) || (h >= 0x61 && h <= 0x66))) throw new NotFast();
          }
          i += 6;
        } else if (e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
          i += 2;
        } else {
          throw new NotFast();
        }
      } else {
        i++;
      }
    }
  };
  const number = (): void => {
    if (b[i] === 0x2d) i++;
    if (b[i] === 0x30) {
      i++;
      if (isDigit(b[i])) throw new NotFast(); // leading zero
    } else if (isDigit(b[i])) {
      while (isDigit(b[i])) i++;
    } else {
      throw new NotFast();
    }
    if (b[i] === 0x2e) {
      i++;
      if (!isDigit(b[i])) throw new NotFast();
      while (isDigit(b[i])) i++;
    }
    if (b[i] === 0x65 || b[i] === 0x45) {
      i++;
      if (b[i] === 0x2b || b[i] === 0x2d) i++;
      if (!isDigit(b[i])) throw new NotFast();
      while (isDigit(b[i])) i++;
    }
  };
  const literal = (word: string): void => {
    for (let k = 0; k < word.length; k++) if (b[i + k] !== word.charCodeAt(k)) throw new NotFast();
    i += word.length;
  };
  // An explicit stack (nesting can be deep): per open container, its keys (objects) or null (arrays).
  const stack: (Set<string> | null)[] = [];
  const key = (keys: Set<string>): void => {
    ws();
    if (b[i] !== QUOTE) throw new NotFast();
    const start = i;
    if (string()) throw new NotFast();
    const name = b.toString('latin1', start + 1, i - 1);
    if (name === '__proto__' || keys.has(name)) throw new NotFast();
    keys.add(name);
    ws();
    if (b[i] !== COLON) throw new NotFast();
    i++;
  };
  /** Reads a value, or opens a container: true when one was opened whose first value comes next. */
  const value = (): boolean => {
    ws();
    const c = b[i];
    if (c === QUOTE) string();
    else if (c === 0x74) literal('true');
    else if (c === 0x66) literal('false');
    else if (c === 0x6e) literal('null');
    else if (c === OPEN_OBJECT) {
      i++;
      ws();
      if (b[i] === CLOSE_OBJECT) { i++; return false; }
      const keys = new Set<string>();
      stack.push(keys);
      key(keys);
      return true;
    } else if (c === OPEN_ARRAY) {
      i++;
      ws();
      if (b[i] === CLOSE_ARRAY) { i++; return false; }
      stack.push(null);
      return true;
    } else number();
    return false;
  };
  try {
    if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return false; // byte order mark
    let pending = value();
    while (pending || stack.length > 0) {
      if (pending) { pending = value(); continue; }
      ws();
      const top = stack[stack.length - 1] as Set<string> | null;
      const c = b[i];
      if (c === COMMA) {
        i++;
        if (top !== null) key(top);
        pending = true;
      } else if ((top !== null && c === CLOSE_OBJECT) || (top === null && c === CLOSE_ARRAY)) {
        i++;
        stack.pop();
      } else {
        return false;
      }
    }
    ws();
    return i === n;
  } catch (err) {
    if (err instanceof NotFast) return false;
    throw err;
  }
}

/** Where values end in bytes already checked by `checkFast`. */
class Scanner {
  constructor(private readonly b: Buffer, private readonly label: string) {}

  ws(i: number): number {
    const b = this.b;
    while (isSpace(b[i])) i++;
    return i;
  }

  /** The end (exclusive) of the value starting at `i`. */
  end(i: number): number {
    const b = this.b;
    const c = b[i];
    if (c === QUOTE) return this.stringEnd(i);
    if (c !== OPEN_OBJECT && c !== OPEN_ARRAY) {
      while (i < b.length && !isSpace(b[i]) && b[i] !== COMMA && b[i] !== CLOSE_OBJECT && b[i] !== CLOSE_ARRAY) i++;
      return i;
    }
    let depth = 0;
    for (; i < b.length; i++) {
      const d = b[i];
      if (d === QUOTE) i = this.stringEnd(i) - 1;
      else if (d === OPEN_OBJECT || d === OPEN_ARRAY) depth++;
      else if ((d === CLOSE_OBJECT || d === CLOSE_ARRAY) && --depth === 0) return i + 1;
    }
    return i;
  }

  private stringEnd(i: number): number {
    const b = this.b;
    for (i++; i < b.length; i++) {
      const c = b[i];
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) return i + 1;
    }
    return i;
  }

  /** The members of the object at `i`: key -> [start, end) of its value. */
  members(i: number): Map<string, [number, number]> {
    const b = this.b;
    const out = new Map<string, [number, number]>();
    i = this.ws(i + 1);
    while (b[i] !== CLOSE_OBJECT) {
      const keyEnd = this.stringEnd(i);
      const name = b.toString('utf8', i + 1, keyEnd - 1);
      const start = this.ws(this.ws(keyEnd) + 1); // past the colon
      const end = this.end(start);
      out.set(name, [start, end]);
      i = this.ws(end);
      if (b[i] === COMMA) i = this.ws(i + 1);
    }
    return out;
  }

  /** The elements of the array at `i`, as start and end pairs. */
  elements(i: number): number[] {
    const b = this.b;
    const out: number[] = [];
    i = this.ws(i + 1);
    while (b[i] !== CLOSE_ARRAY) {
      const end = this.end(i);
      out.push(i, end);
      i = this.ws(end);
      if (b[i] === COMMA) i = this.ws(i + 1);
    }
    return out;
  }

  /** The value at [start, end), parsed as ./json.ts parses meta (integers as their decimal text). */
  value(start: number, end: number): unknown {
    return parseMetaText(this.b.toString('utf8', start, end), this.label);
  }

  node(start: number, end: number, spec: LazySpec | 'parse' | 'opaque'): unknown {
    const c = this.b[start];
    if (spec === 'opaque' && c === OPEN_OBJECT) return {};
    if (typeof spec === 'string' || c !== OPEN_OBJECT) return this.value(start, end);
    const out: Record<string, unknown> = {};
    for (const [name, [s, e]] of this.members(start)) {
      const inner = spec[name];
      if (inner !== undefined && this.b[s] === OPEN_ARRAY) {
        const at = this.elements(s);
        out[name] = new LazyArray(at.length / 2, (index) => this.node(at[2 * index] as number, at[2 * index + 1] as number, inner));
      } else {
        out[name] = this.value(s, e);
      }
    }
    return out;
  }
}

/**
 * Reads the meta file `key` through `source` with the lists `spec` names made lazy (see the file
 * comment). A file the check refuses is read as `readMetaJson` reads it: the same value, or the
 * same `E_META_*` error, as ever. Errors otherwise as `readMetaJson`'s. The result keeps the
 * file's bytes while it is referenced.
 */
export async function readMetaLazily(source: Driver, key: string, spec: LazySpec, options: ReadMetaOptions = {}): Promise<unknown> {
  const label = options.label ?? key;
  const bytes = await readMetaBytes(source, key, label, options);
  if (isUtf8(bytes) && checkFast(bytes)) {
    const scanner = new Scanner(bytes, label);
    const start = scanner.ws(0);
    return scanner.node(start, scanner.end(start), spec);
  }
  return parseMetaText(decodeMeta(bytes, label), label);
}
