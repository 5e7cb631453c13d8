/** `offsite list`. */
import { formatBytes } from '../../config/units.js';
import { ExitCode } from '../exit.js';
import { out, parseList, printJson, warn, type CommandContext } from '../common.js';

export function registerList(ctx: CommandContext): void {
  ctx.program.command('list')
    .description('list the backups at the source, their state (complete / incomplete / failed, with the reason) and where complete copies exist; exit 4 when a destination could not be read')
    .option('--at <names>', 'only these destinations (comma-separated)', parseList)
    .action(async (opts: { at?: string[] }) => {
      const [{ loadConfig }, { listCommand }] = await Promise.all([import('../../config/config.js'), import('../../commands/list.js')]);
      const result = await listCommand(loadConfig(ctx.globals().config), { destinations: opts.at, signal: ctx.signal });
      for (const warning of result.warnings) warn(warning);
      // Copies that could not be looked at: their state is unknown, which cron must notice.
      if (result.unreadable.length > 0) ctx.setExit(ExitCode.partial);
      if (ctx.globals().json) { printJson(result); return; }
      out(`backups at ${result.source}:`);
      if (result.backups.length === 0) out('  (none)');
      for (const b of result.backups) {
        const copies = Object.entries(b.copies).map(([d, s]) => `${d}: ${s}`).join(', ');
        out(`  ${b.name}  ${b.state}${b.reason ? ` (${b.reason})` : ''}  ${b.files} files, ${formatBytes(b.bytes)}  copies: ${copies || 'none configured'}`);
      }
    });

}
