/**
 * The `sftp` driver: objects are files under `root` on an SSH server (a NAS, a Linux host).
 *
 * - Writes go to a temp file next to the final one, named from the final name
 *   (`.<name>.offsite-partial`), so a later run on any machine finds it and resumes it. Parts
 *   are written at their offsets with pipelined SFTP WRITE requests; `commit` checks the size,
 *   fsyncs (`fsync@openssh.com` when offered) and renames atomically onto the final name
 *   (`posix-rename@openssh.com`; plain SFTP rename after removing the old file otherwise).
 * - Reads are pipelined SFTP READ requests at any offset.
 * - Host keys are checked on every connect (see ./connection.ts and ./hostkeys.ts).
 *
 * Listing hides our temp files; keys whose last segment looks like one are refused.
 *
 * Symlinks, as in the local driver: no key reaches outside `root` through a symlink on the
 * server. A symlink under the root that leads outside it (to a file or a folder; as the key
 * itself or as one of its folders) is refused with a `KeyError` (kind `permanent`: `nas: key
 * "b1/meta/x" refused: a symlink on its path points outside the root (to /etc)`) by `stat`,
 * `openRead`, `openWrite`, `delete` and `copyWithin`, and by `list` when its walk meets one under
 * the prefix; nothing is created, written or removed through it. Symlinks that stay inside the
 * root are followed for files and for the folders of a key; `list` lists a symlink to a file
 * under its own key and does not descend into symlinked folders (their contents are listed under
 * their real path already, and loops are impossible). A dangling symlink is a missing object (in
 * the way, when a folder must be created there). A symlink planted under a temp name is refused,
 * never written through. The check trusts the server's REALPATH to resolve symlinks, as
 * OpenSSH's does.
 *
 * Cost: the folders of keys are checked once and remembered (`checkedFolders`, a bounded LRU):
 * one LSTAT per level not known yet, all sent at once (one round trip, and sent along with the
 * operation's own first request where that is harmless), plus a REALPATH and a STAT only where a
 * level is a symlink. `list` remembers every real folder its walk passes (READDIR returns lstat
 * attributes), so the calls that follow a listing pay nothing for their folders, and folders
 * this driver creates are remembered too. Per file: `stat` sends an LSTAT instead of a STAT;
 * `openRead` sends an LSTAT along with its OPEN (one more request, no more round trips; the
 * target of a refused link may thus be opened, never read); `openWrite` sends nothing more (and
 * into a new folder one round trip less than before); `delete` nothing more once its folder is
 * known; a symlink itself costs one round trip (REALPATH + STAT). Races with other processes
 * changing the tree meanwhile (a checked folder swapped for a symlink) are not defended against:
 * the root belongs to offsite.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import type { SFTPWrapper, Stats } from 'ssh2';
import { AbortedError, DriverError, KeyError, throwIfAborted } from '../../errors.js';
import { checkKey, checkPrefix, partCount, partRange } from '../keys.js';
import type {
  Capabilities, CommitOptions, Driver, Entry, ReadOptions, SignalOptions, WriteOptions, WriteSession,
} from '../types.js';
import { ConnectionPool, type SftpConnection, type SftpHooks } from './connection.js';
import { isNoSuchFile, notFoundError, SFTP_STATUS, sftpStatusOf, where, type ErrorContext } from './errors.js';
import type { SftpOptions } from './options.js';

const TEMP_SUFFIX = '.offsite-partial';
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
/** Folders remembered as checked (see the file comment): plenty for the leaf folders of a backup. */
const CHECKED_FOLDER_ENTRIES = 16_384;

/** Byte counters, for tests and benchmarks (what actually went over the wire as file data). */
export interface SftpTransferCounters {
  /** Bytes sent in SFTP WRITE requests that the server acknowledged. */
  bytesWritten: number;
  /** Bytes received in SFTP READ replies (reads and `matches` checks). */
  bytesRead: number;
}

/** True for names the driver uses for partial uploads (`.<name>.offsite-partial`). */
export function isTempName(name: string): boolean {
  return name.startsWith('.') && name.endsWith(TEMP_SUFFIX) && name.length > TEMP_SUFFIX.length + 1;
}

/**
 * The temp file name for a final file name: deterministic, so that an interrupted upload is
 * found again. Long names are shortened with a hash to stay under the usual 255-byte limit.
 */
export function tempNameFor(name: string): string {
  if (Buffer.byteLength(name) <= 200) return `.${name}${TEMP_SUFFIX}`;
  const digest = createHash('sha256').update(name).digest('hex').slice(0, 16);
  return `.${Array.from(name).slice(0, 60).join('')}~${digest}${TEMP_SUFFIX}`;
}

export class SftpDriver implements Driver {
  readonly name: string;
  readonly description: string;
  readonly capabilities: Capabilities;
  readonly counters: SftpTransferCounters = { bytesWritten: 0, bytesRead: 0 };
  private readonly pool: ConnectionPool;
  /**
   * Folder keys (`a/b`) found to be folders whose path stays inside the root (every level a
   * real folder or a symlink leading inside), least recently used first.
   */
  private readonly checkedFolders = new Map<string, true>();
  /** The root's real path on the server, fetched when a symlink first needs comparing with it. */
  private realRoot: string | undefined;

  /** No IO here: connections are opened by the first call that needs one. */
  constructor(name: string, readonly options: SftpOptions, hooks: SftpHooks = {}) {
    this.name = name;
    this.description = `sftp://${options.username}@${options.host}${options.port === 22 ? '' : `:${options.port}`}${options.root.startsWith('/') ? '' : '/~/'}${options.root}`;
    this.capabilities = {
      rangeReads: true,
      resumableWrites: true,
      atomicCommit: true,
      storedHash: false,
      serverSideCopy: options.serverSideCopy !== false,
      minPartBytes: 1,
      maxPartBytes: 1024 * 1024 * 1024,
      maxParts: Infinity,
      parallelPartWrites: options.concurrencyPerFile > 1,
      maxConcurrency: options.maxConcurrency,
    };
    this.pool = new ConnectionPool(name, options, hooks);
  }

  /** Remote path of a key; refuses unsafe keys and names reserved for temp files. */
  remotePath(key: string): string {
    checkKey(key);
    if (isTempName(posix.basename(key))) throw new KeyError(key, `names like ".x${TEMP_SUFFIX}" are reserved for partial uploads`);
    return this.join(key);
  }

  private join(relative: string): string {
    if (relative === '') return this.options.root;
    return this.options.root === '/' ? `/${relative}` : `${this.options.root}/${relative}`;
  }

  private context(action: string, key?: string): ErrorContext {
    return key === undefined ? { driver: this.name, action } : { driver: this.name, action, key };
  }

