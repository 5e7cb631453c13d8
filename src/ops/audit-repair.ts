/**
 * `offsite audit --repair`: repairs the copies of one backup that the audit found damaged,
 * incomplete or lost (./audit.ts says what the audit checks and what a repair keeps).
 *
 * Every copy of a backup can be repaired at once, in this order:
 * 1. Every copy of the backup is checked first (reads only, ./audit.ts), so no check sees a copy
 *    that a repair is changing.
 * 2. The manifest each repair is checked against (its reference) is read whole, every one of them
 *    before any repair writes anything: the copy's own when its check read it intact, else the
 *    first other audited copy's whose check did, else an unaudited destination's (`--at`). A
 *    repair removes its copy's manifest first, so a manifest read later may be gone for a while.
 * 3. The repairs run at once, none waiting for another (a repair locks only its own copy: nothing
 *    to deadlock on). Each takes its files from the source when it still has the backup, else from
 *    the other destinations holding the copy, in turn: those found intact, the unaudited ones, then
 *    those found damaged or incomplete, which may be under repair at that moment. Which of them has
 *    a manifest at that moment does not matter and is not asked: every byte taken from an origin is
 *    hashed as it is read and must match the reference's record, or the file is not committed and
 *    the next origin is tried for it (../core/replicate.ts, origin mode). A file found in place at
 *    the copy is kept when its bytes hash to the record. So two copies that each lack what the
 *    other holds both get repaired, whichever starts first.
 * 4. The manifest is written once the copy is whole; the copied files are read back once more
 *    before the copy counts as repaired, and the new manifest must list the reference's files and
 *    hashes.
 */
import type { Driver } from '../drivers/types.js';
import { replicate, type ReplicateOrigin } from '../core/replicate.js';
import { verifyCopy, type Damage } from '../core/verify.js';
import { errorMessage, OffsiteError } from '../errors.js';
import { buildManifestBody, manifestKey, progressKey, readManifestAt, writeManifestAt, type Manifest } from '../manifest/manifest.js';
import { streamManifestAt } from '../manifest/read.js';
import type { AuditCopy } from './audit-result.js';

/** What a repair needs of the audit. */
export interface RepairContext {
  readonly options: {
    readonly signal?: AbortSignal;
    /** Bytes read or written, per destination (progress bars). */
    readonly onBytes?: (destination: string, bytes: number) => void;
    /** One line per notable step. */
    readonly onLog?: (line: string) => void;
  };
  /** Files at once. */
  readonly concurrency: number;
  /** Chunk size when copying from the source without a reference manifest. */
  readonly chunkBytes: number;
  readonly quietPeriodMs: number;
  /** `ReplicateOptions.memoryBudgetBytes` (`options.memoryBudget`). @default the engine's */
  readonly memoryBudgetBytes?: number;
  readonly source?: Driver;
  /** Backups complete at the source. */
  readonly atSource: ReadonlySet<string>;
  /** Destinations not audited (`--at`), read from as origins and for a reference. */
  readonly donors: readonly Driver[];
  /** The public key that must have signed each encrypted destination's manifests, by destination. */
  readonly publicKeys: ReadonlyMap<string, string>;
}

/** What the check of one copy found: the copy's result, and whether it needs a repair. */
export interface Finding {
  readonly copy: AuditCopy;
  /** Present when the copy needs a repair (and `--repair` was given). */
  readonly repair?: {
    /** What the checks found; undefined for an incomplete or lost copy (which files are good is not known). */
    readonly damage: readonly Damage[] | undefined;
  };
  /** The check read the copy's manifest whole and its digest matched. */
  readonly manifestValid: boolean;
}

/** One audited destination's copy of the backup, as its check found it. */
export interface CheckedCopy {
  readonly driver: Driver;
  /** The destination's listing showed files of this backup (a lost or unlisted copy holds nothing to take). */
  readonly holds: boolean;
  readonly finding: Finding;
}

/** A manifest that another destination (or the repaired one) holds, for repairs. */
interface Reference {
  readonly manifest: Manifest;
  readonly from: string;
}

/**
 * Repairs every copy of `backup` whose check asked for it (see the file comment); returns each
 * copy's result, in the order of `checked`.
 */
