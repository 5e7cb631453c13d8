/**
 * The `offsite` command line (commander). Thin: parses arguments, calls the library functions in
 * src/commands/ and src/ops/, renders their results (human text, or one JSON document with --json), and maps
 * outcomes and errors to exit codes (src/cli/exit.ts). Errors are one line on stderr, never a
 * stack trace.
 */
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { errorKind, OffsiteError } from '../errors.js';
import { printJson, type CommandContext, type GlobalOptions } from './common.js';
import { registerAudit } from './commands/audit.js';
import { registerKey } from './commands/key.js';
import { registerList } from './commands/list.js';
import { registerPrune } from './commands/prune.js';
import { registerPull } from './commands/pull.js';
import { registerReplicate } from './commands/replicate.js';
import { registerVerify } from './commands/verify.js';
import { registerWatch } from './commands/watch.js';
import { describeError, EXIT_CODE_HELP, ExitCode, exitCodeFor, INTERRUPTED_MESSAGE } from './exit.js';

export { replicateExitCode } from './commands/replicate.js';
export { verifyExitCode } from './commands/verify.js';

/** The commands, in the order `--help` lists them. */
const COMMANDS: readonly ((ctx: CommandContext) => void)[] = [registerList, registerReplicate, registerVerify, registerAudit, registerPrune, registerPull, registerWatch, registerKey];

export function buildProgram(setExit: (code: number) => void, signal: AbortSignal): Command {
  const program = new Command('offsite');
  program
    .version(packageVersion(), '-V, --version', 'print the version of offsite and exit')
    .description('Replicate finished Milvus backups (milvus-backup) to several destinations at once, and prove every copy is intact.')
    .option('-c, --config <file>', 'config file (default: $OFFSITE_CONFIG, else ./offsite.yaml)')
    .option('--json', 'print one machine-readable JSON result on stdout')
    .option('-q, --quiet', 'no progress bars')
    .addHelpText('after', `\n${EXIT_CODE_HELP}\n\nExamples:\n  offsite list\n  offsite replicate --latest --to nas,cloud\n  offsite verify full_backup_20240115 --at cloud --deep\n  offsite audit --repair --report audit.html\n  offsite prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12\n  offsite pull full_backup_20240115 --from cloud --to source\n  offsite watch --to nas,cloud\n  offsite key --at cloud`)
    .showHelpAfterError('(run offsite --help for usage)')
    .exitOverride();

  const ctx: CommandContext = { program, globals: () => program.opts<GlobalOptions>(), setExit, signal };
  for (const register of COMMANDS) register(ctx);
  return program;
}


/** The `version` of the package.json next to dist/ (the checkout or the installed package). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Entry point used by bin/offsite.js. */
export async function main(argv: readonly string[]): Promise<void> {
  const controller = new AbortController();
  // Every concurrent read, write and retry sleep listens on this one signal: far more than the
  // default 10 listeners in a normal run, and all of them removed when they finish.
  setMaxListeners(0, controller.signal);
  let interrupted = false;
  // SIGINT (Ctrl-C) and SIGTERM (systemd stop, kill) both stop cleanly; a second one quits at once.
  const stop = (): void => {
    if (interrupted) process.exit(ExitCode.interrupted);
    interrupted = true;
    process.stderr.write('offsite: interrupted; stopping (what was copied stays resumable). Press Ctrl-C again to quit at once.\n');
    controller.abort();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  let exitCode: number = ExitCode.ok;
  const program = buildProgram((code) => { exitCode = code; }, controller.signal);
  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) {
      exitCode = err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
      // commander printed the message on stderr; --json users get it on stdout too. The global
      // options may not be parsed yet (an unknown command stops parsing early): look at argv.
      if (exitCode !== ExitCode.ok && (program.opts<GlobalOptions>().json || argv.slice(2).includes('--json'))) {
        printJson({ ok: false, error: { code: 'E_USAGE', kind: 'permanent', message: err.message.replace(/^error: /, '') } });
      }
    } else {
      const json = program.opts<GlobalOptions>().json;
      // A stop by a signal is one interruption, not the error of whatever was waiting at that moment.
      const aborted = err instanceof OffsiteError && err.code === 'E_ABORTED';
      const message = !interrupted ? describeError(err) : aborted ? INTERRUPTED_MESSAGE : `${INTERRUPTED_MESSAGE} (at that moment: ${describeError(err)})`;
      process.stderr.write(`offsite: ${message}\n`);
      exitCode = interrupted ? ExitCode.interrupted : exitCodeFor(err);
      if (json) printJson({ ok: false, error: { code: err instanceof OffsiteError ? err.code : 'E_INTERNAL', kind: errorKind(err), message } });
    }
  }
  process.exitCode = exitCode;
}
