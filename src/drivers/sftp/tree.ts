/**
 * The confined tree of the `sftp` driver: remote paths of keys, the folders of keys checked
 * (and made) without ever going through a symlink that leads outside the root, the listing
 * walk, and the file-level calls every writer shares (temp file lookup and creation, fsync,
 * atomic replace).
 *
 * Symlinks, as in the local driver: no key reaches outside `root` through a symlink on the
 * server. A symlink under the root that leads outside it (to a file or a folder; as the key
 * itself or as one of its folders) is refused with a `KeyError` (kind `permanent`: `nas: key
 * "b1/meta/x" refused: a symlink on its path points outside the root (to /etc)`); nothing is
 * created, written or removed through it. Symlinks that stay inside the root are followed for
 * files and for the folders of a key; the walk lists a symlink to a file under its own key and
 * does not descend into symlinked folders (their contents are listed under their real path
 * already, and loops are impossible). A dangling symlink is a missing object (in the way, when a
 * folder must be created there). A symlink planted under a temp name is refused, never written
 * through. The check trusts the server's REALPATH to resolve symlinks, as OpenSSH's does.
 *
 * Cost: the folders of keys are checked once and remembered (a bounded LRU,
 * src/drivers/toolkit/tree.ts): one LSTAT per level not known yet, all sent at once (one round
 * trip, and sent along with the operation's own first request where that is harmless), plus a
 * REALPATH and a STAT only where a level is a symlink. The walk remembers every real folder it
 * passes (READDIR returns lstat attributes), so the calls that follow a listing pay nothing for
 * their folders, and folders this driver creates are remembered too. Races with other
 * processes changing the tree meanwhile (a checked folder swapped for a symlink) are not
 * defended against: the root belongs to offsite.
 */
import { posix } from 'node:path';
import type { Stats } from 'ssh2';
import { DriverError, throwIfAborted } from '../../errors.js';
import {
  checkDriverKey, FolderCache, isInside, isNotFound, isSafeKey, isTempName, keyError, missingAsUndefined, sftpFingerprint, where, type ErrorContext,
} from '../toolkit/index.js';
import type { Entry, ListOptions } from '../types.js';
import { extensionRefused, settle, type Settled, type SftpConnection, type SftpHandle } from './connection.js';
import { isNoSuchFile, SFTP_STATUS, sftpStatusOf } from './errors.js';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
/** Folders remembered as checked (see the file comment): plenty for the leaf folders of a backup. */
const CHECKED_FOLDER_ENTRIES = 16_384;

/** The folder segments of a key: `a/b/c` -> `['a', 'b']`. */
export function foldersOf(key: string): string[] {
  return key.split('/').slice(0, -1);
}

export class SftpTree {
  /**
   * Folder keys (`a/b`) found to be folders whose path stays inside the root (every level a
   * real folder or a symlink leading inside), least recently used first.
   */
  readonly #checked = new FolderCache<true | 'made'>(CHECKED_FOLDER_ENTRIES);
  /** LSTATs and MKDIRs of folder levels in flight, shared by the files that need the same level at once. */
  readonly #looking = new Map<string, Promise<Settled<Stats>>>();
  readonly #making = new Map<string, { readonly conn: SftpConnection; readonly made: Promise<void> }>();
  /** The root's real path on the server, fetched when a symlink first needs comparing with it. */
  #realRoot: string | undefined;

  constructor(readonly driver: string, readonly root: string) {}

  /** Remote path of a key; refuses unsafe keys and names reserved for temp files (`KeyError`). */
  remotePath(key: string): string {
    checkDriverKey(this.driver, key);
    return this.join(key);
  }

  /** Remote path of a relative path under the root (unchecked). */
  join(relative: string): string {
    if (relative === '') return this.root;
    return this.root === '/' ? `/${relative}` : `${this.root}/${relative}`;
  }

