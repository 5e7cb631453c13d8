/**
 * What the tree-backed drivers (local, sftp) share about folders: splitting keys into folders,
 * the containment check of a real path against the real root, and a bounded cache of folders
 * already checked (least recently used evicted first).
 */

/** `a/b/c.bin` -> folders `['a', 'b']`, basename `c.bin`. */
export function splitKey(key: string): { folders: string[]; basename: string } {
  const segments = key.split('/');
  const basename = segments.pop() as string;
  return { folders: segments, basename };
}

/** True when the absolute `path` is `realRoot` or below it (`separator` `/` on POSIX and SFTP). */
export function isInside(path: string, realRoot: string, separator = '/'): boolean {
  return path === realRoot || path.startsWith(realRoot.endsWith(separator) ? realRoot : realRoot + separator);
}

/**
 * Folders met so far, by folder key (`a/b`), with what the driver needs to remember about each
 * (the local driver: its real path; the sftp driver: nothing but that it was checked). At most
 * `capacity` are kept; the least recently used goes first.
 */
export class FolderCache<V> {
  readonly #entries = new Map<string, V>();

  constructor(readonly capacity: number) {}

  /** The remembered value (and marks it most recently used), or `undefined`. */
  get(folderKey: string): V | undefined {
    const value = this.#entries.get(folderKey);
    if (value === undefined) return undefined;
    this.#entries.delete(folderKey);
    this.#entries.set(folderKey, value);
    return value;
  }

  set(folderKey: string, value: V): V {
    this.#entries.delete(folderKey);
    this.#entries.set(folderKey, value);
    if (this.#entries.size > this.capacity) this.#entries.delete(this.#entries.keys().next().value as string);
    return value;
  }

  delete(folderKey: string): boolean {
    return this.#entries.delete(folderKey);
  }

  /** Forgets every level on the way to `<root>/<segments>`; true when one was remembered. */
  forgetPath(segments: readonly string[]): boolean {
    let forgot = false;
    for (let depth = 1; depth <= segments.length; depth++) forgot = this.#entries.delete(segments.slice(0, depth).join('/')) || forgot;
    return forgot;
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
