/**
 * The identity of a local root (see ../location.ts): its real path and the (device, inode) of
 * the root and of every folder above it. A bind mount shows the device and inode of the folder
 * it mounts, so a root that is (or is inside, or holds) another root by a bind mount or a
 * symlink is recognised by comparing nodes, whatever the paths say.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { dirname, join, posix, resolve } from 'node:path';
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
  const inFilesystem = await placeInFilesystem(realRoot);
  return { location, realRoot, ...(rootNode ? { rootNode } : {}), ancestorNodes, ...(inFilesystem ? { inFilesystem } : {}) };
}

/** `\040` -> ` ` (how mountinfo escapes space, tab, newline and backslash). */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function isUnder(path: string, folder: string): boolean {
  return folder === '/' || path === folder || path.startsWith(`${folder}/`);
}

/**
 * The file system holding the real path `real` and the path inside it, from
 * /proc/self/mountinfo: the mount whose mount point is the longest prefix of `real` (the latest
 * one when several are stacked), its device, and its root joined with the rest. `undefined`
 * where mountinfo cannot be read (not Linux).
 */
async function placeInFilesystem(real: string): Promise<{ device: string; path: string } | undefined> {
  let text: string;
  try {
    text = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  let best: { device: string; root: string; mountPoint: string } | undefined;
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    if (fields.length < 5) continue;
    const mountPoint = unescapeMountField(fields[4] as string);
    if (!isUnder(real, mountPoint)) continue;
    if (!best || mountPoint.length >= best.mountPoint.length) best = { device: fields[2] as string, root: unescapeMountField(fields[3] as string), mountPoint };
  }
  if (!best) return undefined;
  const rest = best.mountPoint === '/' ? real : real.slice(best.mountPoint.length);
  return { device: best.device, path: posix.join(best.root, rest === '' ? '.' : rest) };
}
