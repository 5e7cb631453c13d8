/**
 * The confined tree of the `local` driver: the root's real path, the folders of keys resolved
 * one level at a time and remembered, the symlink checks that keep every path inside the root,
 * the listing walk, and the folder-level durability calls.
 *
 * Folders are resolved one level at a time (an lstat per level, realpath only for a symlink) and
 * remembered (a bounded LRU, src/drivers/toolkit/tree.ts), so a file in a known folder costs one
 * syscall to find: realpath(3) per key did a readlink per path component, ~60 syscalls per
 * copied file of a milvus binlog tree. A remembered folder that has vanished (removed by us, or
 * by something else) is resolved again when an operation finds nothing under it.
 *
 * Symlinks that stay inside the root are followed for files and folders; one that leads outside
 * is refused with a `KeyError` (kind `permanent`). Races with other processes changing the tree
 * at the same moment (a symlink swapped in between the check and the use) are not defended
 * against: the root belongs to offsite.
 */
import { execFile } from 'node:child_process';
import { constants, type BigIntStats } from 'node:fs';
import { mkdir, open, realpath, rmdir, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { DriverError, throwIfAborted } from '../../errors.js';
import { flatString } from '../../strings.js';
import { FolderCache, isInside, isTempName, keyError, localFingerprint, notFoundError, splitKey, type ErrorContext } from '../toolkit/index.js';
import type { Entry, ListOptions } from '../types.js';
import { classifyFsError, errnoOf, isMissing } from './errors.js';
import { ASYNC_OPS, opsFor, type FsOps } from './fsops.js';

/** Folders and files a listing reads at once. */
const LIST_CONCURRENCY = 8;
/** Entries a listing holds for its reader before it stops reading ahead. */
const LIST_READY_ENTRIES = 4096;
/** Folders remembered by one driver (see the file comment): enough for the locality of a sorted walk. */
const FOLDER_CACHE_ENTRIES = 4096;

export class LocalTree {
  #realRoot: string | undefined;
  /** Real paths of folders met so far, by folder key (`a/b`), each checked to be inside the root. */
  readonly #folders = new FolderCache<string>(FOLDER_CACHE_ENTRIES);
  /** Folder lookups in flight, so that concurrent calls share one. */
  readonly #resolving = new Map<string, Promise<string | undefined>>();
  /** Metadata calls: synchronous once the root is known to be on a local file system (./fsops.ts). */
  #ops: FsOps = ASYNC_OPS;

  /** `metadataCalls`: see `LocalOptions`. */
  constructor(readonly driver: string, readonly root: string, private readonly metadataCalls?: 'auto' | 'sync' | 'async') {}

  /** The metadata calls to use (asynchronous until the root has been found). */
  get ops(): FsOps {
    return this.#ops;
  }

  /** realpath of the root, or `undefined` while it does not exist. */
  async realRoot(context: ErrorContext): Promise<string | undefined> {
    if (this.#realRoot !== undefined) return this.#realRoot;
    try {
      const realRoot = await realpath(this.root);
      this.#ops = await opsFor(realRoot, this.metadataCalls);
      this.#realRoot = realRoot;
      return realRoot;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') return undefined;
      throw classifyFsError(err, { ...context, key: undefined, action: `${context.action}: root ${this.root}` });
    }
  }

  /** Refuses (`KeyError`) a real path outside the real root, met on the way to `key`. */
  checkInside(key: string, real: string, realRoot: string): void {
    if (!isInside(real, realRoot, sep)) throw keyError(this.driver, key, `a symlink on its path points outside the root (to ${real})`);
  }

  /** The real path of `key` by realpath(3), checked to be inside the root; `undefined` when missing. */
  async resolveKey(key: string, context: ErrorContext): Promise<string | undefined> {
    const realRoot = await this.realRoot(context);
    if (realRoot === undefined) return undefined;
    let real: string;
    try {
      real = await realpath(join(realRoot, ...key.split('/')));
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    this.checkInside(context.key ?? key, real, realRoot);
    return real;
  }

  /**
   * The real path of the folder `<root>/<segments>`, checked to be inside the root, resolved one
   * level at a time from the nearest remembered ancestor: an lstat per level, a realpath only
   * where a level is a symlink. `undefined` when a level is missing or is not a folder; with
   * `create`, missing levels are made (never through a symlink leading outside the root: each
   * existing level is checked before anything is created below it) and a file in the way is an
   * error (`permanent`).
   */
  realFolder(segments: readonly string[], realRoot: string, context: ErrorContext, create = false): Promise<string | undefined> {
    if (segments.length === 0) return Promise.resolve(realRoot);
    const folderKey = segments.join('/');
    const known = this.#folders.get(folderKey);
    if (known !== undefined) return Promise.resolve(known);
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
    const parent = await this.realFolder(segments.slice(0, -1), realRoot, context, create);
    if (parent === undefined) return undefined;
    const path = childPath(parent, segments[segments.length - 1] as string);
    const inTheWay = (cause?: unknown): DriverError =>
      new DriverError('E_FS', `${this.driver}: ${context.key ?? folderKey}: a file is in the way of one of its folders`, { kind: 'permanent', cause });
    const ops = this.#ops;
    if (create) {
      // mkdir never follows a symlink at `path`, and the parent is a real folder inside the root.
      try {
        await ops.mkdir(path);
        return this.#folders.set(folderKey, path);
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
      this.checkInside(context.key ?? folderKey, target, realRoot);
      real = target;
      info = await ops.stat(real);
      if (info === undefined) return undefined;
    }
    if (!info.isDirectory()) {
      if (create) throw inTheWay();
      return undefined;
    }
    return this.#folders.set(folderKey, real);
  }

  /**
   * `realFolder` of the folders of `key` (the root for a key without one): a remembered folder is
   * found by the key's prefix, without splitting the key (done for every file read, stat and write).
   */
  keyFolder(key: string, realRoot: string, context: ErrorContext, create = false): Promise<string | undefined> {
    const slash = key.lastIndexOf('/');
    if (slash < 0) return Promise.resolve(realRoot);
    const known = this.#folders.get(key.slice(0, slash));
    if (known !== undefined) return Promise.resolve(known);
    return this.realFolder(splitKey(key).folders, realRoot, context, create);
  }

  /** Forgets the remembered folders on the way to `<root>/<segments>`; true when there were some. */
  forget(segments: readonly string[]): boolean {
    return this.#folders.forgetPath(segments);
  }

  /** Forgets every remembered folder (after folders were removed). */
  forgetAll(): void {
    this.#folders.clear();
  }

  /**
   * Runs `use` on the path of `key` in its (real) folder; `undefined` when the folder or the
   * object is missing. When nothing is found through remembered folders, they are looked up
   * again (one may have been removed or replaced meanwhile) and `use` is retried there once.
   */
  async atKey<T>(key: string, context: ErrorContext, use: (path: string, realRoot: string) => Promise<T | undefined>): Promise<T | undefined> {
    const realRoot = await this.realRoot(context);
    if (realRoot === undefined) return undefined;
    const basename = key.slice(key.lastIndexOf('/') + 1);
    const folder = await this.keyFolder(key, realRoot, context);
    const found = folder === undefined ? undefined : await use(childPath(folder, basename), realRoot);
    if (found !== undefined || !this.forget(splitKey(key).folders)) return found;
    const again = await this.keyFolder(key, realRoot, context);
    return again === undefined || again === folder ? undefined : use(childPath(again, basename), realRoot);
  }

  /**
   * Creates the root (one level; its parent must exist) and the folders of `key`, and returns
   * the real path of the key's folder. Checks every existing level before creating anything
   * below it, so no folder is ever created through a symlink leading outside the root.
   */
  async prepareFolder(key: string, context: ErrorContext): Promise<string> {
    let realRoot = await this.realRoot(context);
    if (realRoot === undefined) {
      try {
        await mkdir(this.root);
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') {
          throw new DriverError('E_NO_ROOT', `${this.driver}: the parent folder of root ${this.root} does not exist (is the share mounted?)`, { kind: 'permanent', cause: err });
        }
        if (errnoOf(err) !== 'EEXIST') throw err;
      }
      realRoot = await this.realRoot(context);
      if (realRoot === undefined) throw notFoundError({ ...context, action: `root ${this.root}` });
    }
    let folder: string | undefined;
    try {
      folder = await this.keyFolder(key, realRoot, context, true);
    } catch (err) {
      const { folders } = splitKey(key);
      if (!isMissing(err) || !this.forget(folders)) throw err;
      folder = await this.realFolder(folders, realRoot, context, true); // a remembered folder was gone
    }
    if (folder === undefined) throw notFoundError(context);
    return folder;
  }

  /**
   * Walks the folder tree under `prefix`, a few folders and files at a time (`readdir` of one
   * folder, `stat` of each file: a thread-pool round trip each where the calls are asynchronous,
   * which is what a walk of 100,000 files in 70,000 folders costs), yielding files as they are
   * found, in no particular order (no whole-tree array; at most a few thousand entries wait for
   * the reader). Skips folders, our temp files, and anything that is neither a file nor a
   * folder. Fails with a `KeyError` when it meets a symlink that points outside the root (or,
   * with `onRefused`, reports that link and goes on). A missing prefix yields nothing; a folder
   * that vanishes mid-walk is skipped. With `requireRoot`, a root that is missing (`not-found`)
   * or not a folder (`permanent`) rejects. A folder that `descend` turns down is not read (the
   * reuse index wants only the copies' `.offsite/` folders: without it, it read every folder and
   * stat'ed every file of every copy at the destination, 100,000 per night).
   */
  async *walk(prefix: string, context: ErrorContext, signal: AbortSignal | undefined, options: Pick<ListOptions, 'onRefused' | 'requireRoot' | 'descend'> = {}): AsyncGenerator<Entry> {
    const realRoot = await this.realRoot(context);
    if (options.requireRoot) await this.#checkRootFolder(realRoot);
    if (realRoot === undefined) return;
    const folderKey = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const segments = folderKey === '' ? [] : folderKey.slice(0, -1).split('/');
    this.forget(segments); // a listing is rare and must see the tree as it is now
    const start = await this.realFolder(segments, realRoot, context);
    if (start === undefined) return;
    yield* this.#walkFrom(start, folderKey, prefix, realRoot, signal, options.onRefused, options.descend);
  }

  /** For `list` with `requireRoot`: the root must exist and be a folder. */
  async #checkRootFolder(realRoot: string | undefined): Promise<void> {
    const info = realRoot === undefined ? undefined : await stat(realRoot).catch(() => undefined);
    if (info === undefined) {
      throw new DriverError('E_ROOT_MISSING', `${this.driver}: root ${this.root} does not exist (not mounted, or a typo in the config?)`, { kind: 'not-found' });
    }
    if (!info.isDirectory()) {
      throw new DriverError('E_ROOT_NOT_FOLDER', `${this.driver}: root ${this.root} is not a folder; root must name the folder that holds the backups`, { kind: 'permanent' });
    }
  }

  async *#walkFrom(
    start: string, startKey: string, prefix: string, realRoot: string, signal: AbortSignal | undefined, onRefused: ListOptions['onRefused'], descend: ListOptions['descend'],
  ): AsyncGenerator<Entry> {
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
          const path = childPath(task.path, dirent.name);
          if (dirent.isDirectory()) {
            const childKey = `${key}/`;
            if ((childKey.startsWith(prefix) || prefix.startsWith(childKey)) && (descend?.(key) ?? true)) tasks.push({ path, key: childKey, kind: 'folder' });
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
        if (onRefused !== undefined && !isInside(real, realRoot, sep)) {
          onRefused(task.key, keyError(this.driver, task.key, `a symlink on its path points outside the root (to ${real})`));
          return;
        }
        this.checkInside(task.key, real, realRoot);
        path = real;
      }
      const info = await ops.statBig(path);
      if (info?.isFile()) ready.push(localEntry(task.key, info));
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
          throwIfAborted(signal, `${this.driver}: list ${prefix}`);
          yield ready.pop() as Entry;
        }
        if (failure !== undefined) throw failure.error;
        throwIfAborted(signal, `${this.driver}: list ${prefix}`);
        spawn();
        if (running === 0 && tasks.length === 0 && ready.length === 0) return;
        if (ready.length === 0) await new Promise<void>((resolve) => { wakeReader = resolve; });
      }
    } finally {
      stopped = true;
    }
  }
}

