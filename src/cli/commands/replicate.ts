/** `offsite replicate`. */
import { Option } from 'commander';
import type { ReplicateCommandResult } from '../../commands/replicate.js';
import type { WaitEvent } from '../../ops/wait.js';
import { formatBytes, formatDuration } from '../../config/units.js';
import type { ReplicateResult } from '../../core/replicate.js';
import { EXIT_CODE_HELP, ExitCode, INTERRUPTED_MESSAGE, oneLine } from '../exit.js';
import { createProgress } from '../progress.js';
import type { ShardSpec } from '../../core/shard.js';
import { addShardOptions, runFinish, SHARD_HELP, shardDoneLine } from './replicate-shard.js';
import { addTransferOptions, out, parseDurationOption, parseList, parsePositiveInt, parseSizeOption, printJson, transferOptions, type CommandContext, type GlobalOptions, type TransferFlags, warn } from '../common.js';

/** Exit code of a replicate run: 0 all done, 4 some destinations failed, 1 all failed. */
export function replicateExitCode(result: ReplicateResult): number {
  const failed = result.destinations.filter((d) => d.status === 'failed').length;
  if (failed === 0) return ExitCode.ok;
  return failed < result.destinations.length ? ExitCode.partial : ExitCode.error;
}

/** True when every error of a failed destination is the stop itself (nothing else went wrong there). */
function onlyInterrupted(d: ReplicateResult['destinations'][number]): boolean {
  return d.status === 'failed' && d.errors.length > 0 && d.errors.every((e) => e.code === 'E_ABORTED');
}

function renderReplicate(result: ReplicateResult, interrupted: boolean): void {
  const read = result.dryRun ? '' : `; ${formatBytes(result.bytesRead)} read from the source${result.detachments > 0 ? ` (${result.destinationsReadAlone} slower destination(s) read on their own after falling behind or joining late)` : ''}`;
  out(`${result.dryRun ? 'plan for' : 'replicated'} ${result.shard ? `shard ${result.shard.index}/${result.shard.count} of ` : ''}${result.backup} from ${result.source}: ${result.files} files, ${formatBytes(result.bytes)}${read}`);
  const width = Math.max(...result.destinations.map((d) => d.name.length));
  for (const d of result.destinations) {
    const name = d.name.padEnd(width);
    if (d.status === 'planned' && d.plan) {
      const p = d.plan;
      const reuse = p.reuseFiles > 0 ? `, reuse up to ${p.reuseFiles} files (${formatBytes(p.reuseBytes)}) from earlier copies there if their bytes are the same (else send them)` : '';
      out(`  ${name}  ${p.upToDate ? 'up to date' : `would copy ${p.copyFiles} files (${formatBytes(p.copyBytes)})${reuse}, check ${p.adoptFiles} present files, skip ${p.skipFiles}`}${p.removeManifestFirst ? ', remove its manifest first' : ''}`);
      for (const a of p.actions) if (a.action !== 'skip') out(`      ${a.action} ${a.path} (${a.size} bytes): ${a.reason}${a.reuseFrom !== undefined ? ` (${a.reuseFrom})` : ''}`);
    } else if (d.status === 'shard-done') {
      out(`  ${name}  ${shardDoneLine(d, result.shard)}`);
    } else if (d.status === 'up-to-date') {
      out(`  ${name}  up to date: nothing to copy (${d.filesSkipped} files already verified by its manifest)`);
    } else if (d.status === 'complete') {
      out(`  ${name}  complete: ${d.filesCopied} sent, ${d.filesReused} reused server-side (${formatBytes(d.bytesReused)} not sent), ${d.filesAdopted} checked in place, ${d.filesSkipped} already there; ${formatBytes(d.bytesWritten)} written, ${formatBytes(d.bytesResumed)} resumed${d.detachments > 0 ? `; fell behind (or joined late) ${d.detachments} time(s), read ${formatBytes(d.bytesReadAlone)} of the source on its own` : ''}; manifest ${d.manifestKey}`);
    } else if (interrupted && onlyInterrupted(d)) {
      out(`  ${name}  interrupted: ${d.filesCopied} files sent (${formatBytes(d.bytesWritten)}) and ${d.filesReused} reused server-side so far; the rest resumes on the next run`);
    } else {
      out(`  ${name}  FAILED: ${d.errors[0] ? `${d.errors[0].path ? `${d.errors[0].path}: ` : ''}${d.errors[0].message}` : 'unknown error'}`);
      for (const e of d.errors.slice(1, 5)) out(`  ${' '.repeat(width)}          ${e.path ? `${e.path}: ` : ''}${e.message}`);
      if (d.errors.length > 5) out(`  ${' '.repeat(width)}          ... and ${d.errors.length - 5} more errors (see --json)`);
    }
  }
}

