/**
 * One fingerprint per slot of a compact record table (./records.ts), without a string per file.
 *
 * Why (issue 13): a replicate run, and a pull, keep the source's and the destination's fingerprint
 * of every file until the manifest is written. As strings (`local:<size>:<mtime ns>:<inode>`, ~40
 * characters) they were ~56 bytes of heap each, two per file: ~11 MB at 100,000 files, the largest
 * thing a pull held at its peak after the paths themselves. A local fingerprint is three integers:
 * here it is kept as them (25 bytes in typed arrays) and its string is made again when a
 * checkpoint or the manifest asks for it. Any other fingerprint (SFTP, ETag, a local one not
 * written the canonical way) is kept as its UTF-8 bytes, packed one after another (a slot set
 * again leaves its old bytes unused: a slot is set a few times at most in a run).
 */
import { PackedStrings } from '../listing-index.js';
import { flatString } from '../strings.js';
import { widened } from '../typed-arrays.js';

/** A slot with no fingerprint. */
const NONE = 0;
/** A local fingerprint held as its three integers. */
const LOCAL = 1;
/** Kept as the bytes of the string it came as (`#other`). */
const OTHER = 2;
/** Kept as the string itself (`#unpaired`): one with a lone surrogate, which UTF-8 cannot give back. */
const UNPAIRED = 3;
const SURROGATE = /[\ud800-\udfff]/;

const LOCAL_FINGERPRINT = /^local:(\d{1,16}):(\d{1,20}):(\d{1,16})$/;
const MAX_MTIME_NS = 2n ** 64n - 1n;

export class FingerprintColumn {
  #kinds: Uint8Array;
  #sizes: Float64Array;
  #inodes: Float64Array;
  #mtimes: BigUint64Array;
  /** Any other fingerprint: its start in `#other` is kept in `#sizes`, its length in bytes in `#inodes`. */
  #other: PackedStrings | undefined;
  readonly #unpaired = new Map<number, string>();

  constructor(capacity: number) {
    this.#kinds = new Uint8Array(capacity);
    this.#sizes = new Float64Array(capacity);
    this.#inodes = new Float64Array(capacity);
    this.#mtimes = new BigUint64Array(capacity);
  }

  /** Makes room for `capacity` slots. */
  grow(capacity: number): void {
    if (capacity <= this.#kinds.length) return;
    this.#kinds = widened(this.#kinds, capacity);
    this.#sizes = widened(this.#sizes, capacity);
    this.#inodes = widened(this.#inodes, capacity);
    this.#mtimes = widened(this.#mtimes, capacity);
  }

  set(slot: number, fingerprint: string | undefined): void {
    this.#unpaired.delete(slot);
    if (fingerprint === undefined) {
      this.#kinds[slot] = NONE;
      return;
    }
    const local = LOCAL_FINGERPRINT.exec(fingerprint);
    if (local !== null) {
      const size = Number(local[1]);
      const mtime = BigInt(local[2] as string);
      const inode = Number(local[3]);
      // Only a fingerprint that comes back character for character (no leading zeros, no number beyond exact range).
      if (Number.isSafeInteger(size) && Number.isSafeInteger(inode) && mtime <= MAX_MTIME_NS && `local:${size}:${mtime}:${inode}` === fingerprint) {
        this.#kinds[slot] = LOCAL;
        this.#sizes[slot] = size;
        this.#mtimes[slot] = mtime;
        this.#inodes[slot] = inode;
        return;
      }
    }
    if (SURROGATE.test(fingerprint)) {
      this.#kinds[slot] = UNPAIRED;
      this.#unpaired.set(slot, fingerprint);
      return;
    }
    this.#kinds[slot] = OTHER;
    this.#other ??= new PackedStrings();
    this.#sizes[slot] = this.#other.append(fingerprint);
    this.#inodes[slot] = this.#other.lastLength;
  }

  get(slot: number): string | undefined {
    const kind = this.#kinds[slot];
    if (kind === LOCAL) return flatString(`local:${this.#sizes[slot] as number}:${this.#mtimes[slot] as bigint}:${this.#inodes[slot] as number}`);
    if (kind === OTHER) return (this.#other as PackedStrings).text(this.#sizes[slot] as number, this.#inodes[slot] as number);
    return kind === UNPAIRED ? this.#unpaired.get(slot) : undefined;
  }
}
