/**
 * XXH64 hashing (xxhash-wasm) of chunks and whole files. Hashes are written as
 * `xxh64:<16 lower-case hex digits>` everywhere (manifest, S3 metadata, messages), so that the
 * algorithm is always named next to the value.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import xxhashWasm from 'xxhash-wasm';

export const HASH_ALGORITHM = 'xxh64';

export interface StreamingHash {
  update(bytes: Uint8Array): StreamingHash;
  /** The hash of everything passed to `update`, as `xxh64:<hex>`. */
  digest(): string;
}

export interface Hasher {
  /** Hash of one buffer, as `xxh64:<hex>`. */
  hash(bytes: Uint8Array): string;
  /** A streaming hash for a whole file. */
  create(): StreamingHash;
}

let instance: Promise<Hasher> | undefined;

function format(value: bigint): string {
  return `${HASH_ALGORITHM}:${value.toString(16).padStart(16, '0')}`;
}

/**
 * Inputs longer than this are hashed in slices of this size (streaming, same hash). xxhash-wasm
 * copies its input into the module's memory and then hashes it there: a whole 8 MiB chunk was
 * copied to memory and read back from memory; a slice is read back from the CPU cache. Measured
 * 30-40% less time per chunk (the copy out of a `SharedArrayBuffer`, a pooled chunk, is V8's
 * slow relaxed copy: it costs more than the hashing itself).
 */
const SLICE_BYTES = 256 * 1024;

/** Feeds `bytes` to a streaming XXH64 state in `SLICE_BYTES` slices. */
function updateInSlices(state: { update(bytes: Uint8Array): unknown }, bytes: Uint8Array): void {
  for (let offset = 0; offset < bytes.length; offset += SLICE_BYTES) state.update(bytes.subarray(offset, offset + SLICE_BYTES));
}

/** The process-wide hasher (the WASM module is instantiated once). */
export function getHasher(): Promise<Hasher> {
  instance ??= xxhashWasm().then((api) => ({
    hash: (bytes: Uint8Array) => {
      if (bytes.length <= 2 * SLICE_BYTES) return format(api.h64Raw(bytes));
      const state = api.create64();
      updateInSlices(state, bytes);
      return format(state.digest());
    },
    create: () => {
      const state = api.create64();
      const stream: StreamingHash = {
        update(bytes: Uint8Array) { updateInSlices(state, bytes); return stream; },
        digest: () => format(state.digest()),
      };
      return stream;
    },
  }));
  return instance;
}

/** True for a well-formed hash string. */
export function isHash(value: unknown): value is string {
  return typeof value === 'string' && /^xxh64:[0-9a-f]{16}$/.test(value);
}

/** Two hex digits of every byte value. */
const HEX_BYTES = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

function hex8(value: number): string {
  return (HEX_BYTES[value >>> 24] as string) + (HEX_BYTES[(value >>> 16) & 255] as string) + (HEX_BYTES[(value >>> 8) & 255] as string) + (HEX_BYTES[value & 255] as string);
}

/**
 * A hash string (`isHash`) as its high and low 32 bits: for tables that keep a hash per file in
 * typed arrays (8 bytes instead of a ~40-byte string). `hashOfHalves` writes it back.
 */
export function hashHalves(hash: string): [high: number, low: number] {
  return [Number.parseInt(hash.slice(6, 14), 16), Number.parseInt(hash.slice(14, 22), 16)];
}

/** The hash string of `hashHalves`' halves (by table: several times faster than `toString(16)`). */
export function hashOfHalves(high: number, low: number): string {
  return `${HASH_ALGORITHM}:${hex8(high)}${hex8(low)}`;
}

/** The exports of xxhash-wasm's module (see `xxhashModule`) that an arena uses. */
interface Xxh64Exports {
  readonly mem: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  init64(state: number, seed: bigint): void;
  update64(state: number, input: number, length: number): void;
  digest64(state: number): bigint;
}