/** One stderr line when the wait starts, one a minute while it lasts, one when it ends (not with --quiet or --json). */
function reportWait(globals: GlobalOptions): ((event: WaitEvent) => void) | undefined {
  if (globals.quiet || globals.json) return undefined;
  return (event) => {
    let line: string;
    if (event.type === 'ready') {
      line = `backup ${event.backup} is complete after waiting ${formatDuration(event.waitedMs)}`;
    } else {
      const what = event.backup === undefined ? 'a backup to appear at the source' : `backup ${event.backup}`;
      const state = event.backup === undefined ? '' : `: ${event.state}${event.reason ? ` (${event.reason})` : ''}`;
      line = event.first
        ? `waiting up to ${formatDuration(event.timeoutMs)} for ${what} to be complete${state}`
        : `still waiting for ${what} (${formatDuration(event.elapsedMs)} of ${formatDuration(event.timeoutMs)})${state}`;
    }
    process.stderr.write(`offsite: ${line}\n`);
  };
}

export function registerReplicate(ctx: CommandContext): void {
  addShardOptions(addTransferOptions(ctx.program.command('replicate')
    .description('copy one complete backup to the destinations, reading it once; resumes whatever an earlier run left')
    .argument('[name]', 'backup name (see offsite list)')
    .option('--latest', 'the newest complete backup at the source (with --wait: the newest backup, complete or not)')
    .addOption(new Option('--wait <duration>', 'wait up to this long for the backup to be complete instead of refusing it, e.g. 10m (post-backup hooks: --latest --wait 10m)').argParser(parseDurationOption))
    .option('--to <names>', 'destination names, comma-separated (default: all configured)', parseList)
    .option('--dry-run', 'print what would be copied, skipped or checked; write nothing')
    .option('--no-reuse', 'send every file: never create one by a server-side copy of an earlier copy at the destination (see the reuse key)')
    .option('--concurrency <n>', 'files transferred at once (default: options.concurrency, 8)', parsePositiveInt)
    .addOption(new Option('--chunk-size <size>', 'chunk and part size, e.g. 8MiB (default: options.chunkSize)').argParser(parseSizeOption))))
    .addHelpText('after', `\nA backup that is not complete (meta missing, a binlog short, changed within the quiet period) is refused with the reason.\nWith --wait it is polled until complete (quiet period included); a backup that stays failed for a quiet period, or the deadline, ends the wait with exit code 1 and the reason.\n--latest --wait waits for the backup with the newest change, complete or not, so a hook run right after milvus-backup create copies the backup just made.\nEach destination gets NAME/.offsite/manifest.json as soon as every file is there, while slower destinations go on; a destination that falls behind the others reads the source on its own instead of holding them back.\nA file that a destination already holds in another complete copy there (same size, same hashes as read at the source) is created there by a server-side copy instead of being sent (the destination's reuse key: copy, link or off; --no-reuse sends every file).\n${SHARD_HELP}\n\n${EXIT_CODE_HELP}`)
    .action(async (name: string | undefined, opts: TransferFlags & { latest?: boolean; wait?: number; to?: string[]; dryRun?: boolean; reuse?: boolean; concurrency?: number; chunkSize?: number; shard?: ShardSpec; finish?: boolean }) => {
      if (opts.finish) return runFinish(ctx, name, opts);
      const [{ loadConfig }, { replicateCommand }] = await Promise.all([import('../../config/config.js'), import('../../commands/replicate.js')]);
      const config = loadConfig(ctx.globals().config);
      const bars = createProgress(!ctx.globals().quiet && !ctx.globals().json);
      let result: ReplicateCommandResult;
      try {
        result = await replicateCommand(config, {
          backup: name, latest: opts.latest, waitMs: opts.wait, onWait: reportWait(ctx.globals()), onWarning: warn, to: opts.to, dryRun: opts.dryRun, reuse: opts.reuse, concurrency: opts.concurrency, chunkBytes: opts.chunkSize, shard: opts.shard, signal: ctx.signal,
          ...transferOptions(opts, ctx.globals()),
          onEvent: (event) => {
            if (event.type === 'plan' && !opts.dryRun) {
              for (const d of event.plan.destinations) if (!d.upToDate) bars.start(d.destination, d.copyBytes + d.reuseBytes + d.adoptBytes);
            } else if (event.type === 'bytes') bars.add(event.destination, event.bytes);
            else if (event.type === 'file-done' && event.how === 'reused') bars.add(event.destination, event.size);
            else if (event.type === 'warning' && !ctx.globals().quiet && !ctx.globals().json) warn(`${event.destination}: ${event.message}`);
          },
        });
      } finally {
        bars.stop();
      }
      const interrupted = ctx.signal.aborted;
      if (ctx.globals().json) printJson({ ...result, ...(interrupted ? { interrupted: true } : {}), destinations: result.destinations.map(({ plan: _plan, ...d }) => (opts.dryRun ? { ...d, plan: _plan } : d)) });
      else renderReplicate(result, interrupted);
      if (interrupted) {
        process.stderr.write(`offsite: ${INTERRUPTED_MESSAGE}\n`);
        ctx.setExit(ExitCode.interrupted);
      } else {
        // Errors go to stderr too (README: one line each), so cron mail shows them whatever stdout is.
        for (const d of result.destinations) {
          if (d.status !== 'failed') continue;
          const first = d.errors[0];
          process.stderr.write(`offsite: ${oneLine(`${d.name}: replicate ${result.backup} failed: ${first ? `${first.path ? `${first.path}: ` : ''}${first.message}` : 'unknown error'}${d.errors.length > 1 ? ` (and ${d.errors.length - 1} more)` : ''}`)}\n`);
        }
        ctx.setExit(replicateExitCode(result));
      }
    });

}
