/** Shared helpers for the backup tests: temp roots and small generated backups. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateBackup, type GenerateOptions, type GenerateResult } from '../../scripts/gen-backup.js';

/** Small but varied: about 60 data files, 128 KiB, two collections. */
export const SMALL = { totalBytes: 128 * 1024, files: 60, collections: 2 } as const;

/** A fixed "now" far from any generated mtime, and an mtime one hour before it. */
export const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
export const OLD = NOW - 3_600_000;

export async function tempRoot(label: string): Promise<{ root: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), `offsite-backup-${label}-`));
  return { root, cleanup: () => rm(root, { recursive: true, force: true }) };
}

export function gen(root: string, name: string, options: Partial<GenerateOptions> = {}): Promise<GenerateResult> {
  return generateBackup({ root, name, mtimeMs: OLD, ...SMALL, ...options });
}