  /** Runs `body` with a pooled connection. */
  private async withConnection<T>(body: (conn: SftpConnection) => Promise<T>): Promise<T> {
    const conn = await this.pool.acquire();
    try {
      return await body(conn);
    } finally {
      this.pool.release(conn);
    }
  }

  /**
   * Every file under `prefix`, recursively, one folder at a time (bounded memory: one
   * directory batch plus the folders still to visit). Temp files, folders, symlinks to folders
   * and names that are not valid keys are skipped; symlinks to files inside the root are listed
   * with the target's size. A symlink under the prefix that leads outside the root rejects the
   * iteration with a `KeyError`, as does a prefix whose folder is reached through one. A missing
   * prefix yields nothing. Errors other than a missing folder reject the iteration (permission
   * denied: `permanent`; a lost connection: `retryable`). Every folder walked is remembered as
   * checked (see the file comment).
   */
  async *list(prefix: string, options: SignalOptions = {}): AsyncIterable<Entry> {
    checkPrefix(prefix);
    throwIfAborted(options.signal, `${this.name}: list ${prefix}`);
    const slash = prefix.lastIndexOf('/');
    const start = slash === -1 ? '' : prefix.slice(0, slash);
    const pending: string[] = [start];
    const conn = await this.pool.acquire();
    try {
      if (start !== '') {
        const segments = start.split('/');
        this.forgetFolders(segments); // a listing is rare and must see the tree as it is now
        if ((await this.checkFolder(conn, segments, this.context('list', prefix), false)) === 'missing') return;
      }
      while (pending.length > 0) {
        throwIfAborted(options.signal, `${this.name}: list ${prefix}`);
        const dirKey = pending.pop() as string;
        for await (const batch of this.readDirectory(conn, dirKey)) {
          for (const item of batch) {
            const name = item.filename;
            if (name === '.' || name === '..') continue;
            const key = dirKey === '' ? name : `${dirKey}/${name}`;
            if (!isValidKey(key)) continue;
            // Servers may leave out the permissions (and so the type): ask for them.
            const mode = item.attrs.mode ?? (await this.lstatPath(conn, this.join(key), key))?.mode ?? 0;
            const type = mode & S_IFMT;
            if (type === S_IFDIR) {
              // READDIR reports entries as lstat does: a real folder inside a checked one.
              this.remember(key);
              const folder = `${key}/`;
              if (folder.startsWith(prefix) || prefix.startsWith(folder)) pending.push(key);
              continue;
            }
            this.checkedFolders.delete(key); // not a folder (any more)
            if (!key.startsWith(prefix) || isTempName(name)) continue;
            if (type === S_IFREG) {
              yield { key, size: item.attrs.size, mtimeMs: item.attrs.mtime * 1000 };
            } else if (type === S_IFLNK) {
              const target = await this.followLink(conn, key, this.context('list', key));
              if (target?.stats.isFile()) yield { key, size: target.stats.size, mtimeMs: target.stats.mtime * 1000 };
            }
          }
        }
      }
    } finally {
      this.pool.release(conn);
    }
  }

  /** Directory entries in server-sized batches; nothing when the folder does not exist. */
  private async *readDirectory(conn: SftpConnection, dirKey: string): AsyncGenerator<{ filename: string; attrs: Stats }[]> {
    const context = this.context('list', dirKey === '' ? '(root)' : `${dirKey}/`);
    let handle: Buffer;
    try {
      handle = await conn.call<Buffer>(context, (sftp, done) => sftp.opendir(this.join(dirKey), done));
    } catch (err) {
      if ((err as { kind?: string }).kind === 'not-found') return;
      throw err;
    }
    try {
      while (true) {
        const batch = await conn.call<{ filename: string; attrs: Stats }[] | false>(context, (sftp, done) =>
          sftp.readdir(handle, (err, list) => {
            // ssh2 reports the end of a directory as `false` or as an EOF status.
            if (err && sftpStatusOf(err) === SFTP_STATUS.EOF) done(undefined, false);
            else done(err, list);
          }),
        );
        if (!batch || batch.length === 0) break;
        yield batch;
      }
    } finally {
      closeQuietly(conn, handle);
    }
  }

  /** `lstat` of a path (not following symlinks); `undefined` when it does not exist. */
  private async lstatPath(conn: SftpConnection, path: string, key: string): Promise<Stats | undefined> {
    try {
      return await conn.call<Stats>(this.context('list', key), (sftp, done) => sftp.lstat(path, done));
    } catch (err) {
      if ((err as { kind?: string }).kind === 'not-found') return undefined;
      throw err;
    }
  }

  /**
   * The file's entry, or `undefined` when nothing (or a folder, or a dangling symlink) is there.
   * Rejects with a `KeyError` when a symlink on the key's path leads outside the root.
   */
  async stat(key: string, options: SignalOptions = {}): Promise<Entry | undefined> {
    this.remotePath(key);
    throwIfAborted(options.signal, `${this.name}: stat ${key}`);
    return this.withConnection(async (conn) => {
      const file = await this.fileAt(conn, key, this.context('stat', key));
      if (!file?.stats.isFile()) return undefined;
      return { key, size: file.stats.size, mtimeMs: file.stats.mtime * 1000 };
    });
  }

  /**
   * What is at `key` once the symlink checks passed: its attributes (for a symlink, its
   * target's) and the path to use (for a symlink, the target's real path); `undefined` when
   * nothing is there. The key's own LSTAT goes out with the folder check (it reads nothing,
   * wherever it lands), so a key in a known folder costs one request.
   */
  private async fileAt(conn: SftpConnection, key: string, context: ErrorContext): Promise<{ path: string; stats: Stats } | undefined> {
    const path = this.join(key);
    const own = settle(conn.call<Stats>(context, (sftp, done) => sftp.lstat(path, done)));
    if ((await this.checkFolder(conn, foldersOf(key), context, false)) === 'missing') return undefined;
    const found = await own;
    if (!found.ok) {
      if (isNotFound(found.error)) return undefined;
      throw found.error;
    }
    if (!found.value.isSymbolicLink()) return { path, stats: found.value };
    const target = await this.followLink(conn, key, context);
    return target && { path: target.real, stats: target.stats };
  }

