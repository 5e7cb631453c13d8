/**
 * The `local` driver: a folder on a local disk or a mounted NAS share (NFS/SMB), on node:fs.
 * This file holds the `Driver` methods; the jobs behind them live next to it:
 *
 * - ./tree.ts           the confined tree: real root, folders resolved and remembered, symlink checks, listing walk
 * - ./read.ts           the read pipeline (positional reads into the caller's buffers; `readHashes` hashing in place)
 * - ./write-session.ts  the partial file and its commit by rename
 * - ./copy.ts           server-side copy (reflink/copy + rename)
 * - ./fsops.ts          synchronous or asynchronous metadata calls, chosen per mount
 * - ./errors.ts         errno classification; ./options.ts the config section
 *
 * Layout: key `a/b/c.bin` is the file `<root>/a/b/c.bin`. While it is being written, its bytes
 * live in `<root>/a/b/.c.bin.offsite-partial` (src/drivers/toolkit/temp-names.ts: a
 * deterministic name, so a later run on any machine finds it and resumes); `commit` checks the
 * size and renames it onto the final name; `sync()` makes commits durable. Keys can never leave
 * the root: keys are checked before any IO, and every path is resolved to its real path so that
 * a symlink inside the root that points outside it is refused (reads, lists and writes).
 * Symlinks that stay inside the root are followed for files; `list` does not descend into
 * symlinked folders (their contents are listed under their real path already, and loops are
 * impossible). On a local file system the metadata calls of reads and writes are made
 * synchronously (see ./fsops.ts); listing and file data always go through libuv's thread pool.
 */
import { lstat, unlink } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { throwIfAborted } from '../../errors.js';
import { HashArena } from '../../hash/xxh64.js';
import { ownString } from '../../strings.js';
import {
  badArgument, checkByteCount, checkDriverKey, checkDriverPrefix, checkReadRange, checkWriteShape, copyTempName, driverClosedError, partialName, pathTypeOf, splitKey, type ErrorContext,
} from '../toolkit/index.js';
import type {
  Capabilities, Committed, CopyWithinOptions, Driver, Entry, FileHashes, ListOptions, PathType, ReadHashesOptions, ReadOptions, SignalOptions, WriteOptions, WriteSession,
} from '../types.js';
import type { Identity, Location } from '../location.js';
import { identifyLocalFolder } from './identity.js';
import { copyLocal } from './copy.js';
import { classifyFsError, isMissing } from './errors.js';
import { localPlace, type LocalOptions } from './options.js';
import { HASH_ARENA_SLOTS, HASH_PIECE_BYTES, openLocalRead, readLocalHashes } from './read.js';
import { localEntry, LocalTree, removeEmptyFolders, syncFile, syncFilesystem, syncFolder } from './tree.js';
import { openLocalWrite } from './write-session.js';

