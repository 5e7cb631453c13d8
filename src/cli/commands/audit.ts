/** `offsite audit`: see src/ops/audit.ts. */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import { formatBytes } from '../../config/units.js';
import { DEFAULT_SLICES, type AuditCopy, type AuditLock, type AuditResult } from '../../ops/audit-result.js';
import { errorMessage, OffsiteError, UsageError } from '../../errors.js';
import { createProgress } from '../progress.js';
import { addPolicyOptions, policyOf, type PolicyFlags } from './prune.js';
import { addTransferOptions, out, parseList, parsePositiveInt, printJson, transferOptions, type CommandContext, type TransferFlags } from '../common.js';

function parsePercent(value: string): number {
  const m = /^(\d+(?:\.\d+)?)%?$/.exec(value.trim());
  const n = m ? Number(m[1]) : NaN;
  if (!(n > 0 && n <= 100)) throw new InvalidArgumentError('expected a percentage above 0 and at most 100, e.g. 5%');
  return n;
}

function parseSlice(value: string): { n: number; t: number } {
  const m = /^(\d+)\/(\d+)$/.exec(value.trim());
  const n = Number(m?.[1]);
  const t = Number(m?.[2]);
  if (!m || t < 1 || n < 1 || n > t) throw new InvalidArgumentError('expected n/t with 1 <= n <= t, e.g. 3/7 (slice 3 of 7)');
  return { n, t };
}

/** `--report`/`--metrics` must name a file in an existing, writable folder (not a folder). */
function checkOutputPath(option: string, file: string): void {
  const path = resolve(file);
  const folder = dirname(path);
  const there = statSync(path, { throwIfNoEntry: false });
  if (there?.isDirectory()) throw new UsageError(`${option} ${file} is a folder; give a file name, e.g. ${join(file, option === '--report' ? 'audit.html' : 'offsite.prom')}`);
  const parent = statSync(folder, { throwIfNoEntry: false });
  if (!parent) throw new UsageError(`${option} ${file}: the folder ${folder} does not exist; create it or choose another path`);
  if (!parent.isDirectory()) throw new UsageError(`${option} ${file}: ${folder} is not a folder`);
  try {
    accessSync(folder, constants.W_OK);
  } catch {
    throw new UsageError(`${option} ${file}: the folder ${folder} is not writable by this user`);
  }
}

const STATE_LABEL: Record<AuditCopy['state'], string> = {
  ok: 'ok', repaired: 'REPAIRED', damaged: 'DAMAGED', incomplete: 'INCOMPLETE', lost: 'LOST', 'in-progress': 'in progress', absent: 'absent', error: 'ERROR',
};

/** `lock: locked until 2026-01-31 (GOVERNANCE)`, `lock: 3 of 40 objects unlocked...`. */
function describeLock(lock: AuditLock): string {
  const day = (iso: string | undefined): string => iso?.slice(0, 10) ?? '?';
  const modes = lock.modes.length > 0 ? ` (${lock.modes.join('/')})` : '';
  const kept = lock.keptUntil ? `; the policy keeps the copy until ${lock.keptUntil === 'for ever' ? 'further notice' : `about ${day(lock.keptUntil)}`}` : '';
  const extended = lock.extendedTo ? `; extended to ${day(lock.extendedTo)}` : '';
  if (lock.state === 'error') return 'lock: unknown';
  if (lock.state === 'locked') {
    const span = lock.protectedUntil === lock.lockedUntil ? day(lock.protectedUntil) : `${day(lock.protectedUntil)} (some objects until ${day(lock.lockedUntil)})`;
    return `lock: locked until ${span}${modes}${extended}${kept}`;
  }
  if (lock.state === 'partly') return `lock: ${lock.unlocked} of ${lock.objects} objects unlocked, the others until ${day(lock.protectedUntil)}${modes}${extended}${kept}`;
  return `lock: not locked${lock.lockedUntil ? ` (the last lock ended ${day(lock.lockedUntil)})` : ''}${kept}`;
}

