/**
 * `offsite replicate NAME --finish` as a library function: the check the last shard of a sharded
 * replicate makes (src/core/shard.ts), by hand. Per destination, under its lock: is every shard's
 * record there and consistent with the backup's file list? If so the manifest is written from
 * their union; if not, the shards still missing (or to be run again) are named.
 */
import { assertComplete, inspectBackup } from '../backup/index.js';
import type { OffsiteConfig } from '../config/config.js';
import { problem } from '../core/destination-run.js';
import type { ProblemReport } from '../core/replicate.js';
import { finishSet, type ShardSetReport } from '../core/shard.js';
import { withRuntime, type TransferOptions } from '../runtime/drivers.js';
import { checkBackupName } from './common.js';

export interface FinishShardsOptions extends TransferOptions {
  readonly backup: string;
  readonly to?: readonly string[];
  /** The number of shards; by default the one the shards at each destination have. */
  readonly count?: number;
  /** How long to wait for a destination's lock while another run holds it. @default 120 s */
  readonly lockWaitMs?: number;
  readonly signal?: AbortSignal;
}

export type FinishDestination = ShardSetReport | { readonly destination: string; readonly status: 'failed'; readonly error: ProblemReport };

export interface FinishShardsResult {
  readonly backup: string;
  /** Files of the backup at the source. */
  readonly files: number;
  readonly destinations: readonly FinishDestination[];
}

/** `offsite replicate NAME --finish`. */
export async function finishShardsCommand(config: OffsiteConfig, options: FinishShardsOptions): Promise<FinishShardsResult> {
  const { backup, signal } = options;
  checkBackupName(backup);
  return withRuntime(config, options, async (runtime) => {
    const source = await runtime.source();
    const destinations = await runtime.destinations(options.to ?? []);
    const inspection = await inspectBackup(source, backup, { quietPeriodMs: config.settings.quietPeriodMs, signal });
    assertComplete(inspection);
    const files = inspection.files.map((f) => ({ path: f.key.slice(backup.length + 1), size: f.size }));
    const results = await Promise.all(destinations.map(async (driver): Promise<FinishDestination> => {
      try {
        return await finishSet(driver, backup, options.count, files, { signal, lockWaitMs: options.lockWaitMs });
      } catch (err) {
        return { destination: driver.name, status: 'failed', error: problem(err) };
      }
    }));
    return { backup, files: files.length, destinations: results };
  });
}