/**
 * `folder/name`, for the real path of a folder (normalized: from realpath or built by this
 * function) and one plain name (a segment of a checked key, or a name readdir gave: no `/`, never
 * `.`, `..` or empty): what `path.join` returns, without its normalizing pass over the whole path,
 * which made several new strings of every copied file's long path (~9 KB of garbage per file).
 */
export function childPath(folder: string, name: string): string {
  return folder.endsWith(sep) ? folder + name : folder + sep + name;
}

/** rmdir from `folder` up to (not including) the root, stopping at the first non-empty folder. True when one was removed. */
export async function removeEmptyFolders(folder: string, realRoot: string): Promise<boolean> {
  let current = folder;
  let removed = false;
  while (current !== realRoot && isInside(current, realRoot, sep)) {
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

/** `syncfs(2)` of the filesystem holding `path`, through coreutils' `sync -f`; false when unavailable. */
export function syncFilesystem(path: string): Promise<boolean> {
  return new Promise((resolvePromise) => {
    execFile('sync', ['-f', path], { timeout: 600_000 }, (err) => resolvePromise(!err));
  });
}

/** fsync of a folder, so that a rename in it survives a power cut. Shares that refuse it are tolerated. */
export async function syncFolder(path: string): Promise<void> {
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

/** fsync of a file by path. */
export async function syncFile(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY);
  try { await handle.sync(); } finally { await handle.close(); }
}

/** The contract's entry for a local file, with its fingerprint (size, mtime in ns, inode). */
export function localEntry(key: string, info: BigIntStats): Entry {
  const size = Number(info.size);
  // The key flat: the listing built it as a rope of its folders' keys and its name (src/strings.ts).
  return { key: flatString(key), size, mtimeMs: Number(info.mtimeMs), fingerprint: localFingerprint(size, info.mtimeNs, info.ino) };
}
