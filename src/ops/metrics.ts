/**
 * `offsite audit --metrics FILE`: the audit result in the Prometheus text exposition format
 * (version 0.0.4), for node_exporter's textfile collector (`--collector.textfile.directory`;
 * name the file `*.prom`). Every metric is a gauge with a `# HELP` and `# TYPE` line, samples
 * of one family together, no sample timestamps (the collector refuses them). Label values are
 * escaped as the format says (`\\`, `\"`, `\n`).
 *
 * The file is replaced atomically (`writeFileAtomic`): the collector may read it at any moment
 * and must see the old file or the new one, never half of one. The temp file `FILE.tmp.<pid>`
 * does not end in `.prom`, so the collector never reads it.
 */
import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { AuditResult, CopyState } from './audit-result.js';

/** Every copy state; `offsite_audit_copies` has a sample for each, zeros included. */
export const METRIC_COPY_STATES: readonly CopyState[] = ['ok', 'repaired', 'damaged', 'incomplete', 'lost', 'in-progress', 'absent', 'error'];

/** Escapes a label value: backslash, double quote and newline. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Escapes HELP text: backslash and newline. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value: finite numbers as JavaScript prints them (Prometheus parses `1e+21` too). */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** Seconds since the epoch of an ISO time; `undefined` when missing or unparsable. */
function epochSeconds(iso: string | undefined): number | undefined {
  if (iso === undefined || iso === '') return undefined;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? undefined : ms / 1000;
}

type Labels = Readonly<Record<string, string>>;

class Exposition {
  private readonly lines: string[] = [];

