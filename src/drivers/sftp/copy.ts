/**
 * Server-side copy of the `sftp` driver, through a temp file and an atomic rename like any
 * write. Tries, in order: only when the caller asks for `link` (the destination's `reuse: link`)
 * and `serverSideCopy` is `auto`, a hard link (`hardlink@openssh.com`: instant and no extra space;
 * offsite never modifies a committed file in place, it only replaces it by rename, but the two
 * names share their blocks); then OpenSSH's `copy-data` extension (OpenSSH >= 9.0: a real copy,
 * no bytes over the network), then fsync; last, where the server has neither, reading and
 * writing through this machine (bytes cross the network twice).
 */
import type { Stats } from 'ssh2';
import { DriverError, throwIfAborted } from '../../errors.js';
import { checkCopySource, isNotFound, notFoundError, partialPathOf, sftpFingerprint, sizeMismatchError, type ErrorContext } from '../toolkit/index.js';
import type { Committed, CopyWithinOptions, Driver } from '../types.js';
import type { SftpOptions } from './options.js';
import { extensionRefused, settle, type ConnectionPool, type Settled, type SftpConnection, type SftpHandle } from './connection.js';
import { SFTP_STATUS, sftpStatusOf } from './errors.js';
import { foldersOf, fsyncHandle, replaceFile, tempStats, type SftpTree } from './tree.js';
import { removeQuietly } from './write-session.js';

/** What a copy needs from the driver. */
export interface CopySetup {
  readonly name: string;
  readonly tree: SftpTree;
  readonly pool: ConnectionPool;
  /** The `serverSideCopy` option: `auto` allows hard links when the caller asks for `link`. */
  readonly serverSideCopy: SftpOptions['serverSideCopy'];
  /** The driver itself, for the last resort (stat, openRead, openWrite). */
  readonly driver: Pick<Driver, 'stat' | 'openRead' | 'openWrite'>;
}

/**
 * Copies `fromKey` to `toKey` (keys already checked). A missing source rejects with
 * `not-found`; a symlink leading outside the root, on either key's path, with a `KeyError`; a
 * source that is not as `options.expect` says with `E_COPY_SOURCE_CHANGED` before anything is
 * made. A source that is a symlink inside the root is copied from its target. Resolves with the
 * copy's fingerprint (from the FSTAT that checks its size; a rename keeps the mtime), or the
 * source's for a hard link.
 *
 * A reuse night makes hundreds of these, each a handful of requests that wait on the link, so
 * requests that do not depend on each other go out together: `copy-data` costs four round trips
 * (see `copyData`). The temp file is created with O_EXCL, which never follows a symlink planted
 * under its name, so it needs no LSTAT first and goes out with the source's LSTAT; a file a
 * killed run left under the temp name is removed, then the creation is tried again.
 */
export async function copySftp(setup: CopySetup, fromKey: string, toKey: string, options: CopyWithinOptions): Promise<Committed | void> {
  const { tree, pool } = setup;
  const { signal } = options;
  const mayLink = options.link === true && setup.serverSideCopy === 'auto';
  const from = tree.join(fromKey);
  const to = tree.join(toKey);
  const what = `${setup.name}: copy ${fromKey} to ${toKey}`;
  const context: ErrorContext = { driver: setup.name, action: `copy from ${fromKey}`, key: toKey };
  const sourceContext: ErrorContext = { driver: setup.name, action: 'copy', key: fromKey };
  const lease = await pool.acquireForCopy(signal);
  const conn = lease.conn;
  let done: Committed | undefined;
  try {
    done = await (async (): Promise<Committed | undefined> => {
      const temp = partialPathOf(to);
      const target: Target = { conn, tree, toKey, temp, context };
      // Round trip 1: the source's LSTAT (and its folders') with the temp file's creation (after the
      // target's folders are checked, or made: no request once they are known).
      const eager = from !== to && !mayLink && conn.supports('copy-data');
      let creating = settle(eager ? createTemp(target) : tree.checkFolder(conn, foldersOf(toKey), context, true).then(() => undefined));
      let opening: Promise<Settled<SftpHandle>> | undefined;
      let committed = false;
      try {
        const source = await tree.fileAt(conn, fromKey, sourceContext);
        if (!source?.stats.isFile()) throw notFoundError(sourceContext);
        const sourcePrint = sftpFingerprint(source.stats.size, source.stats.mtime);
        checkCopySource(sourceContext, options.expect, { size: source.stats.size, fingerprint: sourcePrint });
        if (!eager) {
          const made = await creating;
          if (!made.ok) throw made.error;
          if (from === to) return { fingerprint: sourcePrint };
          if (mayLink && (await hardLink(tree, conn, source.path, toKey, temp, context))) {
            throwIfAborted(signal, what);
            await replaceFile(conn, temp, to, context);
            return { fingerprint: sourcePrint };
          }
          if (!conn.supports('copy-data')) return undefined;
          creating = settle(createTemp(target));
        }
        // The source is opened only once its LSTAT says it is a file (a FIFO would block the
        // OPEN), along with the temp file's creation when that waits on new folders.
        opening = settle(conn.open(sourceContext, source.path, 'r'));
        const [made, opened] = await Promise.all([creating, opening]);
        if (!made.ok) throw made.error;
        if (!opened.ok) throw opened.error;
        const copied = await copyData(setup, target, opened.value, made.value as SftpHandle, source.stats.size, signal);
        committed = copied !== undefined;
        return copied;
      } finally {
        // Whatever was opened is closed; a temp file made is removed unless the copy took its name.
        const [made, opened] = await Promise.all([creating, opening]);
        await Promise.all([made.ok ? made.value?.close(context) : undefined, opened?.ok ? opened.value.close(context) : undefined]);
        if (made.ok && made.value !== undefined && !committed) await removeQuietly(pool, temp, { ...context, action: 'abort' });
      }
    })();
  } finally {
    lease.release();
  }
  if (done !== undefined) return done;
  if (options.serverOnly === true) {
    throw new DriverError('E_NO_SERVER_COPY', `${what}: the server has no copy-data extension (OpenSSH >= 9.0)${mayLink ? ' and could not hard-link' : ''}, so a copy would move the bytes through this machine`, { kind: 'permanent' });
  }
  return copyThroughClient(setup, fromKey, toKey, signal);
}

