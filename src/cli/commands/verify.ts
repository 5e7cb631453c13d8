/** `offsite verify`. */
import { formatBytes } from '../../config/units.js';
import type { VerifyResult } from '../../core/verify.js';
import { EXIT_CODE_HELP, ExitCode } from '../exit.js';
import { createProgress } from '../progress.js';
import { addTransferOptions, out, parseList, printJson, transferOptions, type CommandContext, type TransferFlags } from '../common.js';

/** Exit code of a verify run: 3 any damage, else 4/1 when some/all could not be checked. */
export function verifyExitCode(results: readonly VerifyResult[]): number {
  if (results.some((r) => r.status === 'damaged' || r.status === 'incomplete')) return ExitCode.damage;
  const errors = results.filter((r) => r.status === 'error').length;
  if (errors === 0) return ExitCode.ok;
  return errors < results.length ? ExitCode.partial : ExitCode.error;
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

export function registerVerify(ctx: CommandContext): void {
  addTransferOptions(ctx.program.command('verify')
    .description('check copies against their manifests: quick (every file present with its size) or --deep (read every byte back)')
    .argument('<name>', 'backup name')
    .option('--at <names>', 'destination names, comma-separated (default: all configured)', parseList)
    .option('--deep', 'read every byte back and compare chunk hashes; names the file and chunk that differ'), 'bytes read back by --deep, all destinations together')
    .addHelpText('after', `\n${EXIT_CODE_HELP}`)
    .action(async (name: string, opts: TransferFlags & { at?: string[]; deep?: boolean }) => {
      const [{ loadConfig }, { verifyCommand }] = await Promise.all([import('../../config/config.js'), import('../../commands/verify.js')]);
      const config = loadConfig(ctx.globals().config);
      const level = opts.deep ? 'deep' : 'quick';
      const bars = createProgress(!ctx.globals().quiet && !ctx.globals().json && level === 'deep');
      let results: VerifyResult[];
      const started = new Set<string>();
      try {
        results = await verifyCommand(config, {
          backup: name, at: opts.at, level, signal: ctx.signal, ...transferOptions(opts, ctx.globals()),
          onBytes: (d, n) => { if (!started.has(d)) { started.add(d); bars.start(d, 0); } bars.add(d, n); },
        });
      } finally {
        bars.stop();
      }
      const code = verifyExitCode(results);
      if (ctx.globals().json) printJson({ backup: name, level, ok: code === ExitCode.ok, results });
      else { out(`verify ${name} (${level}):`); renderVerify(results); }
      ctx.setExit(code);
    });

}
