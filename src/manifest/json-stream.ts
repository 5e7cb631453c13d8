/**
 * An incremental reader of one JSON object, fed in byte pieces, that hands out the elements of
 * one array member (`files` of a manifest) one at a time instead of building the whole value.
 *
 * Why: a manifest of 100,000 files is tens of MB of JSON. `JSON.parse` of it needs the bytes,
 * the decoded string and every record at once (issue 13: `offsite list` peaked near 1 GB). This
 * reader holds one element at a time: each other member and each element is cut out by a small
 * scanner (strings, escapes and nesting only) and decoded by `JSON.parse`, so what a value means
 * is exactly what `JSON.parse` says; the scanner only finds where values end.
 *
 * Events, in the order of the text: `member` (a member other than the streamed one, with its
 * value), `array-start` (the streamed member begins, and is an array), `element` (one of its
 * elements), `end` (the object closed; nothing but whitespace may follow). A streamed member
 * that is not an array comes as a `member`. Bad structure throws `JsonStreamError` naming the
 * byte offset; a value `JSON.parse` refuses throws it with `JSON.parse`'s message.
 */

export type JsonStreamEvent =
  | { readonly type: 'member'; readonly key: string; readonly value: unknown }
  | { readonly type: 'array-start'; readonly key: string }
  | { readonly type: 'element'; readonly value: unknown }
  | { readonly type: 'end' };

export class JsonStreamError extends Error {}

/** Largest single value (one member or one element) in bytes: a bound against a runaway input. */
export const MAX_VALUE_BYTES = 256 * 1024 * 1024;

/** JSON's structural bytes, for the byte-level scanners here and in src/backup/meta-scan.ts. */
export const QUOTE = 0x22;
export const BACKSLASH = 0x5c;
export const COMMA = 0x2c;
export const COLON = 0x3a;
export const OPEN_OBJECT = 0x7b;
export const CLOSE_OBJECT = 0x7d;
export const OPEN_ARRAY = 0x5b;
export const CLOSE_ARRAY = 0x5d;

/** JSON whitespace (an index past the end is not). */
export function isSpace(c: number | undefined): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Where the reader is between values. */
type State =
  | 'start' // before `{`
  | 'first-key' // after `{`: a key or `}`
  | 'key' // after `,`: a key
  | 'colon'
  | 'value'
  | 'first-element' // after `[` of the streamed member: an element or `]`
  | 'element'
  | 'after-element' // `,` or `]`
  | 'after-value' // `,` or `}`
  | 'done';

export class StreamedObjectReader {
  private buffer: Buffer = Buffer.alloc(0);
  private position = 0;
  /** Bytes of earlier pieces before `buffer` (for error offsets). */
  private consumed = 0;
  private state: State = 'start';
  private key = '';
  /** The value being cut out: pieces from earlier buffers, and where it starts in this one. */
  private capturing = false;
  private captured: Buffer[] = [];
  private capturedBytes = 0;
  private captureFrom = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private primitive = false;

  /** @param streamedKey the member whose array elements are handed out one by one */
  constructor(private readonly streamedKey: string) {}

  /** Adds the next piece of input. Call only after `next()` returned `undefined`. */
  push(piece: Buffer): void {
    if (this.capturing && this.captureFrom < this.buffer.length) this.keepCaptured(this.buffer.subarray(this.captureFrom));
    this.consumed += this.buffer.length;
    this.buffer = piece;
    this.position = 0;
    this.captureFrom = 0;
  }

