/**
 * The `local` driver: a folder on a local disk or a mounted NAS share (NFS/SMB), on
 * node:fs/promises.
 *
 * Layout: key `a/b/c.bin` is the file `<root>/a/b/c.bin`. While it is being written, its bytes
 * live in `<root>/a/b/.c.bin.offsite-partial` (a deterministic name, so a later run on any
 * machine finds it and resumes); `commit` checks the size, fsyncs, renames it onto the final
 * name and fsyncs the folder. Keys can never leave the root: `checkKey` refuses `..`, absolute
 * paths and the like before any IO, and every path is resolved to its real path so that a
 * symlink inside the root that points outside it is refused (reads, lists and writes). Symlinks
 * that stay inside the root are followed for files; `list` does not descend into symlinked
 * folders (their contents are listed under their real path already, and loops are impossible).
 *
 * Folders are resolved one level at a time (an lstat per level, realpath only for a symlink) and
 * remembered (`#folders`, a bounded LRU), so a file in a known folder costs one syscall to find:
 * realpath(3) per key did a readlink per path component, ~60 syscalls per copied file of a
 * milvus binlog tree. A remembered folder that has vanished (removed by us, or by something else)
 * is resolved again when an operation finds nothing under it. On a local file system the
 * metadata calls of reads and writes are made synchronously (see ./fsops.ts); listing and file
 * data always go through libuv's thread pool.
 *
 * Races with other processes changing the tree at the same moment (a symlink swapped in
 * between the check and the use) are not defended against: the root belongs to offsite.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, lstat, mkdir, open, realpath, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { Readable } from 'node:stream';
import { AbortedError, DriverError, KeyError, OffsiteError, throwIfAborted } from '../../errors.js';
import { checkKey, checkPrefix, partCount, partRange } from '../keys.js';
import type { Capabilities, CommitOptions, Driver, Entry, ReadOptions, SignalOptions, WriteOptions, WriteSession } from '../types.js';
import { classifyFsError, errnoOf, isMissing, notFoundError, type ErrorContext } from './errors.js';
import { ASYNC_OPS, opsFor, pread, pwrite, type FsOps } from './fsops.js';
import type { LocalOptions } from './options.js';

/** Suffix of the temp file that holds an unfinished write: `.<basename>.offsite-partial`. */
const PARTIAL_SUFFIX = '.offsite-partial';
/** Our temp files: partial writes and in-progress `copyWithin` copies. Never listed. */
const TEMP_NAME = /^\..+\.offsite-(?:partial|copy-[0-9a-f]{16})$/;
/** Bytes per read when streaming a file. */
const READ_CHUNK_BYTES = 256 * 1024;
/** Largest read piece a caller may ask for (`ReadOptions.pieceBytes`). */
const MAX_READ_PIECE_BYTES = 64 * 1024 * 1024;
/** Temp files are opened without following a symlink planted under their name. */
const TEMP_OPEN_FLAGS = constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW;

export function partialName(basename: string): string {
  return `.${basename}${PARTIAL_SUFFIX}`;
}

export function isTempName(name: string): boolean {
  return TEMP_NAME.test(name);
}

function splitKey(key: string): { folders: string[]; basename: string } {
  const segments = key.split('/');
  const basename = segments.pop() as string;
  return { folders: segments, basename };
}

function isInside(path: string, realRoot: string): boolean {
  return path === realRoot || path.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep);
}

function checkByteCount(value: unknown, what: string, driver: string, key: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new DriverError('E_BAD_ARGUMENT', `${driver}: ${key}: ${what} must be a non-negative integer, got ${String(value)}`, { kind: 'fatal' });
  }
  return value;
}

/** `syncfs(2)` of the filesystem holding `path`, through coreutils' `sync -f`; false when unavailable. */
function syncFilesystem(path: string): Promise<boolean> {
  return new Promise((resolvePromise) => {
    execFile('sync', ['-f', path], { timeout: 600_000 }, (err) => resolvePromise(!err));
  });
}

/** fsync of a folder, so that a rename in it survives a power cut. Shares that refuse it are tolerated. */
async function syncFolder(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY);
  try {
    await handle.sync();
  } catch (err) {
    // SMB/CIFS and some FUSE mounts cannot fsync a folder; the rename is then as durable as they make it.
    if (!['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR', 'EBADF', 'EPERM', 'EACCES'].includes(errnoOf(err) ?? '')) throw err;
  } finally {
    await handle.close();
  }
}

/** Folders and files a listing reads at once. */
const LIST_CONCURRENCY = 8;
/** Entries a listing holds for its reader before it stops reading ahead. */
const LIST_READY_ENTRIES = 4096;
/** Folders remembered by one driver (see the file comment): enough for the locality of a sorted walk. */
const FOLDER_CACHE_ENTRIES = 4096;

const missingAsUndefined = (err: unknown): undefined => {
  if (isMissing(err)) return undefined;
  throw err;
};

