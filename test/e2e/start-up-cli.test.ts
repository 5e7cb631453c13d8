/**
 * Start-up cost of the CLI (issue 13): a command that only touches local folders must not load
 * the S3, MinIO or SFTP client libraries (the AWS SDK alone took ~180 ms to load), nor the
 * encryption wrapper with its CPU pool; `--help` loads neither a config parser nor any driver.
 * The modules a real CLI process loads are recorded by a preload (test/helpers/module-log.ts:
 * ES modules through a load hook, `require()`d ones from require.cache), and the same recorder
 * must see the SDKs when a destination does use them, so a recorder that sees nothing cannot pass.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { binPath, projectRoot, tempDir, writeConfig, type CliRun } from '../helpers/cli.js';

const NAME = 'nightly_2025_06_01';
const RECORDER = new URL('../helpers/module-log.js', import.meta.url).href;

/** Packages (by their folder under node_modules) that only a remote destination or a terminal needs. */
const REMOTE_PACKAGES = ['@aws-sdk/', '@smithy/', 'ssh2/', 'ssh2-sftp-client/', 'minio/', 'cli-progress/'];
/** offsite's own modules that only a remote or encrypted destination needs (their option schemas excepted). */
const REMOTE_MODULES = ['/dist/src/drivers/s3/index.js', '/dist/src/drivers/sftp/index.js', '/dist/src/drivers/minio/index.js', '/dist/src/drivers/wrappers/encrypt.js', '/dist/src/runtime/cpu-pool.js'];

interface Recorded extends CliRun {
  /** Every module the process loaded: file URLs and paths. */
  readonly modules: readonly string[];
}

let logs = 0;

/** Runs the built CLI under the module recorder (stdin closed, stdout/stderr pipes: not a terminal). */
function runRecorded(dir: string, args: readonly string[]): Promise<Recorded> {
  const log = join(dir, `modules-${++logs}.txt`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', RECORDER, binPath, ...args], {
      cwd: projectRoot, env: { ...process.env, OFFSITE_TEST_MODULE_LOG: log }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`offsite ${args.join(' ')} did not end\n${stderr}`)); }, 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const modules = existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((line) => line !== '') : [];
      resolvePromise({ code, stdout, stderr, modules });
    });
  });
}

function loadedPackage(run: Recorded, name: string): string | undefined {
  return run.modules.find((m) => m.includes(`/node_modules/${name}`));
}

/** Fails naming the first module of a remote driver (or package) the run loaded. */
function assertLocalOnly(run: Recorded, what: string): void {
  // The recorder saw the run at all: the launcher, the local driver (an ES module) and yaml (CommonJS).
  assert.ok(run.modules.some((m) => m.endsWith('/bin/offsite.js')), `${what}: the recorder saw the launcher (${run.modules.length} modules)`);
  assert.ok(run.modules.some((m) => m.endsWith('/dist/src/drivers/local/driver.js')), `${what}: the recorder saw the local driver`);
  assert.ok(loadedPackage(run, 'yaml/'), `${what}: the recorder saw yaml, a CommonJS package`);
  for (const name of REMOTE_PACKAGES) {
    const module = loadedPackage(run, name);
    assert.equal(module, undefined, `${what} loaded ${module}: only a destination of that type (or progress bars on a terminal) needs it; import it lazily (src/drivers/index.ts)`);
  }
  for (const name of REMOTE_MODULES) {
    const module = run.modules.find((m) => m.endsWith(name));
    assert.equal(module, undefined, `${what} loaded ${module}, which only a remote or encrypted destination needs`);
  }
}

