/**
 * The one place that opens, wraps and closes drivers, used by every command (src/commands/,
 * src/ops/audit.ts, prune.ts, pull.ts, watch): a command asks a `DriverRuntime` for the source,
 * destinations or a plain folder, and closes them all at once with `close()` (or uses
 * `withRuntime`, which always closes).
 *
 * Every driver it hands out is the same stack (`wrapDriver`):
 * `withRetry(withBandwidthLimit(driver, limiters), policy)`; retry outside, so that parts sent
 * again are charged to the limit again. The limiters are the run's total (`--bwlimit`, else
 * `options.bwlimit`; one limiter shared by every driver the runtime opens, so the limit caps
 * their sum) and, for a destination, its own `bwlimit` key. Bytes written are limited; bytes
 * read are too with `limitReads` (deep verification, audit read-back). Each layer passes every
 * member of the driver through (src/drivers/wrappers/forwarding.ts), `sync` included.
 */
import { encryptionOf, type EncryptionSettings, type OffsiteConfig } from '../config/config.js';
import { destinationKeyOf, type DestinationKey } from '../crypto/keys.js';
import { expandPath } from '../config/paths.js';
import { parseBytes } from '../config/units.js';
import { createDriver } from '../drivers/index.js';
import type { Driver } from '../drivers/types.js';
import { createRateLimiter, withBandwidthLimit, withRetry, type RateLimiter, type RetryInfo } from '../drivers/wrappers/index.js';
import { ConfigError, errorMessage, UsageError } from '../errors.js';
import { driverSectionOf, refuseOverlaps } from './overlap.js';

/** How drivers are wrapped for a run: retries and bandwidth limits (see src/drivers/wrappers). */
export interface TransferOptions {
  /** Retries of a retryable error, per operation. @default config options.retries, else 5 */
  readonly retries?: number;
  /** Stop retrying an operation that has kept failing this long. @default config options.timeout, else 10 min */
  readonly retryTimeoutMs?: number;
  /** Total bytes per second, all drivers of the run together; 0: no limit. @default config options.bwlimit, else no limit */
  readonly bwlimitBytesPerSecond?: number;
  /** Also pace bytes read (deep verification, audit read-back, pull), not only bytes written. @default false */
  readonly limitReads?: boolean;
  /** Told about every retry (the CLI prints them). */
  readonly onRetry?: (driver: string, info: RetryInfo) => void;
  /**
   * The run's chunk size (`--chunk-size`): encrypted destinations seal chunks of it, so a run's
   * parts are always whole sealed chunks. @default config options.chunkSize
   */
  readonly chunkBytes?: number;
}

/** What `wrapDriver` puts around a driver. */
export interface WrapOptions {
  /** Every byte written (and read, with `limitReads`) passes each of these. */
  readonly limiters?: readonly RateLimiter[];
  readonly limitReads?: boolean;
  readonly retries?: number;
  readonly retryTimeoutMs?: number;
  readonly onRetry?: (info: RetryInfo) => void;
}

/** The stack every command's drivers get: `withRetry(withBandwidthLimit(driver, limiters), policy)`. */
export function wrapDriver(driver: Driver, options: WrapOptions = {}): Driver {
  return withRetry(withBandwidthLimit(driver, options.limiters ?? [], { limitReads: options.limitReads }), {
    retries: options.retries, maxRetryMs: options.retryTimeoutMs, onRetry: options.onRetry,
  });
}

/** Closes every driver given, ignoring close errors (closing never hides the run's own error). */
export async function closeAll(drivers: readonly (Driver | undefined)[]): Promise<void> {
  await Promise.all(drivers.map((d) => d?.close().catch(() => undefined)));
}

/** Opens the drivers of one command run and closes them together. See the module comment. */
export class DriverRuntime {
  readonly #opened: Driver[] = [];
  readonly #total: RateLimiter | undefined;

  constructor(readonly config: OffsiteConfig, readonly options: TransferOptions = {}) {
    const rate = options.bwlimitBytesPerSecond ?? config.settings.bwlimitBytesPerSecond;
    this.#total = rate ? createRateLimiter(rate) : undefined;
  }

  /** The configured source. */
  source(): Promise<Driver> {
    return this.#open('source', this.config.source);
  }

