/** `offsite watch`: replicate every backup that becomes complete, as it appears. */
import { Option } from 'commander';
import { formatBytes, formatDuration } from '../../config/units.js';
import { UsageError } from '../../errors.js';
import type { WatchEvent, WatchSummary } from '../../ops/watch.js';
import { EXIT_CODE_HELP, ExitCode } from '../exit.js';
import { addTransferOptions, out, parseDurationOption, parseList, parsePositiveInt, parseSizeOption, transferOptions, type CommandContext, type TransferFlags } from '../common.js';

/** 0 nothing failing; 4 some destinations failing, the others fine; 1 all failing, or the source. */
export function watchExitCode(summary: WatchSummary): number {
  if (summary.sourceFailing) return ExitCode.error;
  if (summary.failing.length === 0) return ExitCode.ok;
  return summary.failing.length < summary.destinations ? ExitCode.partial : ExitCode.error;
}

/** One human log line (without the timestamp) for an event. */
export function describeWatchEvent(e: WatchEvent): string {
  const list = (names: readonly string[]): string => names.join(', ');
  switch (e.event) {
    case 'start':
      return `watching ${e.source} ${e.once ? 'once' : `every ${formatDuration(e.intervalMs)}`}; destinations: ${list(e.destinations)}`;
    case 'waiting':
      return `${e.backup}: not complete yet (${e.reason}); will replicate it once it is`;
    case 'not-complete':
      return `${e.backup}: not replicated, it will not become complete as it is: ${e.reason}`;
    case 'present':
      return `${e.backup}: ${[
        e.present.length > 0 ? `already at ${list(e.present)}` : '',
        e.pruned.length > 0 ? `pruned from ${list(e.pruned)} (not copied again)` : '',
      ].filter(Boolean).join('; ')}`;
    case 'copying':
      return `${e.backup}: copying to ${list(e.destinations)}`;
    case 'copied':
      return e.status === 'up-to-date'
        ? `${e.backup}: ${e.destination}: up to date (nothing to copy)`
        : `${e.backup}: ${e.destination}: complete: ${e.filesCopied} files copied, ${e.filesReused} reused server-side (${formatBytes(e.bytesReused)} not sent), ${e.filesAdopted} checked in place, ${e.filesSkipped} already there; ${formatBytes(e.bytesWritten)} written in ${formatDuration(e.durationMs)}`;
    case 'failed':
      return `${e.backup ? `${e.backup}: ` : ''}${e.destination}: FAILED: ${e.message}${e.retryInMs === undefined ? '' : `; trying again in ${formatDuration(e.retryInMs)}`}`;
    case 'source-failed':
      return `source${e.backup ? ` (${e.backup})` : ''}: FAILED: ${e.message}${e.retryInMs === undefined ? '' : `; trying again in ${formatDuration(e.retryInMs)}`}`;
    case 'warning':
      return `warning: ${e.message}`;
    case 'stop':
      return `stopped (${e.reason === 'signal' ? 'on a signal' : 'one pass done'}): ${e.copies} ${e.copies === 1 ? 'copy' : 'copies'} made; failing: ${
        [...e.failing, ...(e.sourceFailing ? ['the source'] : [])].join(', ') || 'nothing'}${
        e.interrupted ? `; the copy of ${e.interrupted} was interrupted and resumes on the next run` : ''}`;
  }
}

export function registerWatch(ctx: CommandContext): void {
  addTransferOptions(ctx.program.command('watch')
    .description('keep running: poll the source and replicate every backup that becomes complete to the destinations, once')
    .option('--to <names>', 'destination names, comma-separated (default: all configured)', parseList)
    .addOption(new Option('--interval <duration>', 'time between two looks at the source, e.g. 30s, 5m (default: 1m)').argParser(parseDurationOption))
    .option('--once', 'one pass, then exit (for cron): exit code 0, 4 (some destinations failed) or 1')
    .option('--no-reuse', 'send every file: never create one by a server-side copy of an earlier copy at the destination (see the reuse key)')
    .option('--concurrency <n>', 'files transferred at once (default: options.concurrency, 8)', parsePositiveInt)
    .addOption(new Option('--chunk-size <size>', 'chunk and part size, e.g. 8MiB (default: options.chunkSize)').argParser(parseSizeOption)))
    .addHelpText('after', `
Each poll lists the source once. A backup is replicated once it is complete (meta present, every
binlog whole, nothing changed for options.quietPeriod), oldest first, to every destination that
has no valid manifest for it, except where offsite prune removed it (the destination's
.offsite/pruned.json): pruned backups are never copied back. Steady-state polls touch only the
source. A failing destination does not hold up the others; it is tried again after one interval,
then after a delay that doubles up to 15 minutes, and gets what it missed once it works. After a
restart the manifests at the destinations say what is there: nothing is copied twice, and an
interrupted copy is resumed.

Logs one line per event with an ISO time on stdout (JSON lines with --json). SIGINT/SIGTERM stop
it cleanly (a copy in progress is interrupted and stays resumable); it then exits 0 unless a
destination or the source is failing at that moment.

${EXIT_CODE_HELP}`)
    .action(async (opts: TransferFlags & { to?: string[]; interval?: number; once?: boolean; reuse?: boolean; concurrency?: number; chunkSize?: number }) => {
      const [{ loadConfig }, { watchCommand }, { DEFAULT_WATCH_INTERVAL_MS }] = await Promise.all([import('../../config/config.js'), import('../../commands/watch.js'), import('../../ops/watch.js')]);
      const intervalMs = opts.interval ?? DEFAULT_WATCH_INTERVAL_MS;
      if (intervalMs < 1000) throw new UsageError(`--interval must be at least 1s, got ${intervalMs} ms`);
      const config = loadConfig(ctx.globals().config);
      const json = ctx.globals().json ?? false;
      const log = (event: WatchEvent): void => {
        const time = new Date().toISOString();
        out(json ? JSON.stringify({ time, ...event }) : `${time} ${describeWatchEvent(event)}`);
      };
      const summary = await watchCommand(config, {
        ...transferOptions(opts, ctx.globals()), to: opts.to, reuse: opts.reuse, intervalMs, once: opts.once ?? false,
        chunkBytes: opts.chunkSize, fileConcurrency: opts.concurrency, signal: ctx.signal, onEvent: log,
      });
      ctx.setExit(watchExitCode(summary));
    });
}