/** The part of the WebAssembly global used here (the compiler's `lib` leaves it out, as a DOM type). */
interface WebAssemblyApi {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object) => { readonly exports: unknown };
}
const wasm = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
let wasmModule: object | undefined;

/**
 * xxhash-wasm's compiled module, as the package ships it for runtimes that load `.wasm` files
 * themselves (`workerd/xxhash.wasm`, the same bytes its JavaScript entry embeds): instantiated
 * here, the module's memory is ours to read files into. Exports `mem`, `init64(state, seed)`,
 * `update64(state, ptr, len)` and `digest64(state)` (a state is 88 bytes of that memory).
 */
function xxhashModule(): object {
  if (wasmModule !== undefined) return wasmModule;
  const file = join(dirname(createRequire(import.meta.url).resolve('xxhash-wasm')), '..', 'workerd', 'xxhash.wasm');
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new Error(`cannot load the XXH64 module of the installed xxhash-wasm package (${(err as Error).message}); reinstall the dependencies (npm ci)`, { cause: err });
  }
  wasmModule = new wasm.Module(bytes);
  return wasmModule;
}

/** Where an arena keeps the hash state being updated (88 bytes), its copy area and its slots. */
const STATE_AT = 0;
const STATE_BYTES = 88;
const COPY_AT = 128;
const COPY_BYTES = 256 * 1024;
const SLOTS_AT = 512 * 1024;
const WASM_PAGE_BYTES = 64 * 1024;

/**
 * Read buffers inside the XXH64 module's own memory, hashed where they lie (issue 13: deep
 * verify at the speed of reading). A reader asks `allocate` for its buffers (the drivers'
 * `ReadOptions.allocate`): the bytes read land in the module's memory and `ChunkHash.update`
 * hashes them there, where xxhash-wasm's API (`getHasher`) copies every input into that memory
 * first (out of a pooled `SharedArrayBuffer`, V8's slow relaxed copy): that copy cost more CPU
 * than the hashing itself, and it ran on the main thread, the one a deep verify waits for.
 *
 * The arena is a module instance of its own, its memory grown once to `slotCount` slots of
 * `slotBytes`: a memory never grows again, since growing detaches every view on it. When every
 * slot is taken, `allocate` gives an ordinary buffer, hashed through a copy: slower, never wrong.
 * A slot is handed out once and returns only through `release` (see `ArenaRead`); a slot whose read was abandoned
 * (a stream destroyed with reads in flight) is never released, so no read can land in a slot
 * that was given to another.
 */
export class HashArena {
  readonly #exports: Xxh64Exports;
  readonly #memory: Uint8Array;
  readonly #free: number[] = [];
  /** 1 for a slot handed out and not released. */
  readonly #taken: Uint8Array;

  /**
   * @param slotCount buffers of `slotBytes` in the arena
   * @param slotBytes bytes of each
   */
  constructor(readonly slotCount: number, readonly slotBytes: number) {
    this.#exports = new wasm.Instance(xxhashModule()).exports as unknown as Xxh64Exports;
    const bytes = SLOTS_AT + slotCount * slotBytes;
    const memory = this.#exports.mem;
    if (memory.buffer.byteLength < bytes) memory.grow(Math.ceil((bytes - memory.buffer.byteLength) / WASM_PAGE_BYTES));
    this.#memory = new Uint8Array(memory.buffer);
    this.#taken = new Uint8Array(slotCount);
    for (let slot = slotCount - 1; slot >= 0; slot--) this.#free.push(slot);
  }

  /** Slots not handed out. */
  get freeSlots(): number {
    return this.#free.length;
  }