  /** One metric family: its HELP and TYPE, then its samples (none is fine: the family still shows). */
  gauge(name: string, help: string, samples: ReadonlyArray<readonly [Labels, number]>): void {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`);
    this.lines.push(`# TYPE ${name} gauge`);
    for (const [labels, value] of samples) {
      const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
      this.lines.push(`${name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${formatValue(value)}`);
    }
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

/**
 * Renders the audit result as Prometheus text. Families (all gauges):
 *
 * - `offsite_audit_run_timestamp_seconds`, `offsite_audit_duration_seconds`, `offsite_audit_exit_code`;
 * - per `destination`: `offsite_audit_destination_ok` (1/0), `offsite_audit_copies` (with
 *   `state`, every state listed, zeros included), `offsite_audit_files_checked`,
 *   `offsite_audit_files_read`, `offsite_audit_bytes_read`, `offsite_audit_damaged_files`
 *   (damaged files left after any repair), `offsite_audit_repaired_files`,
 *   `offsite_audit_last_success_timestamp_seconds` (omitted when never);
 * - per copy (`destination`, `backup`): `offsite_audit_copy_state` (one sample, value 1, with the
 *   copy's `state`), `offsite_audit_copy_last_full_read_timestamp_seconds` (omitted when never),
 *   and at destinations with S3 Object Lock `offsite_audit_copy_protected_until_timestamp_seconds`
 *   (omitted for a copy with an object not locked; the family only when some copy has a lock).
 */
export function renderAuditMetrics(result: AuditResult): string {
  const out = new Exposition();
  const destinations = result.destinations.map((d) => d.name);
  for (const c of result.copies) if (!destinations.includes(c.destination)) destinations.push(c.destination);
  const copiesAt = (name: string) => result.copies.filter((c) => c.destination === name);
  const described = new Map(result.destinations.map((d) => [d.name, d]));

  const finished = epochSeconds(result.finishedAt);
  const started = epochSeconds(result.startedAt);
  out.gauge('offsite_audit_run_timestamp_seconds', 'When the audit finished, in seconds since the Unix epoch.',
    finished !== undefined ? [[{}, finished]] : []);
  out.gauge('offsite_audit_duration_seconds', 'How long the audit ran, in seconds.',
    finished !== undefined && started !== undefined ? [[{}, Math.max(0, finished - started)]] : []);
  out.gauge('offsite_audit_exit_code', 'The exit code of the audit: 0 all intact (repaired counts as intact), 3 damage left, 4 a destination could not be checked.',
    [[{}, result.exitCode]]);

  out.gauge('offsite_audit_destination_ok', '1 when every copy at the destination is ok or repaired, else 0 (damage left, or it could not be checked).',
    result.destinations.map((d) => [{ destination: d.name }, d.status === 'ok' ? 1 : 0]));

  out.gauge('offsite_audit_copies', 'Backup copies at the destination by state (ok, repaired, damaged, incomplete, lost, in-progress, absent, error).',
    destinations.flatMap((name) => {
      const copies = copiesAt(name);
      return METRIC_COPY_STATES.map((state): [Labels, number] => [{ destination: name, state }, copies.filter((c) => c.state === state).length]);
    }));

  const perDestination = (pick: (name: string) => number) => destinations.map((name): [Labels, number] => [{ destination: name }, pick(name)]);
  out.gauge('offsite_audit_files_checked', 'Files whose presence and size the audit checked at the destination.',
    perDestination((name) => described.get(name)?.filesChecked ?? 0));
  out.gauge('offsite_audit_files_read', 'Files the audit read back and hash-checked at the destination.',
    perDestination((name) => described.get(name)?.filesRead ?? copiesAt(name).reduce((s, c) => s + c.filesRead, 0)));
  out.gauge('offsite_audit_bytes_read', 'Bytes the audit read back and hash-checked at the destination.',
    perDestination((name) => described.get(name)?.bytesRead ?? copiesAt(name).reduce((s, c) => s + c.bytesRead, 0)));
  out.gauge('offsite_audit_damaged_files', 'Damaged files (missing, short or changed) left at the destination after any repair.',
    perDestination((name) => copiesAt(name).reduce((s, c) => s + new Set(c.damage.map((d) => d.path).filter((p) => !c.repaired.includes(p))).size, 0)));
  out.gauge('offsite_audit_repaired_files', 'Files the audit copied again to the destination and verified after (--repair).',
    perDestination((name) => copiesAt(name).reduce((s, c) => s + c.repaired.length, 0)));
  out.gauge('offsite_audit_last_success_timestamp_seconds', 'When an audit last found every copy at the destination intact, in seconds since the Unix epoch (absent when never).',
    result.destinations.flatMap((d): Array<[Labels, number]> => {
      const t = epochSeconds(d.lastSuccess);
      return t === undefined ? [] : [[{ destination: d.name }, t]];
    }));

  out.gauge('offsite_audit_copy_state', 'The state of one backup copy: 1, with the state as a label.',
    result.copies.map((c) => [{ destination: c.destination, backup: c.backup, state: c.state }, 1]));
  out.gauge('offsite_audit_copy_last_full_read_timestamp_seconds', 'When every file of the copy was last read back intact, in seconds since the Unix epoch (absent when never).',
    result.copies.flatMap((c): Array<[Labels, number]> => {
      const t = epochSeconds(c.lastFullRead);
      return t === undefined ? [] : [[{ destination: c.destination, backup: c.backup }, t]];
    }));
  if (result.copies.some((c) => c.lock !== undefined)) {
    out.gauge('offsite_audit_copy_protected_until_timestamp_seconds', 'S3 Object Lock: until when every object of the copy is locked, in seconds since the Unix epoch (absent when not all are).',
      result.copies.flatMap((c): Array<[Labels, number]> => {
        const t = c.lock?.state === 'locked' ? epochSeconds(c.lock.protectedUntil) : undefined;
        return t === undefined ? [] : [[{ destination: c.destination, backup: c.backup }, t]];
      }));
  }
  return out.text();
}

/**
 * Replaces `path` with `text` atomically: writes `path.tmp.<pid>` in the same folder, flushes it
 * to disk, renames it over `path`, and flushes the folder. A reader sees the old file or the new
 * one, never a part. The temp file is removed when anything fails.
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const temp = `${path}.tmp.${process.pid}`;
  try {
    const handle = await open(temp, 'w', 0o644);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  // Make the rename itself durable; some file systems cannot open or sync a folder.
  try {
    const dir = await open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch {
    /* best effort */
  }
}
