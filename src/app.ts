/**
 * The commands as library functions: what `offsite list | replicate | verify` do, with typed
 * options and plain-data results. The CLI (src/cli/) only parses arguments, renders results and
 * maps errors to exit codes; everything else is here so that other programs can call it.
 */
import { inspectBackup, isValidBackupName, listBackups, type BackupInspection } from './backup/index.js';
import type { OffsiteConfig } from './config/config.js';
import { replicate, type ReplicateEvent, type ReplicateResult } from './core/replicate.js';
import { verifyCopy, type VerifyLevel, type VerifyResult } from './core/verify.js';
import { createDriver } from './drivers/index.js';
import { refuseOverlappingLocations, refuseOverlappingPlaces, type Place } from './drivers/overlap.js';
import type { Driver } from './drivers/types.js';
import { createRateLimiter, withBandwidthLimit, withRetry, type RateLimiter, type RetryInfo } from './drivers/wrappers/index.js';
import { BackupError, ConfigError, errorMessage, UsageError } from './errors.js';
import { parseBytes } from './config/units.js';
import { manifestKey, readManifestAt } from './manifest/manifest.js';
import { waitForBackup, type WaitEvent } from './ops/wait.js';

/** How drivers are wrapped for a run: retries and bandwidth limits (see src/drivers/wrappers). */
export interface TransferOptions {
  /** Retries of a retryable error, per operation. @default config options.retries, else 5 */
  readonly retries?: number;
  /** Stop retrying an operation that has kept failing this long. @default config options.timeout, else 10 min */
  readonly retryTimeoutMs?: number;
  /** Total bytes per second written, all destinations together; 0 or undefined: no limit. */
  readonly bwlimitBytesPerSecond?: number;
  /** Told about every retry (the CLI prints them). */
  readonly onRetry?: (driver: string, info: RetryInfo) => void;
}

/** Keys of a driver section that belong to the engine, not to the driver. */
const ENGINE_KEYS = ['bwlimit'] as const;

function driverSectionOf(section: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(section).filter(([k]) => !(ENGINE_KEYS as readonly string[]).includes(k)));
}

/** Builds one driver wrapped in the retry and bandwidth layers. */
async function openWrapped(name: string, section: Readonly<Record<string, unknown>>, config: OffsiteConfig, options: TransferOptions, total?: RateLimiter): Promise<Driver> {
  const driverSection = driverSectionOf(section);
  const limiters: RateLimiter[] = total ? [total] : [];
  if (section['bwlimit'] !== undefined && section['bwlimit'] !== 0 && section['bwlimit'] !== '0') {
    try {
      limiters.push(createRateLimiter(parseBytes(section['bwlimit'], `${name}.bwlimit`)));
    } catch (err) {
      throw new ConfigError(`${config.path}: ${errorMessage(err)}`);
    }
  }
  const driver = await createDriver(name, driverSection);
  return withRetry(withBandwidthLimit(driver, limiters), {
    retries: options.retries ?? config.settings.retries,
    maxRetryMs: options.retryTimeoutMs ?? config.settings.retryTimeoutMs,
    onRetry: options.onRetry ? (info) => options.onRetry?.(name, info) : undefined,
  });
}

/** Opens the configured source (with retries). */
export function openSource(config: OffsiteConfig, options: TransferOptions = {}): Promise<Driver> {
  return openWrapped('source', config.source, config, options);
}

/**
 * Opens the named destinations (all configured ones when `names` is empty). An unknown name is
 * a UsageError listing the known ones; places that overlap are an `OverlapError` (see
 * `refuseOverlaps`). Closes what it opened when one fails.
 */
