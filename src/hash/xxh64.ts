/**
 * XXH64 hashing (xxhash-wasm) of chunks and whole files. Hashes are written as
 * `xxh64:<16 lower-case hex digits>` everywhere (manifest, S3 metadata, messages), so that the
 * algorithm is always named next to the value.
 */
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

/** The process-wide hasher (the WASM module is instantiated once). */
export function getHasher(): Promise<Hasher> {
  instance ??= xxhashWasm().then((api) => ({
    hash: (bytes: Uint8Array) => format(api.h64Raw(bytes)),
    create: () => {
      const state = api.create64();
      const stream: StreamingHash = {
        update(bytes: Uint8Array) { state.update(bytes); return stream; },
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
