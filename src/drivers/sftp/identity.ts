/**
 * The identity of an SFTP root (see ../location.ts): host and port from the location, plus the
 * server's REALPATH of the root, so that a root reached through a symlink on the server, or
 * given relative to the login folder, compares by the folder it really is.
 */
import { posix } from 'node:path';

/**
 * The server's real path of `root`. OpenSSH's REALPATH fails for a path that does not exist, so
 * a root not created yet is resolved through its deepest existing folder, with the missing rest
 * appended as written. `realPath` rejects with kind `not-found` for a missing path; any other
 * rejection (a lost connection) is passed on.
 */
export async function serverRealRoot(root: string, realPath: (path: string) => Promise<string>): Promise<string> {
  let existing = root;
  const missing: string[] = [];
  for (;;) {
    try {
      const real = await realPath(existing);
      return missing.length === 0 ? real : posix.join(real, ...missing);
    } catch (err) {
      const parent = posix.dirname(existing);
      if ((err as { kind?: string } | null)?.kind !== 'not-found' || parent === existing) throw err;
      missing.unshift(posix.basename(existing));
      existing = parent;
    }
  }
}
