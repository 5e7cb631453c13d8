/**
 * The `offsite` command line (commander). Thin: parses arguments, calls the library functions in
 * src/app.ts, renders their results (human text, or one JSON document with --json), and maps
 * outcomes and errors to exit codes (src/cli/exit.ts). Errors are one line on stderr, never a
 * stack trace.
 */
import { setMaxListeners } from 'node:events';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { listCommand, replicateCommand, verifyCommand } from '../app.js';
import { loadConfig } from '../config/config.js';
import { formatBytes, parseBytes, parseDuration } from '../config/units.js';
import type { ReplicateResult } from '../core/replicate.js';
import type { VerifyResult } from '../core/verify.js';
import type { RetryInfo } from '../drivers/wrappers/index.js';
import { errorKind, errorMessage, OffsiteError } from '../errors.js';
import { describeError, EXIT_CODE_HELP, ExitCode, exitCodeFor } from './exit.js';
import { createProgress } from './progress.js';

interface GlobalOptions {
  config?: string;
  json?: boolean;
  quiet?: boolean;
}

function out(text: string): void {
  process.stdout.write(`${text}\n`);
}

function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

function parseList(value: string): string[] {
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new InvalidArgumentError('expected a comma-separated list of destination names');
  return names;
}

function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number >= 1');
  return n;
}

function parseRetries(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number >= 0');
  return n;
}

/** One stderr line per retry (not with --quiet or --json), so a stalled link is visible. */
function reportRetry(globals: GlobalOptions): ((driver: string, info: RetryInfo) => void) | undefined {
  if (globals.quiet || globals.json) return undefined;
  return (driver, info) => {
    const what = `${info.op}${info.part === undefined ? '' : ` part ${info.part}`}${info.key ? ` ${info.key}` : ''}`;
    process.stderr.write(`offsite: ${driver}: ${what}: ${errorMessage(info.error)}; retry ${info.attempt} in ${(info.delayMs / 1000).toFixed(1)} s\n`);
  };
}

