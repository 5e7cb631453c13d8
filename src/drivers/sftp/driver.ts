/**
 * The `sftp` driver: objects are files under `root` on an SSH server (a NAS, a Linux host).
 * This file holds the `Driver` methods; the jobs behind them live next to it:
 *
 * - ./tree.ts           the confined tree: remote paths, folder checks and symlink checks, listing walk, fsync/replace
 * - ./read.ts           the read pipeline (pipelined SFTP READs at any offset)
 * - ./write-session.ts  the temp file `.<name>.offsite-partial`, resumable, renamed at commit
 * - ./copy.ts           server-side copy (copy-data, hard link, or through this machine)
 * - ./connection.ts     SSH connections and their pool; ./hostkeys.ts host key checks
 * - ./errors.ts         SFTP status / ssh2 classification; ./options.ts the config section
 *
 * Listing hides our temp files; keys whose last segment looks like one are refused. No key
 * reaches outside `root` through a symlink on the server (./tree.ts says how, and what it costs).
 */
import type { Readable } from 'node:stream';
import { throwIfAborted } from '../../errors.js';
import { checkDriverKey, checkDriverPrefix, checkReadRange, checkWriteShape, isNotFound, partialPathOf, pathTypeOf, sftpFingerprint } from '../toolkit/index.js';
import type {
  Capabilities, Committed, CopyWithinOptions, Driver, Entry, ListOptions, PathType, ReadOptions, SignalOptions, WriteOptions, WriteSession,
} from '../types.js';
import { ConnectionPool, type SftpHooks } from './connection.js';
import { copySftp } from './copy.js';
import { COPIES_PER_CHANNEL, COPY_CHANNELS } from './copy-channels.js';
import { sftpPlace, type SftpOptions } from './options.js';
import type { Identity, Location } from '../location.js';
import { serverRealRoot } from './identity.js';
import { openSftpRead, type SftpTransferCounters } from './read.js';
import { foldersOf, SftpTree } from './tree.js';
import { SftpWriteSession } from './write-session.js';

export type { SftpTransferCounters } from './read.js';

export class SftpDriver implements Driver {
  readonly name: string;
  readonly description: string;
  readonly location: Location;
  readonly capabilities: Capabilities;
  readonly counters: SftpTransferCounters = { bytesWritten: 0, bytesRead: 0 };
  readonly #pool: ConnectionPool;
  readonly #tree: SftpTree;

