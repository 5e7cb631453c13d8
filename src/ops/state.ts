/**
 * Small JSON records that offsite keeps at a destination's root, next to the copies, under
 * `.offsite/` (a name no backup can have: backup names start with a letter or `_`). Keeping them
 * at the destination, not on the machine that runs offsite, lets any machine continue the work:
 *
 * - `.offsite/pruned.json`: backups removed by `offsite prune`, so `offsite watch` never copies
 *   them there again (see ../ops/prune.ts);
 * - `.offsite/audit.json`: where the rotating audit stopped and when each copy was last read in
 *   full (see ../ops/audit.ts).
 *
 * Each is written whole and atomically (driver commit), read back tolerantly: a missing record
 * is empty; an unreadable one is an error that names it (never silently reset).
 */
import type { Driver } from '../drivers/types.js';
import { readBytes, writeBytes } from '../drivers/io.js';
import { errorKind, OffsiteError } from '../errors.js';
import { getHasher } from '../hash/xxh64.js';
import { OFFSITE_DIR } from '../manifest/manifest.js';

export const PRUNED_KEY = `${OFFSITE_DIR}/pruned.json`;
export const AUDIT_STATE_KEY = `${OFFSITE_DIR}/audit.json`;

/**
 * Reads a JSON record; `undefined` when the key does not exist. Something else under its name (a
 * folder, a FIFO: `E_NOT_A_FILE`) is an error rather than "no record", so the next write does
 * not silently replace what someone put there.
 */
export async function readRecord<T>(driver: Driver, key: string, signal?: AbortSignal): Promise<T | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readBytes(driver, key, { signal });
  } catch (err) {
    if (errorKind(err) === 'not-found' && (err as { code?: string }).code !== 'E_NOT_A_FILE') return undefined;
    throw err;
  }
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw new OffsiteError('E_RECORD', `${driver.name}: ${key} is not valid JSON (${(err as Error).message}); delete it to start that record afresh`, { kind: 'integrity' });
  }
}

/** Writes a JSON record atomically. */
export async function writeRecord(driver: Driver, key: string, value: unknown, signal?: AbortSignal): Promise<void> {
  const bytes = Buffer.from(`${JSON.stringify(value, null, 1)}\n`);
  const hasher = await getHasher();
  await writeBytes(driver, key, bytes, hasher.hash(bytes), { signal });
}

interface PrunedRecord {
  /** Backup name -> when it was pruned (ISO). */
  readonly pruned: Record<string, string>;
}

/** Backups pruned at this destination: name -> ISO time. */
export async function readPruned(driver: Driver, signal?: AbortSignal): Promise<Map<string, string>> {
  const record = await readRecord<PrunedRecord>(driver, PRUNED_KEY, signal);
  return new Map(Object.entries(record?.pruned ?? {}));
}

/** Adds names to the destination's pruned record (read, merge, write). */
export async function addPruned(driver: Driver, names: readonly string[], when: Date = new Date(), signal?: AbortSignal): Promise<void> {
  if (names.length === 0) return;
  const pruned = await readPruned(driver, signal);
  for (const name of names) pruned.set(name, when.toISOString());
  await writeRecord(driver, PRUNED_KEY, { pruned: Object.fromEntries([...pruned].sort(([a], [b]) => (a < b ? -1 : 1))) } satisfies PrunedRecord, signal);
}