function describeMode(result: AuditResult): string {
  const m = result.mode;
  if (m.kind === 'sample') return `a random ${m.percent}% of each copy's files read back`;
  if (m.kind === 'slice') return `slice ${m.n}/${m.t} of each copy read back`;
  return `rotation over ${m.t} runs`;
}

function renderAudit(result: AuditResult): void {
  out(`audit of ${result.backups.length} backup(s) at ${result.destinations.length} destination(s): ${describeMode(result)}${result.repair ? ', repairing' : ''}`);
  for (const d of result.destinations) {
    const slice = d.slice ? `, slice ${d.slice.n}/${d.slice.t}` : '';
    out(`${d.name} (${d.description}): ${d.status === 'ok' ? 'ok' : d.status.toUpperCase()}: ${d.copies} cop${d.copies === 1 ? 'y' : 'ies'}, ${d.filesChecked} files checked, ${d.filesRead} read back (${formatBytes(d.bytesRead)})${slice}`);
    if (d.message) out(`  ${d.message}`);
    const copies = result.copies.filter((c) => c.destination === d.name);
    const width = Math.max(0, ...copies.map((c) => c.backup.length));
    for (const c of copies) {
      const full = c.lastFullRead ? `; last fully read ${c.lastFullRead.slice(0, 10)}` : c.state === 'ok' ? '; not yet fully read' : '';
      let line = `  ${c.backup.padEnd(width)}  ${STATE_LABEL[c.state]}`;
      if (c.state === 'ok') line += `: ${c.files} files${c.filesRead > 0 ? `, ${c.filesRead} read back` : ''}${full}`;
      else if (c.state === 'repaired') line += `: ${c.repaired.length} file(s) copied again${c.repairedFrom ? ` from ${c.repairedFrom}` : ''}; ${c.filesRead} file(s) (${formatBytes(c.bytesRead)}) read back intact`;
      else if (c.message) line += `: ${c.message}`;
      out(line);
      if (c.lock) out(`  ${' '.repeat(width)}    ${describeLock(c.lock)}`);
      if (c.lock?.warning) out(`  ${' '.repeat(width)}    WARNING: ${c.lock.warning}`);
      if (c.state === 'damaged' || c.state === 'repaired') {
        for (const dmg of c.damage.slice(0, 10)) out(`  ${' '.repeat(width)}    ${dmg.message}`);
        if (c.damage.length > 10) out(`  ${' '.repeat(width)}    ... and ${c.damage.length - 10} more (see --json)`);
      }
    }
  }
  const count = (s: AuditCopy['state']) => result.copies.filter((c) => c.state === s).length;
  out(`summary: ${count('ok')} ok, ${count('repaired')} repaired, ${count('damaged')} damaged, ${count('incomplete')} incomplete, ${count('lost')} lost, ${count('error')} unchecked, ${count('absent')} absent${
    result.exitCode === 0 ? ': every copy is intact' : result.exitCode === 3 ? ': DAMAGE FOUND (run offsite audit --repair)' : ': some copies could not be checked'}`);
}

