/**
 * Two related nightly backups for the reuse tests (issue 12): night 1 from scripts/gen-backup.ts,
 * night 2 a copy of it in which a few binlogs changed (same path and size, other bytes: the
 * completion rule checks sizes only), as sealed segments stay and a few files are rewritten.
 * (Until the chain generator of scripts/ lands; it will make nights with new and compacted segments too.)
 */
import { cpSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder } from './cli.js';

export interface Nights {
  readonly root: string;
  /** Every file of night 1 (and of night 2: the same paths), relative to the backup folder. */
  readonly files: readonly string[];
  readonly bytes: number;
  /** The files whose bytes differ in night 2: the largest binlog (several chunks) and the smallest non-empty one. */
  readonly changed: readonly string[];
  readonly changedBytes: number;
}

/** Changes one byte in the middle of `path` (same size, other bytes; changed twice, never back to the first bytes). */
export function flipByte(path: string): void {
  const bytes = readFileSync(path);
  const at = Math.floor(bytes.length / 2);
  bytes[at] = ((bytes[at] as number) + 1) & 0xff;
  writeFileSync(path, bytes);
}

/** Copies backup `from` to `to` under `root` and changes `changed` there (see `flipByte`). */
export function deriveNight(root: string, from: string, to: string, changed: readonly string[]): void {
  cpSync(join(root, from), join(root, to), { recursive: true });
  for (const path of changed) flipByte(join(root, to, path));
}

/** Night 1 (`first`) generated under `root`, night 2 (`second`) derived from it. */
export async function makeNights(root: string, first: string, second: string, options: { seed: number; totalBytes: number; largestFileBytes: number; files?: number }): Promise<Nights> {
  await generateBackup({ root, name: first, seed: options.seed, totalBytes: options.totalBytes, largestFileBytes: options.largestFileBytes, ...(options.files === undefined ? {} : { files: options.files }) });
  const files = filesUnder(join(root, first));
  const size = (path: string): number => statSync(join(root, first, path)).size;
  const binlogs = files.filter((p) => p.startsWith('binlogs/') && size(p) > 0).sort((a, b) => size(a) - size(b) || (a < b ? -1 : 1));
  const changed = [binlogs[binlogs.length - 1] as string, binlogs[0] as string];
  deriveNight(root, first, second, changed);
  return {
    root, files,
    bytes: files.reduce((sum, p) => sum + size(p), 0),
    changed, changedBytes: changed.reduce((sum, p) => sum + size(p), 0),
  };
}