  /**
   * Every file under `prefix`, recursively, one folder at a time (bounded memory: one directory
   * batch plus the folders still to visit), on `conn`. Temp files, folders, symlinks to folders
   * and names that are not valid keys are skipped; symlinks to files inside the root are listed
   * with the target's size. A symlink under the prefix that leads outside the root rejects with
   * a `KeyError`, as does a prefix whose folder is reached through one. A missing prefix yields
   * nothing. Every folder walked is remembered as checked. `onRefused`, `requireRoot` and
   * `descend` (folders it turns down are not opened): see `ListOptions`.
   */
  async *walk(conn: SftpConnection, prefix: string, signal: AbortSignal | undefined, options: Pick<ListOptions, 'onRefused' | 'requireRoot' | 'descend'> = {}): AsyncGenerator<Entry> {
    const context = (key: string): ErrorContext => ({ driver: this.driver, action: 'list', key });
    if (options.requireRoot) await this.#checkRootFolder(conn);
    const slash = prefix.lastIndexOf('/');
    const start = slash === -1 ? '' : prefix.slice(0, slash);
    const pending: string[] = [start];
    if (start !== '') {
      const segments = start.split('/');
      this.forget(segments); // a listing is rare and must see the tree as it is now
      if ((await this.checkFolder(conn, segments, context(prefix), false)) === 'missing') return;
    }
    while (pending.length > 0) {
      throwIfAborted(signal, `${this.driver}: list ${prefix}`);
      const dirKey = pending.pop() as string;
      for await (const batch of this.#readDirectory(conn, dirKey)) {
        for (const item of batch) {
          const name = item.filename;
          if (name === '.' || name === '..') continue;
          const key = dirKey === '' ? name : `${dirKey}/${name}`;
          if (!isSafeKey(key)) continue;
          // Servers may leave out the permissions (and so the type): ask for them.
          const mode = item.attrs.mode ?? (await this.#lstatPath(conn, this.join(key), key))?.mode ?? 0;
          const type = mode & S_IFMT;
          if (type === S_IFDIR) {
            // READDIR reports entries as lstat does: a real folder inside a checked one.
            this.#checked.set(key, true);
            const folder = `${key}/`;
            if ((folder.startsWith(prefix) || prefix.startsWith(folder)) && (options.descend?.(key) ?? true)) pending.push(key);
            continue;
          }
          this.#checked.delete(key); // not a folder (any more)
          if (!key.startsWith(prefix) || isTempName(name)) continue;
          if (type === S_IFREG) {
            yield { key, size: item.attrs.size, mtimeMs: item.attrs.mtime * 1000, fingerprint: sftpFingerprint(item.attrs.size, item.attrs.mtime) };
          } else if (type === S_IFLNK) {
            let target: { stats: Stats } | undefined;
            try {
              target = await this.followLink(conn, key, context(key));
            } catch (err) {
              if (options.onRefused === undefined || (err as { code?: string }).code !== 'E_BAD_KEY') throw err;
              options.onRefused(key, err as Error);
              continue;
            }
            if (target?.stats.isFile()) yield { key, size: target.stats.size, mtimeMs: target.stats.mtime * 1000, fingerprint: sftpFingerprint(target.stats.size, target.stats.mtime) };
          }
        }
      }
    }
  }

  /** For `list` with `requireRoot`: the root must exist and be a folder (one STAT). */
  async #checkRootFolder(conn: SftpConnection): Promise<void> {
    const root = this.root;
    const info = await conn.call<Stats>({ driver: this.driver, action: 'list', key: '(root)' }, (sftp, done) => sftp.stat(root, done))
      .catch((err: unknown) => missingAsUndefined(err));
    if (info === undefined) {
      throw new DriverError('E_ROOT_MISSING', `${this.driver}: root ${root} does not exist on the server (a typo in the config?)`, { kind: 'not-found' });
    }
    if (!info.isDirectory()) {
      throw new DriverError('E_ROOT_NOT_FOLDER', `${this.driver}: root ${root} is not a folder; root must name the folder that holds the backups`, { kind: 'permanent' });
    }
  }

