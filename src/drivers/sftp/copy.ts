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
import { isNotFound, notFoundError, partialPathOf, sizeMismatchError, type ErrorContext } from '../toolkit/index.js';
import type { CopyWithinOptions, Driver } from '../types.js';
import type { SftpOptions } from './options.js';
import { extensionRefused, type ConnectionPool, type SftpConnection, type SftpHandle } from './connection.js';
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
 * `not-found`; a symlink leading outside the root, on either key's path, with a `KeyError`. A
 * source that is a symlink inside the root is copied from its target.
 */
export async function copySftp(setup: CopySetup, fromKey: string, toKey: string, options: CopyWithinOptions): Promise<void> {
  const { tree, pool } = setup;
  const { signal } = options;
  const mayLink = options.link === true && setup.serverSideCopy === 'auto';
  const from = tree.join(fromKey);
  const to = tree.join(toKey);
  const what = `${setup.name}: copy ${fromKey} to ${toKey}`;
  const context: ErrorContext = { driver: setup.name, action: `copy from ${fromKey}`, key: toKey };
  const sourceContext: ErrorContext = { driver: setup.name, action: 'copy', key: fromKey };
  const conn = await pool.acquire();
  let done: boolean;
  try {
    done = await (async () => {
      const source = await tree.fileAt(conn, fromKey, sourceContext);
      if (!source?.stats.isFile()) throw notFoundError(sourceContext);
      if (from === to) return true;
      const temp = partialPathOf(to);
      if ((await tree.checkFolder(conn, foldersOf(toKey), context, true)) !== 'created') await tempStats(conn, temp, context);
      const copied = (mayLink && (await hardLink(tree, conn, source.path, toKey, temp, context))) ||
        (await copyData(setup, conn, source.path, toKey, temp, source.stats.size, context));
      if (!copied) return false;
      throwIfAborted(signal, what);
      await replaceFile(conn, temp, to, context);
      return true;
    })();
  } finally {
    pool.release(conn);
  }
  if (!done && options.serverOnly === true) {
    throw new DriverError('E_NO_SERVER_COPY', `${what}: the server has no copy-data extension (OpenSSH >= 9.0)${mayLink ? ' and could not hard-link' : ''}, so a copy would move the bytes through this machine`, { kind: 'permanent' });
  }
  if (!done) await copyThroughClient(setup, fromKey, toKey, signal);
}

/** `copy-data` into `temp`; false when the server does not offer (or refuses) it. */
async function copyData(setup: CopySetup, conn: SftpConnection, from: string, toKey: string, temp: string, size: number, context: ErrorContext): Promise<boolean> {
  let source: SftpHandle | undefined;
  let target: SftpHandle | undefined;
  let copied = false;
  try {
    source = await conn.open(context, from, 'r');
    target = await setup.tree.openCreating(conn, toKey, temp, context);
    try {
      await source.callWith<void>(target, context, (sftp, from, to, done) => sftp.ext_copy_data(from, 0, 0, to, 0, done));
    } catch (err) {
      if (extensionRefused(err)) return false;
      throw err;
    }
    const stats = await target.call<Stats>(context, (sftp, raw, done) => sftp.fstat(raw, done));
    if (stats.size !== size) throw sizeMismatchError(context, 'the copy', stats.size, size);
    await fsyncHandle(target, context);
    copied = true;
    return true;
  } finally {
    await source?.close(context);
    await target?.close(context);
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

/** The last resort: read from the server and write back, as any upload. */
async function copyThroughClient(setup: CopySetup, fromKey: string, toKey: string, signal?: AbortSignal): Promise<void> {
  const { driver } = setup;
  const entry = await driver.stat(fromKey, { signal });
  if (!entry) throw notFoundError({ driver: setup.name, action: 'copy', key: fromKey });
  const partBytes = 8 * 1024 * 1024;
  const session = await driver.openWrite(toKey, { size: entry.size, partBytes, signal });
  try {
    const stream = await driver.openRead(fromKey, { pieceBytes: partBytes, length: entry.size, signal });
    let index = 0;
    for await (const piece of stream) await session.write(index++, piece as Buffer, { signal });
    await session.commit({ hash: '', signal });
  } catch (err) {
    await session.suspend();
    throw err;
  }
}