export async function openDestinations(config: OffsiteConfig, names: readonly string[], options: TransferOptions = {}): Promise<Driver[]> {
  const known = Object.keys(config.destinations);
  const wanted = names.length > 0 ? names : known;
  for (const name of wanted) {
    if (!config.destinations[name]) throw new UsageError(`unknown destination ${JSON.stringify(name)} (configured in ${config.path}: ${known.join(', ')})`);
  }
  if (new Set(wanted).size !== wanted.length) throw new UsageError(`a destination is named twice in "${wanted.join(',')}"`);
  const opened: Driver[] = [];
  const total = options.bwlimitBytesPerSecond ? createRateLimiter(options.bwlimitBytesPerSecond) : undefined;
  try {
    for (const name of wanted) opened.push(await openWrapped(name, config.destinations[name] as Record<string, unknown>, config, options, total));
    await refuseOverlaps(config, opened);
  } catch (err) {
    await closeAll(opened);
    throw err;
  }
  return opened;
}

/** A place for the overlap checks (src/drivers/overlap.ts). */
export function placeOf(driver: Driver, role: Place['role']): Place {
  return {
    role, name: driver.name, description: driver.description, location: driver.location,
    ...(driver.identify ? { identify: (o?: { signal?: AbortSignal }) => (driver.identify as NonNullable<Driver['identify']>)(o) } : {}),
  };
}

/** Builds a driver only to read its location and identity (no IO until `identify`); `undefined` when its section is invalid (the command that uses it says why). */
async function bareDriver(name: string, section: Readonly<Record<string, unknown>> | undefined): Promise<Driver | undefined> {
  if (!section) return undefined;
  try {
    return await createDriver(name, driverSectionOf(section));
  } catch {
    return undefined;
  }
}

/**
 * Refuses, with one `OverlapError` (exit 2), a destination that is the source or lies inside it
 * or around it, and two destinations that are one place or nested (src/drivers/overlap.ts):
 * every configured destination by location, and `opened` plus the source by identity (real
 * paths, device/inode; the source is built here without retries when `source` is not given).
 * `strict`: a place that cannot be identified is an error too (prune, before it deletes).
 */
export async function refuseOverlaps(config: OffsiteConfig, opened: readonly Driver[], options: { source?: Driver; signal?: AbortSignal; strict?: boolean } = {}): Promise<void> {
  const built: Driver[] = [];
  try {
    const source = options.source ?? await bareDriver('source', config.source);
    if (source && !options.source) built.push(source);
    const others: Driver[] = [];
    for (const name of Object.keys(config.destinations)) {
      if (opened.some((d) => d.name === name)) continue;
      const driver = await bareDriver(name, config.destinations[name]);
      if (driver) { built.push(driver); others.push(driver); }
    }
    const sourcePlace = source ? [placeOf(source, 'source')] : [];
    const check = { file: config.path, signal: options.signal, strict: options.strict };
    // Every configured destination by its location (no IO)...
    refuseOverlappingLocations([...sourcePlace, ...[...opened, ...others].map((d) => placeOf(d, 'destination'))], check);
    // ...and the ones this command uses by identity.
    await refuseOverlappingPlaces([...sourcePlace, ...opened.map((d) => placeOf(d, 'destination'))], check);
  } finally {
    await closeAll(built);
  }
}

export async function closeAll(drivers: readonly (Driver | undefined)[]): Promise<void> {
  await Promise.all(drivers.map((d) => d?.close().catch(() => undefined)));
}

/** Picks the newest complete backup (by name order of milvus-backup's timestamped names, then last change). */
export function pickLatest(backups: readonly BackupInspection[]): BackupInspection | undefined {
  const complete = backups.filter((b) => b.state === 'complete');
  return [...complete].sort((a, b) => a.lastChangeMs - b.lastChangeMs || (a.name < b.name ? -1 : 1)).at(-1);
}

export interface ListResult {
  readonly source: string;
  readonly backups: readonly {
    readonly name: string;
    readonly state: BackupInspection['state'];
    readonly reason?: string;
    readonly files: number;
    readonly bytes: number;
    readonly lastChange: string;
    /** Destination name -> `complete` (valid manifest), `absent`, or an error message. */
    readonly copies: Readonly<Record<string, string>>;
  }[];
  /** What the listing of the source skipped, one line each (see `listBackupFolders`). */
  readonly warnings: readonly string[];
  /** Destinations whose copies could not be read (an `error: ...` in `copies`). */
  readonly unreadable: readonly string[];
}

