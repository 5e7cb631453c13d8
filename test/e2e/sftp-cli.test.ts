/**
 * End to end through the built CLI against the real OpenSSH sshd that scripts/run-tests.mjs
 * starts (test/servers/sshd.ts): a local and an SFTP destination at once, deep verify, damage on
 * the server, refused host and client keys, a SIGKILLed run resumed from its partial file
 * without re-sending the verified prefix, and a blackholed destination that fails alone.
 *
 * The server runs on this machine, so the tests look at its folder directly. Without the server
 * (OFFSITE_TEST_SFTP unset) every block fails with the reason (see test/sftp/server.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { after, before, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { binPath, filesUnder, jsonOf, runCli, tempDir, treeDigest, writeConfig, type CliRun } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { describeWithServer, freshRoot, generateKey, removeFreshRoots, removeScratch, runProgram, scratchDir, type SftpTestServer } from '../sftp/server.js';

const NAME = 'nightly_2025_06_01';
const KiB = 1024;
const MiB = 1024 * KiB;

interface DestinationJson {
  name: string;
  status: string;
  bytesWritten: number;
  bytesResumed: number;
  bytesSkipped: number;
  filesCopied: number;
  errors: { kind: string; code: string; message: string; path?: string }[];
  plan?: { copyFiles: number; copyBytes: number; actions: { path: string; size: number; action: string; reason: string }[] };
}
interface ReplicateJson { files: number; bytes: number; destinations: DestinationJson[] }
interface VerifyJson { ok: boolean; results: { destination: string; status: string; damage: { path: string; problem: string; chunk?: number; message: string }[]; message?: string }[] }

const made: string[] = [];
function scratch(label: string): string {
  const dir = tempDir(`sftp-e2e-${label}`);
  made.push(dir);
  return dir;
}

/** The YAML flow mapping of an sftp destination for the test server, with `extra` keys. */
function sftpSection(server: SftpTestServer, root: string, extra: Record<string, string | number> = {}): string {
  const entries: Record<string, string | number> = {
    type: 'sftp', host: server.host, port: server.port, username: server.username,
    privateKey: server.privateKey, hostKey: server.hostKeyFingerprint, root, ...extra,
  };
  return `{ ${Object.entries(entries).map(([k, v]) => `${k}: ${typeof v === 'number' ? v : JSON.stringify(v)}`).join(', ')} }`;
}

function config(dir: string, server: SftpTestServer, sftpRoot: string, options: { chunkSize?: string; sftp?: Record<string, string | number>; file?: string } = {}): string {
  const yaml = [
    'source: { type: local, root: ./backups }',
    'destinations:',
    '  disk: { type: local, root: ./disk }',
    `  nas: ${sftpSection(server, sftpRoot, options.sftp)}`,
    `options: { quietPeriod: 1s, chunkSize: ${options.chunkSize ?? '64KiB'} }`,
    '',
  ].join('\n');
  if (options.file === undefined) return writeConfig(dir, yaml);
  const path = join(dir, options.file);
  writeFileSync(path, yaml);
  return path;
}

function totalBytes(tree: string): number {
  return filesUnder(tree).reduce((sum, rel) => sum + statSync(join(tree, rel)).size, 0);
}

/** Every `.NAME.offsite-partial` file under `dir` (relative paths). */
function partialsUnder(dir: string): string[] {
  return existsSync(dir) ? filesUnder(dir).filter((p) => /(^|\/)\.[^/]+\.offsite-partial$/.test(p)) : [];
}

function replicate(cfg: string, to: string, extra: readonly string[] = []): Promise<CliRun> {
  return runCli(['--config', cfg, '--json', 'replicate', NAME, '--to', to, ...extra], { timeoutMs: 60_000 });
}

function byName(result: ReplicateJson, name: string): DestinationJson {
  const found = result.destinations.find((d) => d.name === name);
  assert.ok(found, `destination ${name} in ${JSON.stringify(result.destinations.map((d) => d.name))}`);
  return found;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** A one-line, stack-free message. */
function assertOneLine(message: string | undefined): void {
  assert.ok(message, 'there is a message');
  assert.equal(message.split('\n').length, 1, `one line: ${message}`);
  assert.doesNotMatch(message, /\n\s+at .+:\d+:\d+/);
}

after(async () => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
  await removeFreshRoots();
  await removeScratch();
});