export async function repairCopies(ctx: RepairContext, backup: string, checked: readonly CheckedCopy[]): Promise<AuditCopy[]> {
  const results = checked.map((c) => c.finding.copy);
  const toRepair = checked.filter((c) => c.finding.repair !== undefined);
  if (toRepair.length === 0) return results;
  // Every reference is read before any repair writes; repairs needing the same copy's share one read.
  const reads = new Map<Driver, Promise<Manifest | undefined>>();
  const read = (d: Driver): Promise<Manifest | undefined> => {
    let pending = reads.get(d);
    if (!pending) reads.set(d, pending = readManifestAt(d, manifestKey(backup), { signal: ctx.options.signal }).catch((err: unknown) => {
      if (err instanceof OffsiteError && err.code === 'E_ABORTED') throw err;
      return undefined; // damaged or unreadable: not a reference
    }));
    return pending;
  };
  const withManifest = checked.filter((c) => c.finding.manifestValid).map((c) => c.driver);
  const references = await Promise.all(toRepair.map(async (c): Promise<Reference | undefined> => {
    const own = c.finding.manifestValid ? [c.driver] : [];
    for (const d of [...own, ...withManifest.filter((d) => d !== c.driver), ...ctx.donors]) {
      const manifest = await read(d);
      if (manifest) return { manifest, from: d.name };
    }
    return undefined;
  }));
  reads.clear();
  const intact = checked.filter((c) => c.finding.copy.state === 'ok').map((c) => c.driver);
  const underRepairOrUnsure = checked.filter((c) => c.holds && c.finding.copy.state !== 'ok').map((c) => c.driver);
  const candidates = [...intact, ...ctx.donors, ...underRepairOrUnsure];
  await Promise.all(toRepair.map(async (c, k) => {
    const reference = references[k];
    references[k] = undefined; // held by its repair alone, and let go when it ends
    const repaired = await repairCopy(ctx, c.driver, backup, c.finding.copy, c.finding.repair?.damage, reference, candidates.filter((d) => d !== c.driver));
    results[checked.indexOf(c)] = repaired;
  }));
  return results;
}

/**
 * Repairs one copy (see the file comment). `damage` is what the quick/deep checks found; for an
 * incomplete or lost copy it is undefined (which files are good is not known: all are checked).
 * `others` are the other destinations to take files from, in order.
 */