  /** Directory entries in server-sized batches; nothing when the folder does not exist. */
  async *#readDirectory(conn: SftpConnection, dirKey: string): AsyncGenerator<{ filename: string; attrs: Stats }[]> {
    const context = { driver: this.driver, action: 'list', key: dirKey === '' ? '(root)' : `${dirKey}/` };
    let handle: SftpHandle;
    try {
      handle = await conn.open(context, this.join(dirKey), 'dir');
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    type Batch = { filename: string; attrs: Stats }[] | false;
    /** One READDIR; `answer` is set as soon as it has come. */
    const read = (): { readonly promise: Promise<Settled<Batch>>; answer?: Settled<Batch> } => {
      const request: { promise: Promise<Settled<Batch>>; answer?: Settled<Batch> } = {
        promise: settle(handle.call<Batch>(context, (sftp, raw, done) =>
          sftp.readdir(raw, (err, list) => {
            // ssh2 reports the end of a directory as `false` or as an EOF status.
            if (err && sftpStatusOf(err) === SFTP_STATUS.EOF) done(undefined, false);
            else done(err, list);
          }),
        )),
      };
      void request.promise.then((answer) => { request.answer = answer; });
      return request;
    };
    const isLast = (answer: Settled<Batch> | undefined): boolean => answer !== undefined && (!answer.ok || !answer.value || answer.value.length === 0);
    try {
      // Where the server answers in order, the next READDIR goes out with each (unless the one
      // before has already told the end): the end of a folder, where most fit in one batch, costs
      // no round trip of its own.
      let pending = read();
      let ahead = conn.runsInOrder ? read() : undefined;
      while (true) {
        const result = await pending.promise;
        if (isLast(result)) {
          await ahead?.promise; // answered with this one: the CLOSE then goes at once
          if (!result.ok) throw result.error;
          break;
        }
        yield (result as { value: Exclude<Batch, false> }).value;
        pending = ahead ?? read();
        ahead = conn.runsInOrder && !isLast(pending.answer) ? read() : undefined;
      }
    } finally {
      void handle.close(context);
    }
  }

