/**
 * Options of the `local` driver (a local disk or a mounted NAS share) and their validation from
 * a config section such as `{ type: local, root: /mnt/backup-disk/milvus }`. The keys are
 * declared in `LOCAL_SCHEMA` and read by the config schema reader (src/config/schema.ts).
 */
import { contextFor, integer, path, readSection, type SectionContext } from '../../config/schema.js';
import { filesystemLocation, type ConfiguredPlace } from '../location.js';
import { MAX_NAME_BYTES, overlongName } from '../toolkit/index.js';

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

/** The config keys of `type: local`. */
export const LOCAL_SCHEMA = {
  root: path({
    required: true, expected: 'a non-empty folder path',
    check: (value) => {
      const overlong = overlongName(value);
      return overlong === undefined ? undefined : `got a folder name too long for a file system: ${overlong}, at most ${MAX_NAME_BYTES} are allowed; shorten it`;
    },
  }),
  maxConcurrency: integer({ default: 8, min: 1, max: 256 }),
};

/**
 * Validates a `type: local` config section. Throws `ConfigError` with a one-line message naming
 * the destination and the offending key. No IO. `baseDir` (or `context.baseDir`) is the folder
 * relative roots are relative to (the config file's); the working directory when absent.
 */
export function parseLocalOptions(name: string, section: Readonly<Record<string, unknown>>, baseDir?: string, context?: Partial<SectionContext>): LocalOptions {
  const values = readSection(LOCAL_SCHEMA, section, contextFor(name, 'local', { ...(baseDir !== undefined ? { baseDir } : {}), ...context }));
  return { root: values.root, maxConcurrency: values.maxConcurrency };
}

/** `local:/path`: where the driver points (../location.ts `ConfiguredPlace`). */
export function localPlace(options: Pick<LocalOptions, 'root'>): ConfiguredPlace {
  return { description: `local:${options.root}`, location: filesystemLocation(options.root) };
}