describeWithServer('replicate to local + sftp at once, verify, damage (CLI, real sshd)', (server) => {
  let dir: string;
  let cfg: string;
  let sftpRoot: string;
  let sourceTree: Map<string, string>;
  let total: number;

  before(async () => {
    dir = scratch('main');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 4 * MiB, seed: 21 });
    sftpRoot = await freshRoot(server, 'e2e-main');
    cfg = config(dir, server, sftpRoot);
    sourceTree = treeDigest(join(dir, 'backups', NAME));
    total = totalBytes(join(dir, 'backups', NAME));
  });

  it('copies a backup to disk and nas byte for byte, a manifest each, no temp files left', { timeout: 60_000 }, async () => {
    const run = await replicate(cfg, 'disk,nas');
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const result = jsonOf<ReplicateJson>(run);
    assert.deepEqual(result.destinations.map((d) => [d.name, d.status]), [['disk', 'complete'], ['nas', 'complete']]);
    assert.ok(sourceTree.size > 20, 'the generated backup has files');
    assert.ok(total > 3 * MiB, `a few MB (${total})`);
    for (const d of result.destinations) assert.equal(d.bytesWritten, total, `${d.name} received every byte once`);
    assert.deepEqual(treeDigest(join(dir, 'disk', NAME), ['.offsite/']), sourceTree, 'disk is identical to the source');
    assert.deepEqual(treeDigest(join(sftpRoot, NAME), ['.offsite/']), sourceTree, 'the server folder is identical to the source');
    for (const root of [join(dir, 'disk'), sftpRoot]) {
      assert.ok(existsSync(join(root, NAME, '.offsite', 'manifest.json')), `${root} has a manifest`);
      assert.deepEqual(partialsUnder(root), [], `${root} has no temp files`);
    }
  });

  it('deep verify passes at both', { timeout: 60_000 }, async () => {
    const run = await runCli(['--config', cfg, '--json', 'verify', NAME, '--deep', '--at', 'disk,nas']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const result = jsonOf<VerifyJson>(run);
    assert.equal(result.ok, true);
    assert.deepEqual(result.results.map((r) => [r.destination, r.status]), [['disk', 'ok'], ['nas', 'ok']]);
  });

  it('a second run copies nothing', { timeout: 60_000 }, async () => {
    const run = await replicate(cfg, 'disk,nas');
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const result = jsonOf<ReplicateJson>(run);
    assert.deepEqual(result.destinations.map((d) => [d.name, d.status, d.bytesWritten, d.bytesResumed, d.filesCopied]),
      [['disk', 'up-to-date', 0, 0, 0], ['nas', 'up-to-date', 0, 0, 0]]);
  });

  it('a flipped byte on the server: deep verify at nas exits 3 naming the file and chunk; disk verifies clean', { timeout: 60_000 }, async () => {
    const rel = filesUnder(join(sftpRoot, NAME))
      .find((p) => p.includes('insert_log') && statSync(join(sftpRoot, NAME, p)).size > 5 * 64 * KiB);
    assert.ok(rel, 'a binlog of more than 5 chunks exists on the server');
    const victim = join(sftpRoot, NAME, rel);
    const bytes = readFileSync(victim);
    const offset = 4 * 64 * KiB + 1234; // inside chunk 4
    bytes[offset] = (bytes[offset] as number) ^ 0x01;
    writeFileSync(victim, bytes);
    try {
      const run = await runCli(['--config', cfg, '--json', 'verify', NAME, '--deep', '--at', 'nas']);
      assert.equal(run.code, 3, run.stdout + run.stderr);
      const nas = jsonOf<VerifyJson>(run).results[0];
      assert.equal(nas?.status, 'damaged');
      assert.deepEqual(nas?.damage.map((d) => [d.path, d.problem, d.chunk]), [[rel, 'chunk', 4]]);
      const human = await runCli(['--config', cfg, 'verify', NAME, '--deep', '--at', 'nas']);
      assert.equal(human.code, 3);
      assert.ok(human.stdout.includes(`${rel}: chunk 4 (bytes ${4 * 64 * KiB}..${5 * 64 * KiB - 1}) differs`), human.stdout);
      const disk = await runCli(['--config', cfg, '--json', 'verify', NAME, '--deep', '--at', 'disk']);
      assert.equal(disk.code, 0, disk.stdout + disk.stderr);
      assert.equal(jsonOf<VerifyJson>(disk).results[0]?.status, 'ok');
    } finally {
      bytes[offset] = (bytes[offset] as number) ^ 0x01;
      writeFileSync(victim, bytes);
    }
  });
});