/** `offsite list`: backups at the source with their state and where complete copies exist. */
export async function listCommand(config: OffsiteConfig, options: { destinations?: readonly string[]; signal?: AbortSignal } = {}): Promise<ListResult> {
  const source = await openSource(config);
  let destinations: Driver[] = [];
  try {
    destinations = await openDestinations(config, options.destinations ?? []);
    const warnings: string[] = [];
    const unreadable = new Set<string>();
    const backups = await listBackups(source, { quietPeriodMs: config.settings.quietPeriodMs, signal: options.signal, onWarning: (m) => warnings.push(m) });
    const rows = [];
    for (const b of backups) {
      const copies: Record<string, string> = {};
      await Promise.all(destinations.map(async (d) => {
        try {
          copies[d.name] = (await readManifestAt(d, manifestKey(b.name), { signal: options.signal })) ? 'complete' : 'absent';
        } catch (err) {
          copies[d.name] = `error: ${(err as Error).message}`;
          unreadable.add(d.name);
        }
      }));
      rows.push({ name: b.name, state: b.state, reason: b.reason, files: b.files.length, bytes: b.totalBytes, lastChange: new Date(b.lastChangeMs).toISOString(), copies });
    }
    return { source: source.description, backups: rows, warnings, unreadable: destinations.map((d) => d.name).filter((n) => unreadable.has(n)) };
  } finally {
    await closeAll([source, ...destinations]);
  }
}

export interface ReplicateCommandOptions extends TransferOptions {
  /** A backup name, or undefined with `latest`. */
  readonly backup?: string;
  readonly latest?: boolean;
  readonly to?: readonly string[];
  readonly dryRun?: boolean;
  readonly concurrency?: number;
  readonly chunkBytes?: number;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: ReplicateEvent) => void;
  /**
   * Wait up to this long for the backup to become complete (./ops/wait.ts) instead of refusing
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

function checkBackupName(name: string): void {
  if (!isValidBackupName(name)) throw new UsageError(`${JSON.stringify(name)} is not a milvus-backup backup name (letters, digits and _, not starting with a digit)`);
}

/** `offsite replicate`. */
export async function replicateCommand(config: OffsiteConfig, options: ReplicateCommandOptions): Promise<ReplicateCommandResult> {
  if (options.backup && options.latest) throw new UsageError('give a backup NAME or --latest, not both');
  if (!options.backup && !options.latest) throw new UsageError('which backup? give its NAME or --latest (see offsite list)');
  if (options.backup) checkBackupName(options.backup);
  const source = await openSource(config, options);
  let destinations: Driver[] = [];
  try {
    destinations = await openDestinations(config, options.to ?? [], options);
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
      dryRun: options.dryRun, signal: options.signal, onEvent: options.onEvent,
    });
    return waitedMs === undefined ? result : { ...result, waitedMs };
  } finally {
    await closeAll([source, ...destinations]);
  }
}

export interface VerifyCommandOptions extends TransferOptions {
  readonly backup: string;
  readonly at?: readonly string[];
  readonly level: VerifyLevel;
  readonly signal?: AbortSignal;
  readonly onBytes?: (destination: string, bytes: number) => void;
}

/** `offsite verify`: checks each named destination's copy, concurrently. */
export async function verifyCommand(config: OffsiteConfig, options: VerifyCommandOptions): Promise<VerifyResult[]> {
  checkBackupName(options.backup);
  const destinations = await openDestinations(config, options.at ?? [], options);
  try {
    return await Promise.all(destinations.map((driver) => verifyCopy({
      driver, backup: options.backup, level: options.level, concurrency: config.settings.concurrency,
      signal: options.signal, onBytes: (n) => options.onBytes?.(driver.name, n),
    })));
  } finally {
    await closeAll(destinations);
  }
}

/** Inspects one backup at the source (used by `list NAME` style callers and tests). */
export async function inspectCommand(config: OffsiteConfig, backup: string): Promise<BackupInspection> {
  checkBackupName(backup);
  const source = await openSource(config);
  try {
    return await inspectBackup(source, backup, { quietPeriodMs: config.settings.quietPeriodMs });
  } finally {
    await closeAll([source]);
  }
}
