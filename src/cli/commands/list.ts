/** `offsite list`. */
import { listCommand } from '../../commands/list.js';
import { loadConfig } from '../../config/config.js';
import { formatBytes } from '../../config/units.js';
import { out, parseList, printJson, type CommandContext } from '../common.js';

export function registerList(ctx: CommandContext): void {
  ctx.program.command('list')
    .description('list the backups at the source, their state (complete / incomplete / failed, with the reason) and where complete copies exist')
    .option('--at <names>', 'only these destinations (comma-separated)', parseList)
    .action(async (opts: { at?: string[] }) => {
      const result = await listCommand(loadConfig(ctx.globals().config), { destinations: opts.at, signal: ctx.signal });
      if (ctx.globals().json) { printJson(result); return; }
      out(`backups at ${result.source}:`);
      if (result.backups.length === 0) out('  (none)');
      for (const b of result.backups) {
        const copies = Object.entries(b.copies).map(([d, s]) => `${d}: ${s}`).join(', ');
        out(`  ${b.name}  ${b.state}${b.reason ? ` (${b.reason})` : ''}  ${b.files} files, ${formatBytes(b.bytes)}  copies: ${copies || 'none configured'}`);
      }
    });

}
