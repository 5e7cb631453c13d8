/**
 * Places that overlap are refused by every command, through the CLI, on local folders (issue 11,
 * findings 1 and 3): a destination whose root is a symlink to the source (or a bind mount of
 * it), a destination inside the source or around it, and two destinations that are one folder
 * (`./x` and `./x/`). Each is one clear error with exit 2, and nothing is written into the
 * source or the destinations.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { runCli, tempDir, treeDigest, writeConfig, type CliRun } from '../helpers/cli.js';

const NAME = 'backup_2025_05_01_02_00_00';
const OLDER = 'backup_2025_04_01_02_00_00';

const COMMANDS: Readonly<Record<string, readonly string[]>> = {
  replicate: ['replicate', NAME],
  watch: ['watch', '--once'],
  audit: ['audit'],
  prune: ['prune', '--keep-last', '1'],
  list: ['list'],
  verify: ['verify', NAME],
};

describe('overlapping places are refused by every command (CLI, local folders)', () => {
  let dir: string;
  let source: string;
  const mounts: string[] = [];

  before(async () => {
    dir = tempDir('overlap');
    source = join(dir, 'backups');
    await generateBackup({ root: source, name: OLDER, seed: 7, totalBytes: 64 * 1024, mtimeMs: Date.now() - 7_200_000 });
    await generateBackup({ root: source, name: NAME, seed: 8, totalBytes: 64 * 1024, mtimeMs: Date.now() - 3_600_000 });
  });
  after(() => { for (const m of mounts.reverse()) execFileSync('umount', [m]); });

  function configWith(destinations: Readonly<Record<string, string>>): string {
    const folder = tempDir('overlap-config');
    return writeConfig(folder, [
      `source: { type: local, root: "${source}" }`,
      'destinations:',
      ...Object.entries(destinations).map(([name, root]) => `  ${name}: { type: local, root: "${root}" }`),
      'options: { quietPeriod: 1s, chunkSize: 64KiB }',
    ].join('\n'));
  }

  async function refused(config: string, command: string, message: RegExp): Promise<void> {
    const before = treeDigest(source);
    const run: CliRun = await runCli(['--config', config, ...(COMMANDS[command] as readonly string[])]);
    assert.equal(run.code, 2, `${command}: ${run.stdout}${run.stderr}`);
    const lines = run.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${command}: one line: ${run.stderr}`);
    assert.match(run.stderr, message, command);
    assert.deepEqual(treeDigest(source), before, `${command}: nothing written into (or deleted from) the source`);
    assert.ok(!existsSync(join(source, NAME, '.offsite')), `${command}: no .offsite folder at the source`);
  }

  it('a destination whose root is a symlink to the source: replicate and prune refuse, nothing is written into the source', async () => {
    const link = join(dir, 'link-to-source');
    symlinkSync(source, link);
    const config = configWith({ mirror: link });
    const message = /destination "mirror" \(local:.*link-to-source\) is the same place as the source \(local:.*backups\) \(through a symlink.*"mirror" is really .*backups\); a destination must be a place of its own/;
    for (const command of ['replicate', 'prune', 'watch', 'audit']) await refused(config, command, message);
  });

  it('a destination under a symlink into the source (a root not created yet) is inside it', async () => {
    const link = join(dir, 'link-again');
    symlinkSync(source, link);
    const config = configWith({ mirror: join(link, 'offsite', 'copy') });
    for (const command of ['replicate', 'prune']) await refused(config, command, /destination "mirror" .* is inside the source/);
    assert.ok(!existsSync(join(source, 'offsite')), 'the destination root was not created inside the source');
  });

  it('two destinations that are one folder (./x and ./x/) are refused, and nothing is written to either', async () => {
    const x = join(dir, 'x');
    const config = configWith({ a: x, b: `${x}/` });
    for (const command of ['replicate', 'watch', 'audit', 'prune', 'list', 'verify']) {
      await refused(config, command, /destination "a" \(local:.*\/x\) is the same place as destination "b" \(local:.*\/x\/?\); each destination must be a place of its own/);
    }
    assert.ok(!existsSync(x), 'neither destination was created');
  });

  it('two destinations nested by a symlink are refused', async () => {
    const outer = join(dir, 'outer');
    mkdirSync(join(outer, 'inner'), { recursive: true });
    symlinkSync(join(outer, 'inner'), join(dir, 'inner-link'));
    const config = configWith({ outer, inner: join(dir, 'inner-link') });
    await refused(config, 'replicate', /destination "outer" .* contains destination "inner"/);
    assert.deepEqual(treeDigest(outer), new Map(), 'nothing written');
  });

  it('a destination inside the source, or its parent, is refused by replicate, watch, audit and prune', async () => {
    for (const [root, verb] of [[join(source, 'mirror'), 'is inside'], [dir, 'contains'], [`${source}/../backups/./`, 'is the same place as']] as const) {
      const config = configWith({ mirror: root });
      for (const command of ['replicate', 'watch', 'audit', 'prune']) await refused(config, command, new RegExp(`destination "mirror" \\(local:.*\\) ${verb} the source`));
    }
    assert.ok(!existsSync(join(source, 'mirror')), 'the destination inside the source was not created');
  });

  it('a destination that is a bind mount of the source (or of a folder inside it) is refused', async (t) => {
    const target = join(dir, 'bound');
    mkdirSync(target);
    try {
      execFileSync('mount', ['--bind', source, target], { stdio: 'ignore' });
      mounts.push(target);
    } catch {
      t.skip('mount --bind is not allowed here (needs root)');
      return;
    }
    await refused(configWith({ mirror: target }), 'replicate', /destination "mirror" \(local:.*bound\) is the same place as the source .*device and inode/);
    await refused(configWith({ mirror: join(target, NAME) }), 'prune', /destination "mirror" .* is inside the source/);
    const inner = join(dir, 'bound-inner');
    mkdirSync(inner);
    execFileSync('mount', ['--bind', join(source, NAME), inner], { stdio: 'ignore' });
    mounts.push(inner);
    await refused(configWith({ mirror: inner }), 'replicate', /destination "mirror" .* is inside the source/);
  });

  it('pull refuses a target folder that is the copy it reads from', async () => {
    const disk = join(dir, 'disk');
    const config = configWith({ disk });
    const copy = await runCli(['--config', config, 'replicate', NAME, '--to', 'disk']);
    assert.equal(copy.code, 0, copy.stderr + copy.stdout);
    const before = treeDigest(disk);
    const link = join(dir, 'disk-link');
    symlinkSync(disk, link);
    for (const target of [`${disk}/`, link, join(disk, 'restore')]) {
      const run = await runCli(['--config', config, 'pull', NAME, '--from', 'disk', '--to', target]);
      assert.equal(run.code, 2, `${target}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, /the pull target \(local:.*\) (is the same place as|is inside) destination "disk" .*pull must write to another place than the copy it reads: pull into another folder or destination$/m);
      assert.deepEqual(treeDigest(disk), before, 'the copy is untouched');
    }
  });
});
