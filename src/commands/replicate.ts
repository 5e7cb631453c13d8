/** `offsite replicate` as a library function. */
import { listBackups } from '../backup/index.js';
import type { OffsiteConfig } from '../config/config.js';
import { replicate, type ReplicateEvent, type ReplicateResult } from '../core/replicate.js';
import type { ShardSpec } from '../core/shard.js';
import { BackupError, UsageError } from '../errors.js';
import { waitForBackup, type WaitEvent } from '../ops/wait.js';
import { withRuntime, type TransferOptions } from '../runtime/drivers.js';
import { checkBackupName, pickLatest, reusePolicies, trustSourceEtags, manifestCacheDir } from './common.js';

export interface ReplicateCommandOptions extends TransferOptions {
  /** A backup name, or undefined with `latest`. */
  readonly backup?: string;
  readonly latest?: boolean;
  readonly to?: readonly string[];
  readonly dryRun?: boolean;
  /**
   * `false` (`--no-reuse`): send every file, whatever the destinations' `reuse` policy (see
   * src/core/reuse-file.ts). @default true
   */
  readonly reuse?: boolean;
  readonly concurrency?: number;
  readonly chunkBytes?: number;
  /** Copy only this shard of the backup (src/core/shard.ts); needs a backup name, not `latest`. */
  readonly shard?: ShardSpec;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: ReplicateEvent) => void;
  /**
   * Wait up to this long for the backup to become complete (../ops/wait.ts) instead of refusing
   * it. With `latest`, the backup waited for is the newest at the source by last change,
   * complete or not, so that a post-backup hook copies the backup just made.
   */
  readonly waitMs?: number;
  /** Told when the wait starts, once a minute while it lasts, and when it ends. */
  readonly onWait?: (event: WaitEvent) => void;
  /** Told what `latest` skipped at the source (see `listBackupFolders`), one line each. */
  readonly onWarning?: (message: string) => void;
}

/** What `replicateCommand` returns: the engine's result, plus how long it waited (with `waitMs`). */
export type ReplicateCommandResult = ReplicateResult & { readonly waitedMs?: number };

/** `offsite replicate`. */
export async function replicateCommand(config: OffsiteConfig, options: ReplicateCommandOptions): Promise<ReplicateCommandResult> {
  if (options.backup && options.latest) throw new UsageError('give a backup NAME or --latest, not both');
  if (!options.backup && !options.latest) throw new UsageError('which backup? give its NAME or --latest (see offsite list)');
  if (options.backup) checkBackupName(options.backup);
  if (options.shard && !options.backup) throw new UsageError('--shard needs the backup NAME: every shard must copy the same backup, and --latest could pick different ones in different workers');
  return withRuntime(config, options, async (runtime) => {
    const source = await runtime.source();
    const destinations = await runtime.destinations(options.to ?? []);
    let backup = options.backup;
    let waitedMs: number | undefined;
    if (options.waitMs !== undefined) {
      // Drivers connect on first use: the destinations opened above only validated their config.
      const started = Date.now();
      backup = (await waitForBackup(source, {
        backup, timeoutMs: options.waitMs, quietPeriodMs: config.settings.quietPeriodMs, signal: options.signal, onProgress: options.onWait,
      })).name;
      waitedMs = Date.now() - started;
    }
    if (!backup) {
      const latest = pickLatest(await listBackups(source, { quietPeriodMs: config.settings.quietPeriodMs, signal: options.signal, onWarning: options.onWarning }));
      if (!latest) throw new BackupError('E_NO_BACKUP', `no complete backup at the source (${source.description}); see offsite list`);
      backup = latest.name;
    }
    const result = await replicate({
      source, backup, destinations,
      chunkBytes: options.chunkBytes ?? config.settings.chunkBytes,
      fileConcurrency: options.concurrency ?? config.settings.concurrency,
      quietPeriodMs: config.settings.quietPeriodMs, memoryBudgetBytes: config.settings.memoryBudgetBytes,
      dryRun: options.dryRun, signal: options.signal, onEvent: options.onEvent, shard: options.shard,
      reuse: reusePolicies(config, destinations, options.reuse), trustSourceEtags: trustSourceEtags(config), ...manifestCacheDir(),
    });
    return waitedMs === undefined ? result : { ...result, waitedMs };
  });
}
