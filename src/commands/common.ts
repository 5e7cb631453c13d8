/** What the command functions share: picking the newest backup, checking a backup name. */
// From names.ts, not ../backup/index.js: verify and prune need only the name rule, not the meta
// parsing and inspection modules (and their JSON parser) that the index pulls in at start-up.
import type { BackupInspection } from '../backup/index.js';
import { isValidBackupName } from '../backup/names.js';
import { reusePolicyOf, type OffsiteConfig, type ReusePolicy } from '../config/config.js';
import type { Driver } from '../drivers/types.js';
import { UsageError } from '../errors.js';
import { cacheDirOf } from '../core/manifest-cache.js';

/** The `reuse` policy of each destination (`--no-reuse`: `off` for all), for the engine's `reuse` option. */
export function reusePolicies(config: OffsiteConfig, destinations: readonly Driver[], enabled: boolean | undefined): Record<string, ReusePolicy> {
  const policies: Record<string, ReusePolicy> = {};
  for (const d of destinations) {
    const section = config.destinations[d.name];
    policies[d.name] = enabled === false || section === undefined ? 'off' : reusePolicyOf(section);
  }
  return policies;
}

/** Where earlier copies' manifests are cached for reuse (`OFFSITE_CACHE_DIR`, src/core/manifest-cache.ts `cacheDirOf`). */
export function manifestCacheDir(env: NodeJS.ProcessEnv = process.env): { manifestCacheDir?: string } {
  const dir = cacheDirOf(env);
  return dir === undefined ? {} : { manifestCacheDir: dir };
}

/** The source's `trustEtags` key (src/core/replicate.ts `ReplicateOptions.trustSourceEtags`). */
export function trustSourceEtags(config: OffsiteConfig): boolean {
  return config.source['trustEtags'] === true;
}

/** Picks the newest complete backup (by name order of milvus-backup's timestamped names, then last change). */
export function pickLatest(backups: readonly BackupInspection[]): BackupInspection | undefined {
  const complete = backups.filter((b) => b.state === 'complete');
  return [...complete].sort((a, b) => a.lastChangeMs - b.lastChangeMs || (a.name < b.name ? -1 : 1)).at(-1);
}

/** Throws a `UsageError` for a name milvus-backup never makes. */
export function checkBackupName(name: string): void {
  if (!isValidBackupName(name)) throw new UsageError(`${JSON.stringify(name)} is not a milvus-backup backup name (letters, digits and _, not starting with a digit)`);
}