function parseDurationOption(value: string): number {
  try {
    return parseDuration(value, 'duration');
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function parseSizeOption(value: string): number {
  try {
    return parseBytes(value, 'size');
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** Exit code of a replicate run: 0 all done, 4 some destinations failed, 1 all failed. */
export function replicateExitCode(result: ReplicateResult): number {
  const failed = result.destinations.filter((d) => d.status === 'failed').length;
  if (failed === 0) return ExitCode.ok;
  return failed < result.destinations.length ? ExitCode.partial : ExitCode.error;
}

/** Exit code of a verify run: 3 any damage, else 4/1 when some/all could not be checked. */
export function verifyExitCode(results: readonly VerifyResult[]): number {
  if (results.some((r) => r.status === 'damaged' || r.status === 'incomplete')) return ExitCode.damage;
  const errors = results.filter((r) => r.status === 'error').length;
  if (errors === 0) return ExitCode.ok;
  return errors < results.length ? ExitCode.partial : ExitCode.error;
}

function renderReplicate(result: ReplicateResult): void {
  out(`${result.dryRun ? 'plan for' : 'replicated'} ${result.backup} from ${result.source}: ${result.files} files, ${formatBytes(result.bytes)}`);
  const width = Math.max(...result.destinations.map((d) => d.name.length));
  for (const d of result.destinations) {
    const name = d.name.padEnd(width);
    if (d.status === 'planned' && d.plan) {
      const p = d.plan;
      out(`  ${name}  ${p.upToDate ? 'up to date' : `would copy ${p.copyFiles} files (${formatBytes(p.copyBytes)}), check ${p.adoptFiles} present files, skip ${p.skipFiles}`}${p.removeManifestFirst ? ', remove its manifest first' : ''}`);
      for (const a of p.actions) if (a.action !== 'skip') out(`      ${a.action} ${a.path} (${a.size} bytes): ${a.reason}`);
    } else if (d.status === 'up-to-date') {
      out(`  ${name}  up to date: nothing to copy (${d.filesSkipped} files already verified by its manifest)`);
    } else if (d.status === 'complete') {
      out(`  ${name}  complete: ${d.filesCopied} copied, ${d.filesAdopted} checked in place, ${d.filesSkipped} already there; ${formatBytes(d.bytesWritten)} written, ${formatBytes(d.bytesResumed)} resumed; manifest ${d.manifestKey}`);
    } else {
      out(`  ${name}  FAILED: ${d.errors[0] ? `${d.errors[0].path ? `${d.errors[0].path}: ` : ''}${d.errors[0].message}` : 'unknown error'}`);
      for (const e of d.errors.slice(1, 5)) out(`  ${' '.repeat(width)}          ${e.path ? `${e.path}: ` : ''}${e.message}`);
      if (d.errors.length > 5) out(`  ${' '.repeat(width)}          ... and ${d.errors.length - 5} more errors (see --json)`);
    }
  }
}

function renderVerify(results: readonly VerifyResult[]): void {
  const width = Math.max(...results.map((r) => r.destination.length));
  for (const r of results) {
    const name = r.destination.padEnd(width);
    if (r.status === 'ok') {
      out(`  ${name}  ok: ${r.filesChecked} files ${r.level === 'deep' ? `read back (${formatBytes(r.bytesChecked)}), every chunk hash matches` : 'present with the right sizes'}`);
    } else if (r.status === 'damaged') {
      out(`  ${name}  DAMAGED: ${r.damage.length} file(s)`);
      for (const d of r.damage.slice(0, 20)) out(`  ${' '.repeat(width)}    ${d.message}`);
      if (r.damage.length > 20) out(`  ${' '.repeat(width)}    ... and ${r.damage.length - 20} more (see --json)`);
    } else if (r.status === 'incomplete') {
      out(`  ${name}  INCOMPLETE: ${r.message}`);
    } else {
      out(`  ${name}  ERROR: could not check: ${r.message}`);
    }
  }
}

export function buildProgram(setExit: (code: number) => void, signal: AbortSignal): Command {
  const program = new Command('offsite');
  program
    .description('Replicate finished Milvus backups (milvus-backup) to several destinations at once, and prove every copy is intact.')
    .option('-c, --config <file>', 'config file (default: $OFFSITE_CONFIG, else ./offsite.yaml)')
    .option('--json', 'print one machine-readable JSON result on stdout')
    .option('-q, --quiet', 'no progress bars')
    .addHelpText('after', `\n${EXIT_CODE_HELP}\n\nExamples:\n  offsite list\n  offsite replicate --latest --to nas,cloud\n  offsite verify full_backup_20240115 --at cloud --deep`)
    .showHelpAfterError('(run offsite --help for usage)')
    .exitOverride();

  const globals = (): GlobalOptions => program.opts<GlobalOptions>();

  program.command('list')
    .description('list the backups at the source, their state (complete / incomplete / failed, with the reason) and where complete copies exist')
    .option('--at <names>', 'only these destinations (comma-separated)', parseList)
    .action(async (opts: { at?: string[] }) => {
      const result = await listCommand(loadConfig(globals().config), { destinations: opts.at, signal });
      if (globals().json) { printJson(result); return; }
      out(`backups at ${result.source}:`);
      if (result.backups.length === 0) out('  (none)');
      for (const b of result.backups) {
        const copies = Object.entries(b.copies).map(([d, s]) => `${d}: ${s}`).join(', ');
        out(`  ${b.name}  ${b.state}${b.reason ? ` (${b.reason})` : ''}  ${b.files} files, ${formatBytes(b.bytes)}  copies: ${copies || 'none configured'}`);
      }
    });

  program.command('replicate')
    .description('copy one complete backup to the destinations, reading it once; resumes whatever an earlier run left')
    .argument('[name]', 'backup name (see offsite list)')
    .option('--latest', 'the newest complete backup at the source')
    .option('--to <names>', 'destination names, comma-separated (default: all configured)', parseList)
    .option('--dry-run', 'print what would be copied, skipped or checked; write nothing')
    .option('--concurrency <n>', 'files transferred at once (default: options.concurrency, 8)', parsePositiveInt)
    .addOption(new Option('--chunk-size <size>', 'chunk and part size, e.g. 8MiB (default: options.chunkSize)').argParser(parseSizeOption))
    .option('--retries <n>', 'retries of a transient error (reset, timeout, 5xx) per operation; a retry resends only the failed part (default: options.retries, 5)', parseRetries)
    .addOption(new Option('--timeout <duration>', 'stop retrying an operation that has kept failing this long, e.g. 5m (default: options.timeout, 10m); one request\'s own limit is the destination\'s connectTimeoutMs/requestTimeoutMs/readyTimeoutMs').argParser(parseDurationOption))
    .addOption(new Option('--bwlimit <rate>', 'total write rate over all destinations, bytes per second, e.g. 20MiB (default: options.bwlimit; per destination: bwlimit in its config)').argParser(parseSizeOption))
    .addHelpText('after', `\nA backup that is not complete (meta missing, a binlog short, changed within the quiet period) is refused with the reason.\nEach destination gets NAME/.offsite/manifest.json only once every file is there.\n\n${EXIT_CODE_HELP}`)
    .action(async (name: string | undefined, opts: { latest?: boolean; to?: string[]; dryRun?: boolean; concurrency?: number; chunkSize?: number; retries?: number; timeout?: number; bwlimit?: number }) => {
      const config = loadConfig(globals().config);
      const bars = createProgress(!globals().quiet && !globals().json);
      let result: ReplicateResult;
      try {
        result = await replicateCommand(config, {
          backup: name, latest: opts.latest, to: opts.to, dryRun: opts.dryRun, concurrency: opts.concurrency, chunkBytes: opts.chunkSize, signal,
          retries: opts.retries, retryTimeoutMs: opts.timeout, bwlimitBytesPerSecond: opts.bwlimit ?? config.settings.bwlimitBytesPerSecond, onRetry: reportRetry(globals()),
          onEvent: (event) => {
            if (event.type === 'plan' && !opts.dryRun) {
              for (const d of event.plan.destinations) if (!d.upToDate) bars.start(d.destination, d.copyBytes + d.actions.filter((a) => a.action === 'adopt').reduce((s, a) => s + a.size, 0));
            } else if (event.type === 'bytes') bars.add(event.destination, event.bytes);
          },
        });
      } finally {
        bars.stop();
      }
      if (globals().json) printJson({ ...result, destinations: result.destinations.map(({ plan: _plan, ...d }) => (opts.dryRun ? { ...d, plan: _plan } : d)) });
      else renderReplicate(result);
      setExit(replicateExitCode(result));
    });

  program.command('verify')
    .description('check copies against their manifests: quick (every file present with its size) or --deep (read every byte back)')
    .argument('<name>', 'backup name')
    .option('--at <names>', 'destination names, comma-separated (default: all configured)', parseList)
    .option('--deep', 'read every byte back and compare chunk hashes; names the file and chunk that differ')
    .option('--retries <n>', 'retries of a transient error per operation (default: options.retries, 5)', parseRetries)
    .addHelpText('after', `\n${EXIT_CODE_HELP}`)
    .action(async (name: string, opts: { at?: string[]; deep?: boolean; retries?: number }) => {
      const config = loadConfig(globals().config);
      const level = opts.deep ? 'deep' : 'quick';
      const bars = createProgress(!globals().quiet && !globals().json && level === 'deep');
      let results: VerifyResult[];
      const started = new Set<string>();
      try {
        results = await verifyCommand(config, {
          backup: name, at: opts.at, level, signal, retries: opts.retries, onRetry: reportRetry(globals()),
          onBytes: (d, n) => { if (!started.has(d)) { started.add(d); bars.start(d, 0); } bars.add(d, n); },
        });
      } finally {
        bars.stop();
      }
      const code = verifyExitCode(results);
      if (globals().json) printJson({ backup: name, level, ok: code === ExitCode.ok, results });
      else { out(`verify ${name} (${level}):`); renderVerify(results); }
      setExit(code);
    });

  return program;
}

/** Entry point used by bin/offsite.js. */
export async function main(argv: readonly string[]): Promise<void> {
  const controller = new AbortController();
  // Every concurrent read, write and retry sleep listens on this one signal: far more than the
  // default 10 listeners in a normal run, and all of them removed when they finish.
  setMaxListeners(0, controller.signal);
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('offsite: interrupted; stopping (what was copied stays resumable). Press Ctrl-C again to quit at once.\n');
    controller.abort();
  });
  let exitCode: number = ExitCode.ok;
  const program = buildProgram((code) => { exitCode = code; }, controller.signal);
  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) {
      exitCode = err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    } else {
      const json = program.opts<GlobalOptions>().json;
      const message = describeError(err);
      process.stderr.write(`offsite: ${message}\n`);
      exitCode = interrupted ? 130 : exitCodeFor(err);
      if (json) printJson({ ok: false, error: { code: err instanceof OffsiteError ? err.code : 'E_INTERNAL', kind: errorKind(err), message } });
    }
  }
  process.exitCode = exitCode;
}
