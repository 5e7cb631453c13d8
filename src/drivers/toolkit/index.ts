/**
 * The driver toolkit: what every driver (local, sftp, s3, minio) shares, written once so that
 * it cannot drift between drivers.
 *
 * - ./errors.ts      error context (`where`), the shared refusals (one code and one kind each), classification steps
 * - ./args.ts        argument and key checks made before any IO
 * - ./temp-names.ts  temp names of unfinished writes and copies (one rule, long names shortened)
 * - ./parts.ts       `PartLedger`: part indexes, lengths, and what a commit needs
 * - ./tree.ts        folder cache (LRU), `isInside`, `splitKey` for tree-backed drivers
 * - ./semaphore.ts   `Semaphore`: a bounded number of holders, abortable waits
 * - ./fingerprint.ts the canonical fingerprint strings of `Entry.fingerprint`
 * - ./path-types.ts  what a path holds (file, folder, FIFO...) and the refusal to read anything but a file
 */
export * from './args.js';
export * from './errors.js';
export * from './fingerprint.js';
export * from './parts.js';
export * from './path-types.js';
export * from './semaphore.js';
export * from './temp-names.js';
export * from './tree.js';
