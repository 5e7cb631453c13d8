/**
 * The identity of a local root (see ../location.ts): its real path and the (device, inode) of
 * the root and of every folder above it. A bind mount shows the device and inode of the folder
 * it mounts, so a root that is (or is inside, or holds) another root by a bind mount or a
 * symlink is recognised by comparing nodes, whatever the paths say.
 */
import { realpath, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { FileNode, Identity, Location } from '../location.js';

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function nodeOf(path: string): Promise<FileNode | undefined> {
  try {
    const s = await stat(path, { bigint: true });
    return { dev: s.dev.toString(), ino: s.ino.toString() };
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

/**
 * Identifies the folder `root` (absolute). A root that does not exist yet is resolved through
 * its deepest existing folder (the missing rest appended as written) and has no `rootNode`.
 * Rejects only for errors other than "missing" (permission denied on a folder above the root).
 */
export async function identifyLocalFolder(location: Location, root: string): Promise<Identity> {
  let existing = resolve(root);
  const missing: string[] = [];
  let real: string | undefined;
  for (;;) {
    try {
      real = await realpath(existing);
      break;
    } catch (err) {
      if (!isMissing(err) || dirname(existing) === existing) throw err;
      missing.unshift(existing.slice(dirname(existing).length).replace(/^\//, ''));
      existing = dirname(existing);
    }
  }
  const realRoot = missing.length === 0 ? real : join(real, ...missing);
  const rootNode = missing.length === 0 ? await nodeOf(real) : undefined;
  const ancestorNodes: FileNode[] = [];
  let folder = missing.length === 0 ? dirname(real) : real;
  for (let more = missing.length > 0 || real !== folder; more;) {
    const node = await nodeOf(folder);
    if (node) ancestorNodes.push(node);
    more = dirname(folder) !== folder;
    folder = dirname(folder);
  }
  return { location, realRoot, ...(rootNode ? { rootNode } : {}), ancestorNodes };
}
