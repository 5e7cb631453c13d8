/**
 * `offsite audit`: checks every backup copy at every destination, cheaply enough for cron.
 *
 * - **Quick checks for every copy:** the manifest is valid and every file it lists is present
 *   with its size (and its stored hash, where the driver keeps one). One listing per destination.
 * - **Deep checks for some files:** their bytes are read back and every chunk hash compared.
 *   Which files:
 *   - `--sample P%`: a random P% of each copy's files (at least one);
 *   - `--slice n/t`: slice n of t. Each copy's files are dealt into t slices of about equal
 *     bytes (largest first, each into the lightest slice, ties by path: deterministic, so the
 *     t slices of a copy cover every file exactly once);
 *   - neither: the rotation. Each destination remembers in `.offsite/audit.json` (at the
 *     destination, so any machine can continue it) which slice comes next; each run reads that
 *     slice and moves on, so t daily runs read every byte once (t = `--slices`, default 7).
 *   A copy whose t slices have all been read intact since its manifest last changed gets a
 *   "last fully read" time (the oldest of those reads), shown in the report and the metrics.
 * - **`--repair`:** a damaged copy (missing, short or changed files, a bad manifest) or an
 *   incomplete one (files, no manifest, no run holding its lock) is fixed from the source when
 *   it still has the backup, else file by file from other destinations whose files read back to
 *   the manifest's hashes (a file that does not is never used; with `--at`, the destinations not
 *   audited are origins too: `--at` limits what is audited, not where repairs come from). The
 *   good files are kept, recorded in a progress checkpoint; the bad ones are removed and copied
 *   again through the replication engine; the manifest is written only once the copy is whole;
 *   then the copied files are read back once more before the copy counts as repaired. Every copy
 *   of a backup is checked before any is repaired, and then all are repaired at once, each from
 *   the others (./audit-repair.ts).
 *
 * A copy an audit found intact at a destination (recorded in its `.offsite/audit.json` as `held`,
 * and in every other audited destination's as `elsewhere`, so a wiped root does not take the only
 * record with it) that is gone, with no prune recorded in its `.offsite/pruned.json` after that,
 * is `lost`: damage, and `--repair` copies it back; nothing is written at such a destination (a
 * wiped root is not recreated). Other copies a destination lacks are `absent`, which is not
 * damage (replicate copies them; prune removes copies on purpose). The exit code is 0 when every
 * copy is intact (repaired counts as intact), 3 when damage is left, else 4 when a destination
 * (or a copy) could not be checked.
 */
import { listBackupSummaries } from '../backup/index.js';
import type { OffsiteConfig } from '../config/config.js';
import { lockHolder } from '../core/lock.js';
import { verifyCopy, type Damage, type VerifyResult } from '../core/verify.js';
import type { Driver } from '../drivers/types.js';
import { DriverRuntime, manifestPublicKeyOf, type TransferOptions } from '../runtime/drivers.js';
import { errorMessage, OffsiteError, UsageError } from '../errors.js';
import type { ManifestSummary } from '../manifest/read.js';
import { sampleChooser, sliceChooser, type ReadBackChooser } from './audit-select.js';
import { DEFAULT_SLICES, type AuditCopy, type AuditDestination, type AuditMode, type AuditResult, type CopyState } from './audit-result.js';
import { checkLockOptions, withLockStates } from './audit-locks.js';
import { repairCopies, type Finding, type RepairContext } from './audit-repair.js';
import { listCopies, type CopyListing } from './copies.js';
import type { RetentionPolicy } from './retention.js';
import { heldRecord, holdingsAfter, learnHoldings } from './holdings.js';
import { AUDIT_STATE_KEY, readPruned, readRecord, writeRecord } from './state.js';

export { DEFAULT_SLICES };