  /** No IO here: connections are opened by the first call that needs one. */
  constructor(name: string, readonly options: SftpOptions, hooks: SftpHooks = {}) {
    this.name = name;
    ({ description: this.description, location: this.location } = sftpPlace(options));
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
      copyConcurrency: COPY_CHANNELS * COPIES_PER_CHANNEL,
    };
    this.#pool = new ConnectionPool(name, options, hooks);
    this.#tree = new SftpTree(name, options.root);
  }

  /**
   * Every file under `prefix`, recursively, one folder at a time (./tree.ts `walk`: bounded
   * memory). Temp files, folders, symlinks to folders and names that are not valid keys are
   * skipped; symlinks to files inside the root are listed with the target's size. A symlink
   * under the prefix that leads outside the root rejects the iteration with a `KeyError`, as
   * does a prefix whose folder is reached through one. A missing prefix yields nothing. Errors
   * other than a missing folder reject the iteration (permission denied: `permanent`; a lost
   * connection: `retryable`). `onRefused` and `requireRoot`: see `ListOptions`.
   */
  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<Entry> {
    checkDriverPrefix(this.name, prefix);
    throwIfAborted(options.signal, `${this.name}: list ${prefix}`);
    const conn = await this.#pool.acquire();
    try {
      yield* this.#tree.walk(conn, prefix, options.signal, options);
    } finally {
      this.#pool.release(conn);
    }
  }

  /**
   * The file's entry, or `undefined` when nothing (or a folder, or a dangling symlink) is there.
   * Rejects with a `KeyError` when a symlink on the key's path leads outside the root.
   */
  async stat(key: string, options: SignalOptions = {}): Promise<Entry | undefined> {
    checkDriverKey(this.name, key);
    throwIfAborted(options.signal, `${this.name}: stat ${key}`);
    const conn = await this.#pool.acquire();
    try {
      const file = await this.#tree.fileAt(conn, key, { driver: this.name, action: 'stat', key });
      if (!file?.stats.isFile()) return undefined;
      return { key, size: file.stats.size, mtimeMs: file.stats.mtime * 1000, fingerprint: sftpFingerprint(file.stats.size, file.stats.mtime) };
    } finally {
      this.#pool.release(conn);
    }
  }

  /**
   * What `key` holds (see `Driver.whatIsAt`): an LSTAT with the folder checks (and for a symlink
   * inside the root, its target's attributes); never an OPEN. `missing` when it, or a folder
   * above it, is not there. Rejects with a `KeyError` when a symlink on the key's path leads
   * outside the root.
   */
  async whatIsAt(key: string, options: SignalOptions = {}): Promise<PathType> {
    checkDriverKey(this.name, key);
    throwIfAborted(options.signal, `${this.name}: stat ${key}`);
    const conn = await this.#pool.acquire();
    try {
      const found = await this.#tree.fileAt(conn, key, { driver: this.name, action: 'stat', key });
      return found === undefined ? 'missing' : pathTypeOf(found.stats);
    } finally {
      this.#pool.release(conn);
    }
  }

  /**
   * Streams `[offset, offset + length)` (./read.ts: to the end when `length` is omitted,
   * clipped to the file's size at open time) in pieces of `pieceBytes` (default `requestBytes`)
   * taken from `allocate` when given. Up to `concurrencyPerFile` READ requests are in flight and
   * read-ahead stops at about two pieces, so memory is bounded whatever the file's size. A
   * missing key (or a folder) rejects with `not-found`; a bad offset or length with
   * `E_BAD_ARGUMENT` (`fatal`); a file that shrinks while being read fails the stream with kind
   * `integrity`; a lost connection fails it with kind `retryable`.
   */
  async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    checkDriverKey(this.name, key);
    const context = { driver: this.name, action: 'read', key };
    const { offset, length } = checkReadRange(options, context);
    throwIfAborted(options.signal, `${this.name}: read ${key}`);
    const { concurrencyPerFile, requestBytes } = this.options;
    return openSftpRead({ tree: this.#tree, pool: this.#pool, concurrencyPerFile, requestBytes, counters: this.counters }, key, offset, length, options, context);
  }

  /**
   * Opens (or resumes) the temp file of `key` (./write-session.ts). When a temp file from an
   * earlier run exists and is not longer than `size`, it is kept and the parts lying wholly
   * inside it are reported in `resumableParts` (to be confirmed with `matches`); otherwise it is
   * created empty, with any missing folders. Rejects with `E_BAD_ARGUMENT` (`fatal`) for a bad
   * size or part size, `permanent` for permission problems, `retryable` for a lost connection,
   * `auth` for a refused host key or login.
   */
  async openWrite(key: string, options: WriteOptions): Promise<WriteSession> {
    const finalPath = this.#tree.remotePath(key);
    const { size, partBytes } = checkWriteShape(options, this.capabilities.maxPartBytes, { driver: this.name, action: 'write', key });
    throwIfAborted(options.signal, `${this.name}: write ${key}`);
    const tree = this.#tree;
    const tempPath = partialPathOf(finalPath);
    const session = new SftpWriteSession({
      driver: this.name, key, finalPath, tempPath, size, partBytes,
      pool: this.#pool,
      concurrencyPerFile: this.options.concurrencyPerFile,
      requestBytes: this.options.requestBytes,
      counters: this.counters,
      prepareFolder: (conn, context) => tree.checkFolder(conn, foldersOf(key), context, true),
      createTemp: (conn, context) => tree.openCreating(conn, key, tempPath, context),
    });
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
    const path = this.#tree.remotePath(key);
    throwIfAborted(options.signal, `${this.name}: delete ${key}`);
    const context = { driver: this.name, action: 'delete', key };
    const conn = await this.#pool.acquire();
    try {
      if ((await this.#tree.checkFolder(conn, foldersOf(key), context, false)) === 'missing') return;
      // Both at once: neither depends on the other (a round trip less at the end of every run).
      await Promise.all([path, partialPathOf(path)].map(async (target) => {
        try {
          await conn.call<void>(context, (sftp, done) => sftp.unlink(target, done));
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      }));
    } finally {
      this.#pool.release(conn);
    }
  }

  /**
   * Copies `fromKey` to `toKey` on the server (./copy.ts), through a temp file and an atomic
   * rename like any write: with `link` (and `serverSideCopy: auto`) a hard link first; then
   * OpenSSH's `copy-data`; else through this machine. A missing source rejects with `not-found`; a symlink
   * leading outside the root, on either key's path, with a `KeyError`; a source not as `expect`
   * says with `E_COPY_SOURCE_CHANGED`. A source that is a symlink inside the root is copied from
   * its target. Resolves with the copy's fingerprint.
   */
  async copyWithin(fromKey: string, toKey: string, options: CopyWithinOptions = {}): Promise<Committed | void> {
    checkDriverKey(this.name, fromKey);
    checkDriverKey(this.name, toKey);
    throwIfAborted(options.signal, `${this.name}: copy ${fromKey} to ${toKey}`);
    return copySftp({ name: this.name, tree: this.#tree, pool: this.#pool, serverSideCopy: this.options.serverSideCopy, driver: this }, fromKey, toKey, options);
  }

  /**
   * Opens the copy connection and its channels now (`Driver.prepareCopies`), unless server-side
   * copies are off: the first copies of a reuse night then do not wait for its handshake.
   */
  prepareCopies(): void {
    if (this.capabilities.serverSideCopy) this.#pool.prepareCopies();
  }

  /** Host and port, and the server's real path of the root (./identity.ts). Reads only; needs a connection. */
  async identify(options: SignalOptions = {}): Promise<Identity> {
    throwIfAborted(options.signal, `${this.name}: identify`);
    const context = { driver: this.name, action: 'identify the root' };
    const conn = await this.#pool.acquire();
    try {
      const realRoot = await serverRealRoot(this.options.root, (path) => conn.call<string>(context, (sftp, done) => sftp.realpath(path, done)));
      return { location: this.location, realRoot };
    } finally {
      this.#pool.release(conn);
    }
  }

  /**
   * Nothing to do: a commit is durable when it resolves (the temp file was fsynced with
   * `fsync@openssh.com` where the server offers it, then renamed). Part of the contract so that
   * callers and wrappers treat every driver alike.
   */
  async sync(_options?: SignalOptions): Promise<void> {}

  /** Closes every connection; later calls reject with `E_CLOSED` (`fatal`). Idempotent. */
  async close(): Promise<void> {
    await this.#pool.close();
  }
}
