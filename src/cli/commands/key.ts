/** `offsite key`: see src/commands/key.ts. */
import { EXIT_CODE_HELP } from '../exit.js';
import { out, parseList, printJson, type CommandContext } from '../common.js';

const FROM = { key: 'derived from encryption.key', keyFile: 'derived from encryption.keyFile', publicKey: 'as configured in encryption.publicKey' } as const;

export function registerKey(ctx: CommandContext): void {
  ctx.program.command('key')
    .description('print the public key that checks the signed manifests of each encrypted destination, for the config of an audit host without the key')
    .option('--at <names>', 'destination names, comma-separated (default: every encrypted destination)', parseList)
    .addHelpText('after', `
An encrypted destination signs the manifest of every copy with an Ed25519 key pair derived from
its encryption key. Give an audit host the public key printed here instead of the key:

  destinations:
    cloud: { type: s3, ..., encryption: { publicKey: "BASE64" } }

It then runs verify --deep, audit and list, and detects a forged or replaced manifest, without
being able to read or write the backups. Only the config is read (no destination is contacted);
the secret key is never printed. The same key is in every manifest of the destination
(encryption.publicKey), but a copy of it taken from the bucket is only as trustworthy as the bucket.

${EXIT_CODE_HELP}

Examples:
  offsite key
  offsite key --at cloud --json`)
    .action(async (opts: { at?: string[] }) => {
      // Loaded here, as every command loads its work: the other commands never pay for it.
      const [{ loadConfig }, { keyCommand }] = await Promise.all([import('../../config/config.js'), import('../../commands/key.js')]);
      const result = keyCommand(loadConfig(ctx.globals().config), { destinations: opts.at });
      if (ctx.globals().json) { printJson({ ok: true, ...result }); return; }
      const width = Math.max(...result.keys.map((k) => k.destination.length));
      for (const k of result.keys) out(`${k.destination.padEnd(width)}  ${k.publicKey}  (${FROM[k.from]})`);
      out('for the config of an audit host (checks manifests, cannot read the backups):');
      for (const k of result.keys) out(`  ${k.destination}: { ..., encryption: { publicKey: "${k.publicKey}" } }`);
    });
}