export class LocalDriver implements Driver {
  readonly description: string;
  readonly capabilities: Capabilities;
  #realRoot: string | undefined;
  #closed = false;
  /** Committed since the last `sync()`: renamed into place but maybe not yet on disk. */
  #unsynced = { files: new Set<string>(), folders: new Set<string>() };
  /** Real paths of folders met so far, by folder key (`a/b`), each checked to be inside the root. */
  readonly #folders = new Map<string, string>();
  /** Folder lookups in flight, so that concurrent calls share one. */
  readonly #resolving = new Map<string, Promise<string | undefined>>();
  /** Metadata calls: synchronous once the root is known to be on a local file system (./fsops.ts). */
  #ops: FsOps = ASYNC_OPS;

  constructor(readonly name: string, readonly options: LocalOptions) {
    this.description = `local:${options.root}`;
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
   * Walks the folder tree under `prefix`, a few folders and files at a time (`readdir` of one
   * folder, `stat` of each file: a thread-pool round trip each where the calls are asynchronous,
   * which is what a walk of 100,000 files in 70,000 folders costs), yielding files as they are
   * found, in no particular order
   * (no whole-tree array; at most a few thousand entries wait for the reader). Skips folders,
   * our temp files, and anything
   * that is neither a file nor a folder. Fails with a `KeyError` (before any IO) for a bad
   * prefix, and with a `permanent` `DriverError` when it meets a symlink that points outside
   * the root. A missing prefix yields nothing; a folder that vanishes mid-walk is skipped.
   */
  async *list(prefix: string, options: SignalOptions = {}): AsyncIterable<Entry> {
    const context = { driver: this.name, action: 'list', key: prefix };
    try {
      this.#checkPrefix(prefix);
      this.#checkOpen(options.signal, context);
      const realRoot = await this.#findRealRoot(context);
      if (realRoot === undefined) return;
      const folderKey = prefix.slice(0, prefix.lastIndexOf('/') + 1);
      const segments = folderKey === '' ? [] : folderKey.slice(0, -1).split('/');
      this.#forget(segments); // a listing is rare and must see the tree as it is now
      const start = await this.#realFolder(segments, realRoot, context);
      if (start === undefined) return;
      yield* this.#walk(start, folderKey, prefix, realRoot, options.signal);
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  async *#walk(start: string, startKey: string, prefix: string, realRoot: string, signal: AbortSignal | undefined): AsyncGenerator<Entry> {
    type Task = { readonly path: string; readonly key: string; readonly kind: 'folder' | 'file' | 'link' };
    const tasks: Task[] = [{ path: start, key: startKey, kind: 'folder' }];
    const ready: Entry[] = [];
    let running = 0;
    let failure: { error: unknown } | undefined;
    let stopped = false;
    let wakeReader: (() => void) | undefined;
    const wake = (): void => { const w = wakeReader; wakeReader = undefined; w?.(); };
    const ops = this.#ops;
    const run = async (task: Task): Promise<void> => {
      if (task.kind === 'folder') {
        const dirents = await ops.readdir(task.path);
        if (dirents === undefined) return; // vanished mid-walk
        for (const dirent of dirents) {
          if (isTempName(dirent.name)) continue;
          const key = task.key + dirent.name;
          const path = join(task.path, dirent.name);
          if (dirent.isDirectory()) {
            const childKey = `${key}/`;
            if (childKey.startsWith(prefix) || prefix.startsWith(childKey)) tasks.push({ path, key: childKey, kind: 'folder' });
          } else if (key.startsWith(prefix) && (dirent.isFile() || dirent.isSymbolicLink())) {
            tasks.push({ path, key, kind: dirent.isFile() ? 'file' : 'link' });
          }
        }
        return;
      }
      let path = task.path;
      if (task.kind === 'link') {
        const real = await ops.realpath(path);
        if (real === undefined) return; // dangling
        this.#checkInside(task.key, real, realRoot);
        path = real;
      }
      const info = await ops.stat(path);
      if (info?.isFile()) ready.push({ key: task.key, size: info.size, mtimeMs: Math.floor(info.mtimeMs) });
    };
    const spawn = (): void => {
      while (running < LIST_CONCURRENCY && tasks.length > 0 && ready.length < LIST_READY_ENTRIES && !stopped && failure === undefined) {
        running++;
        run(tasks.pop() as Task).then(
          () => { running--; spawn(); wake(); },
          (error: unknown) => { running--; failure ??= { error }; wake(); },
        );
      }
    };
    try {
      for (;;) {
        spawn();
        while (ready.length > 0) {
          throwIfAborted(signal, `${this.name}: list ${prefix}`);
          yield ready.pop() as Entry;
        }
        if (failure !== undefined) throw failure.error;
        throwIfAborted(signal, `${this.name}: list ${prefix}`);
        spawn();
        if (running === 0 && tasks.length === 0 && ready.length === 0) return;
        if (ready.length === 0) await new Promise<void>((resolve) => { wakeReader = resolve; });
      }
    } finally {
      stopped = true;
    }
  }

  /**
   * Size and mtime of the file at `key`; `undefined` when it does not exist, is a folder, or a
   * parent is a file. Rejects with a `KeyError` for a bad key or a symlink leaving the root.
   */
  async stat(key: string, options: SignalOptions = {}): Promise<Entry | undefined> {
    const context = { driver: this.name, action: 'stat', key };
    try {
      this.#checkKey(key);
      this.#checkOpen(options.signal, context);
      return await this.#atKey(key, context, async (path, realRoot) => {
        const ops = this.#ops;
        let info = await ops.lstat(path);
        if (info?.isSymbolicLink()) {
          const real = await ops.realpath(path);
          if (real === undefined) return undefined; // dangling
          this.#checkInside(key, real, realRoot);
          info = await ops.stat(real);
        }
        return info?.isFile() ? { key, size: info.size, mtimeMs: Math.floor(info.mtimeMs) } : undefined;
      });
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Streams `length` bytes (or to the end) from `offset`, with positional reads: the skipped
   * bytes are never read. An offset at or past the end gives an empty stream. Rejects with kind
   * `not-found` when the file (or a parent) is missing or is a folder. Read errors mid-way
   * destroy the stream with a classified `DriverError`; the signal destroys it with `AbortedError`.
   */
  async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    const context = { driver: this.name, action: 'read', key };
    const { signal } = options;
    try {
      this.#checkKey(key);
      const offset = checkByteCount(options.offset ?? 0, 'offset', this.name, key);
      const length = options.length === undefined ? undefined : checkByteCount(options.length, 'length', this.name, key);
      this.#checkOpen(signal, context);
      const ops = this.#ops;
      const fd = await this.#atKey(key, context, async (path, realRoot) => {
        try {
          return await ops.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
        } catch (err) {
          if (!['ELOOP', 'EMLINK'].includes(errnoOf(err) ?? '')) return missingAsUndefined(err);
        }
        // A symlink: followed when it stays inside the root.
        const real = await ops.realpath(path);
        if (real === undefined) return undefined;
        this.#checkInside(key, real, realRoot);
        return ops.open(real, constants.O_RDONLY).catch(missingAsUndefined);
      });
      if (fd === undefined) throw notFoundError(context);
      let fileSize: number;
      try {
        const info = await ops.fstat(fd);
        if (!info.isFile()) throw notFoundError(context);
        fileSize = info.size;
        throwIfAborted(signal, `${this.name}: read ${key}`);
      } catch (err) {
        await ops.close(fd).catch(() => undefined);
        throw err;
      }
      // Bounded by the size at open, so no buffer is taken for a read that would find nothing;
      // a file that grows meanwhile is read up to that size (callers compare sizes anyway).
      const end = Math.min(length === undefined ? Infinity : offset + length, Math.max(fileSize, offset));
      const pieceBytes = Math.min(Math.max(options.pieceBytes ?? READ_CHUNK_BYTES, 4096), MAX_READ_PIECE_BYTES);
      const allocate = options.allocate ?? Buffer.allocUnsafe;
      const stream = Readable.from(readRange(fd, offset, end, pieceBytes, allocate, context), { objectMode: false, highWaterMark: 1 });
      const onAbort = (): void => { stream.destroy(new AbortedError(`${this.name}: read ${key}`)); };
      signal?.addEventListener('abort', onAbort, { once: true });
      // 'close' comes once, after the generator has finished (a destroyed stream waits for the
      // read in flight): the descriptor is closed exactly once and never read after.
      stream.once('close', () => {
        signal?.removeEventListener('abort', onAbort);
        ops.close(fd).catch(() => undefined);
      });
      return stream;
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Prepares writing `key`: creates the root (one level) and parent folders, and opens the
   * partial file, created empty when there is none (O_EXCL: no stat in the usual case). Parts
   * fully inside what an earlier run left there are reported as resumable (a partial file longer
   * than `size` is first cut to `size`). Nothing is written
   * under the final name until `commit`; an existing final file stays untouched until then.
   * Rejects with `permanent` when the root's parent is missing (unmounted share?), when a file
   * is in the way of a folder, or when a symlink leads outside the root.
   */
  async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    const context = { driver: this.name, action: 'open for writing', key };
    try {
      this.#checkKey(key);
      const size = checkByteCount(options.size, 'size', this.name, key);
      const partBytes = checkByteCount(options.partBytes, 'partBytes', this.name, key);
      if (partBytes < 1 || partBytes > this.capabilities.maxPartBytes) {
        throw new DriverError('E_BAD_ARGUMENT', `${this.name}: ${key}: partBytes must be 1..${this.capabilities.maxPartBytes}, got ${partBytes}`, { kind: 'fatal' });
      }
      this.#checkOpen(options.signal, context);
      let folder = await this.#prepareFolder(key, context);
      const { folders, basename } = splitKey(key);
      const takenError = (cause?: unknown): DriverError =>
        new DriverError('E_FS', `${this.name}: ${key}: the temp name ${partialName(basename)} is taken by something that is not a file; remove it`, { kind: 'permanent', cause });
      // The temp file is opened (created when missing) here: what an earlier run left in it is resumed.
      let temp = join(folder, partialName(basename));
      const ops = this.#ops;
      let opened: { fd: number; size: number };
      try {
        opened = await openTemp(ops, temp, takenError);
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT' || !this.#forget(folders)) throw err;
        folder = await this.#prepareFolder(key, context); // the remembered folder was gone
        temp = join(folder, partialName(basename));
        opened = await openTemp(ops, temp, takenError);
      }
      const { fd } = opened;
      let found: number;
      try {
        if (opened.size > size) await ops.ftruncate(fd, size);
        found = Math.min(opened.size, size);
      } catch (err) {
        await ops.close(fd).catch(() => undefined);
        throw err;
      }
      const resumable = new Set<number>();
      for (let index = 0; index < partCount(size, partBytes) && partRange(index, size, partBytes).end <= found; index++) resumable.add(index);
      return new LocalWriteSession({
        ...context, key, folder, temp, final: join(folder, basename), size, partBytes, resumable, ops, fd, length: found,
        prepareFolder: () => {
          this.#forget(splitKey(key).folders); // the remembered folder is gone: look again
          return this.#prepareFolder(key, context);
        },
        committed: (file, parent) => { this.#unsynced.files.add(file); this.#unsynced.folders.add(parent); },
      });
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
      this.#checkKey(key);
      this.#checkOpen(options.signal, context);
      const realRoot = await this.#findRealRoot(context);
      if (realRoot === undefined) return;
      const { folders, basename } = splitKey(key);
      const folder = await this.#realFolder(folders, realRoot, context);
      if (folder === undefined) return;
      let removed = false;
      for (const path of [join(folder, basename), join(folder, partialName(basename))]) {
        try {
          await unlink(path);
          removed = true;
        } catch (err) {
          // A folder at the key is no object (unlink says EISDIR on Linux, EPERM on macOS).
          const isFolder = await lstat(path).then((info) => info.isDirectory(), () => false);
          if (!isMissing(err) && !isFolder) throw err;
        }
      }
      if (removed && await removeEmptyFolders(folder, realRoot)) this.#folders.clear();
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Copies `fromKey` to `toKey` with `copyFile` (a reflink where the file system supports it)
   * into a temp name, fsyncs, renames onto `toKey` and fsyncs the folder: `toKey` is never seen
   * half-copied. A missing source rejects with `not-found`; a failed copy removes its temp file.
   */
  async copyWithin(fromKey: string, toKey: string, options: SignalOptions = {}): Promise<void> {
    const context = { driver: this.name, action: `copy to ${toKey}`, key: fromKey };
    try {
      this.#checkKey(fromKey);
      this.#checkKey(toKey);
      this.#checkOpen(options.signal, context);
      const source = await this.#resolveKey(fromKey, context);
      const info = source === undefined ? undefined : await stat(source).catch((err: unknown) => (isMissing(err) ? undefined : Promise.reject(err)));
      if (source === undefined || !info?.isFile()) throw notFoundError(context);
      const folder = await this.#prepareFolder(toKey, context);
      const { basename } = splitKey(toKey);
      const temp = join(folder, `.${basename}.offsite-copy-${randomBytes(8).toString('hex')}`);
      try {
        await copyFile(source, temp, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
        const handle = await open(temp, constants.O_RDONLY);
        try { await handle.sync(); } finally { await handle.close(); }
        throwIfAborted(options.signal, `${this.name}: copy ${fromKey}`);
        await rename(temp, join(folder, basename));
      } catch (err) {
        await unlink(temp).catch(() => undefined);
        throw err;
      }
      await syncFolder(folder);
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /** Nothing to release; later calls reject with `fatal`. Idempotent. */
  /**
   * Makes every commit so far durable. On Linux one `syncfs(2)` of the root's filesystem
   * (`sync -f`, coreutils) flushes them all at once: fsync per file costs a device cache flush
   * each and made a 1 GiB / 1,300-file copy twice as slow. Elsewhere, or when that fails, each
   * committed file and its folder is fsynced. Rejects with the classified error of a failed fsync.
   */
  async sync(options: SignalOptions = {}): Promise<void> {
    const context: ErrorContext = { driver: this.name, action: 'sync', key: undefined };
    const { files, folders } = this.#unsynced;
    if (files.size === 0) return;
    this.#unsynced = { files: new Set(), folders: new Set() };
    try {
      throwIfAborted(options.signal, `${this.name}: sync`);
      const root = await this.#findRealRoot(context);
      if (root !== undefined && process.platform === 'linux' && await syncFilesystem(root)) return;
      for (const file of files) {
        const handle = await open(file, constants.O_RDONLY);
        try { await handle.sync(); } finally { await handle.close(); }
      }
      for (const folder of folders) await syncFolder(folder);
    } catch (err) {
      for (const file of files) this.#unsynced.files.add(file);
      for (const folder of folders) this.#unsynced.folders.add(folder);
      throw classifyFsError(err, context);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #checkOpen(signal: AbortSignal | undefined, context: ErrorContext): void {
    throwIfAborted(signal, `${this.name}: ${context.action} ${context.key ?? ''}`.trimEnd());
    if (this.#closed) throw new DriverError('E_CLOSED', `${this.name}: ${context.action}: driver already closed`, { kind: 'fatal' });
  }

  #checkKey(key: string): void {
    try {
      checkKey(key);
    } catch (err) {
      if (err instanceof OffsiteError) err.message = `${this.name}: ${err.message}`;
      throw err;
    }
    if (isTempName(splitKey(key).basename)) throw this.#keyError(key, `names like ".x${PARTIAL_SUFFIX}" are reserved for offsite's temp files`);
  }

  /** A `KeyError` whose message starts with the driver name, like every other driver error. */
  #keyError(key: string, why: string): KeyError {
    const err = new KeyError(key, why);
    err.message = `${this.name}: ${err.message}`;
    return err;
  }

  #checkPrefix(prefix: string): void {
    try {
      checkPrefix(prefix);
    } catch (err) {
      if (err instanceof OffsiteError) err.message = `${this.name}: ${err.message}`;
      throw err;
    }
  }

  #checkInside(key: string, real: string, realRoot: string): void {
    if (!isInside(real, realRoot)) {
      throw this.#keyError(key, `a symlink on its path points outside the root (to ${real})`);
    }
  }

  /** realpath of the root, or `undefined` while it does not exist. */
  async #findRealRoot(context: ErrorContext): Promise<string | undefined> {
    if (this.#realRoot !== undefined) return this.#realRoot;
    try {
      const realRoot = await realpath(this.options.root);
      this.#ops = await opsFor(realRoot, this.options.metadataCalls);
      this.#realRoot = realRoot;
      return realRoot;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw classifyFsError(err, { ...context, key: undefined, action: `${context.action}: root ${this.options.root}` });
    }
  }

  /** The real path of `<root>/<segments>` by realpath(3), checked to be inside the root; `undefined` when missing. */
  async #resolve(segments: readonly string[], realRoot: string, context: ErrorContext): Promise<string | undefined> {
    if (segments.length === 0) return realRoot;
    let real: string;
    try {
      real = await realpath(join(realRoot, ...segments));
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    this.#checkInside(context.key ?? segments.join('/'), real, realRoot);
    return real;
  }

  async #resolveKey(key: string, context: ErrorContext): Promise<string | undefined> {
    const realRoot = await this.#findRealRoot(context);
    return realRoot === undefined ? undefined : this.#resolve(key.split('/'), realRoot, context);
  }

  /**
   * The real path of the folder `<root>/<segments>`, checked to be inside the root, resolved one
   * level at a time from the nearest remembered ancestor: an lstat per level, a realpath only
   * where a level is a symlink. `undefined` when a level is missing or is not a folder; with
   * `create`, missing levels are made (never through a symlink leading outside the root: each
   * existing level is checked before anything is created below it) and a file in the way is an
   * error (`permanent`).
   */
  #realFolder(segments: readonly string[], realRoot: string, context: ErrorContext, create = false): Promise<string | undefined> {
    if (segments.length === 0) return Promise.resolve(realRoot);
    const folderKey = segments.join('/');
    const known = this.#folders.get(folderKey);
    if (known !== undefined) {
      this.#folders.delete(folderKey); // most recently used goes last
      this.#folders.set(folderKey, known);
      return Promise.resolve(known);
    }
    // Files of one folder are usually handled together: one lookup for all of them.
    const task = `${create ? 'create' : 'find'}:${folderKey}`;
    let pending = this.#resolving.get(task);
    if (pending === undefined) {
      pending = this.#lookUpFolder(segments, folderKey, realRoot, context, create).finally(() => this.#resolving.delete(task));
      this.#resolving.set(task, pending);
    }
    return pending;
  }

  async #lookUpFolder(segments: readonly string[], folderKey: string, realRoot: string, context: ErrorContext, create: boolean): Promise<string | undefined> {
    const parent = await this.#realFolder(segments.slice(0, -1), realRoot, context, create);
    if (parent === undefined) return undefined;
    const path = join(parent, segments[segments.length - 1] as string);
    const inTheWay = (cause?: unknown): DriverError =>
      new DriverError('E_FS', `${this.name}: ${context.key ?? folderKey}: a file is in the way of one of its folders`, { kind: 'permanent', cause });
    const ops = this.#ops;
    if (create) {
      // mkdir never follows a symlink at `path`, and the parent is a real folder inside the root.
      try {
        await ops.mkdir(path);
        return this.#remember(folderKey, path);
      } catch (err) {
        if (errnoOf(err) === 'ENOTDIR') throw inTheWay(err);
        if (errnoOf(err) !== 'EEXIST') throw err;
      }
    }
    let info = await ops.lstat(path);
    if (info === undefined) return undefined;
    let real = path;
    if (info.isSymbolicLink()) {
      const target = await ops.realpath(path);
      if (target === undefined) {
        if (create) throw inTheWay(); // a dangling symlink
        return undefined;
      }
      this.#checkInside(context.key ?? folderKey, target, realRoot);
      real = target;
      info = await ops.stat(real);
      if (info === undefined) return undefined;
    }
    if (!info.isDirectory()) {
      if (create) throw inTheWay();
      return undefined;
    }
    return this.#remember(folderKey, real);
  }

  #remember(folderKey: string, real: string): string {
    this.#folders.set(folderKey, real);
    if (this.#folders.size > FOLDER_CACHE_ENTRIES) this.#folders.delete(this.#folders.keys().next().value as string);
    return real;
  }

  /** Forgets the remembered folders on the way to `<root>/<segments>`; true when there were some. */
  #forget(segments: readonly string[]): boolean {
    let forgot = false;
    for (let depth = 1; depth <= segments.length; depth++) forgot = this.#folders.delete(segments.slice(0, depth).join('/')) || forgot;
    return forgot;
  }