export interface AuditOptions extends TransferOptions {
  /** Destinations to audit; all configured ones when empty. */
  readonly at?: readonly string[];
  /** Read back a random share of each copy's files, in percent (0 < p <= 100). */
  readonly samplePercent?: number;
  /** Read back slice n of t (1 <= n <= t). */
  readonly slice?: { readonly n: number; readonly t: number };
  /** Length of the rotation (rotating mode). @default 7 */
  readonly slices?: number;
  readonly repair?: boolean;
  readonly signal?: AbortSignal;
  /** Bytes read back, per destination (progress bars). */
  readonly onBytes?: (destination: string, bytes: number) => void;
  /** One line per notable step (repairs), for the CLI. */
  readonly onLog?: (line: string) => void;
  /** Only for tests: the clock. */
  readonly now?: () => Date;
  /** The retention policy (prune's `--keep-*`), for the Object Lock warnings and `extendLocks` (./audit-locks.ts). */
  readonly policy?: RetentionPolicy;
  /** Extend the Object Lock of copies the policy still keeps (./audit-locks.ts). */
  readonly extendLocks?: boolean;
}

/** What `.offsite/audit.json` holds at a destination. */
export interface AuditState {
  readonly version: 1;
  /** Length of the rotation the slice records refer to. */
  readonly slices: number;
  /** The slice the next rotating run reads (1-based). */
  readonly next: number;
  /** The last audit that found every copy here intact. */
  readonly lastSuccess?: string;
  readonly copies: Readonly<Record<string, CopyRecord>>;
  /**
   * Backups whose copy here an audit found intact, with the last time it did (ISO): a copy listed
   * here that is gone, with no prune recorded after that time, is `lost`.
   */
  readonly held?: Readonly<Record<string, string>>;
  /**
   * The same for the other destinations audited with this one, by destination name: when a
   * destination's root is wiped, its own record goes with it, and these tell what it held.
   */
  readonly elsewhere?: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

interface CopyRecord {
  /** The manifest digest the slice reads refer to: a new manifest starts over. */
  readonly digest: string;
  /** Slice number (1-based) -> when it was last read back intact. */
  readonly slicesRead: Readonly<Record<string, string>>;
  readonly lastFullRead?: string;
}

export { assignSlices } from './audit-select.js';

function validateOptions(options: AuditOptions): AuditMode {
  if (options.samplePercent !== undefined && options.slice) throw new UsageError('give --sample or --slice, not both');
  if (options.samplePercent !== undefined) {
    if (!(options.samplePercent > 0 && options.samplePercent <= 100)) throw new UsageError(`--sample must be a percentage above 0 and at most 100, got ${options.samplePercent}`);
    return { kind: 'sample', percent: options.samplePercent };
  }
  if (options.slice) {
    const { n, t } = options.slice;
    if (!Number.isInteger(n) || !Number.isInteger(t) || t < 1 || n < 1 || n > t) throw new UsageError(`--slice must be n/t with 1 <= n <= t, e.g. 3/7; got ${n}/${t}`);
    return { kind: 'slice', n, t };
  }
  const t = options.slices ?? DEFAULT_SLICES;
  if (!Number.isInteger(t) || t < 1 || t > 366) throw new UsageError(`--slices must be a whole number from 1 to 366, got ${t}`);
  return { kind: 'rotate', t };
}

interface Context extends RepairContext {
  readonly options: AuditOptions;
  readonly mode: AuditMode;
  /**
   * With `--repair --at a`: the other configured destinations, not audited but read from as
   * repair origins (`--at` limits what is audited, not where repairs may come from). Their
   * manifests are read only when a repair needs them.
   */
  readonly donors: readonly Driver[];
  /** The public key that must have signed each encrypted destination's manifests, by destination. */
  readonly publicKeys: ReadonlyMap<string, string>;
  readonly now: () => Date;
}

/** One destination during an audit: what it holds, its rotation state, and its results so far. */
interface DestinationAudit {
  readonly driver: Driver;
  /** Its copies; undefined when it could not be listed. */
  readonly listing?: ReadonlyMap<string, CopyListing>;
  readonly listProblem?: string;
  readonly state?: AuditState;
  readonly stateProblem?: string;
  /** The slice read here this run (rotate and slice modes). */
  readonly slice?: { readonly n: number; readonly t: number };
  /** Length of the rotation the per-copy slice records count in. */
  readonly rotation: number;
  /** Per-copy rotation records, updated as copies are audited. */
  readonly records: Map<string, CopyRecord>;
  /** Backups known to have been held here intact -> last found intact (ISO); see `AuditState.held`. */
  readonly known: Map<string, string>;
  /** Backups `offsite prune` removed here -> when (`.offsite/pruned.json`). */
  readonly pruned: ReadonlyMap<string, string>;
  readonly copies: AuditCopy[];
}

/**
 * Runs the audit (see the file comment). Backups are audited one after the other (every
 * destination's copy of a backup at once). Memory: per copy being checked, its listing and one
 * number per file (the slice division); a repair holds the one manifest it repairs against.
 */
export async function auditCommand(config: OffsiteConfig, options: AuditOptions = {}): Promise<AuditResult> {
  const mode = validateOptions(options);
  checkLockOptions(options);
  const now = options.now ?? (() => new Date());
  const startedAt = now();
  // A bandwidth limit paces the read-back as well as the repairs' writes.
  const runtime = new DriverRuntime(config, { ...options, limitReads: true });
  let source: Driver | undefined;
  let sourceProblem: string | undefined;
  let donors: Driver[] = [];
  try {
    const destinations = await runtime.destinations(options.at ?? []);
    if (options.repair && (options.at ?? []).length > 0) {
      // --at limits what is audited, not where repairs may come from.
      const others = Object.keys(config.destinations).filter((n) => !destinations.some((d) => d.name === n));
      if (others.length > 0) donors = await runtime.destinations(others);
    }
    const atSource = new Set<string>();
    try {
      source = await runtime.source();
      const onWarning = (m: string): void => options.onLog?.(`warning: ${m}`);
      for (const b of await listBackupSummaries(source, { quietPeriodMs: config.settings.quietPeriodMs, signal: options.signal, onWarning })) {
        if (b.state === 'complete') atSource.add(b.name);
      }
    } catch (err) {
      if (err instanceof OffsiteError && err.code === 'E_ABORTED') throw err;
      sourceProblem = errorMessage(err);
      options.onLog?.(`source unavailable (${sourceProblem}); auditing the destinations without it${options.repair ? ', repairs only from other destinations' : ''}`);
    }
    const audits = await Promise.all(destinations.map((d) => openAudit(d, mode, options.signal, options.onLog)));
    learnHoldings(audits.map((a) => ({ name: a.driver.name, state: a.state, known: a.known })));
    const names = new Set(atSource);
    for (const a of audits) for (const name of [...a.listing?.keys() ?? [], ...a.known.keys()]) names.add(name);
    const backups = [...names].sort();
    const ctx: Context = {
      options, mode, now, source, atSource, donors,
      publicKeys: new Map(destinations.flatMap((d) => { const key = manifestPublicKeyOf(config, d.name); return key === undefined ? [] : [[d.name, key] as const]; })),
      concurrency: config.settings.concurrency, chunkBytes: config.settings.chunkBytes, quietPeriodMs: config.settings.quietPeriodMs,
      memoryBudgetBytes: config.settings.memoryBudgetBytes,
    };
    for (const backup of backups) {
      // Every copy is checked before any is repaired (./audit-repair.ts says why).
      const findings = await Promise.all(audits.map((a): Promise<Finding> => a.listing
        ? auditCopy(ctx, a, backup)
        : Promise.resolve({ copy: emptyCopy(backup, a.driver.name, 'error', `could not list ${a.driver.description}: ${a.listProblem ?? 'unknown error'}`), manifestValid: false })));
      const results = await repairCopies(ctx, backup, audits.map((a, i) => ({ driver: a.driver, holds: a.listing?.has(backup) ?? false, finding: findings[i] as Finding })));
      audits.forEach((a, i) => a.copies.push(results[i] as AuditCopy));
    }
    const destinationResults = await Promise.all(audits.map((a) => finishAudit(ctx, a, audits)));
    const copies = await withLockStates(audits.flatMap((a) => a.copies), destinations, {
      policy: options.policy, extendLocks: options.extendLocks, now: now(), signal: options.signal,
    });
    const damaged = copies.some((c) => c.state === 'damaged' || c.state === 'incomplete' || c.state === 'lost');
    const unchecked = destinationResults.some((d) => d.status === 'error') || copies.some((c) => c.state === 'error');
    return {
      startedAt: startedAt.toISOString(), finishedAt: now().toISOString(),
      source: source?.description ?? `unavailable: ${sourceProblem ?? 'not opened'}`,
      mode, repair: options.repair ?? false, backups, destinations: destinationResults, copies,
      exitCode: damaged ? 3 : unchecked ? 4 : 0,
    };
  } finally {
    await runtime.close();
  }
}

/** Lists a destination's copies and reads its rotation state; decides the slice it reads this run. */
async function openAudit(driver: Driver, mode: AuditMode, signal?: AbortSignal, onLog?: (line: string) => void): Promise<DestinationAudit> {
  let listing: Map<string, CopyListing>;
  try {
    listing = new Map((await listCopies(driver, signal, (m) => onLog?.(`warning: ${m}`))).map((c) => [c.name, c]));
  } catch (err) {
    if (err instanceof OffsiteError && err.code === 'E_ABORTED') throw err;
    return { driver, listProblem: errorMessage(err), rotation: DEFAULT_SLICES, records: new Map(), known: new Map(), pruned: new Map(), copies: [] };
  }
  let state: AuditState | undefined;
  let stateProblem: string | undefined;
  try {
    state = await readState(driver, signal);
  } catch (err) {
    stateProblem = errorMessage(err);
  }
  let pruned = new Map<string, string>();
  try {
    pruned = await readPruned(driver, signal);
  } catch (err) {
    if (err instanceof OffsiteError && err.code === 'E_ABORTED') throw err;
    // Unreadable: no copy counts as pruned, so a vanished copy is reported lost (a false alarm at worst).
    stateProblem ??= errorMessage(err);
  }
  // A rotating run with another length starts the rotation (and its slice records) afresh;
  // --slice and --sample runs leave the rotation as it is.
  const rotation = mode.kind === 'rotate' ? mode.t : state?.slices ?? DEFAULT_SLICES;
  const records = new Map<string, CopyRecord>(state && state.slices === rotation ? Object.entries(state.copies) : []);
  let slice: { n: number; t: number } | undefined;
  if (mode.kind === 'rotate') slice = { n: state && state.slices === rotation && state.next >= 1 && state.next <= rotation ? state.next : 1, t: rotation };
  else if (mode.kind === 'slice') slice = { n: mode.n, t: mode.t };
  return { driver, listing, state, stateProblem, slice, rotation, records, known: heldRecord(state), pruned, copies: [] };
}

async function readState(driver: Driver, signal?: AbortSignal): Promise<AuditState | undefined> {
  const state = await readRecord<AuditState>(driver, AUDIT_STATE_KEY, signal);
  if (!state) return undefined;
  if (state.version !== 1 || !Number.isInteger(state.slices) || !Number.isInteger(state.next) || typeof state.copies !== 'object' || state.copies === null) {
    throw new OffsiteError('E_RECORD', `${driver.name}: ${AUDIT_STATE_KEY} is not an audit state this offsite understands; delete it to restart the rotation`, { kind: 'integrity' });
  }
  return state;
}

/** Saves the destination's rotation state and sums up its results. */
async function finishAudit(ctx: Context, a: DestinationAudit, audits: readonly DestinationAudit[]): Promise<AuditDestination> {
  const { driver, copies } = a;
  const base = { name: driver.name, description: driver.description };
  if (!a.listing) {
    return { ...base, status: 'error', copies: 0, filesChecked: 0, filesRead: 0, bytesRead: 0, message: `could not list ${driver.description}: ${a.listProblem ?? 'unknown error'}` };
  }
  const listing = a.listing;
  const bad = copies.some((c) => c.state === 'damaged' || c.state === 'incomplete' || c.state === 'lost');
  const errored = copies.some((c) => c.state === 'error');
  const lastSuccess = !bad && !errored ? ctx.now().toISOString() : a.state?.lastSuccess;
  const lost = copies.filter((c) => c.state === 'lost').length;
  let message = a.stateProblem;
  if (lost > 0) {
    // Writing the state would recreate a wiped root (or prefix) and hide what happened there;
    // the record of what it held stays here if it survived, and at the other destinations.
    message = `${lost} cop${lost === 1 ? 'y' : 'ies'} LOST here; nothing written at this destination (audit --repair brings ${lost === 1 ? 'it' : 'them'} back)`;
  } else if (!a.stateProblem) {
    const nowIso = ctx.now().toISOString();
    const elsewhere: Record<string, Record<string, string>> = { ...a.state?.elsewhere };
    for (const other of audits) if (other !== a) elsewhere[other.driver.name] = holdingsAfter(other.known, other.copies, nowIso);
    const next: AuditState = {
      version: 1,
      slices: a.rotation,
      next: ctx.mode.kind === 'rotate' && a.slice ? (a.slice.n % a.slice.t) + 1 : a.state?.slices === a.rotation ? a.state.next : 1,
      ...(lastSuccess ? { lastSuccess } : {}),
      copies: Object.fromEntries([...a.records].filter(([name]) => listing.has(name)).sort(([x], [y]) => (x < y ? -1 : 1))),
      held: holdingsAfter(a.known, a.copies, nowIso),
      elsewhere,
    };
    try {
      await writeRecord(driver, AUDIT_STATE_KEY, next, ctx.options.signal);
    } catch (err) {
      message = `audit state not saved (${errorMessage(err)}): the next run repeats this slice`;
    }
  }
  return {
    ...base,
    status: bad ? 'damaged' : errored || a.stateProblem ? 'error' : 'ok',
    copies: copies.filter((c) => c.state !== 'absent').length,
    filesChecked: copies.reduce((sum, c) => sum + (c.state === 'absent' ? 0 : c.files), 0),
    filesRead: copies.reduce((sum, c) => sum + c.filesRead, 0),
    bytesRead: copies.reduce((sum, c) => sum + c.bytesRead, 0),
    ...(a.slice ? { slice: a.slice } : {}),
    ...(lastSuccess ? { lastSuccess } : {}),
    ...(message ? { message } : {}),
  };
}

function emptyCopy(backup: string, destination: string, state: CopyState, message?: string): AuditCopy {
  return { backup, destination, state, files: 0, bytes: 0, filesRead: 0, bytesRead: 0, damage: [], repaired: [], ...(message ? { message } : {}) };
}

/**
 * Checks one copy (quick checks, and the read-back of the chosen files); reads only, never writes
 * to the copy: a repair comes after every copy of the backup was checked (./audit-repair.ts).
 */
async function auditCopy(ctx: Context, a: DestinationAudit, backup: string): Promise<Finding> {
  const { signal } = ctx.options;
  const { driver, slice, records } = a;
  const listing = a.listing?.get(backup);
  const judged = (copy: AuditCopy): Finding => ({ copy, manifestValid: false });
  const toRepair = (copy: AuditCopy, damage: readonly Damage[] | undefined, manifestValid: boolean): Finding =>
    ({ copy, manifestValid, ...(ctx.options.repair ? { repair: { damage } } : {}) });
  try {
    if (!listing) {
      records.delete(backup);
      const seen = a.known.get(backup);
      if (seen === undefined) return judged(emptyCopy(backup, driver.name, 'absent'));
      const prunedAt = a.pruned.get(backup);
      if (prunedAt !== undefined && prunedAt >= seen) return judged(emptyCopy(backup, driver.name, 'absent', `removed by offsite prune ${prunedAt.slice(0, 10)}`));
      return toRepair(emptyCopy(backup, driver.name, 'lost',
        `an audit found this copy intact here${seen ? ` (${seen.slice(0, 10)})` : ''}, it is gone and no prune removed it: deleted or moved behind offsite's back; run offsite audit --repair`), undefined, false);
    }
    if (!listing.hasManifest) {
      records.delete(backup);
      if (listing.hasLock && await lockHolder(driver, backup, { signal })) {
        return judged(emptyCopy(backup, driver.name, 'in-progress', 'another offsite run holds this copy\'s lock; not judged'));
      }
      if (listing.beingPruned) {
        return judged(emptyCopy(backup, driver.name, 'absent', `offsite prune was removing this copy (${listing.files} files left); the next prune finishes it`));
      }
      return toRepair(emptyCopy(backup, driver.name, 'incomplete',
        `${listing.files} files and no manifest: an interrupted or altered copy${listing.hasProgress ? ' (a progress checkpoint is there)' : ''}; run offsite replicate ${backup} --to ${driver.name}, or audit --repair`), undefined, false);
    }
    // Quick checks for all files, deep for the chosen ones, as the manifest streams by.
    let choose: ReadBackChooser | undefined;
    let sliceDigest: string | undefined;
    if (ctx.mode.kind === 'sample') {
      choose = sampleChooser(ctx.mode.percent, listing.files);
    } else if (slice) {
      const division = await sliceChooser(driver, backup, slice, signal).catch((err: unknown) => {
        if (err instanceof OffsiteError && err.code === 'E_ABORTED') throw err;
        return undefined; // no valid manifest: the check below reports why
      });
      choose = division?.choose;
      sliceDigest = division?.digest;
    }
    const read: { manifest?: ManifestSummary } = {};
    const result = await verifyCopy({
      driver, backup, level: 'quick', concurrency: ctx.concurrency, signal, publicKey: ctx.publicKeys.get(driver.name),
      ...(choose ? { readBack: choose } : {}),
      onManifest: (m) => { read.manifest = m; },
      onBytes: (n) => ctx.options.onBytes?.(driver.name, n),
    });
    const manifest = read.manifest;
    const copy = copyFromVerify(result, manifest);
    if (result.status === 'ok' && manifest) {
      // A slice counts as read only when it was divided from the very manifest just checked.
      const sliceRead = slice && sliceDigest === manifest.digest && slice.t === a.rotation ? slice : undefined;
      updateRecord(records, backup, manifest.digest, sliceRead, ctx.mode, ctx.now());
      return { copy: { ...copy, ...lastFullRead(records.get(backup)) }, manifestValid: true };
    }
    if (result.status === 'error' || !ctx.options.repair) return { copy: { ...copy, ...lastFullRead(records.get(backup)) }, manifestValid: manifest !== undefined };
    records.delete(backup);
    return toRepair(copy, result.damage, manifest !== undefined);
  } catch (err) {
    if (err instanceof OffsiteError && err.code === 'E_ABORTED') throw err;
    return judged(emptyCopy(backup, driver.name, 'error', errorMessage(err)));
  }
}

function copyFromVerify(result: VerifyResult, manifest: Pick<ManifestSummary, 'fileCount' | 'totalBytes'> | undefined): AuditCopy {
  const state: CopyState = result.status === 'ok' ? 'ok' : result.status === 'error' ? 'error' : 'damaged';
  return {
    backup: result.backup, destination: result.destination, state,
    files: manifest?.fileCount ?? 0, bytes: manifest?.totalBytes ?? 0,
    filesRead: result.filesRead, bytesRead: result.bytesChecked,
    damage: result.damage, repaired: [],
    ...(result.message ? { message: result.message } : {}),
  };
}

/** Records this run's intact reads in the copy's rotation record. */
function updateRecord(records: Map<string, CopyRecord>, backup: string, digest: string, slice: { n: number; t: number } | undefined, mode: AuditMode, now: Date): void {
  const old = records.get(backup);
  const slicesRead: Record<string, string> = old && old.digest === digest ? { ...old.slicesRead } : {};
  let full = old && old.digest === digest ? old.lastFullRead : undefined;
  if (slice) {
    slicesRead[String(slice.n)] = now.toISOString();
    const times = Array.from({ length: slice.t }, (_, i) => slicesRead[String(i + 1)]);
    if (times.every((t) => t !== undefined)) full = (times as string[]).sort()[0];
  } else if (mode.kind === 'sample' && mode.percent >= 100) {
    full = now.toISOString();
  }
  records.set(backup, { digest, slicesRead, ...(full ? { lastFullRead: full } : {}) });
}

function lastFullRead(record: CopyRecord | undefined): { lastFullRead?: string } {
  return record?.lastFullRead ? { lastFullRead: record.lastFullRead } : {};
}