  /**
   * The named destinations (all configured ones when `names` is empty), in that order. An unknown
   * or repeated name is a `UsageError` listing the known ones; nothing is opened then. Places that
   * overlap (the source, each other) are an `OverlapError` (./overlap.ts). When one fails to open
   * or they overlap, the ones opened by this call are closed.
   */
  async destinations(names: readonly string[] = []): Promise<Driver[]> {
    const { config } = this;
    const known = Object.keys(config.destinations);
    const wanted = names.length > 0 ? names : known;
    for (const name of wanted) {
      if (!config.destinations[name]) throw new UsageError(`unknown destination ${JSON.stringify(name)} (configured in ${config.path}: ${known.join(', ')})`);
    }
    if (new Set(wanted).size !== wanted.length) throw new UsageError(`a destination is named twice in "${wanted.join(',')}"`);
    const opened: Driver[] = [];
    try {
      for (const name of wanted) opened.push(await this.#open(name, config.destinations[name] as Record<string, unknown>));
      await refuseOverlaps(config, opened);
    } catch (err) {
      await closeAll(opened);
      throw err;
    }
    return opened;
  }

  /** A local folder that is not in the config (pull's `--to ./restore`), named `name` in messages. */
  folder(name: string, path: string): Promise<Driver> {
    return this.#open(name, { type: 'local', root: expandPath(path, process.cwd()) });
  }

  /** Closes everything this runtime opened. Idempotent; never throws. */
  async close(): Promise<void> {
    await closeAll(this.#opened.splice(0));
  }

  async #open(name: string, section: Readonly<Record<string, unknown>>): Promise<Driver> {
    const driverSection = driverSectionOf(section);
    const limiters: RateLimiter[] = this.#total ? [this.#total] : [];
    const own = section['bwlimit'];
    if (own !== undefined && own !== 0 && own !== '0') {
      try {
        limiters.push(createRateLimiter(parseBytes(own, `${name}.bwlimit`)));
      } catch (err) {
        throw new ConfigError(`${this.config.path}: ${errorMessage(err)}`);
      }
    }
    const { options, config } = this;
    const driver = wrapDriver(await createDriver(name, driverSection), {
      limiters, limitReads: options.limitReads,
      retries: options.retries ?? config.settings.retries,
      retryTimeoutMs: options.retryTimeoutMs ?? config.settings.retryTimeoutMs,
      onRetry: options.onRetry ? (info) => options.onRetry?.(name, info) : undefined,
    });
    this.#opened.push(driver);
    const encryption = encryptionOf(section);
    if (encryption === undefined) return driver;
    // Loaded only for an encrypted destination: with it come the cipher format, the CPU pool and
    // its worker threads, which a run of plain destinations never needs (start-up, issue 13).
    const { withEncryption, withoutWrites } = await import('../drivers/wrappers/encrypt.js');
    if (encryption.key === undefined && encryption.keyFile === undefined) return withoutWrites(driver, `destination "${name}" is configured with encryption.publicKey only (an audit host): writing backup files to it needs its key (encryption.key or encryption.keyFile)`);
    // Outside retries and limits: a part sent again is the same sealed bytes, and the limits count stored bytes.
    return withEncryption(driver, this.#keyOf(name, encryption), options.chunkBytes ?? config.settings.chunkBytes);
  }

  #keyOf(name: string, encryption: EncryptionSettings): DestinationKey {
    try {
      return destinationKeyOf(name, encryption);
    } catch (err) {
      throw new ConfigError(`${this.config.path}: ${errorMessage(err)}`);
    }
  }

  /**
   * The public key that must have signed the manifests of destination `name` (encrypted
   * destinations: derived from its key, or its `encryption.publicKey`); `undefined` elsewhere.
   */
  manifestPublicKey(name: string): string | undefined {
    return manifestPublicKeyOf(this.config, name);
  }
}

/** See `DriverRuntime.manifestPublicKey`. */
export function manifestPublicKeyOf(config: OffsiteConfig, name: string): string | undefined {
  const section = config.destinations[name];
  const encryption = section && encryptionOf(section);
  if (!encryption) return undefined;
  if (encryption.publicKey !== undefined) return encryption.publicKey;
  try {
    return destinationKeyOf(name, encryption).publicKey;
  } catch (err) {
    throw new ConfigError(`${config.path}: ${errorMessage(err)}`);
  }
}

/** Runs `action` with a fresh `DriverRuntime` and closes every driver it opened, whatever happens. */
export async function withRuntime<T>(config: OffsiteConfig, options: TransferOptions, action: (runtime: DriverRuntime) => Promise<T>): Promise<T> {
  const runtime = new DriverRuntime(config, options);
  try {
    return await action(runtime);
  } finally {
    await runtime.close();
  }
}

/** Opens the configured source alone (the caller closes it, e.g. with `closeAll`). */
export function openSource(config: OffsiteConfig, options: TransferOptions = {}): Promise<Driver> {
  return new DriverRuntime(config, options).source();
}

/** Opens the named destinations alone (all configured ones when `names` is empty); see `DriverRuntime.destinations`. */
export function openDestinations(config: OffsiteConfig, names: readonly string[], options: TransferOptions = {}): Promise<Driver[]> {
  return new DriverRuntime(config, options).destinations(names);
}
