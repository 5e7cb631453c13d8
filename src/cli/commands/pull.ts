/** `offsite pull`: see src/ops/pull.ts. */
import { formatBytes } from '../../config/units.js';
import { UsageError } from '../../errors.js';
import { EXIT_CODE_HELP } from '../exit.js';
import { createProgress } from '../progress.js';
import { addTransferOptions, out, parsePositiveInt, printJson, transferOptions, type CommandContext, type TransferFlags } from '../common.js';

export function registerPull(ctx: CommandContext): void {
  addTransferOptions(ctx.program.command('pull')
    .description('bring a verified copy back (to the source bucket, a destination or a folder) for milvus-backup restore')
    .argument('<name>', 'backup name')
    .requiredOption('--from <destination>', 'the destination holding the copy (see offsite list)')
    .requiredOption('--to <target>', 'source (the configured source), a destination name, or a folder path (./restore, /srv/backups)')
    .option('--concurrency <n>', 'files transferred at once (default: options.concurrency)', parsePositiveInt), 'bytes written to --to')
    .addHelpText('after', `
Every file must read back to the hash in the copy's manifest before it is committed at the
target; the target is then read back in full and checked with milvus-backup's completion rule.
The layout at the target is ROOT/NAME/... exactly as milvus-backup writes it. Pull never
overwrites an existing backup; an interrupted pull resumes when run again.

${EXIT_CODE_HELP}

Examples:
  offsite pull backup_2026_11_20_02_00_00 --from cloud --to source
  offsite pull nightly_3 --from nas --to ./restore`)
    .action(async (name: string, opts: TransferFlags & { from: string; to: string; concurrency?: number }) => {
      const [{ loadConfig }, { pullCommand }, { isValidBackupName }] = await Promise.all([import('../../config/config.js'), import('../../ops/pull.js'), import('../../backup/index.js')]);
      if (!isValidBackupName(name)) throw new UsageError(`${JSON.stringify(name)} is not a milvus-backup backup name (letters, digits and _, not starting with a digit)`);
      const g = ctx.globals();
      const config = loadConfig(g.config);
      const bars = createProgress(!g.quiet && !g.json);
      const begun = new Set<string>();
      let result;
      try {
        result = await pullCommand(config, {
          backup: name, from: opts.from, to: opts.to, concurrency: opts.concurrency, ...transferOptions(opts, g), signal: ctx.signal,
          onBytes: (phase, n) => { if (!begun.has(phase)) { begun.add(phase); bars.start(phase === 'copy' ? 'pull' : 'read back', 0); } bars.add(phase === 'copy' ? 'pull' : 'read back', n); },
        });
      } finally {
        bars.stop();
      }
      if (g.json) { printJson({ ok: true, ...result }); return; }
      if (result.alreadyThere) out(`${result.backup} was already at ${result.toDescription} (an earlier pull finished): nothing sent, every file hashed in place`);
      out(`pulled ${result.backup} from ${result.from} (${result.fromDescription}) to ${result.toDescription}: ${result.files} files, ${formatBytes(result.bytes)} (${formatBytes(result.bytesWritten)} written${result.bytesResumed > 0 ? `, ${formatBytes(result.bytesResumed)} resumed` : ''})`);
      out(`  read back at the target: ${result.verify.filesRead} files, every chunk hash matches; milvus-backup's completion rule holds`);
      out('next:');
      out(`  ${result.restoreCommand}`);
      out(`  (${result.restoreHint})`);
    });
}
