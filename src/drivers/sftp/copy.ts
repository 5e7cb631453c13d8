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
import { extensionRefused, settle, type ConnectionPool, type SftpConnection, type SftpHandle } from './connection.js';
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
 * made. A source that is a symlink inside the root is copied from its target. Requests that do
 * not depend on each other go out together (the source's and the temp name's LSTAT, both OPENs,
 * both CLOSEs): a copy costs about six round trips. Resolves with the copy's fingerprint (from the
 * FSTAT that checks its size; a rename keeps the mtime), or the source's for a hard link.
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
  const conn = await pool.acquire();
  let done: Committed | undefined;
  try {
    done = await (async (): Promise<Committed | undefined> => {
      const temp = partialPathOf(to);
      // The target's folders (made when missing, even if the copy then fails) and temp name are looked at while the source is.
      const tempLooked = settle((async () => {
        if ((await tree.checkFolder(conn, foldersOf(toKey), context, true)) !== 'created') await tempStats(conn, temp, context);
      })());
      const source = await tree.fileAt(conn, fromKey, sourceContext).finally(() => tempLooked);
      if (!source?.stats.isFile()) throw notFoundError(sourceContext);
      const sourcePrint = sftpFingerprint(source.stats.size, source.stats.mtime);
      checkCopySource(sourceContext, options.expect, { size: source.stats.size, fingerprint: sourcePrint });
      const looked = await tempLooked;
      if (!looked.ok) throw looked.error;
      if (from === to) return { fingerprint: sourcePrint };
      const copied = mayLink && (await hardLink(tree, conn, source.path, toKey, temp, context)) ? { fingerprint: sourcePrint }
        : await copyData(setup, conn, source.path, toKey, temp, source.stats.size, context);
      if (!copied) return undefined;
      throwIfAborted(signal, what);
      await replaceFile(conn, temp, to, context);
      return copied;
    })();
  } finally {
    pool.release(conn);
  }
  if (done !== undefined) return done;
  if (options.serverOnly === true) {
    throw new DriverError('E_NO_SERVER_COPY', `${what}: the server has no copy-data extension (OpenSSH >= 9.0)${mayLink ? ' and could not hard-link' : ''}, so a copy would move the bytes through this machine`, { kind: 'permanent' });
  }
  return copyThroughClient(setup, fromKey, toKey, signal);
}

/** `copy-data` into `temp`; the copy's fingerprint, or undefined when the server does not offer (or refuses) it. */
async function copyData(setup: CopySetup, conn: SftpConnection, from: string, toKey: string, temp: string, size: number, context: ErrorContext): Promise<Committed | undefined> {
  let source: SftpHandle | undefined;
  let target: SftpHandle | undefined;
  let copied = false;
  try {
    const [opened, created] = await Promise.all([
      settle(conn.open(context, from, 'r')),
      settle(setup.tree.openCreating(conn, toKey, temp, context)),
    ]);
    if (opened.ok) source = opened.value;
    if (created.ok) target = created.value;
    if (!opened.ok) throw opened.error;
    if (!created.ok) throw created.error;
    const [reader, writer] = [opened.value, created.value];
    try {
      await reader.callWith<void>(writer, context, (sftp, readHandle, writeHandle, done) => sftp.ext_copy_data(readHandle, 0, 0, writeHandle, 0, done));
    } catch (err) {
      if (extensionRefused(err)) return undefined;
      throw err;
    }
    const stats = await writer.call<Stats>(context, (sftp, raw, done) => sftp.fstat(raw, done));
    if (stats.size !== size) throw sizeMismatchError(context, 'the copy', stats.size, size);
    await fsyncHandle(writer, context);
    copied = true;
    return { fingerprint: sftpFingerprint(stats.size, stats.mtime) };
  } finally {
    await Promise.all([source?.close(context), target?.close(context)]);
    if (target && !copied) await removeQuietly(setup.pool, temp, { ...context, action: 'abort' });
  }
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
