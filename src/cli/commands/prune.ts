/** `offsite prune`: remove copies at destinations by a restic-style retention policy (see src/ops/retention.ts). */
import { InvalidArgumentError, type Command } from 'commander';
import { formatBytes } from '../../config/units.js';
import type { PruneDestinationResult, PruneResult } from '../../ops/prune.js';
import { checkPolicy, parseRetentionDuration, type RetentionDuration, type RetentionPolicy } from '../../ops/retention.js';
import { EXIT_CODE_HELP, ExitCode } from '../exit.js';
import { out, parseList, parseRetries, printJson, reportRetry, warn, type CommandContext } from '../common.js';

/** Exit code of a prune run: 0 every destination done, 4 some failed, 1 all failed. Skipped copies are not failures. */
export function pruneExitCode(result: PruneResult): number {
  const failed = result.destinations.filter((d) => d.status === 'failed').length;
  if (failed === 0) return ExitCode.ok;
  return failed < result.destinations.length ? ExitCode.partial : ExitCode.error;
}

export function parseKeep(value: string): number {
  const text = value.trim().toLowerCase();
  if (text === 'unlimited' || text === 'all' || text === '-1') return -1;
  const n = Number(text);
  if (text === '' || !Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number >= 0, or "unlimited" (also -1)');
  return n;
}

export function parseWithin(value: string): RetentionDuration {
  try {
    return parseRetentionDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** `2025-01-31 02:00` in the process's time zone (the one the policy buckets by). */
function localTime(iso: string | undefined): string {
  if (!iso) return '(time unknown)';
  const t = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ${p(t.getHours())}:${p(t.getMinutes())}`;
}

function renderDestination(d: PruneDestinationResult, dryRun: boolean): void {
  out(`${d.destination} (${d.description}):`);
  const label = (text: string): string => text.padEnd(dryRun ? 'would remove'.length : 'removed'.length);
  const rows: { name: string; line: (width: number) => string; sortKey: string }[] = [];
  for (const k of d.kept) rows.push({ name: k.name, sortKey: k.time, line: (w) => `  ${label('keep')}  ${k.name.padEnd(w)}  ${localTime(k.time)}  ${k.reasons.join(', ')}` });
  for (const r of d.removed) {
    const what = r.finishing ? '(finishing an interrupted prune)' : r.lockPresent ? '(locked by another run now: would be skipped if still held)' : '';
    rows.push({ name: r.name, sortKey: r.time ?? '', line: (w) => `  ${label(dryRun ? 'would remove' : 'removed')}  ${r.name.padEnd(w)}  ${localTime(r.time)}  ${formatBytes(r.bytes)} ${what}`.trimEnd() });
  }
  const width = Math.max(0, ...[...rows, ...d.skipped, ...d.errors].map((r) => r.name?.length ?? 0));
  for (const row of rows.sort((a, b) => (a.sortKey < b.sortKey ? 1 : a.sortKey > b.sortKey ? -1 : 0))) out(row.line(width));
  for (const s of d.skipped) out(`  ${label('skip')}  ${s.name.padEnd(width)}  ${s.reason}: ${s.message}`);
  for (const e of d.errors) out(`  ${label('ERROR')}  ${(e.name ?? '').padEnd(width)}  ${e.message}`);
  const bytes = d.removed.reduce((sum, r) => sum + r.bytes, 0);
  out(`  ${d.destination}: ${d.kept.length} kept, ${d.removed.length} ${dryRun ? 'to remove' : 'removed'} (${formatBytes(bytes)}), ${d.skipped.length} skipped${d.errors.length ? `, ${d.errors.length} error(s)` : ''}`);
}

/** The `--keep-*` flags as commander gives them. */
export interface PolicyFlags {
  keepLast?: number; keepHourly?: number; keepDaily?: number; keepWeekly?: number; keepMonthly?: number; keepYearly?: number; keepWithin?: RetentionDuration;
}

/** Adds the `--keep-*` flags (prune's, also audit's for Object Lock). */
export function addPolicyOptions<C extends Command>(command: C): C {
  return command
    .option('--keep-last <n>', 'keep the n newest copies', parseKeep)
    .option('--keep-hourly <n>', 'keep the newest copy of each of the n newest hours', parseKeep)
    .option('--keep-daily <n>', 'keep the newest copy of each of the n newest days', parseKeep)
    .option('--keep-weekly <n>', 'keep the newest copy of each of the n newest ISO weeks', parseKeep)
    .option('--keep-monthly <n>', 'keep the newest copy of each of the n newest months', parseKeep)
    .option('--keep-yearly <n>', 'keep the newest copy of each of the n newest years', parseKeep)
    .option('--keep-within <duration>', 'keep every copy newer than this before the newest one (e.g. 30d, 1y6m; m = months)', parseWithin);
}

/** The policy of the `--keep-*` flags; `undefined` when none is given. */
export function policyOf(opts: PolicyFlags): RetentionPolicy | undefined {
  const policy: RetentionPolicy = {
    keepLast: opts.keepLast, keepHourly: opts.keepHourly, keepDaily: opts.keepDaily, keepWeekly: opts.keepWeekly,
    keepMonthly: opts.keepMonthly, keepYearly: opts.keepYearly, keepWithin: opts.keepWithin,
  };
  return Object.values(policy).some((v) => v !== undefined) ? policy : undefined;
}

const POLICY_HELP = `
Policy (restic's "forget" semantics):
  Complete copies (valid manifest) at each destination are sorted newest first by backup time
  (the time in milvus-backup's name backup_YYYY_MM_DD_HH_MM_SS, UTC, else when it was made).
  Each --keep-<unit> N keeps the newest copy of each of the N newest hours/days/ISO weeks/
  months/years that have a copy; --keep-last N keeps the N newest copies. A copy is kept when
  any rule keeps it. N may be "unlimited" (-1). When a rule still has budget left at the oldest
  copy, that copy is kept too ("oldest monthly snapshot"). --keep-within 1y6m keeps everything
  newer than 1 year 6 months before the newest copy (units y, m = months, d, h).
  Days, weeks and months are in the local time zone of this process: run with TZ=UTC to count
  in UTC. Weeks are ISO weeks (Monday first; 2024-12-30 belongs to week 1 of 2025).

Example: --keep-daily 3 --keep-weekly 2 --keep-monthly 3 (TZ=UTC) on
  2025-01-02 02:00  keep    daily, weekly (2025-W01), monthly (2025-01)
  2025-01-01 14:00  keep    daily
  2025-01-01 02:00  remove  (same day as the one above)
  2024-12-31 02:00  keep    daily, monthly (2024-12)
  2024-12-30 02:00  remove  (daily budget used up; same ISO week and month as kept ones)
  2024-12-29 02:00  keep    weekly (2024-W52)
  2024-11-30 02:00  keep    monthly (2024-11)
  2024-11-15 02:00  remove  (every budget used up)

Safety:
  - Never deletes at the source: a destination that is, lies inside or holds the source (by any
    route: symlink, bind mount, another spelling of the endpoint) is refused (exit 2), and is
    checked again by identity right before anything is deleted there.
  - Incomplete copies (no manifest), copies with a damaged manifest and copies locked by a
    running replicate are never deleted, only reported.
  - The manifest is deleted first, so an interrupted prune never leaves a copy that looks
    complete; the next prune finishes the removal.
  - Copies under S3 Object Lock (destination option objectLock) are kept until their lock has
    passed ("kept until DATE (locked)"); the first prune after that date removes them.
  - Removed backups are recorded in <destination>/.offsite/pruned.json (offsite watch does not
    copy them there again).`;

export function registerPrune(ctx: CommandContext): void {
  addPolicyOptions(ctx.program.command('prune')
    .description('remove old copies at destinations by a retention policy (restic forget semantics); never at the source'))
    .option('--at <names>', 'destination names, comma-separated (default: all configured)', parseList)
    .option('--dry-run', 'show what would be kept and removed; delete nothing')
    .option('--retries <n>', 'retries of a transient error per operation (default: options.retries, 5)', parseRetries)
    .addHelpText('after', `${POLICY_HELP}\n\n${EXIT_CODE_HELP}\n\nExamples:\n  offsite prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run\n  offsite prune --keep-last 3 --keep-monthly unlimited --at cloud`)
    .action(async (opts: {
      keepLast?: number; keepHourly?: number; keepDaily?: number; keepWeekly?: number; keepMonthly?: number; keepYearly?: number;
      keepWithin?: RetentionDuration; at?: string[]; dryRun?: boolean; retries?: number;
    }) => {
      const globals = ctx.globals();
      const policy: RetentionPolicy = {
        keepLast: opts.keepLast, keepHourly: opts.keepHourly, keepDaily: opts.keepDaily, keepWeekly: opts.keepWeekly,
        keepMonthly: opts.keepMonthly, keepYearly: opts.keepYearly, keepWithin: opts.keepWithin,
      };
      checkPolicy(policy); // before the config: "no policy" is the first thing to say
      const [{ loadConfig }, { pruneCommand }] = await Promise.all([import('../../config/config.js'), import('../../ops/prune.js')]);
      const config = loadConfig(globals.config);
      const progress = !globals.quiet && !globals.json;
      const result = await pruneCommand(config, {
        at: opts.at, policy, dryRun: opts.dryRun, signal: ctx.signal, retries: opts.retries, onRetry: reportRetry(globals), onWarning: warn,
        onRemoved: progress ? (e) => {
          process.stderr.write(e.error === undefined ? `offsite: ${e.destination}: removed ${e.name}\n` : `offsite: ${e.destination}: ${e.name}: ${e.error}\n`);
        } : undefined,
      });
      const code = pruneExitCode(result);
      if (globals.json) {
        printJson({ ok: code === ExitCode.ok, ...result });
      } else {
        out(`prune: ${result.policy}${result.dryRun ? ' (dry run: nothing was deleted)' : ''}`);
        for (const d of result.destinations) renderDestination(d, result.dryRun);
      }
      ctx.setExit(code);
    });
}