  /**
   * Streams `[offset, offset + length)` (to the end when `length` is omitted, clipped to the
   * file's size at open time) in pieces of `pieceBytes` (default `requestBytes`) taken from
   * `allocate` when given. Up to `concurrencyPerFile` READ requests are in flight and read-ahead
   * stops at about two pieces, so memory is bounded whatever the file's size. A missing key (or
   * a folder) rejects with `not-found`; a file that shrinks while being read fails the stream
   * with kind `integrity`; a lost connection fails it with kind `retryable`.
   */
  async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    const path = this.remotePath(key);
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new DriverError('E_BAD_RANGE', `${this.name}: ${key}: read: bad offset ${offset}`, { kind: 'fatal' });
    if (options.length !== undefined && (!Number.isSafeInteger(options.length) || options.length < 0)) {
      throw new DriverError('E_BAD_RANGE', `${this.name}: ${key}: read: bad length ${options.length}`, { kind: 'fatal' });
    }
    throwIfAborted(options.signal, `${this.name}: read ${key}`);
    const context = this.context('read', key);
    const conn = await this.pool.acquire();
    let handle: Buffer | undefined;
    try {
      // The OPEN goes out with the checks (no extra round trip); its handle is closed unread
      // when they refuse the key.
      const own = settle(conn.call<Stats>(context, (sftp, done) => sftp.lstat(path, done)));
      const opening = settle(conn.call<Buffer>(context, (sftp, done) => sftp.open(path, 'r', done)));
      const folder = await settle(this.checkFolder(conn, foldersOf(key), context, false));
      const opened = await opening;
      if (opened.ok) handle = opened.value;
      if (!folder.ok) throw folder.error;
      if (folder.value === 'missing') throw notFoundError(context);
      const found = await own;
      if (!opened.ok) throw opened.error;
      if (!found.ok) throw found.error;
      if (found.value.isSymbolicLink() && !(await this.followLink(conn, key, context))) throw notFoundError(context);
      const openHandle = opened.value;
      const stats = await conn.call<Stats>(context, (sftp, done) => sftp.fstat(openHandle, done));
      if (!stats.isFile()) throw notFoundError(context);
      const end = options.length === undefined ? stats.size : Math.min(stats.size, offset + options.length);
      const pieceBytes = Math.min(Math.max(options.pieceBytes ?? this.options.requestBytes, MIN_PIECE_BYTES), MAX_PIECE_BYTES);
      const shape: ReadShape = {
        concurrency: this.options.concurrencyPerFile,
        requestBytes: this.options.requestBytes,
        pieceBytes,
        allocate: options.allocate ?? Buffer.allocUnsafe,
      };
      const chunks = readRange(conn, openHandle, offset, Math.max(offset, end), shape, context, this.counters, options.signal);
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        closeQuietly(conn, openHandle);
        this.pool.release(conn);
      };
      const stream = Readable.from(releasing(chunks, release), { objectMode: false, highWaterMark: 1 });
      // A stream destroyed before its first read never runs the generator's `finally`.
      stream.once('close', release);
      if (options.signal) {
        const signal = options.signal;
        const onAbort = (): void => {
          stream.destroy(new AbortedError(`${this.name}: read ${key}`));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        stream.once('close', () => signal.removeEventListener('abort', onAbort));
      }
      return stream;
    } catch (err) {
      if (handle) closeQuietly(conn, handle);
      this.pool.release(conn);
      throw conn.classify(err, context);
    }
  }

  /**
   * Opens (or resumes) the temp file of `key`. When a temp file from an earlier run exists and
   * is not longer than `size`, it is kept and the parts lying wholly inside it are reported in
   * `resumableParts` (to be confirmed with `matches`); otherwise it is created empty, with any
   * missing folders. Rejects with `permanent` for permission problems, `retryable` for a lost
   * connection, `auth` for a refused host key or login.
   */
  async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    const path = this.remotePath(key);
    const { size, partBytes } = options;
    if (!Number.isSafeInteger(size) || size < 0) throw new DriverError('E_BAD_SIZE', `${this.name}: ${key}: write: bad size ${size}`, { kind: 'fatal' });
    if (!Number.isSafeInteger(partBytes) || partBytes < 1 || partBytes > this.capabilities.maxPartBytes) {
      throw new DriverError('E_BAD_SIZE', `${this.name}: ${key}: write: bad part size ${partBytes}`, { kind: 'fatal' });
    }
    throwIfAborted(options.signal, `${this.name}: write ${key}`);
    const session = new SftpWriteSession(this, this.pool, key, path, tempPathFor(path), size, partBytes);
    await session.start();
    return session;
  }

  /**
   * Removes the file and any temp file of `key`; resolves when neither exists (or a folder of
   * the key is missing). A symlink at the key is removed itself, never its target; a folder of
   * the key that is a symlink leading outside the root rejects with a `KeyError` before anything
   * is removed.
   */
  async delete(key: string, options: SignalOptions = {}): Promise<void> {
    const path = this.remotePath(key);
    throwIfAborted(options.signal, `${this.name}: delete ${key}`);
    const temp = tempPathFor(path);
    const context = this.context('delete', key);
    await this.withConnection(async (conn) => {
      if ((await this.checkFolder(conn, foldersOf(key), context, false)) === 'missing') return;
      for (const target of [path, temp]) {
        try {
          await conn.call<void>(context, (sftp, done) => sftp.unlink(target, done));
        } catch (err) {
          if ((err as { kind?: string }).kind !== 'not-found') throw err;
        }
      }
    });
  }

  /**
   * Copies `fromKey` to `toKey` on the server, through a temp file and an atomic rename like any
   * write. Tries, in order: OpenSSH's `copy-data` extension (a real copy, no bytes over the
   * network); with `serverSideCopy: auto`, a hard link (`hardlink@openssh.com`: instant, and safe
   * because offsite never modifies a committed file in place, it only replaces it by rename);
   * last, reading and writing through this machine. A missing source rejects with `not-found`;
   * a symlink leading outside the root, on either key's path, with a `KeyError`. A source that is
   * a symlink inside the root is copied from its target.
   */
  async copyWithin(fromKey: string, toKey: string, options: SignalOptions = {}): Promise<void> {
    const from = this.remotePath(fromKey);
    const to = this.remotePath(toKey);
    const what = `${this.name}: copy ${fromKey} to ${toKey}`;
    throwIfAborted(options.signal, what);
    const context = this.context(`copy from ${fromKey}`, toKey);
    const done = await this.withConnection(async (conn) => {
      const source = await this.fileAt(conn, fromKey, this.context('copy', fromKey));
      if (!source?.stats.isFile()) throw notFoundError(this.context('copy', fromKey));
      if (from === to) return true;
      const temp = tempPathFor(to);
      if ((await this.checkFolder(conn, foldersOf(toKey), context, true)) !== 'created') await this.tempStats(conn, temp, context);
      const copied = (await this.copyData(conn, source.path, toKey, temp, source.stats.size, context)) ||
        (this.options.serverSideCopy === 'auto' && (await this.hardLink(conn, source.path, toKey, temp, context)));
      if (!copied) return false;
      throwIfAborted(options.signal, what);
      await this.replace(conn, temp, to, context);
      return true;
    });
    if (!done) await this.copyThroughClient(fromKey, toKey, options.signal);
  }

  /** `copy-data` into `temp`; false when the server does not offer (or refuses) it. */
  private async copyData(conn: SftpConnection, from: string, toKey: string, temp: string, size: number, context: ErrorContext): Promise<boolean> {
    let source: Buffer | undefined;
    let target: Buffer | undefined;
    let copied = false;
    try {
      source = await conn.call<Buffer>(context, (sftp, done) => sftp.open(from, 'r', done));
      target = await this.openCreating(conn, toKey, temp, context);
      const [readHandle, writeHandle] = [source, target];
      try {
        await conn.call<void>(context, (sftp, done) => sftp.ext_copy_data(readHandle, 0, 0, writeHandle, 0, done));
      } catch (err) {
        if (extensionRefused(err)) return false;
        throw err;
      }
      const stats = await conn.call<Stats>(context, (sftp, done) => sftp.fstat(writeHandle, done));
      if (stats.size !== size) {
        throw new DriverError('E_SIZE_MISMATCH', `${where(context)}: the copy has ${stats.size} bytes, expected ${size}`, { kind: 'integrity' });
      }
      await this.fsync(conn, writeHandle, context);
      copied = true;
      return true;
    } finally {
      if (source) await closeQuietlyAndWait(conn, source);
      if (target) await closeQuietlyAndWait(conn, target);
      if (target && !copied) await this.removeTemp(temp, context.key ?? '');
    }
  }

  /** Hard-links `from` as `temp` (of `toKey`); false when the server or its file system cannot. */
  private async hardLink(conn: SftpConnection, from: string, toKey: string, temp: string, context: ErrorContext): Promise<boolean> {
    try {
      await conn.call<void>(context, (sftp, done) => sftp.unlink(temp, done));
    } catch (err) {
      if ((err as { kind?: string }).kind !== 'not-found') throw err;
    }
    const link = (): Promise<void> => conn.call<void>(context, (sftp, done) => sftp.ext_openssh_hardlink(from, temp, done));
    try {
      await link();
      return true;
    } catch (err) {
      if ((err as { kind?: string }).kind === 'not-found') {
        this.forgetFolders(foldersOf(toKey)); // removed since it was checked: check and make it again
        await this.checkFolder(conn, foldersOf(toKey), context, true);
        try {
          await link();
          return true;
        } catch (again) {
          if (extensionRefused(again) || sftpStatusOf((again as { cause?: unknown }).cause) === SFTP_STATUS.FAILURE) return false;
          throw again;
        }
      }
      // FAILURE: no hard links on this file system (FAT, exFAT, some FUSE mounts).
      if (extensionRefused(err) || sftpStatusOf((err as { cause?: unknown }).cause) === SFTP_STATUS.FAILURE) return false;
      throw err;
    }
  }

  /** The last resort: read from the server and write back, as any upload. */
  private async copyThroughClient(fromKey: string, toKey: string, signal?: AbortSignal): Promise<void> {
    const entry = await this.stat(fromKey, { signal });
    if (!entry) throw notFoundError(this.context('copy', fromKey));
    const partBytes = 8 * 1024 * 1024;
    const session = await this.openWrite(toKey, { size: entry.size, partBytes, signal });
    try {
      const stream = await this.openRead(fromKey, { pieceBytes: partBytes, length: entry.size, signal });
      let index = 0;
      for await (const piece of stream) await session.write(index++, piece as Buffer, { signal });
      await session.commit({ hash: '', signal });
    } catch (err) {
      await session.suspend();
      throw err;
    }
  }

  /**
   * Opens `path` (a temp file of `key`, in the key's folder, checked by the caller) for writing
   * (create/truncate). When the folder has gone meanwhile, it is checked and made again.
   */
  async openCreating(conn: SftpConnection, key: string, path: string, context: ErrorContext): Promise<Buffer> {
    const open = (): Promise<Buffer> => conn.call<Buffer>(context, (sftp, done) => sftp.open(path, 'w', done));
    try {
      return await open();
    } catch (err) {
      if ((err as { kind?: string }).kind !== 'not-found') throw err;
      const folders = foldersOf(key);
      this.forgetFolders(folders);
      if (folders.length === 0) await this.makeRoot(conn, context);
      else await this.checkFolder(conn, folders, context, true);
      return open();
    }
  }

  /**
   * The temp file at `temp` (lstat), or `undefined` when there is none. Rejects (`permanent`)
   * when something else holds the name, a symlink above all: opening it would write through it.
   */
  async tempStats(conn: SftpConnection, temp: string, context: ErrorContext): Promise<Stats | undefined> {
    let stats: Stats;
    try {
      stats = await conn.call<Stats>(context, (sftp, done) => sftp.lstat(temp, done));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    if (stats.isFile()) return stats;
    throw new DriverError(
      'E_TEMP_IN_THE_WAY',
      `${where(context)}: the temp name ${posix.basename(temp)} is taken by something that is not a file (a ${stats.isSymbolicLink() ? 'symlink' : stats.isDirectory() ? 'folder' : 'special file'}); remove it`,
      { kind: 'permanent' },
    );
  }

  /** `fsync@openssh.com` on an open file; skipped where the server lacks or refuses it. */
  async fsync(conn: SftpConnection, handle: Buffer, context: ErrorContext): Promise<void> {
    try {
      await conn.call<void>(context, (sftp, done) => sftp.ext_openssh_fsync(handle, (err) => done(err)));
    } catch (err) {
      if (!extensionRefused(err)) throw err;
    }
  }

  /**
   * Renames `temp` onto `final`: atomically with `posix-rename@openssh.com`; otherwise with a
   * plain SFTP rename, which refuses to replace a file, so an existing `final` is removed first
   * (the key is then briefly missing, but never partial).
   */
  async replace(conn: SftpConnection, temp: string, final: string, context: ErrorContext): Promise<void> {
    try {
      await conn.call<void>(context, (sftp, done) => sftp.ext_openssh_rename(temp, final, done));
      return;
    } catch (err) {
      if (!extensionRefused(err)) throw err;
    }
    try {
      await conn.call<void>(context, (sftp, done) => sftp.rename(temp, final, done));
    } catch (err) {
      if (sftpStatusOf((err as { cause?: unknown }).cause) === SFTP_STATUS.NO_SUCH_FILE) throw err;
      try {
        await conn.call<void>(context, (sftp, done) => sftp.unlink(final, done));
      } catch (unlinkError) {
        if (!isNoSuchFile((unlinkError as { cause?: unknown }).cause)) throw unlinkError;
      }
      await conn.call<void>(context, (sftp, done) => sftp.rename(temp, final, done));
    }
  }

  /** Removes a temp file; best effort, never throws (a later run overwrites or removes it). */
  async removeTemp(tempPath: string, key: string): Promise<void> {
    try {
      await this.withConnection((conn) => conn.call<void>(this.context('abort', key), (sftp, done) => sftp.unlink(tempPath, done)));
    } catch {
      /* already gone, or unreachable now */
    }
  }

  /** Closes every connection. Idempotent. */
  async close(): Promise<void> {
    await this.pool.close();
  }

  /** Creates the root and its missing parents (like `mkdir -p`). */
  private async makeRoot(conn: SftpConnection, context: ErrorContext): Promise<void> {
    await this.makeDirectories(conn, this.options.root, { ...context, action: `create root ${this.options.root}` });
  }

  private async makeDirectories(conn: SftpConnection, dir: string, context: ErrorContext): Promise<void> {
    if (dir === '/' || dir === '.' || dir === '') return;
    try {
      await conn.call<void>(context, (sftp, done) => sftp.mkdir(dir, done));
      return;
    } catch (err) {
      if ((err as { kind?: string }).kind === 'not-found') {
        await this.makeDirectories(conn, posix.dirname(dir), context);
        try {
          await conn.call<void>(context, (sftp, done) => sftp.mkdir(dir, done));
          return;
        } catch (again) {
          if (!(await this.isDirectory(conn, dir, context))) throw again;
          return;
        }
      }
      // OpenSSH answers FAILURE for "already exists": fine when it is a folder.
      if (!(await this.isDirectory(conn, dir, context))) throw err;
    }
  }

  private async isDirectory(conn: SftpConnection, path: string, context: ErrorContext): Promise<boolean> {
    try {
      return (await conn.call<Stats>(context, (sftp, done) => sftp.stat(path, done))).isDirectory();
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * Checks the folder `<root>/<segments>` of a key (see the file comment): no level may be a
   * symlink leading outside the root (`KeyError`). Levels not remembered yet are looked at with
   * one LSTAT each, all sent at once; a symlink level is resolved (REALPATH + STAT). Levels found
   * to be folders are remembered. With `create`, missing levels are made one by one below the
   * last existing (checked) one, so nothing is ever created through a symlink leading out, and a
   * file (or a symlink to one, or a dangling one) where a folder must be is an error (`permanent`).
   * @returns `ok` when the folder exists, `missing` when a level is missing or is not a folder
   *   (never with `create`), `created` when levels were made.
   */
  async checkFolder(conn: SftpConnection, segments: readonly string[], context: ErrorContext, create: boolean): Promise<'ok' | 'missing' | 'created'> {
    let known = segments.length;
    while (known > 0 && !this.recall(segments.slice(0, known).join('/'))) known--;
    if (known === segments.length) return 'ok';
    const levels = segments.slice(known).map((_, i) => segments.slice(0, known + i + 1).join('/'));
    const found = levels.map((level) => settle(conn.call<Stats>(context, (sftp, done) => sftp.lstat(this.join(level), done))));
    for (const [i, level] of levels.entries()) {
      const result = await (found[i] as Promise<Settled<Stats>>);
      if (!result.ok) {
        if (!isNotFound(result.error)) throw result.error;
        if (!create) return 'missing';
        for (const missing of levels.slice(i)) await this.makeFolder(conn, missing, context);
        return 'created';
      }
      if (!(await this.isFolder(conn, level, result.value, context))) {
        if (create) throw this.inTheWay(context, level);
        return 'missing';
      }
      this.remember(level);
    }
    return 'ok';
  }

  /** True for a folder, or a symlink to one inside the root; a `KeyError` for a symlink leading out. */
  private async isFolder(conn: SftpConnection, level: string, stats: Stats, context: ErrorContext): Promise<boolean> {
    if (!stats.isSymbolicLink()) return stats.isDirectory();
    return (await this.followLink(conn, level, context))?.stats.isDirectory() ?? false;
  }

  /**
   * Creates the folder `<root>/<level>` whose parent is checked. When the parent is missing (the
   * root not made yet, or a remembered folder removed since), it is checked and made first.
   */
  private async makeFolder(conn: SftpConnection, level: string, context: ErrorContext, again = false): Promise<void> {
    try {
      await conn.call<void>(context, (sftp, done) => sftp.mkdir(this.join(level), done));
      this.remember(level);
      return;
    } catch (err) {
      if (isNotFound(err) && !again) {
        const parent = level.includes('/') ? level.slice(0, level.lastIndexOf('/')).split('/') : [];
        this.forgetFolders(parent);
        if (parent.length === 0) await this.makeRoot(conn, context);
        else await this.checkFolder(conn, parent, context, true);
        return this.makeFolder(conn, level, context, true);
      }
      // OpenSSH answers FAILURE for "already exists" (made by someone else meanwhile). When the
      // look that tells which fails for another reason (a lost connection), that reason is the
      // error: the FAILURE alone would read as a permanent refusal.
      const now = await settle(conn.call<Stats>(context, (sftp, done) => sftp.lstat(this.join(level), done)));
      if (!now.ok) throw isNotFound(now.error) ? err : now.error;
      if (!(await this.isFolder(conn, level, now.value, context))) throw this.inTheWay(context, level, err);
      this.remember(level);
    }
  }

  /**
   * The real path and the target's attributes of the symlink at `<root>/<key>`, both asked at
   * once; `undefined` when it dangles (or loops). A `KeyError` when it leads outside the root.
   */
  private async followLink(conn: SftpConnection, key: string, context: ErrorContext): Promise<{ real: string; stats: Stats } | undefined> {
    const path = this.join(key);
    const [real, target] = await Promise.all([
      settle(conn.call<string>(context, (sftp, done) => sftp.realpath(path, done))),
      settle(conn.call<Stats>(context, (sftp, done) => sftp.stat(path, done))),
    ]);
    if (!target.ok) return missingAsUndefined(target.error);
    if (!real.ok) return missingAsUndefined(real.error);
    const root = await this.findRealRoot(conn, context);
    if (!isInside(real.value, root)) {
      const err = new KeyError(context.key ?? key, `a symlink on its path points outside the root (to ${real.value})`);
      err.message = `${this.name}: ${err.message}`;
      throw err;
    }
    return { real: real.value, stats: target.value };
  }

  private async findRealRoot(conn: SftpConnection, context: ErrorContext): Promise<string> {
    const root = this.options.root;
    this.realRoot ??= await conn.call<string>({ ...context, action: `${context.action}: root ${root}` }, (sftp, done) => sftp.realpath(root, done));
    return this.realRoot;
  }

  private inTheWay(context: ErrorContext, level: string, cause?: unknown): DriverError {
    return new DriverError('E_IN_THE_WAY', `${where(context)}: ${level} is not a folder (a file, or a symlink to one or to nothing, is in the way)`, { kind: 'permanent', cause });
  }

  /** True when `folderKey` is remembered as checked (and makes it the most recently used). */
  private recall(folderKey: string): boolean {
    if (!this.checkedFolders.delete(folderKey)) return false;
    this.checkedFolders.set(folderKey, true);
    return true;
  }

  private remember(folderKey: string): void {
    this.checkedFolders.delete(folderKey);
    this.checkedFolders.set(folderKey, true);
    if (this.checkedFolders.size > CHECKED_FOLDER_ENTRIES) this.checkedFolders.delete(this.checkedFolders.keys().next().value as string);
  }

  /** Forgets the remembered folders on the way to `<root>/<segments>`. */
  private forgetFolders(segments: readonly string[]): void {
    for (let depth = 1; depth <= segments.length; depth++) this.checkedFolders.delete(segments.slice(0, depth).join('/'));
  }
}

/**
 * A write in progress. Parts go into the temp file at their offsets; a set records which parts
 * this session wrote or confirmed (`matches`), so that `commit` refuses a file with holes.
 * Pinned to one connection (SFTP handles belong to one channel); when that connection dies the
 * next call reopens the temp file on a fresh one.
 */
class SftpWriteSession implements WriteSession {
  readonly resumableParts: ReadonlySet<number>;
  private readonly stored = new Set<number>();
  private readonly parts: number;
  private readonly slots: Semaphore;
  private conn: SftpConnection | undefined;
  private handle: Buffer | undefined;
  /** Bytes in the temp file when it was opened: `matches` cannot succeed beyond it. */
  private existingBytes = 0;
  /** The rename of a commit was sent: a failed commit may have happened all the same. */
  private renameSent = false;
  /** Reopens after lost connections so far. */
  private reopens = 0;
  /** A reopen after a lost connection, shared by the parts that noticed it. */
  private reopening: Promise<{ conn: SftpConnection; handle: Buffer }> | undefined;
  private state: 'open' | 'committed' | 'suspended' | 'aborted' = 'open';
  private resumable = new Set<number>();

  constructor(
    private readonly driver: SftpDriver,
    private readonly pool: ConnectionPool,
    readonly key: string,
    private readonly finalPath: string,
    private readonly tempPath: string,
    readonly size: number,
    readonly partBytes: number,
  ) {
    this.parts = partCount(size, partBytes);
    this.slots = new Semaphore(driver.options.concurrencyPerFile);
    this.resumableParts = this.resumable;
  }

  private context(action: string): ErrorContext {
    return { driver: this.driver.name, action, key: this.key };
  }

  /**
   * Checks (and makes) the key's folders, then finds or creates the temp file. The temp file's
   * LSTAT goes out with the folder check: it reads nothing, and is not needed when the folder
   * was just made.
   */
  async start(): Promise<void> {
    const conn = await this.pool.acquire();
    this.conn = conn;
    try {
      const context = this.context('write');
      const temp = settle(this.statTemp(conn));
      const folder = await this.driver.checkFolder(conn, foldersOf(this.key), context, true);
      let existing: Stats | undefined;
      if (folder !== 'created') {
        const found = await temp;
        if (!found.ok) throw found.error;
        existing = found.value;
      }
      if (existing && existing.size <= this.size && existing.size > 0) {
        this.handle = await this.openTemp(conn, 'r+');
        this.existingBytes = existing.size;
        for (let index = 0; index < this.parts; index++) {
          if (partRange(index, this.size, this.partBytes).end <= existing.size) this.resumable.add(index);
        }
      } else {
        this.handle = await this.openTemp(conn, 'w');
      }
    } catch (err) {
      this.release();
      throw err;
    }
  }

  /** The temp file, `undefined` when there is none; rejects when something else holds its name. */
  private statTemp(conn: SftpConnection): Promise<Stats | undefined> {
    return this.driver.tempStats(conn, this.tempPath, this.context('write'));
  }

  /** Opens the temp file; `w` also makes the folders again when they have gone. */
  private async openTemp(conn: SftpConnection, flags: 'r+' | 'w'): Promise<Buffer> {
    if (flags === 'w') return this.driver.openCreating(conn, this.key, this.tempPath, this.context('write'));
    return conn.call<Buffer>(this.context('write'), (sftp, done) => sftp.open(this.tempPath, flags, done));
  }

  /** The live connection and handle, reopening the temp file after a lost connection. */
  private async ready(action: string): Promise<{ conn: SftpConnection; handle: Buffer }> {
    if (this.state !== 'open') {
      throw new DriverError('E_SESSION_CLOSED', `${this.driver.name}: ${this.key}: ${action}: the write session is already ${this.state}`, { kind: 'fatal' });
    }
    if (this.conn?.alive && this.handle) return { conn: this.conn, handle: this.handle };
    // Parts written in parallel all notice the lost connection: one reopens, the others wait for
    // it (else one could pair the new connection with the old handle, which the server refuses).
    this.reopening ??= this.reopen().finally(() => { this.reopening = undefined; });
    return this.reopening;
  }

  /**
   * OpenSSH answers FAILURE for a handle it does not know. After this session reopened its temp
   * file on a new connection, a FAILURE on a handle call can be a handle that went stale in the
   * switch (seen under heavy load with resets): drop it so that the retry reopens, and let the
   * retry layer try again. A real refusal fails again and is reported after the retries.
   */
  private staleHandle(err: unknown): unknown {
    if (this.reopens === 0 || sftpStatusOf((err as { cause?: unknown }).cause) !== SFTP_STATUS.FAILURE) return err;
    this.handle = undefined;
    this.release();
    return new DriverError('E_STALE_HANDLE', `${(err as Error).message} (after a reconnect: retrying with a fresh handle)`, { kind: 'retryable', cause: err });
  }

  private async reopen(): Promise<{ conn: SftpConnection; handle: Buffer }> {
    this.reopens++;
    this.release();
    this.handle = undefined;
    const conn = await this.pool.acquire();
    try {
      const existing = await this.statTemp(conn);
      let handle: Buffer;
      if (existing) {
        handle = await this.openTemp(conn, 'r+');
      } else {
        // The temp file vanished: everything stored so far is gone with it.
        this.stored.clear();
        this.existingBytes = 0;
        handle = await this.openTemp(conn, 'w');
      }
      this.conn = conn;
      this.handle = handle;
      return { conn, handle };
    } catch (err) {
      this.pool.release(conn);
      throw err;
    }
  }

  private checkPart(index: number, bytes: Uint8Array, action: string): { start: number; end: number } {
    if (!Number.isInteger(index) || index < 0 || index >= this.parts) {
      throw new DriverError('E_BAD_PART', `${this.driver.name}: ${this.key}: ${action}: part ${index} does not exist (${this.parts} parts)`, { kind: 'fatal' });
    }
    const range = partRange(index, this.size, this.partBytes);
    if (bytes.length !== range.end - range.start) {
      throw new DriverError(
        'E_BAD_PART',
        `${this.driver.name}: ${this.key}: ${action}: part ${index} must have ${range.end - range.start} bytes, got ${bytes.length}`,
        { kind: 'fatal' },
      );
    }
    return range;
  }

  /**
   * True when the temp file already holds exactly `bytes` for part `index` (read back and
   * compared). A mismatch returns false and changes nothing; the part is then written again.
   */
  async matches(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<boolean> {
    const range = this.checkPart(index, bytes, 'check part');
    throwIfAborted(options.signal, `${this.driver.name}: ${this.key}: check part`);
    if (range.end > this.existingBytes && !this.stored.has(index)) return false;
    const { conn, handle } = await this.ready('check part');
    const context = this.context(`check part ${index}`);
    let position = 0;
    const { concurrencyPerFile, requestBytes } = this.driver.options;
    const shape: ReadShape = { concurrency: concurrencyPerFile, requestBytes, pieceBytes: requestBytes, allocate: Buffer.allocUnsafe };
    for await (const chunk of readRange(conn, handle, range.start, range.end, shape, context, this.driver.counters, options.signal)) {
      if (!Buffer.from(bytes.buffer, bytes.byteOffset + position, chunk.length).equals(chunk)) return false;
      position += chunk.length;
    }
    if (position !== bytes.length) return false;
    this.stored.add(index);
    return true;
  }

  /**
   * Writes part `index` at its offset with up to `concurrencyPerFile` WRITE requests in flight
   * (shared by all parts of this file). A failure (or an abort) waits for the requests already
   * sent, then rejects; the part can simply be written again.
   */
  async write(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<void> {
    const range = this.checkPart(index, bytes, 'write');
    const what = `${this.driver.name}: ${this.key}: write part ${index}`;
    throwIfAborted(options.signal, what);
    const { conn, handle } = await this.ready('write');
    this.stored.delete(index);
    const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const context = this.context(`write part ${index}`);
    const requestBytes = this.driver.options.requestBytes;
    const inFlight: Promise<void>[] = [];
    let failure: unknown;
    for (let offset = 0; offset < data.length && failure === undefined; offset += requestBytes) {
      await this.slots.acquire();
      if (failure !== undefined || options.signal?.aborted) {
        this.slots.release();
        break;
      }
      const length = Math.min(requestBytes, data.length - offset);
      const sent = conn
        .call<void>(context, (sftp: SFTPWrapper, done) => sftp.write(handle, data, offset, length, range.start + offset, (err) => done(err)))
        .then(
          () => {
            this.driver.counters.bytesWritten += length;
          },
          (err: unknown) => {
            failure ??= this.staleHandle(err);
          },
        )
        .finally(() => this.slots.release());
      inFlight.push(sent);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    throwIfAborted(options.signal, what);
    this.stored.add(index);
  }

  /**
   * Checks that every part was written or confirmed and that the temp file has exactly `size`
   * bytes, makes it durable (`fsync@openssh.com` when offered) and renames it onto the key
   * (atomic with `posix-rename@openssh.com`; otherwise the old file is removed first, so the
   * key is briefly missing but never partial). On failure nothing appears under the key.
   */
  async commit(options: CommitOptions): Promise<void> {
    const what = `${this.driver.name}: ${this.key}: commit`;
    throwIfAborted(options.signal, what);
    if (this.renameSent && await this.renamedEarlier()) {
      // A retry after a commit whose rename went through but whose answer was lost.
      this.state = 'committed';
      this.release();
      return;
    }
    const missing: number[] = [];
    for (let index = 0; index < this.parts; index++) if (!this.stored.has(index)) missing.push(index);
    if (missing.length > 0) {
      const list = missing.length > 5 ? `${missing.slice(0, 5).join(', ')}... (${missing.length} in all)` : missing.join(', ');
      throw new DriverError('E_INCOMPLETE', `${what}: part(s) ${list} were never written`, { kind: 'integrity' });
    }
    const { conn, handle } = await this.ready('commit');
    const stats = await conn.call<Stats>(this.context('commit: size check'), (sftp, done) => sftp.fstat(handle, done)).catch((err: unknown) => {
      throw this.staleHandle(err);
    });
    if (stats.size !== this.size) {
      throw new DriverError('E_SIZE_MISMATCH', `${what}: the temp file has ${stats.size} bytes, expected ${this.size}`, { kind: 'integrity' });
    }
    await this.driver.fsync(conn, handle, this.context('commit: fsync'));
    // The handle is spent once CLOSE is sent, even if its answer is lost: a retry reopens.
    this.handle = undefined;
    await conn.call<void>(this.context('commit: close'), (sftp, done) => sftp.close(handle, done));
    throwIfAborted(options.signal, what);
    this.renameSent = true;
    await this.driver.replace(conn, this.tempPath, this.finalPath, this.context('commit: rename'));
    this.state = 'committed';
    this.release();
  }

  /**
   * After a commit that failed once its rename was sent: true when the rename did happen (no
   * temp file any more, the key holds exactly `size` bytes), so that the retry must not recreate
   * an empty temp file and report it as damage.
   */
  private async renamedEarlier(): Promise<boolean> {
    if (!this.conn?.alive) {
      this.release();
      this.conn = await this.pool.acquire();
    }
    const conn = this.conn;
    if (await this.statTemp(conn)) return false;
    try {
      const final = await conn.call<Stats>(this.context('commit'), (sftp, done) => sftp.lstat(this.finalPath, done));
      return final.isFile() && final.size === this.size;
    } catch (err) {
      if ((err as { kind?: string }).kind === 'not-found') return false;
      throw err;
    }
  }

  /** Closes the temp file and keeps it for a later run. Never throws; idempotent. */
  async suspend(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'suspended';
    if (this.conn && this.handle) await closeQuietlyAndWait(this.conn, this.handle);
    this.handle = undefined;
    this.release();
  }

  /**
   * Closes and removes the temp file (best effort: never throws). An object committed earlier
   * under the key is left alone. Idempotent.
   */
  async abort(): Promise<void> {
    if (this.state === 'aborted' || this.state === 'committed') return;
    this.state = 'aborted';
    if (this.conn && this.handle) await closeQuietlyAndWait(this.conn, this.handle);
    this.handle = undefined;
    await this.driver.removeTemp(this.tempPath, this.key);
    this.release();
  }

  private release(): void {
    if (this.conn) this.pool.release(this.conn);
    this.conn = undefined;
  }
}

/** How `readRange` cuts and buffers what it reads. */
interface ReadShape {
  /** Most READ requests in flight. */
  readonly concurrency: number;
  /** Bytes per READ request. */
  readonly requestBytes: number;
  /** Bytes per yielded piece (the last one may be shorter). */
  readonly pieceBytes: number;
  /** Where piece buffers come from. */
  readonly allocate: (size: number) => Buffer;
}

/** Smallest and largest piece `openRead` yields when the caller asks for a `pieceBytes`. */
const MIN_PIECE_BYTES = 4096;
const MAX_PIECE_BYTES = 64 * 1024 * 1024;

/**
 * Reads `[start, end)` of an open file as ordered pieces of `pieceBytes`, with up to
 * `concurrency` READ requests in flight; the server's replies land directly in the piece
 * buffers. Read-ahead stops at about two pieces plus the requests in flight, so a slow consumer
 * bounds memory. Short replies are completed with follow-up reads; an early end of file
 * rejects with kind `integrity`.
 */
async function* readRange(
  conn: SftpConnection,
  handle: Buffer,
  start: number,
  end: number,
  shape: ReadShape,
  context: ErrorContext,
  counters: SftpTransferCounters,
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  interface Piece {
    readonly buffer: Buffer;
    readonly position: number;
    filled: number;
    failure?: unknown;
    wake?: () => void;
  }
  const pieces: Piece[] = []; // allocated, not yet yielded, in file order
  let queuedBytes = 0;
  let nextPiece = start;
  let issuing: Piece | undefined;
  let issued = 0; // bytes of `issuing` already requested
  let inFlight = 0;
  let stopped = false;
  const readAhead = shape.concurrency * shape.requestBytes + shape.pieceBytes;

  /** Reads `[offset, offset + length)` of a piece, following up on short replies. */
  const readInto = (piece: Piece, offset: number, length: number): void => {
    inFlight++;
    conn
      .call<number>(context, (sftp, done) => sftp.read(handle, piece.buffer, offset, length, piece.position + offset, (err, bytesRead) => done(err, bytesRead)))
      .then(
        (bytesRead) => {
          inFlight--;
          if (stopped) return;
          counters.bytesRead += bytesRead;
          if (bytesRead === 0) {
            piece.failure ??= new DriverError(
              'E_SHORT_READ',
              `${context.driver}: ${context.key}: ${context.action}: the file ended at byte ${piece.position + offset}, expected ${end}`,
              { kind: 'integrity' },
            );
          } else if (bytesRead < length) {
            readInto(piece, offset + bytesRead, length - bytesRead);
          }
          piece.filled += bytesRead;
          piece.wake?.();
          pump();
        },
        (err: unknown) => {
          inFlight--;
          piece.failure ??= err;
          piece.wake?.();
        },
      );
  };

  const pump = (): void => {
    while (!stopped && inFlight < shape.concurrency) {
      if (!issuing || issued >= issuing.buffer.length) {
        if (nextPiece >= end || queuedBytes >= readAhead) return;
        const length = Math.min(shape.pieceBytes, end - nextPiece);
        issuing = { buffer: shape.allocate(length), position: nextPiece, filled: 0 };
        pieces.push(issuing);
        queuedBytes += length;
        nextPiece += length;
        issued = 0;
      }
      const length = Math.min(shape.requestBytes, issuing.buffer.length - issued);
      readInto(issuing, issued, length);
      issued += length;
    }
  };

  const onAbort = (): void => {
    for (const piece of pieces) piece.wake?.();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    pump();
    while (pieces.length > 0) {
      const head = pieces[0] as Piece;
      while (head.failure === undefined && head.filled < head.buffer.length) {
        throwIfAborted(signal, `${context.driver}: ${context.key}: ${context.action}`);
        await new Promise<void>((resolve) => {
          head.wake = resolve;
        });
        head.wake = undefined;
      }
      if (head.failure !== undefined) throw head.failure;
      pieces.shift();
      queuedBytes -= head.buffer.length;
      pump();
      throwIfAborted(signal, `${context.driver}: ${context.key}: ${context.action}`);
      yield head.buffer;
    }
  } finally {
    stopped = true;
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Wraps an async iterator so that `onDone` runs exactly once however iteration ends. */
async function* releasing<T>(source: AsyncGenerator<T>, onDone: () => void): AsyncGenerator<T> {
  try {
    yield* source;
  } finally {
    onDone();
  }
}

function closeQuietly(conn: SftpConnection, handle: Buffer): void {
  void closeQuietlyAndWait(conn, handle);
}

async function closeQuietlyAndWait(conn: SftpConnection, handle: Buffer): Promise<void> {
  if (!conn.alive) return;
  try {
    await conn.call<void>({ driver: conn.driver, action: 'close' }, (sftp, done) => sftp.close(handle, done));
  } catch {
    /* the handle dies with the connection anyway */
  }
}

type Settled<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** A promise that never rejects: it may be started early and then dropped unawaited. */
function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value): Settled<T> => ({ ok: true, value }),
    (error: unknown): Settled<T> => ({ ok: false, error }),
  );
}

function isNotFound(err: unknown): boolean {
  return (err as { kind?: string } | null)?.kind === 'not-found';
}

function missingAsUndefined(err: unknown): undefined {
  if (isNotFound(err)) return undefined;
  throw err;
}

/** The folder segments of a key: `a/b/c` -> `['a', 'b']`. */
function foldersOf(key: string): string[] {
  return key.split('/').slice(0, -1);
}

/** True when the absolute `path` is `realRoot` or below it. */
function isInside(path: string, realRoot: string): boolean {
  if (realRoot === '/') return path.startsWith('/');
  return path === realRoot || path.startsWith(`${realRoot}/`);
}

/** The temp path of a final path (same folder). */
function tempPathFor(path: string): string {
  return posix.join(posix.dirname(path), tempNameFor(posix.basename(path)));
}

/**
 * True when an extension request was not possible: ssh2 refuses to send it (the server did not
 * announce it), or the server answers "unsupported" or "permission denied" (OpenSSH's
 * `sftp-server -P` bans requests that way).
 */
function extensionRefused(err: unknown): boolean {
  if (/does not support this extended request/i.test((err as Error)?.message ?? '')) return true;
  const status = sftpStatusOf((err as { cause?: unknown })?.cause);
  return status === SFTP_STATUS.OP_UNSUPPORTED || status === SFTP_STATUS.PERMISSION_DENIED;
}

function isValidKey(key: string): boolean {
  try {
    checkKey(key);
    return true;
  } catch {
    return false;
  }
}

/** A counting semaphore: at most `size` holders. */
class Semaphore {
  private available: number;
  private readonly waiting: (() => void)[] = [];
  constructor(size: number) {
    this.available = size;
  }
  async acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.available++;
  }
}