  /** `lstat` of a path (not following symlinks); `undefined` when it does not exist. */
  async #lstatPath(conn: SftpConnection, path: string, key: string): Promise<Stats | undefined> {
    try {
      return await conn.call<Stats>({ driver: this.driver, action: 'list', key }, (sftp, done) => sftp.lstat(path, done));
    } catch (err) {
      return missingAsUndefined(err);
    }
  }

  /**
   * What is at `key` once the symlink checks passed: its attributes (for a symlink, its
   * target's) and the path to use (for a symlink, the target's real path); `undefined` when
   * nothing is there. The key's own LSTAT goes out with the folder check (it reads nothing,
   * wherever it lands), so a key in a known folder costs one request.
   */
  async fileAt(conn: SftpConnection, key: string, context: ErrorContext): Promise<{ path: string; stats: Stats } | undefined> {
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
   * Checks the folder `<root>/<segments>` of a key (see the file comment): no level may be a
   * symlink leading outside the root (`KeyError`). Levels not remembered yet are looked at with
   * one LSTAT each, all sent at once; a symlink level is resolved (REALPATH + STAT). Levels found
   * to be folders are remembered. With `create`, missing levels are made one by one below the
   * last existing (checked) one, so nothing is ever created through a symlink leading out, and a
   * file (or a symlink to one, or a dangling one) where a folder must be is an error (`permanent`).
   * Below a folder this driver made, nothing is there yet (a new backup's tree): the missing
   * levels are made without an LSTAT first (one that exists after all, made meanwhile by someone
   * else, fails its MKDIR and is looked at then). Files checking the same level at once share its
   * LSTAT and MKDIR (a new backup has about one folder per file, and several files at once).
   * @returns `ok` when the folder exists, `missing` when a level is missing or is not a folder
   *   (never with `create`), `created` when levels were made.
   */
  async checkFolder(conn: SftpConnection, segments: readonly string[], context: ErrorContext, create: boolean): Promise<'ok' | 'missing' | 'created'> {
    let known = segments.length;
    let parent: true | 'made' | undefined;
    while (known > 0 && (parent = this.#checked.get(segments.slice(0, known).join('/'))) === undefined) known--;
    if (known === segments.length) return 'ok';
    const levels = segments.slice(known).map((_, i) => segments.slice(0, known + i + 1).join('/'));
    const make = async (missing: readonly string[]): Promise<'created'> => {
      if (!conn.runsInOrder) {
        for (const level of missing) if (this.#checked.get(level) === undefined) await this.#makeOnce(conn, level, context);
        return 'created';
      }
      // The server makes them in the order sent, each after its parent: all at once, one round
      // trip. A level that fails fails the ones below it too; its own error is the one told. A
      // parent that another connection is making (another file's) is waited for first: the
      // order holds only on one connection.
      const making: Promise<Settled<void>>[] = [];
      for (const level of missing) {
        const parent = this.#making.get(level.slice(0, level.lastIndexOf('/')));
        if (parent !== undefined && parent.conn !== conn) await parent.made.catch(() => undefined);
        if (this.#checked.get(level) === undefined) making.push(settle(this.#makeOnce(conn, level, context)));
      }
      for (const made of making) {
        const result = await made;
        if (!result.ok) throw result.error;
      }
      return 'created';
    };
    if (create && parent === 'made') return make(levels);
    const found = levels.map((level) => this.#lstatOnce(conn, level, context));
    for (const [i, level] of levels.entries()) {
      const result = await (found[i] as Promise<Settled<Stats>>);
      if (!result.ok) {
        if (!isNotFound(result.error)) throw result.error;
        if (!create) return 'missing';
        return make(levels.slice(i));
      }
      if (!(await this.#isFolder(conn, level, result.value, context))) {
        if (create) throw this.#inTheWay(context, level);
        return 'missing';
      }
      this.#checked.set(level, true);
    }
    return 'ok';
  }

  /** The LSTAT of a folder level, shared with any other file looking at it now. */
  #lstatOnce(conn: SftpConnection, level: string, context: ErrorContext): Promise<Settled<Stats>> {
    let looking = this.#looking.get(level);
    if (looking === undefined) {
      looking = settle(conn.call<Stats>(context, (sftp, done) => sftp.lstat(this.join(level), done)));
      this.#looking.set(level, looking);
      void looking.then(() => this.#looking.delete(level));
    }
    return looking;
  }

  /** `#makeFolder`, shared with any other file making the same level now. */
  #makeOnce(conn: SftpConnection, level: string, context: ErrorContext): Promise<void> {
    let making = this.#making.get(level);
    if (making === undefined) {
      making = { conn, made: this.#makeFolder(conn, level, context) };
      this.#making.set(level, making);
      void making.made.finally(() => this.#making.delete(level)).catch(() => undefined);
    }
    return making.made;
  }

  /** True for a folder, or a symlink to one inside the root; a `KeyError` for a symlink leading out. */
  async #isFolder(conn: SftpConnection, level: string, stats: Stats, context: ErrorContext): Promise<boolean> {
    if (!stats.isSymbolicLink()) return stats.isDirectory();
    return (await this.followLink(conn, level, context))?.stats.isDirectory() ?? false;
  }

  /**
   * Creates the folder `<root>/<level>` whose parent is checked. When the parent is missing (the
   * root not made yet, or a remembered folder removed since), it is checked and made first.
   */
  async #makeFolder(conn: SftpConnection, level: string, context: ErrorContext, again = false): Promise<void> {
    try {
      await conn.call<void>(context, (sftp, done) => sftp.mkdir(this.join(level), done));
      this.#checked.set(level, 'made');
      return;
    } catch (err) {
      if (isNotFound(err) && !again) {
        const parent = level.includes('/') ? level.slice(0, level.lastIndexOf('/')).split('/') : [];
        this.forget(parent);
        if (parent.length === 0) await this.#makeRoot(conn, context);
        else await this.checkFolder(conn, parent, context, true);
        return this.#makeFolder(conn, level, context, true);
      }
      // OpenSSH answers FAILURE for "already exists" (made by someone else meanwhile). When the
      // look that tells which fails for another reason (a lost connection), that reason is the
      // error: the FAILURE alone would read as a permanent refusal.
      const now = await settle(conn.call<Stats>(context, (sftp, done) => sftp.lstat(this.join(level), done)));
      if (!now.ok) throw isNotFound(now.error) ? err : now.error;
      if (!(await this.#isFolder(conn, level, now.value, context))) throw this.#inTheWay(context, level, err);
      this.#checked.set(level, true);
    }
  }

  /** Creates the root and its missing parents (like `mkdir -p`). */
  async #makeRoot(conn: SftpConnection, context: ErrorContext): Promise<void> {
    await this.#makeDirectories(conn, this.root, { ...context, action: `create root ${this.root}` });
  }

  async #makeDirectories(conn: SftpConnection, dir: string, context: ErrorContext): Promise<void> {
    if (dir === '/' || dir === '.' || dir === '') return;
    try {
      await conn.call<void>(context, (sftp, done) => sftp.mkdir(dir, done));
      return;
    } catch (err) {
      if (isNotFound(err)) {
        await this.#makeDirectories(conn, posix.dirname(dir), context);
        try {
          await conn.call<void>(context, (sftp, done) => sftp.mkdir(dir, done));
          return;
        } catch (again) {
          if (!(await this.#isDirectory(conn, dir, context))) throw again;
          return;
        }
      }
      // OpenSSH answers FAILURE for "already exists": fine when it is a folder.
      if (!(await this.#isDirectory(conn, dir, context))) throw err;
    }
  }

  async #isDirectory(conn: SftpConnection, path: string, context: ErrorContext): Promise<boolean> {
    try {
      return (await conn.call<Stats>(context, (sftp, done) => sftp.stat(path, done))).isDirectory();
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * The real path and the target's attributes of the symlink at `<root>/<key>`, both asked at
   * once; `undefined` when it dangles (or loops). A `KeyError` when it leads outside the root.
   */
  async followLink(conn: SftpConnection, key: string, context: ErrorContext): Promise<{ real: string; stats: Stats } | undefined> {
    const path = this.join(key);
    const [real, target] = await Promise.all([
      settle(conn.call<string>(context, (sftp, done) => sftp.realpath(path, done))),
      settle(conn.call<Stats>(context, (sftp, done) => sftp.stat(path, done))),
    ]);
    if (!target.ok) return missingAsUndefined(target.error);
    if (!real.ok) return missingAsUndefined(real.error);
    const root = await this.#findRealRoot(conn, context);
    if (!isInside(real.value, root)) throw keyError(this.driver, context.key ?? key, `a symlink on its path points outside the root (to ${real.value})`);
    return { real: real.value, stats: target.value };
  }

  async #findRealRoot(conn: SftpConnection, context: ErrorContext): Promise<string> {
    const root = this.root;
    this.#realRoot ??= await conn.call<string>({ ...context, action: `${context.action}: root ${root}` }, (sftp, done) => sftp.realpath(root, done));
    return this.#realRoot;
  }

  #inTheWay(context: ErrorContext, level: string, cause?: unknown): DriverError {
    return new DriverError('E_IN_THE_WAY', `${where(context)}: ${level} is not a folder (a file, or a symlink to one or to nothing, is in the way)`, { kind: 'permanent', cause });
  }

  /** Forgets the remembered folders on the way to `<root>/<segments>`. */
  forget(segments: readonly string[]): void {
    this.#checked.forgetPath(segments);
  }

  /**
   * Opens `path` (a temp file of `key`, in the key's folder, checked by the caller) for writing
   * (create/truncate; `wx`: only when nothing has the name). When the folder has gone meanwhile,
   * it is checked and made again.
   */
  async openCreating(conn: SftpConnection, key: string, path: string, context: ErrorContext, flags: 'w' | 'wx' = 'w'): Promise<SftpHandle> {
    const open = (): Promise<SftpHandle> => conn.open(context, path, flags);
    try {
      return await open();
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const folders = foldersOf(key);
      this.forget(folders);
      if (folders.length === 0) await this.#makeRoot(conn, context);
      else await this.checkFolder(conn, folders, context, true);
      return open();
    }
  }
}

/**
 * The temp file at `temp` (lstat), or `undefined` when there is none. Rejects (`permanent`)
 * when something else holds the name, a symlink above all: opening it would write through it.
 */
export async function tempStats(conn: SftpConnection, temp: string, context: ErrorContext): Promise<Stats | undefined> {
  let stats: Stats;
  try {
    stats = await conn.call<Stats>(context, (sftp, done) => sftp.lstat(temp, done));
  } catch (err) {
    return missingAsUndefined(err);
  }
  if (stats.isFile()) return stats;
  throw new DriverError(
    'E_TEMP_IN_THE_WAY',
    `${where(context)}: the temp name ${posix.basename(temp)} is taken by something that is not a file (a ${stats.isSymbolicLink() ? 'symlink' : stats.isDirectory() ? 'folder' : 'special file'}); remove it`,
    { kind: 'permanent' },
  );
}

/** `fsync@openssh.com` on an open file; skipped where the server lacks or refuses it. */
export async function fsyncHandle(handle: SftpHandle, context: ErrorContext): Promise<void> {
  try {
    await handle.call<void>(context, (sftp, raw, done) => sftp.ext_openssh_fsync(raw, (err) => done(err)));
  } catch (err) {
    if (!extensionRefused(err)) throw err;
  }
}

/**
 * Renames `temp` onto `final`: atomically with `posix-rename@openssh.com`; otherwise with a
 * plain SFTP rename, which refuses to replace a file, so an existing `final` is removed first
 * (the key is then briefly missing, but never partial).
 */
export async function replaceFile(conn: SftpConnection, temp: string, final: string, context: ErrorContext): Promise<void> {
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
