/**
 * Part bookkeeping of a write session, the same in every driver: which parts exist (index
 * checks), how long each must be (length checks), which ones this session wrote or confirmed
 * (`matches`), and the refusal of a commit with holes. Parts are numbered from 0; part `i` covers
 * bytes `[i * partBytes, min(size, (i + 1) * partBytes))` (src/drivers/types.ts).
 *
 * Refusals: a bad index or a part of the wrong length is `E_BAD_ARGUMENT` (kind `fatal`); a
 * commit with a part neither written nor confirmed is `E_MISSING_PART` (kind `fatal`, which
 * keeps the resumable state: see ./errors.ts).
 */
import { partCount, partRange } from '../keys.js';
import { badArgument, missingPartError, type ErrorContext } from './errors.js';

export interface PartRange {
  readonly start: number;
  readonly end: number;
}

export class PartLedger {
  /** Number of parts (0 for an empty object). */
  readonly count: number;
  readonly #stored = new Set<number>();

  constructor(readonly size: number, readonly partBytes: number) {
    this.count = partCount(size, partBytes);
  }

  /** Byte range of part `index` (unchecked). */
  range(index: number): PartRange {
    return partRange(index, this.size, this.partBytes);
  }

  /** The range of part `index`; `E_BAD_ARGUMENT` when there is no such part. */
  checkIndex(index: number, context: ErrorContext): PartRange {
    if (!Number.isInteger(index) || index < 0 || index >= this.count) {
      throw badArgument(context, `part ${index} does not exist (parts are 0..${this.count - 1})`);
    }
    return this.range(index);
  }

  /** The range of part `index`; `E_BAD_ARGUMENT` for a bad index or when `bytes` is not exactly that long. */
  checkPart(index: number, bytes: Uint8Array, context: ErrorContext): PartRange {
    const range = this.checkIndex(index, context);
    if (bytes.byteLength !== range.end - range.start) {
      throw badArgument(context, `part ${index} must have ${range.end - range.start} bytes, got ${bytes.byteLength}`);
    }
    return range;
  }

  /** The parts lying wholly inside the first `bytes` bytes (what a partial file of that size holds). */
  partsWithin(bytes: number): Set<number> {
    const parts = new Set<number>();
    for (let index = 0; index < this.count && this.range(index).end <= bytes; index++) parts.add(index);
    return parts;
  }

  /** Part `index` is stored (written, or confirmed by `matches`) in this session. */
  record(index: number): void {
    this.#stored.add(index);
  }

  /** Part `index` is no longer known to be stored (being rewritten, or found to differ). */
  forget(index: number): void {
    this.#stored.delete(index);
  }

  /** Nothing is known to be stored any more (the temp file vanished). */
  clear(): void {
    this.#stored.clear();
  }

  has(index: number): boolean {
    return this.#stored.has(index);
  }

  /** Parts neither written nor confirmed in this session, in order. */
  missing(): number[] {
    const missing: number[] = [];
    for (let index = 0; index < this.count; index++) if (!this.#stored.has(index)) missing.push(index);
    return missing;
  }

  /** Rejects a commit with holes: `E_MISSING_PART`, kind `fatal`. */
  requireComplete(context: ErrorContext): void {
    const missing = this.missing();
    if (missing.length > 0) throw missingPartError(context, missing, this.count);
  }
}
