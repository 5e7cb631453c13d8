/**
 * The result of `offsite audit`, as plain data: what `--json` prints, and what the HTML report
 * (./report.ts) and the Prometheus metrics (./metrics.ts) are rendered from.
 */
import type { Damage } from '../core/verify.js';

/**
 * Slices of the automatic read-back rotation: daily runs read everything in a week. Here, not in
 * ./audit.ts, so that the CLI can show it in --help without loading the audit code.
 */
export const DEFAULT_SLICES = 7;

/**
 * The state of one backup copy at one destination after the audit:
 * - `ok`: manifest valid, every file present with its size; the sampled files read back intact;
 * - `repaired`: damage was found and fixed (`--repair`), and the fixed files read back intact;
 * - `damaged`: a file is missing, short, or its bytes differ (see `damage`), or the manifest is bad;
 * - `incomplete`: files without a manifest and no run holding the lock (an interrupted or
 *   tampered copy): nothing proves it whole;
 * - `lost`: the copy was found intact here by an earlier audit (the destination's own record, or
 *   another destination's record of it) and is gone, and no prune removed it: deleted or moved
 *   behind offsite's back (a wiped folder or bucket prefix, ransomware). Damage;
 * - `in-progress`: a replicate run holds the copy's lock right now; not judged;
 * - `absent`: the destination has nothing for this backup and no audit found it there, or prune
 *   removed it (not damage: replicate copies it);
 * - `error`: the copy could not be checked (see `message`).
 */
export type CopyState = 'ok' | 'repaired' | 'damaged' | 'incomplete' | 'lost' | 'in-progress' | 'absent' | 'error';

export interface AuditCopy {
  readonly backup: string;
  readonly destination: string;
  readonly state: CopyState;
  /** Files and bytes the copy's manifest lists (0 without a manifest). */
  readonly files: number;
  readonly bytes: number;
  /** Files and bytes read back and hash-checked by this audit (the deep sample, and repairs). */
  readonly filesRead: number;
  readonly bytesRead: number;
  /** What was found wrong (before any repair). */
  readonly damage: readonly Damage[];
  /** Paths copied again by `--repair` and verified after. */
  readonly repaired: readonly string[];
  /** Where the repair read from: `source` or a destination name. */
  readonly repairedFrom?: string;
  /** When every file of this copy was last read back intact (ISO), as far as the audit state knows. */
  readonly lastFullRead?: string;
  /** One line on an error, an incomplete copy, or a repair that did not work. */
  readonly message?: string;
  /** At a destination with S3 Object Lock (`objectLock`): the copy's lock (./audit-locks.ts). */
  readonly lock?: AuditLock;
}

/** The S3 Object Lock state of one copy, as audit found it (and extended it, with `--extend-locks`). */
export interface AuditLock {
  /** `locked`: every object locked; `partly`: some are not (never were, or their lock passed); `unlocked`: none is; `error`: could not be read. */
  readonly state: 'locked' | 'partly' | 'unlocked' | 'error';
  /** Objects offsite locks in this copy (data files and the manifest), and how many of them are not locked now. */
  readonly objects: number;
  readonly unlocked: number;
  /** ISO: when the first lock still in force ends (the copy is protected until then). */
  readonly protectedUntil?: string;
  /** ISO: when the last lock ends (prune cannot remove the copy before then). */
  readonly lockedUntil?: string;
  readonly modes: readonly string[];
  /** ISO: until about when the retention policy given to audit keeps the copy (`for ever` when unlimited); absent without a policy or when it removes the copy. */
  readonly keptUntil?: string;
  /** ISO: the date `--extend-locks` extended every lock of the copy to. */
  readonly extendedTo?: string;
  /** What is wrong: a lock that ends before the policy would drop the copy, objects of a kept copy without a lock, a failure. */
  readonly warning?: string;
}

export interface AuditDestination {
  readonly name: string;
  readonly description: string;
  /** `ok`: every copy ok or repaired; `damaged`: some copy damaged, incomplete or lost; `error`: could not be checked (or partly). */
  readonly status: 'ok' | 'damaged' | 'error';
  readonly copies: number;
  /** Files whose presence and size were checked (quick checks: every file of every copy). */
  readonly filesChecked: number;
  /** Files and bytes read back and hash-checked. */
  readonly filesRead: number;
  readonly bytesRead: number;
  /** The slice of the rotation this run read here (rotating or --slice mode). */
  readonly slice?: { readonly n: number; readonly t: number };
  /** The last audit of this destination that found every copy intact (ISO), this one included. */
  readonly lastSuccess?: string;
  readonly message?: string;
}

/** How files were chosen for reading back. */
export type AuditMode =
  | { readonly kind: 'rotate'; readonly t: number }
  | { readonly kind: 'slice'; readonly n: number; readonly t: number }
  | { readonly kind: 'sample'; readonly percent: number };

export interface AuditResult {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly source: string;
  readonly mode: AuditMode;
  readonly repair: boolean;
  /** Backup names, sorted: the rows of the matrix. */
  readonly backups: readonly string[];
  readonly destinations: readonly AuditDestination[];
  /** One per backup x destination. */
  readonly copies: readonly AuditCopy[];
  /** 0 all intact (repaired counts as intact), 3 damage left, 4 a destination could not be checked. */
  readonly exitCode: 0 | 3 | 4;
}
