/**
 * Retries and reconnects on one destination do not stall the others (issue 16, item 4), through
 * the CLI against the real sshd and Ceph RGW. A fault proxy (test/helpers/fault-proxy.ts) between
 * the engine and the broken destination resets every connection once it has carried 64 KiB
 * upstream: enough for the handshake, the lock and the listing, never for a whole part, so that
 * destination's writes fail, reconnect and retry over and over without getting anywhere. Next to
 * it, a local destination gets its manifest while the broken one is still retrying; once the
 * proxy is healed the broken one completes too, the run exits 0 and both copies deep-verify. With
 * few retries instead, the broken one fails clearly: exit 4, the local copy complete, and the
 * next run completes only the broken one.
 *
 * Functional, not timed: the backup (12 MiB) is far larger than the chunk budget (2 MiB), so the
 * local destination can only finish while the broken one holds chunks it cannot write if the
 * broken one is detached from the shared reads; waits are bounded polls, never measurements.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { jsonOf, retriesOf, runCli, startCli, tempDir, writeConfig } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { freshBucket, removeFreshBuckets, requireServer as requireS3 } from '../s3/server.js';
import { requireServer as requireSftp } from '../sftp/server.js';

const NAME = 'nightly_2025_09_01';
const MiB = 1024 * 1024;
/** Upstream bytes a connection to the broken destination may carry before it is reset. */
const RESET_AFTER = 64 * 1024;