  /**
   * Runs `use` on the path of `key` in its (real) folder; `undefined` when the folder or the
   * object is missing. When nothing is found through remembered folders, they are looked up
   * again (one may have been removed or replaced meanwhile) and `use` is retried there once.
   */
  async #atKey<T>(key: string, context: ErrorContext, use: (path: string, realRoot: string) => Promise<T | undefined>): Promise<T | undefined> {
    const realRoot = await this.#findRealRoot(context);
    if (realRoot === undefined) return undefined;
    const { folders, basename } = splitKey(key);
    const folder = await this.#realFolder(folders, realRoot, context);
    const found = folder === undefined ? undefined : await use(join(folder, basename), realRoot);
    if (found !== undefined || !this.#forget(folders)) return found;
    const again = await this.#realFolder(folders, realRoot, context);
    return again === undefined || again === folder ? undefined : use(join(again, basename), realRoot);
  }

  /**
   * Creates the root (one level; its parent must exist) and the folders of `key`, and returns
   * the real path of the key's folder. Checks every existing level before creating anything
   * below it, so no folder is ever created through a symlink leading outside the root.
   */
  async #prepareFolder(key: string, context: ErrorContext): Promise<string> {
    let realRoot = await this.#findRealRoot(context);
    if (realRoot === undefined) {
      try {
        await mkdir(this.options.root);
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') {
          throw new DriverError('E_NO_ROOT', `${this.name}: the parent folder of root ${this.options.root} does not exist (is the share mounted?)`, { kind: 'permanent', cause: err });
        }
        if (errnoOf(err) !== 'EEXIST') throw err;
      }
      realRoot = await this.#findRealRoot(context);
      if (realRoot === undefined) throw notFoundError({ ...context, action: `root ${this.options.root}` });
    }
    const { folders } = splitKey(key);
    let folder: string | undefined;
    try {
      folder = await this.#realFolder(folders, realRoot, context, true);
    } catch (err) {
      if (!isMissing(err) || !this.#forget(folders)) throw err;
      folder = await this.#realFolder(folders, realRoot, context, true); // a remembered folder was gone
    }
    if (folder === undefined) throw notFoundError(context);
    return folder;
  }
}