describeWithServer('refused host key and client key copy nothing (CLI, real sshd)', (server) => {
  let dir: string;
  let sourceTree: Map<string, string>;
  let otherKey: string;
  let otherFingerprint: string;

  before(async () => {
    dir = scratch('keys');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 1 * MiB, seed: 22 });
    sourceTree = treeDigest(join(dir, 'backups', NAME));
    // A key pair the server has never seen: its public half stands for another host's key
    // (hostKey pin) and its private half for a client key the server does not accept.
    otherKey = await generateKey(await scratchDir(), 'stranger_ed25519');
    const listed = await runProgram('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${otherKey}.pub`]);
    otherFingerprint = /SHA256:[A-Za-z0-9+/]{43}/.exec(listed)?.[0] ?? '';
    assert.ok(otherFingerprint !== '' && otherFingerprint !== server.hostKeyFingerprint, listed);
  });

  const cases = [
    {
      label: 'a changed host key',
      sftp: (): Record<string, string> => ({ hostKey: otherFingerprint }),
      code: 'E_HOST_KEY',
      // Names what changed and shows the fingerprint the server offered.
      message: (): RegExp => new RegExp(`host key of ${server.host}:${server.port} has CHANGED: the server offered ssh-ed25519 ${escapeRegExp(server.hostKeyFingerprint)}( and ssh-rsa \\S+)? but hostKey pins ${escapeRegExp(otherFingerprint)}`),
    },
    {
      label: 'a client key the server does not know',
      sftp: (): Record<string, string> => ({ privateKey: otherKey }),
      code: undefined,
      message: (): RegExp => new RegExp(`nas: connect to ${server.host}:${server.port}: authentication refused`),
    },
  ];

  for (const c of cases) {
    it(`${c.label}: a clear one-line error, exit 1, nothing on the server`, { timeout: 60_000 }, async () => {
      const sftpRoot = await freshRoot(server, 'e2e-keys');
      const cfg = config(dir, server, sftpRoot, { sftp: c.sftp(), file: 'only-nas.yaml' });
      const run = await replicate(cfg, 'nas');
      assert.equal(run.code, 1, run.stderr + run.stdout);
      const nas = byName(jsonOf<ReplicateJson>(run), 'nas');
      assert.equal(nas.status, 'failed');
      assert.equal(nas.bytesWritten, 0);
      assert.equal(nas.errors.length, 1, JSON.stringify(nas.errors));
      const error = nas.errors[0];
      assertOneLine(error?.message);
      assert.ok(error?.message.startsWith('nas: '), 'names the destination');
      assert.match(error?.message ?? '', c.message());
      if (c.code) assert.equal(error?.code, c.code);
      assert.equal(error?.kind, 'auth');
      assert.doesNotMatch(run.stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');
      // The human output says it on one line too.
      const human = await runCli(['--config', cfg, 'replicate', NAME, '--to', 'nas']);
      assert.equal(human.code, 1);
      const failed = human.stdout.split('\n').filter((line) => line.includes('FAILED'));
      assert.equal(failed.length, 1, human.stdout);
      assert.match(failed[0] ?? '', c.message());
      assert.ok(!existsSync(join(sftpRoot, NAME)) || filesUnder(join(sftpRoot, NAME)).length === 0, 'nothing under the sftp root for the backup');
    });

    it(`${c.label}, --to disk,nas: exit 4, disk complete, nas failed and empty`, { timeout: 60_000 }, async () => {
      const sftpRoot = await freshRoot(server, 'e2e-keys');
      const local = scratch('keys-disk');
      rmSync(local, { recursive: true, force: true });
      const cfg = config(dir, server, sftpRoot, { sftp: c.sftp(), file: 'both.yaml' });
      writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('root: ./disk', `root: ${JSON.stringify(local)}`));
      const run = await replicate(cfg, 'disk,nas');
      assert.equal(run.code, 4, run.stderr + run.stdout);
      const result = jsonOf<ReplicateJson>(run);
      assert.equal(byName(result, 'disk').status, 'complete');
      const nas = byName(result, 'nas');
      assert.equal(nas.status, 'failed');
      assert.match(nas.errors[0]?.message ?? '', c.message());
      assert.deepEqual(treeDigest(join(local, NAME), ['.offsite/']), sourceTree, 'disk is complete');
      assert.ok(existsSync(join(local, NAME, '.offsite', 'manifest.json')));
      assert.ok(!existsSync(join(sftpRoot, NAME)) || filesUnder(join(sftpRoot, NAME)).length === 0, 'nothing under the sftp root for the backup');
    });
  }
});

