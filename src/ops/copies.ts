/**
 * What a destination holds: the backup copies found under its root, from one listing. A copy is
 * the folder `NAME/` for a valid backup name; offsite's own files inside it (`NAME/.offsite/`)
 * tell its state: a manifest (complete, if it verifies), a progress checkpoint or lock (a run
 * in progress or interrupted), or neither (files without a manifest: incomplete).
 */
import { isValidBackupName } from '../backup/index.js';
import type { Driver } from '../drivers/types.js';
import { OFFSITE_DIR } from '../manifest/manifest.js';

export interface CopyListing {
  readonly name: string;
  /** Data files (not counting `.offsite/`). */
  readonly files: number;
  readonly bytes: number;
  readonly hasManifest: boolean;
  readonly hasProgress: boolean;
  readonly hasLock: boolean;
  /** `NAME/.offsite/pruning.json`: `offsite prune` started removing this copy. */
  readonly beingPruned: boolean;
}

/**
 * Every backup copy at the destination, sorted by name. A symlink leading outside the root does
 * not fail the whole listing: one next to the copies is skipped (and told to `onWarning`); one
 * inside a copy is left out of the listing here and refused by whatever reads that copy, so
 * only that copy is affected.
 */
export async function listCopies(driver: Driver, signal?: AbortSignal, onWarning?: (message: string) => void): Promise<CopyListing[]> {
  const copies = new Map<string, { files: number; bytes: number; hasManifest: boolean; hasProgress: boolean; hasLock: boolean; beingPruned: boolean }>();
  const onRefused = (key: string, error: Error): void => {
    if (!key.includes('/')) onWarning?.(`${JSON.stringify(key)} skipped at ${driver.name}: ${error.message}`);
  };
  for await (const entry of driver.list('', { signal, onRefused, hashes: false })) {
    const slash = entry.key.indexOf('/');
    if (slash <= 0) continue;
    const name = entry.key.slice(0, slash);
    if (!isValidBackupName(name)) continue;
    let copy = copies.get(name);
    if (!copy) copies.set(name, copy = { files: 0, bytes: 0, hasManifest: false, hasProgress: false, hasLock: false, beingPruned: false });
    const rest = entry.key.slice(slash + 1);
    if (rest === `${OFFSITE_DIR}/manifest.json`) copy.hasManifest = true;
    else if (rest === `${OFFSITE_DIR}/progress.json`) copy.hasProgress = true;
    else if (rest === `${OFFSITE_DIR}/lock.json`) copy.hasLock = true;
    else if (rest === `${OFFSITE_DIR}/pruning.json`) copy.beingPruned = true;
    else if (!rest.startsWith(`${OFFSITE_DIR}/`)) { copy.files++; copy.bytes += entry.size; }
  }
  return [...copies].map(([name, c]) => ({ name, ...c })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