/** Where a copy goes: the target key, its temp file, and the connection that makes it. */
interface Target {
  readonly conn: SftpConnection;
  readonly tree: SftpTree;
  readonly toKey: string;
  readonly temp: string;
  readonly context: ErrorContext;
}

/**
 * Creates the temp file exclusively (O_EXCL: never through a symlink, never over anything) in
 * the target's folder, checked or made first. A file already under the temp name (a copy or
 * upload a killed run left) is removed and the creation tried again; anything else there is
 * refused (`E_TEMP_IN_THE_WAY`).
 */
async function createTemp({ conn, tree, toKey, temp, context }: Target): Promise<SftpHandle> {
  await tree.checkFolder(conn, foldersOf(toKey), context, true);
  try {
    return await tree.openCreating(conn, toKey, temp, context, 'wx');
  } catch (err) {
    // OpenSSH answers EEXIST with the generic FAILURE status.
    if (sftpStatusOf((err as { cause?: unknown }).cause) !== SFTP_STATUS.FAILURE || (await tempStats(conn, temp, context)) === undefined) throw err;
    await conn.call<void>(context, (sftp, done) => sftp.unlink(temp, done));
    return tree.openCreating(conn, toKey, temp, context, 'wx');
  }
}

/**
 * `copy-data` from `reader` into the temp file open as `writer`, then fsync, then the rename onto
 * the target; the copy's fingerprint, or undefined when the server refuses the extension. Round
 * trips, after (1) the source's LSTAT with the temp's creation and (2) the source's OPEN: (3)
 * `copy-data`, the FSTAT that checks the copy's size and the fsync, all three at once where the
 * server is OpenSSH, whose sftp-server runs requests one at a time in the order they come
 * (elsewhere the fsync waits for the copy's answer: one more round trip); (4) both CLOSEs and the
 * rename, sent only once the fsync has answered (elsewhere the rename waits for the CLOSEs). The
 * caller closes what is left open and removes the temp file when anything fails before the rename.
 */
async function copyData(setup: CopySetup, target: Target, reader: SftpHandle, writer: SftpHandle, size: number, signal: AbortSignal | undefined): Promise<Committed | undefined> {
  const { conn, context, temp } = target;
  const copy = reader.callWith<void>(writer, context, (sftp, readHandle, writeHandle, done) => sftp.ext_copy_data(readHandle, 0, 0, writeHandle, 0, done));
  const stat = settle(writer.call<Stats>(context, (sftp, raw, done) => sftp.fstat(raw, done)));
  const synced = conn.runsInOrder ? settle(fsyncHandle(writer, context)) : undefined;
  try {
    await copy;
  } catch (err) {
    await Promise.all([stat, synced]);
    if (extensionRefused(err)) return undefined;
    throw err;
  }
  const stats = await stat;
  if (!stats.ok) throw stats.error;
  if (stats.value.size !== size) throw sizeMismatchError(context, 'the copy', stats.value.size, size);
  const sync = await (synced ?? settle(fsyncHandle(writer, context)));
  if (!sync.ok) throw sync.error;
  throwIfAborted(signal, `${setup.name}: copy to ${target.toKey}`);
  // Both CLOSEs go first (a server may refuse to rename an open file), the rename with them
  // where requests are run in order.
  const closed = Promise.all([writer.close(context, false), reader.close(context)]);
  if (!conn.runsInOrder) await closed;
  await Promise.all([replaceFile(conn, temp, setup.tree.join(target.toKey), context), closed]);
  return { fingerprint: sftpFingerprint(stats.value.size, stats.value.mtime) };
}

/** Hard-links `from` as `temp` (of `toKey`); false when the server or its file system cannot. */
async function hardLink(tree: SftpTree, conn: SftpConnection, from: string, toKey: string, temp: string, context: ErrorContext): Promise<boolean> {
  try {
    await conn.call<void>(context, (sftp, done) => sftp.unlink(temp, done));
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  const link = (): Promise<void> => conn.call<void>(context, (sftp, done) => sftp.ext_openssh_hardlink(from, temp, done));
  try {
    await link();
    return true;
  } catch (err) {
    if (isNotFound(err)) {
      tree.forget(foldersOf(toKey)); // removed since it was checked: check and make it again
      await tree.checkFolder(conn, foldersOf(toKey), context, true);
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

/** The last resort: read from the server and write back, as any upload (`expect` was checked just before). */
async function copyThroughClient(setup: CopySetup, fromKey: string, toKey: string, signal?: AbortSignal): Promise<Committed | void> {
  const { driver } = setup;
  const context: ErrorContext = { driver: setup.name, action: 'copy', key: fromKey };
  const entry = await driver.stat(fromKey, { signal });
  if (!entry) throw notFoundError(context);
  const partBytes = 8 * 1024 * 1024;
  const session = await driver.openWrite(toKey, { size: entry.size, partBytes, signal });
  try {
    const stream = await driver.openRead(fromKey, { pieceBytes: partBytes, length: entry.size, signal });
    let index = 0;
    for await (const piece of stream) await session.write(index++, piece as Buffer, { signal });
    return await session.commit({ hash: '', signal });
  } catch (err) {
    await session.suspend();
    throw err;
  }
}
