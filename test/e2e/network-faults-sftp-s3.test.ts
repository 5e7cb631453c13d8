/**
 * Network faults on the way to real servers (issue 5): fault proxies sit between the engine and
 * sshd and between the engine and Ceph RGW. Resets and stalls during a replicate are absorbed by
 * the retry layer (the run completes and deep-verifies); a blackholed S3 endpoint fails only its
 * destination (exit 4), and the next run completes only that one.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { jsonOf, runCli, tempDir, writeConfig } from '../helpers/cli.js';
import { freshBucket, removeFreshBuckets, requireServer as requireS3 } from '../s3/server.js';
import { requireServer as requireSftp } from '../sftp/server.js';

const NAME = 'nightly_2025_08_01';

interface ReplicateJson { destinations: { name: string; status: string; bytesWritten: number; errors: { message: string }[] }[] }
interface VerifyJson { results: { destination: string; status: string }[] }

describe('network faults between the engine and sshd / RGW (CLI)', () => {
  const proxies: FaultProxy[] = [];
  let dir: string;
  let config: string;
  let sftpProxy: FaultProxy;
  let s3Proxy: FaultProxy;

  before(async () => {
    const sftp = requireSftp();
    const s3 = requireS3();
    dir = tempDir('netfaults');
    await generateBackup({ root: join(dir, 'backups'), name: NAME, totalBytes: 10 * 1024 * 1024, files: 24, seed: 41 });
    sftpProxy = await startFaultProxy({ target: { host: sftp.host, port: sftp.port } });
    s3Proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: Number(new URL(s3.endpoint).port) } });
    proxies.push(sftpProxy, s3Proxy);
    const bucket = await freshBucket(s3, 'netfaults');
    const sftpRoot = join(sftp.root, `netfaults-${Date.now()}`);
    mkdirSync(sftpRoot, { recursive: true });
    config = writeConfig(dir, [
      'source: { type: local, root: ./backups }',
      'destinations:',
      '  disk: { type: local, root: ./disk }',
      `  nas: { type: sftp, host: 127.0.0.1, port: ${sftpProxy.port}, username: ${sftp.username}, privateKey: "${sftp.privateKey}", hostKey: "${sftp.hostKeyFingerprint}", root: "${sftpRoot}", readyTimeoutMs: 4000 }`,
      `  cloud: { type: s3, endpoint: "http://127.0.0.1:${s3Proxy.port}", region: ${s3.region}, bucket: ${bucket}, prefix: net/, accessKeyId: "${s3.accessKeyId}", secretAccessKey: "${s3.secretAccessKey}", connectTimeoutMs: 2000, requestTimeoutMs: 4000 }`,
      'options: { quietPeriod: 0s, chunkSize: 1MiB, retries: 8 }',
    ].join('\n'));
  });
  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await removeFreshBuckets();
  });

  it('resets and stalls during a replicate: it completes through retries and deep-verifies everywhere', async () => {
    // Connections are reset after 1.5 MB upstream (a retry reconnects and moves on), six times
    // at most: parts sharing a connection could otherwise each get too little through before
    // every reset, again and again, until the retries run out. Every chunk is delayed.
    sftpProxy.setFault({ resetAfterBytes: 1_500_000, maxResets: 6, latencyMs: 5 });
    // S3 sends whole parts (at least 5 MiB) per request: reset its connections less often.
    s3Proxy.setFault({ resetAfterBytes: 12_000_000, latencyMs: 5 });
    const run = await runCli(['--config', config, '--json', 'replicate', NAME, '--to', 'disk,nas,cloud'], { timeoutMs: 300_000 });
    const resets = sftpProxy.stats().resets + s3Proxy.stats().resets;
    sftpProxy.clearFaults();
    s3Proxy.clearFaults();
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.deepEqual(jsonOf<ReplicateJson>(run).destinations.map((d) => d.status), ['complete', 'complete', 'complete']);
    assert.ok(resets >= 4, `faults were really injected (${resets} resets)`);
    const verify = await runCli(['--config', config, '--json', 'verify', NAME, '--at', 'disk,nas,cloud', '--deep']);
    assert.equal(verify.code, 0, verify.stdout);
    assert.deepEqual(jsonOf<VerifyJson>(verify).results.map((r) => r.status), ['ok', 'ok', 'ok']);
  });

  it('a blackholed S3 endpoint fails only its destination (exit 4); the next run completes only it', async () => {
    const other = await generateBackup({ root: join(dir, 'backups'), name: `${NAME}_b`, totalBytes: 2 * 1024 * 1024, seed: 42 });
    s3Proxy.setFault({ blackhole: true });
    const started = Date.now();
    const first = await runCli(['--config', config, '--json', 'replicate', other.name, '--to', 'disk,nas,cloud', '--retries', '1'], { timeoutMs: 120_000 });
    s3Proxy.clearFaults();
    assert.equal(first.code, 4, first.stdout + first.stderr);
    const [disk, nas, cloud] = jsonOf<ReplicateJson>(first).destinations;
    assert.deepEqual([disk?.status, nas?.status, cloud?.status], ['complete', 'complete', 'failed']);
    assert.match(cloud?.errors[0]?.message ?? '', /time|reach|connect/i);
    assert.ok(Date.now() - started < 90_000, 'bounded by the configured timeouts');
    const second = await runCli(['--config', config, '--json', 'replicate', other.name, '--to', 'disk,nas,cloud']);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    const results = jsonOf<ReplicateJson>(second).destinations;
    assert.deepEqual(results.map((d) => [d.name, d.status]), [['disk', 'up-to-date'], ['nas', 'up-to-date'], ['cloud', 'complete']]);
    assert.deepEqual(results.slice(0, 2).map((d) => d.bytesWritten), [0, 0], 'nothing written at the healthy destinations');
  });
});