async function repairCopy(ctx: RepairContext, driver: Driver, backup: string, found: AuditCopy, damage: readonly Damage[] | undefined, reference: Reference | undefined, others: readonly Driver[]): Promise<AuditCopy> {
  const { signal } = ctx.options;
  const log = (line: string) => ctx.options.onLog?.(`${driver.name}: ${backup}: ${line}`);
  // Its own manifest is the reference only when its check read it intact (the reference comes first from it then).
  const ownManifestValid = reference?.from === driver.name;
  const badPaths = new Set((damage ?? []).filter((d) => !d.path.startsWith('.offsite/')).map((d) => d.path));
  const fail = (message: string): AuditCopy => ({ ...found, message: `repair failed: ${message}` });

  // Never write plaintext into an encrypted copy: without the key here, leave it as it is.
  if ((reference?.manifest.encryption !== undefined || ctx.publicKeys.has(driver.name)) && !driver.encryption) {
    return fail('the copy is encrypted and this config has no key for the destination (only its public key, or nothing): run audit --repair where encryption.key is configured');
  }
  const source = ctx.source && ctx.atSource.has(backup) ? ctx.source : undefined;
  if (!reference && !source) {
    return fail('no valid manifest at any destination and the source does not have the backup: nothing to repair from');
  }
  // Without a reference nothing could check what another destination holds: the source alone.
  const origins: Driver[] = [...(source ? [source] : []), ...(reference ? others : [])];
  if (origins.length === 0) return fail('the source does not have the backup and no other destination holds a copy of it');

  try {
    if (reference && ownManifestValid) {
      // Keep the good files, recorded, so only the bad ones are copied; then drop the manifest.
      const good = reference.manifest.files.filter((f) => !badPaths.has(f.path));
      const body = buildManifestBody({ kind: 'progress', backup, source: reference.manifest.source, chunkBytes: reference.manifest.chunkBytes, files: good, backupTime: reference.manifest.backupTime });
      await writeManifestAt(driver, progressKey(backup), body, { signal });
    }
    await driver.delete(manifestKey(backup), { signal });
    for (const path of badPaths) await driver.delete(`${backup}/${path}`, { signal });
  } catch (err) {
    return fail(`could not prepare the copy (${errorMessage(err)})`);
  }
  log(`repairing ${badPaths.size > 0 ? `${badPaths.size} file(s)` : 'the copy'}${reference ? ` against the manifest of ${reference.from}` : ''}`);

  const copied = new Set<string>();
  /** Files found in place and kept: the engine read and hashed each one against the reference (or the source). */
  const adopted = new Set<string>();
  const usedFrom: string[] = [];
  let lastProblem = 'no origin could provide the missing files';
  let whole = false;
  for (const origin of origins) {
    const originSpec: ReplicateOrigin | undefined = reference
      ? { files: reference.manifest.files, chunkBytes: reference.manifest.chunkBytes, source: reference.manifest.source, ...(reference.manifest.backupTime ? { backupTime: reference.manifest.backupTime } : {}) }
      : undefined;
    try {
      const result = await replicate({
        source: origin, backup, destinations: [driver],
        chunkBytes: originSpec?.chunkBytes ?? ctx.chunkBytes, fileConcurrency: ctx.concurrency, quietPeriodMs: ctx.quietPeriodMs, memoryBudgetBytes: ctx.memoryBudgetBytes,
        ...(originSpec ? { origin: originSpec } : {}),
        signal,
        onEvent: (e) => {
          if (e.type === 'file-done') (e.how === 'copied' ? copied : adopted).add(e.path);
          if (e.type === 'bytes') ctx.options.onBytes?.(driver.name, e.bytes);
        },
      });
      const r = result.destinations[0];
      // Files found intact in place are checked against the reference, not taken from the origin.
      if (r && r.filesCopied > 0) usedFrom.push(origin === ctx.source ? 'source' : origin.name);
      if (r && (r.status === 'complete' || r.status === 'up-to-date')) { whole = true; break; }
      lastProblem = r?.errors[0]?.message ?? 'unknown error';
      log(`from ${origin === ctx.source ? 'the source' : origin.name}: ${lastProblem}`);
    } catch (err) {
      if (err instanceof OffsiteError && err.code === 'E_ABORTED') throw err;
      lastProblem = errorMessage(err);
      log(`from ${origin === ctx.source ? 'the source' : origin.name}: ${lastProblem}`);
    }
  }
  if (!whole) return fail(lastProblem);

  // Read the copied files back once more before calling the copy repaired. Of an incomplete copy
  // (no damage list), every file not adopted is read: a progress checkpoint let the engine skip
  // files it recorded, and a record is no proof that the bytes are still there.
  const check = await verifyCopy({
    driver, backup, level: 'quick', concurrency: ctx.concurrency, signal, publicKey: ctx.publicKeys.get(driver.name),
    readBack: (f) => !adopted.has(f.path) && (damage === undefined || copied.has(f.path)),
    onBytes: (n) => ctx.options.onBytes?.(driver.name, n),
  });
  if (check.status !== 'ok') {
    return { ...found, message: `repair copied the files but the check after it failed: ${check.message ?? check.damage[0]?.message ?? check.status}` };
  }
  // The new manifest, streamed: the same files and hashes as the reference's?
  const expected = reference ? new Map(reference.manifest.files.map((f) => [f.path, f.hash])) : undefined;
  let listed = 0;
  let differs: string | undefined;
  // Adopted files count as read: adoption reads and hashes the bytes in place (a stored hash is never taken for them).
  let adoptedBytes = 0;
  const manifest = await streamManifestAt(driver, manifestKey(backup), {
    signal,
    onFile: (f) => {
      listed++;
      if (expected && expected.get(f.path) !== f.hash) differs ??= f.path;
      if (adopted.has(f.path)) adoptedBytes += f.size;
    },
  });
  if (!manifest) return { ...found, message: 'repair copied the files but the check after it failed: the manifest is gone' };
  if (reference && expected && (differs !== undefined || listed !== expected.size)) {
    return { ...found, message: `repair produced a copy that differs from the manifest of ${reference.from} (${differs ?? 'file list'}): the source changed since it was copied` };
  }
  const filesRead = check.filesRead + adopted.size;
  const bytesRead = check.bytesChecked + adoptedBytes;
  log(`repaired: ${copied.size} file(s) copied${usedFrom.length > 0 ? ` from ${usedFrom.join(' and ')}` : ''}${adopted.size > 0 ? `, ${adopted.size} found intact in place` : ''}; ${filesRead} file(s) (${bytesRead} bytes) read back intact`);
  return {
    ...found, state: 'repaired', files: manifest.fileCount, bytes: manifest.totalBytes,
    filesRead: found.filesRead + filesRead, bytesRead: found.bytesRead + bytesRead,
    repaired: [...copied].sort(), ...(usedFrom.length > 0 ? { repairedFrom: usedFrom.join('+') } : {}),
    message: undefined,
  };
}