describeWithServer('a run killed mid-file resumes from the partial file (CLI, real sshd)', (server) => {
  let proxy: FaultProxy | undefined;
  after(async () => { await proxy?.close(); });

  it('SIGKILL mid-file; the rerun confirms the partial prefix and does not send it again', { timeout: 90_000 }, async () => {
    const CHUNK = MiB;
    const dir = scratch('resume');
    // Few files, one of them large (about 20 MiB, capped at 24 MiB).
    await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 36 * MiB, files: 6, largestFileBytes: 24 * MiB, seed: 3 });
    const sourceDir = join(dir, 'backups', NAME);
    const sourceTree = treeDigest(sourceDir);
    const big = filesUnder(sourceDir).map((rel) => ({ rel, size: statSync(join(sourceDir, rel)).size })).sort((a, b) => b.size - a.size)[0];
    assert.ok(big && big.size >= 16 * MiB, `one large file (${big?.size})`);
    const sftpRoot = await freshRoot(server, 'e2e-resume');
    const cfg = config(dir, server, sftpRoot, { chunkSize: '1MiB' });
    const finalPath = join(sftpRoot, NAME, big.rel);
    const partialPath = join(dirname(finalPath), `.${basename(finalPath)}.offsite-partial`);

    // First run, slowed down, killed once the big file's partial holds at least 3 chunks.
    const child = spawn(process.execPath, [binPath, '--config', cfg, '--json', 'replicate', NAME, '--to', 'nas', '--bwlimit', '4MiB'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.stdout.resume();
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    let exitCode: number | null | undefined;
    void exited.then((code) => { exitCode = code; });
    const deadline = Date.now() + 45_000;
    const sizeOf = (path: string): number => { try { return statSync(path).size; } catch { return -1; } };
    while (sizeOf(partialPath) < 3 * CHUNK) {
      assert.equal(exitCode, undefined, `the first run ended before it was killed (exit ${exitCode}): ${stderr}`);
      assert.ok(Date.now() < deadline, `the partial file never reached 3 chunks (${sizeOf(partialPath)} bytes)`);
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill('SIGKILL');
    await exited;
    await new Promise((r) => setTimeout(r, 300)); // sshd finishes the writes it had already received
    const onServer = sizeOf(partialPath);
    assert.ok(onServer >= 3 * CHUNK && onServer < big.size, `a partial file of ${onServer} bytes is left on the server`);
    assert.ok(!existsSync(finalPath), 'the big file was not committed');
    assert.ok(!existsSync(join(sftpRoot, NAME, '.offsite', 'manifest.json')), 'no manifest after the kill');
    const chunksThere = Math.floor(onServer / CHUNK);
    // Other files may have been cut mid-way too: their partials are resumed as well.
    const allPartialBytes = partialsUnder(sftpRoot).reduce((sum, rel) => sum + sizeOf(join(sftpRoot, rel)), 0);

    // Second run through a proxy that counts the bytes sent to the server.
    proxy = await startFaultProxy({ target: { host: server.host, port: server.port } });
    const viaProxy = config(dir, server, sftpRoot, { chunkSize: '1MiB', sftp: { port: proxy.port }, file: 'via-proxy.yaml' });
    const dry = await runCli(['--config', viaProxy, '--json', 'replicate', NAME, '--to', 'nas', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr + dry.stdout);
    const plan = byName(jsonOf<ReplicateJson>(dry), 'nas').plan;
    assert.ok(plan, 'the dry run shows the plan');
    const bigAction = plan.actions.find((a) => a.path === big.rel);
    assert.equal(bigAction?.action, 'copy', JSON.stringify(bigAction));
    const sentBefore = proxy.stats().bytesClientToServer;

    const run = await replicate(viaProxy, 'nas');
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const nas = byName(jsonOf<ReplicateJson>(run), 'nas');
    const sent = proxy.stats().bytesClientToServer - sentBefore;
    console.log(`# resume: partial of the big file ${onServer} bytes at the kill (${allPartialBytes} in all partials); rerun: ${nas.bytesResumed} resumed, ${nas.bytesWritten} written, ${sent} bytes sent to sshd, ${plan.copyBytes} to copy`);
    assert.equal(nas.status, 'complete');
    // At most the parts that were in flight at the kill (2 per file) may be missing or holed.
    assert.ok(nas.bytesResumed >= (chunksThere - 2) * CHUNK, `resumed ${nas.bytesResumed} bytes of the ${chunksThere} chunks on the server`);
    assert.ok(nas.bytesResumed <= allPartialBytes, `resumed ${nas.bytesResumed} <= ${allPartialBytes} in partial files on the server`);
    assert.equal(nas.bytesWritten + nas.bytesResumed, plan.copyBytes, 'written + resumed = what the plan had to copy');
    // The resumed prefix did not cross the wire again: about bytesWritten went up (SSH framing,
    // manifest, checkpoints and a few hundred requests add well under 1 MiB).
    assert.ok(sent < nas.bytesWritten + MiB, `${sent} bytes sent for ${nas.bytesWritten} written`);
    assert.ok(sent < plan.copyBytes - (chunksThere - 3) * CHUNK, `${sent} bytes sent, well below the ${plan.copyBytes} bytes to copy`);

    assert.deepEqual(treeDigest(join(sftpRoot, NAME), ['.offsite/']), sourceTree, 'the server folder is identical to the source');
    assert.deepEqual(partialsUnder(sftpRoot), [], 'no temp files left');
    const verify = await runCli(['--config', cfg, '--json', 'verify', NAME, '--deep', '--at', 'nas']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});

describeWithServer('a destination blackholed for the whole run fails alone (CLI, real sshd)', (server) => {
  let proxy: FaultProxy | undefined;
  after(async () => { await proxy?.close(); });

  it('--to disk,nas with nas blackholed: exit 4 in bounded time, disk complete; the next run completes only nas', { timeout: 90_000 }, async () => {
    const dir = scratch('blackhole');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 2 * MiB, seed: 23 });
    const sourceTree = treeDigest(join(dir, 'backups', NAME));
    const total = totalBytes(join(dir, 'backups', NAME));
    proxy = await startFaultProxy({ target: { host: server.host, port: server.port }, faults: { blackhole: true } });
    const sftpRoot = await freshRoot(server, 'e2e-blackhole');
    const cfg = config(dir, server, sftpRoot, { sftp: { port: proxy.port, readyTimeoutMs: 3000 } });

    const started = Date.now();
    const run = await replicate(cfg, 'disk,nas', ['--retries', '1']);
    const seconds = (Date.now() - started) / 1000;
    assert.equal(run.code, 4, run.stderr + run.stdout);
    assert.ok(seconds < 25, `gave up within a bounded time (${seconds.toFixed(1)} s)`);
    const result = jsonOf<ReplicateJson>(run);
    assert.equal(byName(result, 'disk').status, 'complete');
    assert.deepEqual(treeDigest(join(dir, 'disk', NAME), ['.offsite/']), sourceTree, 'disk is complete');
    const nas = byName(result, 'nas');
    assert.equal(nas.status, 'failed');
    assertOneLine(nas.errors[0]?.message);
    assert.match(nas.errors[0]?.message ?? '', new RegExp(`^nas: connect to 127\\.0\\.0\\.1:${proxy.port}: .*(timed out|Timed out)`));
    assert.ok(proxy.stats().connections >= 1, 'it did try the server');
    assert.ok(!existsSync(join(sftpRoot, NAME, '.offsite', 'manifest.json')));

    proxy.clearFaults();
    const heal = await replicate(cfg, 'disk,nas', ['--retries', '1']);
    assert.equal(heal.code, 0, heal.stderr + heal.stdout);
    const healed = jsonOf<ReplicateJson>(heal);
    assert.deepEqual([byName(healed, 'disk').status, byName(healed, 'disk').bytesWritten], ['up-to-date', 0]);
    assert.deepEqual([byName(healed, 'nas').status, byName(healed, 'nas').bytesWritten], ['complete', total]);
    assert.deepEqual(treeDigest(join(sftpRoot, NAME), ['.offsite/']), sourceTree);
    const verify = await runCli(['--config', cfg, '--json', 'verify', NAME, '--deep', '--at', 'disk,nas']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});
