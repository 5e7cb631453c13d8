/**
 * Server-side copy of the `local` driver: `copyFile` with `COPYFILE_FICLONE` (a reflink where the
 * file system has them, XFS or Btrfs; an in-kernel `copy_file_range` otherwise), or with `link`
 * a hard link (falling back to the copy where the file system has none), into the copy's temp
 * name next to the target (deterministic: what a killed copy left there is removed first), size
 * check, rename onto the target. The copy is durable at the driver's next
 * `sync()` (one `syncfs` for all, as for written files). The target is never seen half-copied,
 * and a failed copy removes its temp file.
 */
import { constants, type BigIntStats } from 'node:fs';
import { copyFile, link, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { throwIfAborted } from '../../errors.js';
import { checkCopySource, copyTempName, notFoundError, sizeMismatchError, splitKey, type ErrorContext } from '../toolkit/index.js';
import type { Committed, CopyWithinOptions } from '../types.js';
import { isMissing } from './errors.js';
import { localEntry, type LocalTree } from './tree.js';

/**
 * Copies `fromKey` to `toKey` (keys already checked). A missing source (or a folder) rejects
 * with `not-found`; a symlink leading outside the root, on either key's path, with a `KeyError`;
 * a source not as `options.expect` says with `E_COPY_SOURCE_CHANGED`, before anything is made.
 * Resolves with the copy's fingerprint (from the stat that checks its size; a rename keeps it).
 */
export async function copyLocal(tree: LocalTree, fromKey: string, toKey: string, options: CopyWithinOptions, context: ErrorContext, onCommitted: (file: string, folder: string) => void): Promise<Committed> {
  const { signal } = options;
  const source = await tree.resolveKey(fromKey, context);
  const info = source === undefined ? undefined : await stat(source, { bigint: true }).catch((err: unknown) => (isMissing(err) ? undefined : Promise.reject(err)));
  if (source === undefined || !info?.isFile()) throw notFoundError(context);
  checkCopySource(context, options.expect, localEntry(fromKey, info));
  const folder = await tree.prepareFolder(toKey, context);
  const { basename } = splitKey(toKey);
  const temp = join(folder, copyTempName(basename));
  let copied: BigIntStats;
  try {
    // What a copy killed before its rename left under the same temp name.
    await unlink(temp).catch((err: unknown) => (isMissing(err) ? undefined : Promise.reject(err)));
    if (!(options.link === true && (await linked(source, temp)))) await copyFile(source, temp, constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL);
    copied = await stat(temp, { bigint: true });
    if (copied.size !== info.size) throw sizeMismatchError(context, 'the copy', Number(copied.size), Number(info.size));
    throwIfAborted(signal, `${context.driver}: copy ${fromKey}`);
    await rename(temp, join(folder, basename));
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  // Durable at the driver's next sync(), like a written file: an fsync of the file and of its
  // folder per copy made reusing 20,000 small files take minutes.
  onCommitted(join(folder, basename), folder);
  return { fingerprint: localEntry(toKey, copied).fingerprint };
}

/** Hard-links `source` as `temp`; false where the file system has no hard links (then the caller copies). */
async function linked(source: string, temp: string): Promise<boolean> {
  try {
    await link(source, temp);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV' || code === 'EMLINK') return false;
    throw err;
  }
}
