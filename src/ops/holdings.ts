/**
 * What each destination is known to hold, for telling a `lost` copy (found intact by an audit,
 * gone now, no prune recorded since) from an `absent` one (see ./audit.ts). Each destination's
 * `.offsite/audit.json` records its own copies (`held`) and those of every other destination
 * audited with it (`elsewhere`), so a root wiped together with its own record is still known.
 */
import type { AuditState } from './audit.js';
import type { AuditCopy } from './audit-result.js';

/** What a destination's own audit state says it held: `held`, and (from before `held` existed) the rotation records. */
export function heldRecord(state: AuditState | undefined): Map<string, string> {
  const held = new Map<string, string>();
  for (const [backup, record] of Object.entries(state?.copies ?? {})) {
    held.set(backup, [record.lastFullRead ?? '', ...Object.values(record.slicesRead ?? {})].sort().pop() ?? '');
  }
  for (const [backup, seen] of Object.entries(state?.held ?? {})) if (typeof seen === 'string') held.set(backup, later(held.get(backup), seen));
  return held;
}

function later(a: string | undefined, b: string): string {
  return a !== undefined && a > b ? a : b;
}

/** Adds to each destination's `known` what the other destinations' audit states say it held. */
export function learnHoldings(audits: readonly { readonly name: string; readonly state?: AuditState; readonly known: Map<string, string> }[]): void {
  for (const a of audits) {
    for (const other of audits) {
      if (other === a) continue;
      for (const [backup, seen] of Object.entries(other.state?.elsewhere?.[a.name] ?? {})) {
        if (typeof seen === 'string') a.known.set(backup, later(a.known.get(backup), seen));
      }
    }
  }
}

/**
 * What a destination holds after this audit, for the records: copies found intact now, and copies known
 * before that are not legitimately absent (lost, damaged, unchecked ones stay expected).
 */
export function holdingsAfter(known: ReadonlyMap<string, string>, copies: readonly AuditCopy[], now: string): Record<string, string> {
  const held = new Map(known);
  for (const copy of copies) {
    if (copy.state === 'ok' || copy.state === 'repaired') held.set(copy.backup, now);
    else if (copy.state === 'absent') held.delete(copy.backup);
  }
  return Object.fromEntries([...held].sort(([x], [y]) => (x < y ? -1 : 1)));
}
