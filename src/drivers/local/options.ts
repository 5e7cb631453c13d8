/**
 * Options of the `local` driver (a local disk or a mounted NAS share) and their validation from
 * a config section such as `{ type: local, root: /mnt/backup-disk/milvus }`.
 */
import { expandPath } from '../../config/paths.js';
import { ConfigError } from '../../errors.js';

export interface LocalOptions {
  /**
   * Absolute path of the folder that holds the objects (`~` expanded, relative paths resolved
   * against the config's folder). The folder itself is created on the first write when missing,
   * but never its parent: a missing parent usually means an unmounted share.
   */
  readonly root: string;
  /** Concurrent operations the engine should run against this folder. @default 8 */
  readonly maxConcurrency: number;
  /**
   * How metadata calls are made (see ./fsops.ts): `auto` chooses synchronous calls on a local
   * file system, `sync`/`async` force one (tests). Not a config key. @default auto
   */
  readonly metadataCalls?: 'auto' | 'sync' | 'async';
}

const KNOWN_KEYS = new Set(['type', 'root', 'maxConcurrency']);

/**
 * Validates a `type: local` config section. Throws `ConfigError` with a one-line message naming
 * the destination and the offending key. No IO.
 */
export function parseLocalOptions(name: string, section: Readonly<Record<string, unknown>>, baseDir?: string): LocalOptions {
  for (const key of Object.keys(section)) {
    if (!KNOWN_KEYS.has(key)) {
      throw new ConfigError(`${name}: unknown key "${key}" for type local (known: ${[...KNOWN_KEYS].filter((k) => k !== 'type').join(', ')})`);
    }
  }
  const root = section['root'];
  if (typeof root !== 'string' || root.trim() === '') {
    throw new ConfigError(`${name}: "root" must be a non-empty folder path, got ${describe(root)}`);
  }
  if (root.includes('\0')) throw new ConfigError(`${name}: "root" contains a NUL byte`);
  const concurrency = section['maxConcurrency'] ?? 8;
  if (typeof concurrency !== 'number' || !Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) {
    throw new ConfigError(`${name}: "maxConcurrency" must be an integer from 1 to 256, got ${describe(concurrency)}`);
  }
  return { root: expandPath(root, baseDir), maxConcurrency: concurrency };
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  return typeof value === 'string' ? JSON.stringify(value) : `${typeof value} ${JSON.stringify(value)}`;
}
