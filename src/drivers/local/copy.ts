/**
 * Server-side copy of the `local` driver: `copyFile` (a reflink where the file system supports
 * it) into a fresh temp name next to the target, fsync, rename onto the target, fsync of the
 * folder. The target is never seen half-copied, and a failed copy removes its temp file.
 */
import { constants } from 'node:fs';
import { copyFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { throwIfAborted } from '../../errors.js';
import { copyTempName, notFoundError, splitKey, type ErrorContext } from '../toolkit/index.js';
import { isMissing } from './errors.js';
import { syncFile, syncFolder, type LocalTree } from './tree.js';

/**
 * Copies `fromKey` to `toKey` (keys already checked). A missing source (or a folder) rejects
 * with `not-found`; a symlink leading outside the root, on either key's path, with a `KeyError`.
 */
export async function copyLocal(tree: LocalTree, fromKey: string, toKey: string, signal: AbortSignal | undefined, context: ErrorContext): Promise<void> {
  const source = await tree.resolveKey(fromKey, context);
  const info = source === undefined ? undefined : await stat(source).catch((err: unknown) => (isMissing(err) ? undefined : Promise.reject(err)));
  if (source === undefined || !info?.isFile()) throw notFoundError(context);
  const folder = await tree.prepareFolder(toKey, context);
  const { basename } = splitKey(toKey);
  const temp = join(folder, copyTempName(basename));
  try {
    await copyFile(source, temp, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
    await syncFile(temp);
    throwIfAborted(signal, `${context.driver}: copy ${fromKey}`);
    await rename(temp, join(folder, basename));
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await syncFolder(folder);
}
