/**
 * What a path holds, for drivers with a real file tree (local, sftp), and the one refusal for a
 * key that holds something other than a regular file.
 *
 * Why it matters: offsite reads only regular files. A FIFO (named pipe) must never be opened for
 * reading: the open waits for a writer that never comes (on a local disk it would block this
 * process; over SFTP it blocks the server's one process for the session). Sockets and devices
 * are no backup data either. And "missing" is the wrong word for a key that holds a folder or a
 * FIFO: the user looks for a file that is not there and finds something in its place.
 */
import { DriverError } from '../../errors.js';
import type { PathType } from '../types.js';
import { where, type ErrorContext } from './errors.js';
import { MAX_NAME_BYTES } from './temp-names.js';

export type { PathType } from '../types.js';

/** The type checks of node:fs `Stats` and ssh2's `Stats` (same names in both). */
export interface TypedStats {
  isFile(): boolean;
  isDirectory(): boolean;
  isFIFO(): boolean;
  isSocket(): boolean;
  isBlockDevice(): boolean;
  isCharacterDevice(): boolean;
}

/** The type of a path from its stat (a symlink's target: callers follow links first). */
export function pathTypeOf(stats: TypedStats): PathType {
  if (stats.isFile()) return 'file';
  if (stats.isDirectory()) return 'folder';
  if (stats.isFIFO()) return 'fifo';
  if (stats.isSocket()) return 'socket';
  if (stats.isBlockDevice() || stats.isCharacterDevice()) return 'device';
  return 'other';
}

/** The type in words, for messages: "a FIFO (named pipe)", "a folder"... */
export function describePathType(type: PathType): string {
  switch (type) {
    case 'file': return 'a regular file';
    case 'folder': return 'a folder';
    case 'fifo': return 'a FIFO (named pipe)';
    case 'socket': return 'a socket';
    case 'device': return 'a device file';
    case 'missing': return 'nothing';
    default: return 'a special file';
  }
}

/**
 * The read of a key that holds something other than a regular file (never opened): code
 * `E_NOT_A_FILE`, kind `not-found` (there is no file under that name, as the contract says of a
 * folder), and a message that names what is there.
 */
export function notAFileError(context: ErrorContext, type: PathType): DriverError {
  return new DriverError('E_NOT_A_FILE', `${where(context)}: ${describePathType(type)} is there, not a regular file (never opened: offsite reads regular files only); replace it with the file, or remove it`, { kind: 'not-found' });
}


/**
 * The first `/`-separated name in `path` longer than `MAX_NAME_BYTES`, in words for a message
 * (`"aaaa…" is 300 bytes`), or `undefined` when every name fits. Servers say this badly:
 * OpenSSH's sftp-server answers ENAMETOOLONG with "Bad message".
 */
export function overlongName(path: string): string | undefined {
  for (const name of path.split('/')) {
    const bytes = Buffer.byteLength(name, 'utf8');
    if (bytes > MAX_NAME_BYTES) return `${JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name)} is ${bytes} bytes`;
  }
  return undefined;
}