  /** A buffer of `size` bytes: a slot of the arena when one is free and large enough, else one of its own. */
  allocate = (size: number): Buffer => {
    if (size > this.slotBytes || size === 0) return Buffer.allocUnsafe(size);
    const slot = this.#free.pop();
    if (slot === undefined) return Buffer.allocUnsafe(size);
    this.#taken[slot] = 1;
    return Buffer.from(this.#memory.buffer, SLOTS_AT + slot * this.slotBytes, size);
  };

  /** The slot holding `bytes` (a slot or a part of one), or -1 for bytes outside the arena. */
  slotOf(bytes: Uint8Array): number {
    if (bytes.buffer !== this.#memory.buffer || bytes.byteOffset < SLOTS_AT) return -1;
    return Math.floor((bytes.byteOffset - SLOTS_AT) / this.slotBytes);
  }

  /** Returns a slot (given by `slotOf`) to the arena; no-op for -1 or a slot not handed out. */
  release(slot: number): void {
    if (slot < 0 || this.#taken[slot] !== 1) return;
    this.#taken[slot] = 0;
    this.#free.push(slot);
  }

  /** The buffers of one read stream: see `ArenaRead`. */
  read(): ArenaRead {
    return new ArenaRead(this);
  }

  /** A streaming XXH64 whose updates read the arena's slots in place. */
  create(): StreamingHash {
    const state = new Uint8Array(STATE_BYTES);
    const exports = this.#exports;
    const memory = this.#memory;
    memory.fill(0, STATE_AT, STATE_AT + STATE_BYTES);
    exports.init64(STATE_AT, 0n);
    state.set(memory.subarray(STATE_AT, STATE_AT + STATE_BYTES));
    const stream: StreamingHash = {
      update: (bytes: Uint8Array) => {
        memory.set(state, STATE_AT);
        if (bytes.buffer === memory.buffer) {
          exports.update64(STATE_AT, bytes.byteOffset, bytes.length);
        } else {
          for (let offset = 0; offset < bytes.length; offset += COPY_BYTES) {
            const slice = bytes.subarray(offset, offset + COPY_BYTES);
            memory.set(slice, COPY_AT);
            exports.update64(STATE_AT, COPY_AT, slice.length);
          }
        }
        state.set(memory.subarray(STATE_AT, STATE_AT + STATE_BYTES));
        return stream;
      },
      digest: () => {
        memory.set(state, STATE_AT);
        return format(BigInt.asUintN(64, exports.digest64(STATE_AT)));
      },
    };
    return stream;
  }
}

/**
 * The slots one read stream was given (`allocate`, its `ReadOptions.allocate`), returned to the
 * arena as the reader is passed the stream's bytes (`passedOn`): a stream fills its buffers in
 * order, so once the reader has had as many bytes as were allocated up to the end of a slot, that
 * slot holds nothing the stream has still to pass on. Counting bytes, not buffers, holds whatever
 * a stream does on the way: a wrapper that passes a buffer on in slices (the bandwidth limit), a
 * stream that joins buffered pieces into one (a copy). A short read only delays the return. Once
 * the stream has ended, `finish` returns the rest; a read stopped early returns nothing more: its
 * reads in flight may still land in its slots (see `HashArena`).
 */
export class ArenaRead {
  readonly #slots: number[] = [];
  readonly #ends: number[] = [];
  #next = 0;
  #allocated = 0;
  #passed = 0;

  constructor(private readonly arena: HashArena) {}

  allocate = (size: number): Buffer => {
    const buffer = this.arena.allocate(size);
    this.#allocated += size;
    const slot = this.arena.slotOf(buffer);
    if (slot >= 0) {
      this.#slots.push(slot);
      this.#ends.push(this.#allocated);
    }
    return buffer;
  };

  /** The reader has been passed `bytes` more bytes of the stream. */
  passedOn(bytes: number): void {
    this.#passed += bytes;
    while (this.#next < this.#slots.length && (this.#ends[this.#next] as number) <= this.#passed) this.arena.release(this.#slots[this.#next++] as number);
  }

  /** The stream has ended (no read in flight): every slot goes back. */
  finish(): void {
    while (this.#next < this.#slots.length) this.arena.release(this.#slots[this.#next++] as number);
  }
}