/** Positional reads of `[start, end)` (to EOF when `end` is Infinity) in bounded chunks. */
async function* readRange(fd: number, start: number, end: number, pieceBytes: number, allocate: (size: number) => Buffer, context: ErrorContext): AsyncGenerator<Buffer> {
  let position = start;
  while (position < end) {
    const buffer = allocate(Math.min(pieceBytes, end - position));
    let bytesRead: number;
    try {
      bytesRead = await pread(fd, buffer, 0, buffer.length, position);
    } catch (err) {
      throw classifyFsError(err, context);
    }
    if (bytesRead === 0) return;
    position += bytesRead;
    yield buffer.subarray(0, bytesRead);
  }
}

/**
 * Opens a temp file for writing, never through a symlink, and returns its size: created with
 * O_EXCL in the usual case (no partial file: size 0, no stat needed), else opened as it is.
 * `taken` is the error for a name taken by something that is not a file.
 */
async function openTemp(ops: FsOps, temp: string, taken: (cause?: unknown) => Error): Promise<{ fd: number; size: number }> {
  try {
    return { fd: await ops.open(temp, TEMP_OPEN_FLAGS | constants.O_EXCL, 0o644), size: 0 };
  } catch (err) {
    if (errnoOf(err) !== 'EEXIST') throw err; // (a symlink or a folder there is EEXIST too)
  }
  let fd: number;
  try {
    fd = await ops.open(temp, TEMP_OPEN_FLAGS, 0o644);
  } catch (err) {
    throw ['ELOOP', 'EMLINK', 'EISDIR'].includes(errnoOf(err) ?? '') ? taken(err) : err;
  }
  try {
    const info = await ops.fstat(fd);
    if (!info.isFile()) throw taken();
    return { fd, size: info.size };
  } catch (err) {
    await ops.close(fd).catch(() => undefined);
    throw err;
  }
}

