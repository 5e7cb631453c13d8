/**
 * Server-side copy of the `local` driver: `copyFile` with `COPYFILE_FICLONE` (a reflink where the
 * file system has them, XFS or Btrfs; an in-kernel `copy_file_range` otherwise), or with `link`
 * a hard link (falling back to the copy where the file system has none), into the copy's temp
 * name next to the target (deterministic: what a killed copy left there is removed, and the copy
 * made again), size check, rename onto the target. The copy is durable at the driver's next
 * `sync()` (one `syncfs` for all, as for written files). The target is never seen half-copied,
 * and a failed copy removes its temp file.
 *
 * Every call goes through the tree's metadata calls (./fsops.ts: synchronous on a local file
 * system while they are fast, the copy of a small file included), and the source is found through
 * the tree's remembered folders: a night reusing 97,000 small files spent most of its time handing
 * each copy's six calls (realpath, stat, unlink, copyFile, stat, rename) to the thread pool and
 * back (issue 12), and realpath(3) alone made a readlink per path component.
 */
import { constants, type BigIntStats } from 'node:fs';
import { throwIfAborted } from '../../errors.js';
import { checkCopySource, copyTempName, notFoundError, sizeMismatchError, splitKey, type ErrorContext } from '../toolkit/index.js';
import type { Committed, CopyWithinOptions } from '../types.js';
import { errnoOf, isMissing } from './errors.js';
import type { FsOps } from './fsops.js';
import { childPath, localEntry, type LocalTree } from './tree.js';

/** The copy's temp file is made with O_EXCL: one left there by a killed copy is removed first. */
const COPY_MODE = constants.COPYFILE_FICLONE | constants.COPYFILE_EXCL;

/**
 * Copies `fromKey` to `toKey` (keys already checked). A missing source (or a folder) rejects
 * with `not-found`; a symlink leading outside the root, on either key's path, with a `KeyError`;
 * a source not as `options.expect` says with `E_COPY_SOURCE_CHANGED`, before anything is made.
 * Resolves with the copy's fingerprint (from the stat that checks its size; a rename keeps it).
 */
export async function copyLocal(tree: LocalTree, fromKey: string, toKey: string, options: CopyWithinOptions, context: ErrorContext, onCommitted: (file: string, folder: string) => void): Promise<Committed> {
  const { signal } = options;
  const found = await findSource(tree, fromKey, context);
  if (found === undefined) throw notFoundError(context);
  const { path: source, info } = found;
  checkCopySource(context, options.expect, localEntry(fromKey, info));
  const folder = await tree.prepareFolder(toKey, context);
  const { basename } = splitKey(toKey);
  const temp = childPath(folder, copyTempName(basename));
  const ops = tree.ops;
  const size = Number(info.size);
  let copied: BigIntStats | undefined;
  try {
    await again(ops, temp, async () => {
      if (!(options.link === true && (await linked(ops, source, temp)))) await ops.copyFile(source, temp, COPY_MODE, size);
    });
    copied = await ops.lstatBig(temp);
    if (copied === undefined) throw notFoundError({ ...context, action: `${context.action}: the copy vanished before its rename` });
    if (copied.size !== info.size) throw sizeMismatchError(context, 'the copy', Number(copied.size), size);
    throwIfAborted(signal, `${context.driver}: copy ${fromKey}`);
    await ops.rename(temp, childPath(folder, basename));
  } catch (err) {
    await ops.unlink(temp).catch(() => undefined);
    throw err;
  }
  // Durable at the driver's next sync(), like a written file: an fsync of the file and of its
  // folder per copy made reusing 20,000 small files take minutes.
  onCommitted(childPath(folder, basename), folder);
  return { fingerprint: localEntry(toKey, copied).fingerprint };
}

/**
 * The real path of the file at `key` and its stat (following a symlink that stays inside the
 * root), found through the tree's remembered folders; `undefined` when it is missing or is not a
 * file. Rejects with a `KeyError` for a symlink leading outside the root.
 */
function findSource(tree: LocalTree, key: string, context: ErrorContext): Promise<{ path: string; info: BigIntStats } | undefined> {
  return tree.atKey(key, context, async (path, realRoot) => {
    const ops = tree.ops;
    const info = await ops.lstatBig(path);
    if (info?.isFile()) return { path, info };
    if (!info?.isSymbolicLink()) return undefined;
    const real = await ops.realpath(path);
    if (real === undefined) return undefined; // dangling
    tree.checkInside(context.key ?? key, real, realRoot);
    const target = await ops.statBig(real);
    return target?.isFile() ? { path: real, info: target } : undefined;
  });
}

/** Runs `make` (which creates `temp` exclusively); when `temp` was there already (a killed copy's), removes it and runs `make` once more. */
async function again(ops: FsOps, temp: string, make: () => Promise<void>): Promise<void> {
  try {
    await make();
  } catch (err) {
    if (errnoOf(err) !== 'EEXIST') throw err;
    await ops.unlink(temp).catch((cause: unknown) => (isMissing(cause) ? undefined : Promise.reject(cause)));
    await make();
  }
}

/** Hard-links `source` as `temp`; false where the file system has no hard links (then the caller copies). */
async function linked(ops: FsOps, source: string, temp: string): Promise<boolean> {
  try {
    await ops.link(source, temp);
    return true;
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV' || code === 'EMLINK') return false;
    throw err;
  }
}
