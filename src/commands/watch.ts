/** `offsite watch` as a library function: opens the drivers, runs the loop of ../ops/watch.ts, closes them. */
import type { OffsiteConfig } from '../config/config.js';
import { watchBackups, type WatchOptions, type WatchSummary } from '../ops/watch.js';
import { withRuntime, type TransferOptions } from '../runtime/drivers.js';
import { reusePolicies, trustSourceEtags, manifestCacheDir } from './common.js';

export interface WatchCommandOptions extends TransferOptions, Omit<WatchOptions, 'source' | 'destinations' | 'reuse'> {
  /** Destination names (default: every configured one). */
  readonly to?: readonly string[];
  /** `false` (`--no-reuse`): see `ReplicateCommandOptions.reuse`. @default true */
  readonly reuse?: boolean;
}

/** Runs `offsite watch` until `signal` fires (or one pass with `once`); defaults come from the config's options. */
export async function watchCommand(config: OffsiteConfig, options: WatchCommandOptions): Promise<WatchSummary> {
  return withRuntime(config, options, async (runtime) => {
    const source = await runtime.source();
    const destinations = await runtime.destinations(options.to ?? []);
    return watchBackups({
      ...options, source, destinations, reuse: reusePolicies(config, destinations, options.reuse), trustSourceEtags: trustSourceEtags(config), ...manifestCacheDir(),
      quietPeriodMs: options.quietPeriodMs ?? config.settings.quietPeriodMs,
      chunkBytes: options.chunkBytes ?? config.settings.chunkBytes,
      fileConcurrency: options.fileConcurrency ?? config.settings.concurrency,
      memoryBudgetBytes: options.memoryBudgetBytes ?? config.settings.memoryBudgetBytes,
    });
  });
}