/** rmdir from `folder` up to (not including) the root, stopping at the first non-empty folder. True when one was removed. */
async function removeEmptyFolders(folder: string, realRoot: string): Promise<boolean> {
  let current = folder;
  let removed = false;
  while (current !== realRoot && isInside(current, realRoot)) {
    try {
      await rmdir(current);
    } catch {
      return removed;
    }
    removed = true;
    current = current.slice(0, current.lastIndexOf(sep)) || sep;
  }
  return removed;
}

interface SessionSetup extends ErrorContext {
  readonly key: string;
  readonly folder: string;
  readonly temp: string;
  readonly final: string;
  readonly size: number;
  readonly partBytes: number;
  readonly resumable: ReadonlySet<number>;
  /** The calls to use (./fsops.ts). */
  readonly ops: FsOps;
  /** The partial file, already open, */
  readonly fd: number;
  /** and its size. */
  readonly length: number;
  /** Re-creates the key's folders (a concurrent `delete` may have removed them as empty). */
  readonly prepareFolder: () => Promise<string>;
  /** Called after the rename: the file and its folder still need `sync()` to be durable. */
  readonly committed: (file: string, folder: string) => void;
}

/**
 * A write into `.<basename>.offsite-partial` with positional writes: parts may be written in any
 * order and concurrently. `commit` requires every part to have been written in this session or
 * confirmed by `matches`; resumable parts that were never confirmed do not count.
 */