interface VerifyJson { results: { destination: string; status: string }[] }
interface ReplicateJson { destinations: { name: string; status: string; bytesWritten: number; errors: { message: string }[] }[] }

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('retries and reconnects on one destination do not stall the others (CLI, sshd and RGW)', () => {
  const proxies: FaultProxy[] = [];
  let sourceRoot: string;

  before(async () => {
    sourceRoot = join(tempDir('fanout-retries-source'), 'backups');
    await generateBackup({ root: sourceRoot, name: NAME, totalBytes: 12 * MiB, files: 24, seed: 77 });
  });
  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await removeFreshBuckets();
  });

  /** A config with `disk` (local) and `broken` (sftp or s3 through a fault proxy). */
  async function setup(kind: 'sftp' | 's3', label: string): Promise<{ dir: string; config: string; proxy: FaultProxy }> {
    const dir = tempDir(label);
    let proxy: FaultProxy;
    let broken: string;
    if (kind === 'sftp') {
      const sftp = requireSftp();
      proxy = await startFaultProxy({ target: { host: sftp.host, port: sftp.port } });
      const root = join(sftp.root, `${label}-${Date.now()}`);
      mkdirSync(root, { recursive: true });
      broken = `{ type: sftp, host: 127.0.0.1, port: ${proxy.port}, username: ${sftp.username}, privateKey: "${sftp.privateKey}", hostKey: "${sftp.hostKeyFingerprint}", root: "${root}", readyTimeoutMs: 4000 }`;
    } else {
      const s3 = requireS3();
      proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: Number(new URL(s3.endpoint).port) } });
      const bucket = await freshBucket(s3, label);
      broken = `{ type: s3, endpoint: "http://127.0.0.1:${proxy.port}", region: ${s3.region}, bucket: ${bucket}, prefix: retries/, accessKeyId: "${s3.accessKeyId}", secretAccessKey: "${s3.secretAccessKey}", connectTimeoutMs: 2000, requestTimeoutMs: 4000 }`;
    }
    proxies.push(proxy);
    const config = writeConfig(dir, [
      `source: { type: local, root: "${sourceRoot}" }`,
      'destinations:',
      `  disk: { type: local, root: "${join(dir, 'disk')}" }`,
      `  broken: ${broken}`,
      'options: { quietPeriod: 0s, chunkSize: 256KiB, memoryBudget: 2MiB }',
    ].join('\n'));
    return { dir, config, proxy };
  }

  const diskManifest = (dir: string): string => join(dir, 'disk', NAME, '.offsite', 'manifest.json');

  for (const kind of ['sftp', 's3'] as const) {
    it(`${kind}: the local copy completes while the ${kind} one keeps reconnecting; healed, the ${kind} one completes too (exit 0)`, async (t) => {
      const s = await setup(kind, `fanout-retries-${kind}`);
      s.proxy.setFault({ resetAfterBytes: RESET_AFTER });
      // Many retries, so that the broken destination is still retrying when the test heals it.
      const run = startCli(['--config', s.config, 'replicate', NAME, '--to', 'disk,broken', '--retries', '40']);
      t.after(run.stop); // a failed assertion must not leave the run behind
      const seen = (): boolean => existsSync(diskManifest(s.dir)) && retriesOf(run.output().stderr, 'broken').length > 0;
      for (let i = 0; i < 2400 && !seen() && run.running(); i++) await sleep(25);
      const during = run.output();
      assert.ok(existsSync(diskManifest(s.dir)), `the local manifest is written while the ${kind} destination retries:\n${during.stdout}${during.stderr}`);
      assert.ok(run.running(), `the run goes on for the broken destination:\n${during.stdout}${during.stderr}`);
      assert.ok(s.proxy.stats().resets >= 1, 'connections to the broken destination were really reset');
      assert.ok(retriesOf(during.stderr, 'broken').length >= 1, `the broken destination was retrying:\n${during.stderr}`);
      assert.deepEqual(retriesOf(during.stderr, 'disk'), [], 'the local destination never retried');
      const verifyDisk = await runCli(['--config', s.config, '--json', 'verify', NAME, '--at', 'disk', '--deep']);
      assert.equal(verifyDisk.code, 0, `the local copy is complete and whole while the other is still retrying: ${verifyDisk.stdout}${verifyDisk.stderr}`);
      assert.ok(run.running(), 'still retrying after the local copy was verified');

      s.proxy.clearFaults();
      const code = await run.exited;
      const { stdout, stderr } = run.output();
      assert.equal(code, 0, stdout + stderr);
      assert.match(stdout, /^\s+disk\s+complete:/m);
      assert.match(stdout, /^\s+broken\s+complete:/m);
      const verify = await runCli(['--config', s.config, '--json', 'verify', NAME, '--at', 'disk,broken', '--deep'], { timeoutMs: 120_000 });
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.deepEqual(jsonOf<VerifyJson>(verify).results.map((r) => [r.destination, r.status]), [['disk', 'ok'], ['broken', 'ok']]);
    });
  }

  it('sftp: with few retries the broken destination fails clearly (exit 4), the local copy is complete; the next run completes only it', async () => {
    const s = await setup('sftp', 'fanout-retries-fail');
    s.proxy.setFault({ resetAfterBytes: RESET_AFTER });
    const first = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'disk,broken', '--retries', '2'], { timeoutMs: 120_000 });
    s.proxy.clearFaults();
    assert.equal(first.code, 4, first.stdout + first.stderr);
    const [disk, broken] = jsonOf<ReplicateJson>(first).destinations;
    assert.deepEqual([disk?.status, broken?.status], ['complete', 'failed']);
    assert.match(broken?.errors[0]?.message ?? '', /after 2 retries/);
    assert.match(first.stderr, /broken: replicate nightly_2025_09_01 failed: /);
    assert.ok(existsSync(diskManifest(s.dir)));
    const second = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'disk,broken'], { timeoutMs: 120_000 });
    assert.equal(second.code, 0, second.stdout + second.stderr);
    const results = jsonOf<ReplicateJson>(second).destinations;
    assert.deepEqual(results.map((d) => [d.name, d.status]), [['disk', 'up-to-date'], ['broken', 'complete']]);
    assert.equal(results[0]?.bytesWritten, 0, 'nothing written at the local destination');
  });
});