export class LocalDriver implements Driver {
  readonly description: string;
  readonly location: Location;
  readonly capabilities: Capabilities;
  readonly #tree: LocalTree;
  #closed = false;
  /** Where `readHashes` reads and hashes (made at its first call). */
  #hashArena: HashArena | undefined;
  /**
   * Committed since the last `sync()` (renamed into place but maybe not yet on disk): each folder
   * with the names of its files. Names, not whole paths: on a night that reuses most files no
   * checkpoint syncs for minutes, and 100,000 paths built by `join` (ropes and views of longer
   * strings, ~750 bytes each) were the largest thing a replicate held (issue 12).
   */
  #unsynced = new Map<string, string[]>();
  /** A file committed (written or copied) under its final name: durable at the next `sync()`. */
  readonly #committed = (file: string, folder: string): void => {
    const name = file.startsWith(folder) && file.charAt(folder.length) === sep ? file.slice(folder.length + 1) : file;
    const names = this.#unsynced.get(folder);
    if (names === undefined) this.#unsynced.set(folder, [ownString(name)]);
    else names.push(ownString(name));
  };

  constructor(readonly name: string, readonly options: LocalOptions) {
    ({ description: this.description, location: this.location } = localPlace(options));
    this.#tree = new LocalTree(name, options.root, options.metadataCalls);
    this.capabilities = {
      rangeReads: true,
      resumableWrites: true,
      atomicCommit: true,
      storedHash: false,
      serverSideCopy: true,
      minPartBytes: 1,
      maxPartBytes: 2 ** 31 - 1,
      maxParts: Infinity,
      parallelPartWrites: true,
      maxConcurrency: options.maxConcurrency,
    };
  }

  /**
   * Every file under `prefix`, in no particular order, a few folders and files read at a time
   * (./tree.ts `walk`: bounded memory). Skips folders, our temp files, and anything that is
   * neither a file nor a folder. Fails with a `KeyError` (before any IO) for a bad prefix, and
   * when it meets a symlink that points outside the root (unless `onRefused` is given: see
   * `ListOptions`, as for `requireRoot`). A missing prefix yields nothing; a folder that vanishes
   * mid-walk is skipped. Folders that `descend` turns down are not read.
   */
  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<Entry> {
    const context = { driver: this.name, action: 'list', key: prefix };
    try {
      checkDriverPrefix(this.name, prefix);
      this.#checkOpen(options.signal, context);
      yield* this.#tree.walk(prefix, context, options.signal, options);
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Size and mtime of the file at `key`; `undefined` when it does not exist, is a folder, or a
   * parent is a file. Rejects with a `KeyError` for a bad key or a symlink leaving the root.
   */
  async stat(key: string, options: SignalOptions = {}): Promise<Entry | undefined> {
    const context = { driver: this.name, action: 'stat', key };
    try {
      checkDriverKey(this.name, key);
      this.#checkOpen(options.signal, context);
      const tree = this.#tree;
      return await tree.atKey(key, context, async (path, realRoot) => {
        const ops = tree.ops;
        // One lstat answers for a regular file (the usual case); a symlink inside the root is followed.
        const link = await ops.lstatBig(path);
        if (link?.isFile()) return localEntry(key, link);
        if (!link?.isSymbolicLink()) return undefined;
        const real = await ops.realpath(path);
        if (real === undefined) return undefined; // dangling
        tree.checkInside(key, real, realRoot);
        const info = await ops.statBig(real);
        return info?.isFile() ? localEntry(key, info) : undefined;
      });
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * What `key` holds (see `Driver.whatIsAt`): an lstat, and for a symlink inside the root a stat
   * of its target; never an open. `missing` when it, or a folder above it, is not there (a
   * dangling symlink included). Rejects with a `KeyError` for a bad key or a symlink leaving the
   * root.
   */
  async whatIsAt(key: string, options: SignalOptions = {}): Promise<PathType> {
    const context = { driver: this.name, action: 'stat', key };
    try {
      checkDriverKey(this.name, key);
      this.#checkOpen(options.signal, context);
      const tree = this.#tree;
      const type = await tree.atKey(key, context, async (path, realRoot) => {
        const ops = tree.ops;
        let info = await ops.lstat(path);
        if (info?.isSymbolicLink()) {
          const real = await ops.realpath(path);
          if (real === undefined) return undefined; // dangling
          tree.checkInside(key, real, realRoot);
          info = await ops.stat(real);
        }
        return info === undefined ? undefined : pathTypeOf(info);
      });
      return type ?? 'missing';
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Streams `length` bytes (or to the end) from `offset`, with positional reads: the skipped
   * bytes are never read. An offset at or past the end gives an empty stream. Rejects with kind
   * `not-found` when the file (or a parent) is missing, or when the key holds a folder, a FIFO or
   * another special file (`E_NOT_A_FILE`, naming it; a FIFO is never waited on), with `E_BAD_ARGUMENT`
   * (`fatal`) for a bad offset or length. Read errors mid-way destroy the stream with a
   * classified `DriverError`; the signal destroys it with `AbortedError`.
   */
  async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    const context = { driver: this.name, action: 'read', key };
    try {
      checkDriverKey(this.name, key);
      const { offset, length } = checkReadRange(options, context);
      this.#checkOpen(options.signal, context);
      return await openLocalRead(this.#tree, key, offset, length, options, context);
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Reads the whole file at `key` and hashes it in place (./read.ts `readLocalHashes`): positional
   * reads into the XXH64 module's memory, no stream. Opens the file as `openRead` does (the same
   * refusals); `E_SIZE_CHANGED` (`integrity`) when it does not hold exactly `size` bytes from the
   * open to the end of the read; `E_BAD_ARGUMENT` (`fatal`) for a bad size or chunk size.
   */
  async readHashes(key: string, options: ReadHashesOptions): Promise<FileHashes> {
    const context = { driver: this.name, action: 'read', key };
    try {
      checkDriverKey(this.name, key);
      checkByteCount(options.size, 'size', context);
      if (checkByteCount(options.chunkBytes, 'chunkBytes', context) < 1) throw badArgument(context, 'chunkBytes must be at least 1, got 0');
      this.#checkOpen(options.signal, context);
      this.#hashArena ??= new HashArena(HASH_ARENA_SLOTS, HASH_PIECE_BYTES);
      return await readLocalHashes(this.#tree, key, options, this.#hashArena, context);
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Prepares writing `key` (./write-session.ts): creates the root (one level) and parent
   * folders, and opens the partial file; parts an earlier run left there are reported as
   * resumable. Nothing is written under the final name until `commit`; an existing final file
   * stays untouched until then. Rejects with `E_BAD_ARGUMENT` (`fatal`) for a bad size or part
   * size, with `permanent` when the root's parent is missing (unmounted share?), when a file is
   * in the way of a folder, or when a symlink leads outside the root.
   */
  async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    const context = { driver: this.name, action: 'open for writing', key };
    try {
      checkDriverKey(this.name, key);
      const { size, partBytes } = checkWriteShape(options, this.capabilities.maxPartBytes, context);
      this.#checkOpen(options.signal, context);
      return await openLocalWrite(this.#tree, key, size, partBytes, context, this.#committed);
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Removes the file at `key` and its partial file, then the folders this left empty (never the
   * root). Resolves when they are already gone, or when `key` is a folder (no object there).
   * Rejects (`permanent`) on permission errors or a symlink leaving the root.
   */
  async delete(key: string, options: SignalOptions = {}): Promise<void> {
    const context = { driver: this.name, action: 'delete', key };
    try {
      checkDriverKey(this.name, key);
      this.#checkOpen(options.signal, context);
      const realRoot = await this.#tree.realRoot(context);
      if (realRoot === undefined) return;
      const { folders, basename } = splitKey(key);
      const folder = await this.#tree.realFolder(folders, realRoot, context);
      if (folder === undefined) return;
      let removed = false;
      for (const path of [join(folder, basename), join(folder, partialName(basename)), join(folder, copyTempName(basename))]) {
        try {
          await unlink(path);
          removed = true;
        } catch (err) {
          // A folder at the key is no object (unlink says EISDIR on Linux, EPERM on macOS).
          const isFolder = await lstat(path).then((info) => info.isDirectory(), () => false);
          if (!isMissing(err) && !isFolder) throw err;
        }
      }
      if (removed && await removeEmptyFolders(folder, realRoot)) this.#tree.forgetAll();
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Copies `fromKey` to `toKey` (./copy.ts: `copyFile`, a reflink where the file system supports
   * it, an in-kernel copy otherwise, or with `link` a hard link, into a temp name, then fsync and
   * rename): `toKey` is never seen half-copied. A missing source rejects with `not-found`, one not
   * as `expect` says with `E_COPY_SOURCE_CHANGED`; a failed copy removes its temp file. Resolves
   * with the copy's fingerprint.
   */
  async copyWithin(fromKey: string, toKey: string, options: CopyWithinOptions = {}): Promise<Committed> {
    const context = { driver: this.name, action: `copy to ${toKey}`, key: fromKey };
    try {
      checkDriverKey(this.name, fromKey);
      checkDriverKey(this.name, toKey);
      this.#checkOpen(options.signal, context);
      return await copyLocal(this.#tree, fromKey, toKey, options, context, this.#committed);
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Makes every commit so far durable. On Linux one `syncfs(2)` of the root's filesystem
   * (`sync -f`, coreutils) flushes them all at once: fsync per file costs a device cache flush
   * each and made a 1 GiB / 1,300-file copy twice as slow. Elsewhere, or when that fails, each
   * committed file and its folder is fsynced. Rejects with the classified error of a failed fsync.
   */
  async sync(options: SignalOptions = {}): Promise<void> {
    const context: ErrorContext = { driver: this.name, action: 'sync' };
    const unsynced = this.#unsynced;
    if (unsynced.size === 0) return;
    this.#unsynced = new Map();
    try {
      throwIfAborted(options.signal, `${this.name}: sync`);
      const root = await this.#tree.realRoot(context);
      if (root !== undefined && process.platform === 'linux' && await syncFilesystem(root)) return;
      // A name that is not in its folder (never made so) is a whole path: `resolve` keeps it as it is.
      for (const [folder, names] of unsynced) for (const name of names) await syncFile(resolve(folder, name));
      for (const folder of unsynced.keys()) await syncFolder(folder);
    } catch (err) {
      for (const [folder, names] of unsynced) {
        const now = this.#unsynced.get(folder);
        if (now === undefined) this.#unsynced.set(folder, names);
        else for (const name of names) now.push(name);
      }
      throw classifyFsError(err, context);
    }
  }

  /** The root's real path and (device, inode) chain (./identity.ts). Reads only. */
  identify(options: SignalOptions = {}): Promise<Identity> {
    throwIfAborted(options.signal, `${this.name}: identify`);
    return identifyLocalFolder(this.location, this.options.root).catch((err: unknown) => {
      throw classifyFsError(err, { driver: this.name, action: 'identify the root' });
    });
  }

  /** Nothing to release; later calls reject with `E_CLOSED` (`fatal`). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
  }

  #checkOpen(signal: AbortSignal | undefined, context: ErrorContext): void {
    throwIfAborted(signal, `${this.name}: ${context.action} ${context.key ?? ''}`.trimEnd());
    if (this.#closed) throw driverClosedError({ driver: this.name, action: context.action });
  }
}