describe('start-up: what a CLI command loads', () => {
  let dir: string;
  let config: string;
  before(async () => {
    dir = tempDir('start-up');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 256 * 1024, seed: 5 });
    config = writeConfig(dir, [
      'source: { type: local, root: ./backups }',
      'destinations:',
      '  nas: { type: local, root: ./nas }',
      // Nobody listens at port 9 on 127.0.0.1: a connection is refused at once.
      '  cloud: { type: s3, endpoint: "http://127.0.0.1:9", region: us-east-1, bucket: nothing, accessKeyId: a, secretAccessKey: b, connectTimeoutMs: 2000 }',
      '  far: { type: sftp, host: 127.0.0.1, port: 9, username: nobody, password: x, hostKey: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", root: /srv }',
      'options: { quietPeriod: 0s, chunkSize: 64KiB }',
    ].join('\n'));
  });

  it('replicate, verify (quick and deep), list and pull on local folders load no S3, MinIO or SFTP library', async () => {
    const replicate = await runRecorded(dir, ['--config', config, '--quiet', 'replicate', NAME, '--to', 'nas']);
    assert.equal(replicate.code, 0, replicate.stderr);
    assertLocalOnly(replicate, 'replicate --to nas');

    const deep = await runRecorded(dir, ['--config', config, '--quiet', 'verify', NAME, '--at', 'nas', '--deep']);
    assert.equal(deep.code, 0, deep.stderr);
    assert.match(deep.stdout, /nas\s+ok: \d+ files read back/);
    assertLocalOnly(deep, 'verify --deep');

    const quick = await runRecorded(dir, ['--config', config, 'verify', NAME, '--at', 'nas']);
    assert.equal(quick.code, 0, quick.stderr);
    assertLocalOnly(quick, 'verify');

    const pulled = join(dir, 'pulled');
    rmSync(pulled, { recursive: true, force: true });
    const pull = await runRecorded(dir, ['--config', config, '--quiet', 'pull', NAME, '--from', 'nas', '--to', pulled]);
    assert.equal(pull.code, 0, pull.stderr);
    assertLocalOnly(pull, 'pull --from nas');
  });

  it('list of the source alone loads no remote library', async () => {
    // `list` reads every destination: with only local ones configured it must stay local.
    const localOnly = writeConfig(tempDir('start-up-list'), [
      `source: { type: local, root: ${JSON.stringify(join(dir, 'backups'))} }`,
      'destinations:',
      `  nas: { type: local, root: ${JSON.stringify(join(dir, 'nas'))} }`,
    ].join('\n'));
    const list = await runRecorded(dir, ['--config', localOnly, 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(NAME));
    assertLocalOnly(list, 'list');
  });

  it('--help prints every command and loads no config parser and no driver', async () => {
    const help = await runRecorded(dir, ['--help']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: offsite /);
    for (const command of ['list', 'replicate', 'verify', 'audit', 'prune', 'pull', 'watch', 'key']) {
      assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'), `--help lists ${command}`);
    }
    assert.ok(help.modules.some((m) => m.endsWith('/dist/src/cli/main.js')), 'the recorder saw the CLI');
    assert.ok(loadedPackage(help, 'commander/'), 'the recorder saw commander');
    for (const name of ['yaml/', ...REMOTE_PACKAGES]) assert.equal(loadedPackage(help, name), undefined, `--help loaded ${loadedPackage(help, name)}`);
    const driver = help.modules.find((m) => /\/dist\/src\/drivers\/(local|s3|sftp|minio)\/(index|driver)\.js$/.test(m));
    assert.equal(driver, undefined, `--help loaded ${driver}`);
  });

  it('the recorder does see the AWS SDK and ssh2 when a destination of that type is used', async () => {
    // Both destinations are unreachable: the runs fail (exit 1), after loading their clients.
    const s3 = await runRecorded(dir, ['--config', config, 'verify', NAME, '--at', 'cloud', '--retries', '0']);
    assert.equal(s3.code, 1, s3.stdout + s3.stderr);
    assert.ok(loadedPackage(s3, '@aws-sdk/client-s3/'), `an s3 destination loads @aws-sdk/client-s3 (${s3.modules.length} modules seen)`);
    assert.equal(loadedPackage(s3, 'ssh2/'), undefined, 'an s3 destination does not load ssh2');
    const sftp = await runRecorded(dir, ['--config', config, 'verify', NAME, '--at', 'far', '--retries', '0']);
    assert.equal(sftp.code, 1, sftp.stdout + sftp.stderr);
    assert.ok(loadedPackage(sftp, 'ssh2/'), `an sftp destination loads ssh2 (${sftp.modules.length} modules seen)`);
    assert.equal(loadedPackage(sftp, '@aws-sdk/'), undefined, 'an sftp destination does not load the AWS SDK');
  });
});
