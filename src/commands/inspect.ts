/** Inspects one backup at the source (used by `list NAME` style callers and tests). */
import { inspectBackup, type BackupInspection } from '../backup/index.js';
import type { OffsiteConfig } from '../config/config.js';
import { withRuntime } from '../runtime/drivers.js';
import { checkBackupName } from './common.js';

export async function inspectCommand(config: OffsiteConfig, backup: string): Promise<BackupInspection> {
  checkBackupName(backup);
  return withRuntime(config, {}, async (runtime) => inspectBackup(await runtime.source(), backup, { quietPeriodMs: config.settings.quietPeriodMs }));
}