class LocalWriteSession implements WriteSession {
  readonly key: string;
  readonly size: number;
  readonly partBytes: number;
  readonly resumableParts: ReadonlySet<number>;
  readonly #setup: SessionSetup;
  readonly #parts: number;
  readonly #stored = new Set<number>();
  /** The partial file's descriptor (being opened, or open), `undefined` when closed. */
  #fd: Promise<number> | undefined;
  /** Reads and writes in flight on `#fd`: it is closed only when there are none (a closed number can be reused by the next open). */
  #busy = 0;
  #idle: (() => void)[] = [];
  /**
   * Size of the partial file as this session made it (its size at open, extended by each
   * write), or `undefined` once the file had to be opened again (then `commit` asks the file).
   */
  #length: number | undefined;
  #state: 'open' | 'suspended' | 'aborted' | 'committed' = 'open';

  constructor(setup: SessionSetup) {
    this.#setup = setup;
    this.key = setup.key;
    this.size = setup.size;
    this.partBytes = setup.partBytes;
    this.resumableParts = setup.resumable;
    this.#parts = partCount(setup.size, setup.partBytes);
    this.#fd = Promise.resolve(setup.fd);
    this.#length = setup.length;
  }

  /**
   * Reads part `index` back from the partial file and compares it byte for byte. False when the
   * file is shorter, the bytes differ, or `bytes` has the wrong length. Rejects only on IO
   * errors, a bad index, or a session that is no longer open.
   */
  async matches(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<boolean> {
    const context = this.#context(`check part ${index}`);
    try {
      this.#checkUsable(index, options.signal, context);
      const { start, end } = partRange(index, this.size, this.partBytes);
      this.#stored.delete(index);
      if (bytes.byteLength !== end - start) return false;
      const stored = Buffer.alloc(end - start);
      const filled = await this.#use(async (fd) => {
        let done = 0;
        while (done < stored.length) {
          const bytesRead = await pread(fd, stored, done, stored.length - done, start + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done;
      });
      if (filled < stored.length) return false;
      const same = stored.equals(bytes);
      if (same) this.#stored.add(index);
      return same;
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Writes part `index` at its offset (positional write; parts may be written concurrently).
   * A part of the wrong length rejects with `fatal` before any IO. A failed write leaves the
   * part unconfirmed, so writing it again is a retry.
   */
  async write(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<void> {
    const context = this.#context(`write part ${index}`);
    try {
      this.#checkUsable(index, options.signal, context);
      const { start, end } = partRange(index, this.size, this.partBytes);
      if (bytes.byteLength !== end - start) {
        throw new DriverError('E_PART_SIZE', `${context.driver}: ${this.key}: part ${index} has ${bytes.byteLength} bytes, expected ${end - start}`, { kind: 'fatal' });
      }
      this.#stored.delete(index);
      await this.#use(async (fd) => {
        for (let written = 0; written < bytes.byteLength;) {
          throwIfAborted(options.signal, `${context.driver}: ${this.key}: write part ${index}`);
          written += await pwrite(fd, bytes, written, bytes.byteLength - written, start + written);
        }
      });
      if (this.#length !== undefined) this.#length = Math.max(this.#length, end);
      this.#stored.add(index);
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Checks that every part is there and the file has exactly `size` bytes (as this session made
   * it: its size at open, extended by each write; the file is asked only when it had to be opened
   * again), closes it and renames it onto the final name (replacing an older file atomically);
   * the driver's `sync()` makes the file and the rename durable. A missing
   * part rejects with `fatal` and a size mismatch with `integrity`; both leave the partial file
   * and the session open (write the missing part and commit again). The hash is not stored
   * (`storedHash` is false: the manifest keeps it).
   */
  async commit(options: CommitOptions): Promise<void> {
    const context = this.#context('commit');
    try {
      this.#checkUsable(undefined, options.signal, context);
      for (let index = 0; index < this.#parts; index++) {
        if (!this.#stored.has(index)) {
          throw new DriverError('E_MISSING_PART', `${context.driver}: ${this.key}: cannot commit: part ${index} of ${this.#parts} was neither written nor confirmed`, { kind: 'fatal' });
        }
      }
      const fd = await this.#open();
      const size = this.#length ?? (await this.#setup.ops.fstat(fd)).size;
      if (size !== this.size) {
        throw new DriverError('E_SIZE_MISMATCH', `${context.driver}: ${this.key}: cannot commit: the partial file has ${size} bytes, expected ${this.size}`, { kind: 'integrity' });
      }
      await this.#closeHandle();
      throwIfAborted(options.signal, `${context.driver}: ${this.key}: commit`);
      await this.#setup.ops.rename(this.#setup.temp, this.#setup.final);
      this.#state = 'committed';
      this.#setup.committed(this.#setup.final, this.#setup.folder);
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /** Closes the file handle and keeps the partial file for a later run. Never throws; idempotent. */
  async suspend(): Promise<void> {
    if (this.#state === 'open') this.#state = 'suspended';
    await this.#closeHandle().catch(() => undefined);
  }

  /**
   * Closes the handle and removes the partial file (also one left by an earlier run). Resolves
   * when it is already gone; rejects only when it cannot be removed (e.g. permission denied).
   * Never touches the final name. Idempotent.
   */
  async abort(): Promise<void> {
    if (this.#state !== 'committed') this.#state = 'aborted';
    await this.#closeHandle().catch(() => undefined);
    try {
      await unlink(this.#setup.temp);
    } catch (err) {
      if (!isMissing(err)) throw classifyFsError(err, this.#context('abort'));
    }
  }

  #context(action: string): ErrorContext {
    return { driver: this.#setup.driver, key: this.key, action };
  }

  #checkUsable(index: number | undefined, signal: AbortSignal | undefined, context: ErrorContext): void {
    throwIfAborted(signal, `${context.driver}: ${this.key}: ${context.action}`);
    if (this.#state !== 'open') {
      throw new DriverError('E_SESSION_CLOSED', `${context.driver}: ${this.key}: ${context.action}: the write session is already ${this.#state}`, { kind: 'fatal' });
    }
    if (index !== undefined && !(Number.isInteger(index) && index >= 0 && index < this.#parts)) {
      throw new DriverError('E_BAD_ARGUMENT', `${context.driver}: ${this.key}: part index ${index} is outside 0..${this.#parts - 1}`, { kind: 'fatal' });
    }
  }

  /** Opens (creating when missing, never truncating, never through a symlink) the partial file once. */
  #open(): Promise<number> {
    this.#fd ??= (async () => {
      this.#length = undefined; // opened again: its size is no longer known here
      const { ops } = this.#setup;
      let fd: number;
      try {
        fd = await ops.open(this.#setup.temp, TEMP_OPEN_FLAGS, 0o644);
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw err;
        await this.#setup.prepareFolder();
        fd = await ops.open(this.#setup.temp, TEMP_OPEN_FLAGS, 0o644);
      }
      if (this.#state !== 'open') {
        await ops.close(fd);
        throw new DriverError('E_SESSION_CLOSED', `${this.#setup.driver}: ${this.key}: the write session is already ${this.#state}`, { kind: 'fatal' });
      }
      return fd;
    })();
    const opening = this.#fd;
    opening.catch(() => { if (this.#fd === opening) this.#fd = undefined; });
    return opening;
  }

  /** Runs a read or write on the open descriptor, counted so that a close waits for it. */
  async #use<T>(action: (fd: number) => Promise<T>): Promise<T> {
    const fd = await this.#open();
    this.#busy++;
    try {
      return await action(fd);
    } finally {
      if (--this.#busy === 0) {
        const idle = this.#idle;
        this.#idle = [];
        for (const wake of idle) wake();
      }
    }
  }

  async #closeHandle(): Promise<void> {
    const opening = this.#fd;
    this.#fd = undefined;
    if (opening === undefined) return;
    const fd = await opening.catch(() => undefined);
    if (fd === undefined) return;
    while (this.#busy > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
    await this.#setup.ops.close(fd);
  }
}