  /** The next event, or `undefined` when more input is needed. */
  next(): JsonStreamEvent | undefined {
    while (true) {
      const state = this.state;
      if (state === 'value' || state === 'element' || state === 'first-element') {
        if (!this.capturing) {
          const c = this.peekToken();
          if (c === undefined) return undefined;
          if (state === 'first-element') {
            if (c === CLOSE_ARRAY) { this.position++; this.state = 'after-value'; continue; }
            this.state = 'element';
          } else if (state === 'value' && this.key === this.streamedKey && c === OPEN_ARRAY) {
            this.position++;
            this.state = 'first-element';
            return { type: 'array-start', key: this.key };
          }
        }
        const text = this.scanValue();
        if (text === undefined) return undefined;
        const value = this.decode(text);
        if (this.state === 'element') {
          this.state = 'after-element';
          return { type: 'element', value };
        }
        this.state = 'after-value';
        return { type: 'member', key: this.key, value };
      }
      if (state === 'first-key' || state === 'key') {
        if (!this.capturing) {
          const c = this.peekToken();
          if (c === undefined) return undefined;
          if (state === 'first-key' && c === CLOSE_OBJECT) { this.position++; this.state = 'done'; return { type: 'end' }; }
          if (c !== QUOTE) this.fail(`expected a member name, found ${this.describe(c)}`);
        }
        const text = this.scanValue();
        if (text === undefined) return undefined;
        this.key = this.decode(text) as string;
        this.state = 'colon';
        continue;
      }
      const c = this.peekToken();
      if (c === undefined) return undefined;
      switch (state) {
        case 'start':
          this.expect(c, OPEN_OBJECT, '{');
          this.state = 'first-key';
          break;
        case 'colon':
          this.expect(c, COLON, ':');
          this.state = 'value';
          break;
        case 'after-element':
          if (c === COMMA) { this.position++; this.state = 'element'; break; }
          this.expect(c, CLOSE_ARRAY, ', or ]');
          this.state = 'after-value';
          break;
        case 'after-value':
          if (c === COMMA) { this.position++; this.state = 'key'; break; }
          this.expect(c, CLOSE_OBJECT, ', or }');
          this.state = 'done';
          return { type: 'end' };
        case 'done':
          this.fail(`unexpected ${this.describe(c)} after the end of the object`);
      }
    }
  }

  /** Call at the end of the input: throws unless the object was complete. */
  finish(): void {
    if (this.state !== 'done') this.fail('the input ends before the object does (truncated)');
  }

  /** The next byte that is not whitespace, without consuming it; `undefined` at the end of this piece. */
  private peekToken(): number | undefined {
    const buffer = this.buffer;
    while (this.position < buffer.length && isSpace(buffer[this.position] as number)) this.position++;
    return this.position < buffer.length ? buffer[this.position] : undefined;
  }

  private expect(c: number, wanted: number, what: string): void {
    if (c !== wanted) this.fail(`expected ${what}, found ${this.describe(c)}`);
    this.position++;
  }

  private describe(c: number): string {
    return c >= 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `byte 0x${c.toString(16).padStart(2, '0')}`;
  }

  private fail(message: string): never {
    throw new JsonStreamError(`${message} at byte ${this.consumed + this.position}`);
  }

  private keepCaptured(part: Buffer): void {
    this.capturedBytes += part.length;
    if (this.capturedBytes > MAX_VALUE_BYTES) this.fail(`a single value is larger than ${MAX_VALUE_BYTES} bytes`);
    // A copy: the piece it comes from may be a pooled buffer that its reader reuses.
    this.captured.push(Buffer.from(part));
  }

  /**
   * Cuts out the value that starts at the next non-space byte: a string, an object or array
   * (to its matching close, brackets inside strings ignored), or a number/literal (up to the
   * next delimiter). Returns its text, or `undefined` when it continues in the next piece.
   */
  private scanValue(): string | undefined {
    const buffer = this.buffer;
    let i = this.position;
    if (!this.capturing) {
      const c = this.peekToken();
      if (c === undefined) return undefined;
      i = this.position;
      this.capturing = true;
      this.captureFrom = i;
      this.depth = 0;
      this.inString = false;
      this.escaped = false;
      this.primitive = c !== QUOTE && c !== OPEN_OBJECT && c !== OPEN_ARRAY;
    }
    let complete = false;
    for (; i < buffer.length; i++) {
      const c = buffer[i] as number;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) {
          this.inString = false;
          if (this.depth === 0) { i++; complete = true; break; }
        }
      } else if (this.primitive) {
        if (isSpace(c) || c === COMMA || c === CLOSE_OBJECT || c === CLOSE_ARRAY) { complete = true; break; }
      } else if (c === QUOTE) {
        this.inString = true;
      } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        this.depth++;
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        if (--this.depth === 0) { i++; complete = true; break; }
      }
    }
    this.position = i;
    if (!complete) {
      if (this.capturedBytes + (i - this.captureFrom) > MAX_VALUE_BYTES) this.fail(`a single value is larger than ${MAX_VALUE_BYTES} bytes`);
      return undefined;
    }
    const tail = buffer.subarray(this.captureFrom, i);
    const text = this.captured.length === 0 ? tail.toString('utf8') : Buffer.concat([...this.captured, tail]).toString('utf8');
    this.capturing = false;
    this.captured = [];
    this.capturedBytes = 0;
    return text;
  }

  private decode(text: string): unknown {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new JsonStreamError(`${(err as Error).message} (in the value ending at byte ${this.consumed + this.position})`);
    }
  }
}
