/**
 * Exit codes: part of the interface, documented in `--help` and the README. This file and
 * main.ts are the only places that turn errors into exit codes and messages.
 */
import { ConfigError, errorMessage, OffsiteError, UsageError } from '../errors.js';

export const ExitCode = {
  /** Everything asked for was done (or was already true). */
  ok: 0,
  /** An error: nothing (or nothing more) could be done, e.g. the backup is incomplete. */
  error: 1,
  /** Bad command line or config file. */
  usage: 2,
  /** Verification found damage (a missing, short or changed file, or no valid manifest). */
  damage: 3,
  /** Partial success: some destinations were done, others failed. */
  partial: 4,
  /** `replicate --finish`: some shards of the backup have not finished yet (they are named). */
  incomplete: 5,
  /** Stopped by SIGINT (Ctrl-C) or SIGTERM before the end; what was copied stays resumable. */
  interrupted: 130,
} as const;

/** The one line printed when a run was stopped by a signal. */
export const INTERRUPTED_MESSAGE = 'interrupted: stopped before the end; what was copied stays resumable: run the same command again to resume';

export const EXIT_CODE_HELP = `Exit codes:
  0  success
  1  error (incomplete backup, unreachable source, every destination failed, ...)
  2  usage or configuration error
  3  verification or audit found damage (not repaired)
  4  partial success: some destinations failed (or could not be checked), the others are done
  5  replicate --finish: not every shard is recorded yet (the missing ones are named)
  130  interrupted by Ctrl-C or SIGTERM (run the same command again to resume)`;

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError || err instanceof ConfigError) return ExitCode.usage;
  return ExitCode.error;
}

/**
 * The one line printed for an error: message only, never a stack trace. Control characters (a
 * newline in a backup or file name) are shown escaped, so the message stays one line.
 */
export function describeError(err: unknown): string {
  const message = err instanceof OffsiteError ? err.message : `internal error: ${errorMessage(err)} (please report it)`;
  return oneLine(message);
}

/** `text` with every control character written as `\xNN`. */
export function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
