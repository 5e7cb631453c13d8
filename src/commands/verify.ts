/** `offsite verify` as a library function. */
import type { OffsiteConfig } from '../config/config.js';
import { verifyCopy, type VerifyLevel, type VerifyResult } from '../core/verify.js';
import { withRuntime, type TransferOptions } from '../runtime/drivers.js';
import { checkBackupName } from './common.js';

export interface VerifyCommandOptions extends TransferOptions {
  readonly backup: string;
  readonly at?: readonly string[];
  readonly level: VerifyLevel;
  readonly signal?: AbortSignal;
  readonly onBytes?: (destination: string, bytes: number) => void;
}

/** `offsite verify`: checks each named destination's copy, concurrently. A bandwidth limit paces the deep read-back. */
export async function verifyCommand(config: OffsiteConfig, options: VerifyCommandOptions): Promise<VerifyResult[]> {
  checkBackupName(options.backup);
  return withRuntime(config, { ...options, limitReads: true }, async (runtime) => {
    const destinations = await runtime.destinations(options.at ?? []);
    return Promise.all(destinations.map((driver) => verifyCopy({
      driver, backup: options.backup, level: options.level, concurrency: config.settings.concurrency, publicKey: runtime.manifestPublicKey(driver.name),
      signal: options.signal, onBytes: (n) => options.onBytes?.(driver.name, n),
    })));
  });
}