export function registerAudit(ctx: CommandContext): void {
  addTransferOptions(addPolicyOptions(ctx.program.command('audit'))
    .description('check every backup copy at every destination: quick checks for all, a share read back in full; --repair fixes what is found')
    .option('--at <names>', 'only these destinations (comma-separated; default: all configured)', parseList)
    .addOption(new Option('--sample <percent>', 'read back a random share of each copy\'s files, e.g. 5%').argParser(parsePercent))
    .addOption(new Option('--slice <n/t>', 'read back slice n of t (t runs with n = 1..t read every file exactly once)').argParser(parseSlice))
    .option('--slices <t>', `length of the automatic rotation (default ${DEFAULT_SLICES}: daily runs read everything in a week)`, parsePositiveInt)
    .option('--repair', 'copy bad or missing files again (from the source, else from another destination whose copy checks out) and read them back')
    .option('--report <file>', 'write a self-contained HTML page: backups x destinations, the state of each copy, when it was last fully read')
    .option('--metrics <file>', 'write Prometheus metrics (text format, for node_exporter\'s textfile collector), atomically')
    .option('--extend-locks', 'at destinations with objectLock: extend the locks of the copies the retention policy (--keep-*) still keeps'), 'bytes read back and written by --repair, all destinations together')
    .addHelpText('after', `
With neither --sample nor --slice, each destination rotates by itself: it remembers in
.offsite/audit.json (at the destination, so any machine can continue) which slice comes next,
so a daily audit reads every byte of every copy once every --slices days.

At destinations with S3 Object Lock (objectLock), each copy's lock is shown. Given the
retention policy (the --keep-* options you give prune), audit warns when a copy the policy
keeps has objects without a lock, or a lock that ends before the policy would drop the copy;
--extend-locks then extends those locks (to the date the policy keeps the copy until, else to
now + the destination's retain).

Exit codes:
  0  every copy intact (repaired copies count as intact)
  1  error: the audit could not run, or --report/--metrics could not be written
     (the audit's result is printed first)
  2  usage or configuration error (e.g. an unknown destination name, a --report
     or --metrics path whose folder does not exist, or that is a folder)
  3  damage found and not repaired (missing, short or changed files, no valid manifest, or a
     copy found intact by an earlier audit that is gone without a prune: lost)
  4  a destination or a copy could not be checked

Examples:
  offsite audit                                   # daily from cron: quick checks + 1/7 read back
  offsite audit --sample 5% --at cloud
  offsite audit --repair --report /var/www/offsite.html --metrics /var/lib/node_exporter/textfile_collector/offsite.prom`)
    .action(async (opts: { at?: string[]; sample?: number; slice?: { n: number; t: number }; slices?: number; repair?: boolean; report?: string; metrics?: string; extendLocks?: boolean } & TransferFlags & PolicyFlags) => {
      const g = ctx.globals();
      const [{ loadConfig }, { auditCommand }, { renderAuditMetrics, writeFileAtomic }, { renderAuditHtml }] = await Promise.all([
        import('../../config/config.js'), import('../../ops/audit.js'), import('../../ops/metrics.js'), import('../../ops/report.js'),
      ]);
      const config = loadConfig(g.config);
      // Before the audit (which may take hours): a path that cannot be written would only fail after it.
      if (opts.report) checkOutputPath('--report', opts.report);
      if (opts.metrics) checkOutputPath('--metrics', opts.metrics);
      const bars = createProgress(!g.quiet && !g.json);
      const started = new Set<string>();
      let result: AuditResult;
      try {
        result = await auditCommand(config, {
          at: opts.at, samplePercent: opts.sample, slice: opts.slice, slices: opts.slices, repair: opts.repair,
          policy: policyOf(opts), extendLocks: opts.extendLocks,
          ...transferOptions(opts, g), signal: ctx.signal,
          onBytes: (d, n) => { if (!started.has(d)) { started.add(d); bars.start(d, 0); } bars.add(d, n); },
          onLog: g.quiet || g.json ? undefined : (line) => process.stderr.write(`offsite: ${line}\n`),
        });
      } finally {
        bars.stop();
      }
      const written: string[] = [];
      let failure: OffsiteError | undefined;
      for (const [file, render] of [[opts.report, () => renderAuditHtml(result)], [opts.metrics, () => renderAuditMetrics(result)]] as const) {
        if (!file) continue;
        try {
          await writeFileAtomic(file, render());
          written.push(file);
        } catch (err) {
          failure ??= new OffsiteError('E_OUTPUT', `cannot write ${file}: ${errorMessage(err)}; check the folder exists and is writable`, { kind: 'permanent' });
        }
      }
      // The result is shown even when a file could not be written: the audit itself is done.
      if (g.json) printJson({ ...result, ok: result.exitCode === 0 && failure === undefined, ...(failure ? { error: { code: failure.code, kind: failure.kind, message: failure.message } } : {}) });
      else {
        renderAudit(result);
        for (const file of written) out(`wrote ${file}`);
      }
      if (failure) process.stderr.write(`offsite: ${failure.message}\n`);
      ctx.setExit(failure && result.exitCode === 0 ? 1 : result.exitCode);
    });
}
