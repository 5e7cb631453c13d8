/**
 * What every command module under ./commands shares: the global options, output helpers,
 * argument parsers and the context a command registers itself with.
 */
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { parseBytes, parseDuration } from '../config/units.js';
import type { RetryInfo } from '../drivers/wrappers/index.js';
import { errorMessage } from '../errors.js';
import { oneLine } from './exit.js';
import type { TransferOptions } from '../runtime/drivers.js';

/** Passed to each command's `register` function. */
export interface CommandContext {
  readonly program: Command;
  /** The global options (--config, --json, --quiet) as parsed. */
  globals(): GlobalOptions;
  /** Sets the process exit code for this run (see ./exit.ts). */
  setExit(code: number): void;
  /** Aborted on the first Ctrl-C / SIGTERM. */
  readonly signal: AbortSignal;
}

export interface GlobalOptions {
  config?: string;
  json?: boolean;
  quiet?: boolean;
}

export function out(text: string): void {
  process.stdout.write(`${text}\n`);
}

export function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

/** A comma-separated list; given again (`--to a --to b`), the lists add up (never the last one only). */
export function parseList(value: string, previous?: string[]): string[] {
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new InvalidArgumentError('expected a comma-separated list of destination names');
  return [...(previous ?? []), ...names];
}

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number >= 1');
  return n;
}

export function parseRetries(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number >= 0');
  return n;
}

/** One stderr line per retry (not with --quiet or --json), so a stalled link is visible. */
export function reportRetry(globals: GlobalOptions): ((driver: string, info: RetryInfo) => void) | undefined {
  if (globals.quiet || globals.json) return undefined;
  return (driver, info) => {
    const what = `${info.op}${info.part === undefined ? '' : ` part ${info.part}`}${info.key ? ` ${info.key}` : ''}`;
    process.stderr.write(`offsite: ${driver}: ${what}: ${errorMessage(info.error)}; retry ${info.attempt} in ${(info.delayMs / 1000).toFixed(1)} s\n`);
  };
}

export function parseDurationOption(value: string): number {
  try {
    return parseDuration(value, 'duration');
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function parseSizeOption(value: string): number {
  try {
    return parseBytes(value, 'size');
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}


/** One stderr line per warning (also with --quiet and --json: stdout stays clean, nothing is hidden). */
export function warn(message: string): void {
  process.stderr.write(`offsite: warning: ${oneLine(message)}\n`);
}

/** Below this a rate limit is almost certainly a missing unit (`--bwlimit 1` is 1 byte per second). */
const SLOW_RATE_BYTES_PER_SECOND = 1024;

/**
 * `--bwlimit RATE`: bytes per second with an optional unit (20MiB); 0 means no limit. A rate
 * under 1 KiB/s is accepted with a warning: it is almost always a forgotten unit.
 */
export function parseRateOption(value: string): number {
  const rate = parseSizeOption(value);
  if (rate > 0 && rate < SLOW_RATE_BYTES_PER_SECOND) {
    warn(`--bwlimit ${value} is ${rate} byte${rate === 1 ? '' : 's'} per second: a copy would take days; did you mean ${value}MiB? (0 means no limit)`);
  }
  return rate;
}

/** The transfer options as commander parses them (see `addTransferOptions`). */
export interface TransferFlags {
  retries?: number;
  timeout?: number;
  bwlimit?: number;
}

/**
 * Adds the transfer options, defined once for every command that moves bytes (replicate, verify,
 * audit, pull, watch): `--retries`, `--timeout` and `--bwlimit`. `limited` says what the
 * bandwidth limit paces for this command, for its help line.
 */
export function addTransferOptions(command: Command, limited = 'bytes written, all destinations together'): Command {
  return command
    .option('--retries <n>', 'retries of a transient error (reset, timeout, 5xx) per operation; a retry resends only the failed part (default: options.retries, 5)', parseRetries)
    .addOption(new Option('--timeout <duration>', 'stop retrying an operation that has kept failing this long, e.g. 5m (default: options.timeout, 10m); one request\'s own limit is the driver\'s connectTimeoutMs/requestTimeoutMs/readyTimeoutMs').argParser(parseDurationOption))
    .addOption(new Option('--bwlimit <rate>', `bandwidth limit in bytes per second, e.g. 20MiB: ${limited} (default: options.bwlimit; per destination: bwlimit in its config)`).argParser(parseRateOption));
}

/** Turns the parsed transfer options into the runtime's `TransferOptions` (config defaults apply there). */
export function transferOptions(flags: TransferFlags, globals: GlobalOptions): TransferOptions {
  return { retries: flags.retries, retryTimeoutMs: flags.timeout, bwlimitBytesPerSecond: flags.bwlimit, onRetry: reportRetry(globals) };
}
