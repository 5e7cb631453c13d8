/**
 * The shard options of `offsite replicate` (`--shard i/n|auto`, `--finish`): parsing, the
 * `--finish` action, and the lines a shard's run prints. See src/core/shard.ts.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { FinishDestination, FinishShardsResult } from '../../commands/finish-shards.js';
import { formatBytes } from '../../config/units.js';
import type { DestinationResult } from '../../core/replicate.js';
import type { ShardSetReport } from '../../core/shard.js';
import { parseShardSpec, type ShardSpec } from '../../core/shard-spec.js';
import { UsageError } from '../../errors.js';
import { ExitCode, oneLine } from '../exit.js';
import { out, printJson, transferOptions, type CommandContext, type TransferFlags } from '../common.js';

export const SHARD_HELP = `
Sharding (one backup, several workers, e.g. a Kubernetes Indexed Job): --shard i/n copies only the
files whose path hashes to i (XXH64 of the path relative to NAME/, seed 0, mod n), to every
destination. Each shard records its files in NAME/.offsite/shards/i-of-n/; the shard that finds
every shard recorded writes the manifest. --shard auto reads JOB_COMPLETION_INDEX and
JOB_COMPLETIONS. --finish makes that check by hand and names the shards still missing (exit 5).`;

function parseShardOption(value: string): ShardSpec {
  try {
    return parseShardSpec(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** Adds `--shard` and `--finish` to `offsite replicate`. */
export function addShardOptions(command: Command): Command {
  return command
    .addOption(new Option('--shard <i/n|auto>', 'copy only shard i of n (from 0) of the backup; auto: from JOB_COMPLETION_INDEX and JOB_COMPLETIONS (Kubernetes Indexed Job)').argParser(parseShardOption))
    .option('--finish', 'check whether every shard of NAME is recorded at the destinations and write the manifest if so; names the missing shards (exit 5)');
}

function indexes(list: readonly number[]): string {
  return list.length > 12 ? `${list.slice(0, 12).join(', ')} and ${list.length - 12} more` : list.join(', ');
}

/** What the set still lacks, in one phrase (`undefined` when nothing). */
function lacking(set: ShardSetReport): string | undefined {
  const parts: string[] = [];
  if (set.note) parts.push(set.note);
  if (set.missing.length > 0) parts.push(`shard${set.missing.length === 1 ? '' : 's'} ${indexes(set.missing)} of ${set.count} not finished`);
  for (const bad of set.inconsistent.slice(0, 3)) parts.push(`shard ${bad.index} must run again: ${bad.reason}`);
  if (set.inconsistent.length > 3) parts.push(`${set.inconsistent.length - 3} more shards must run again`);
  return parts.length > 0 ? parts.join('; ') : undefined;
}

/** The summary line of a destination where a shard finished its share but not the set. */
export function shardDoneLine(d: DestinationResult, shard: ShardSpec | undefined): string {
  const what = shard ? `shard ${shard.index}/${shard.count}` : 'shard';
  const still = d.shardSet ? lacking(d.shardSet) : undefined;
  return `done with ${what}: ${d.filesCopied} copied, ${d.filesAdopted} checked in place, ${d.filesSkipped} already there; ${formatBytes(d.bytesWritten)} written; no manifest yet${still ? ` (${still})` : ''}: the shard that completes the set writes it`;
}

function renderFinish(result: FinishShardsResult): void {
  out(`finish ${result.backup} (${result.files} files at the source):`);
  const width = Math.max(...result.destinations.map((d) => d.destination.length));
  for (const d of result.destinations) {
    const name = d.destination.padEnd(width);
    if (d.status === 'failed') out(`  ${name}  FAILED: ${d.error.message}`);
    else if (d.status === 'complete') out(`  ${name}  complete: ${d.manifestWritten ? `manifest written from the records of ${d.count} shards` : 'the manifest was already there'} (${d.manifestKey})`);
    else out(`  ${name}  incomplete: ${lacking(d) ?? 'not every shard is recorded'}`);
  }
}

/** 0 every destination complete, 5 some incomplete (none failed), 1 every one failed, 4 some failed. */
export function finishExitCode(destinations: readonly FinishDestination[]): number {
  const failed = destinations.filter((d) => d.status === 'failed').length;
  if (failed > 0) return failed === destinations.length ? ExitCode.error : ExitCode.partial;
  return destinations.some((d) => d.status === 'incomplete') ? ExitCode.incomplete : ExitCode.ok;
}

/** `offsite replicate NAME --finish`. */
export async function runFinish(ctx: CommandContext, name: string | undefined, opts: TransferFlags & { latest?: boolean; to?: string[]; dryRun?: boolean; shard?: ShardSpec }): Promise<void> {
  if (!name || opts.latest) throw new UsageError('--finish needs the backup NAME (not --latest)');
  if (opts.dryRun) throw new UsageError('--finish writes nothing unless every shard is recorded; it has no --dry-run (offsite list shows the copies)');
  const [{ loadConfig }, { finishShardsCommand }] = await Promise.all([import('../../config/config.js'), import('../../commands/finish-shards.js')]);
  const config = loadConfig(ctx.globals().config);
  const result = await finishShardsCommand(config, { backup: name, to: opts.to, count: opts.shard?.count, signal: ctx.signal, ...transferOptions(opts, ctx.globals()) });
  if (ctx.globals().json) printJson(result);
  else renderFinish(result);
  for (const d of result.destinations) {
    if (d.status === 'failed') process.stderr.write(`offsite: ${oneLine(`${d.destination}: finish ${name} failed: ${d.error.message}`)}\n`);
    else if (d.status === 'incomplete') process.stderr.write(`offsite: ${oneLine(`${d.destination}: ${name} is not complete yet: ${lacking(d) ?? 'not every shard is recorded'}`)}\n`);
  }
  ctx.setExit(finishExitCode(result.destinations));
}
