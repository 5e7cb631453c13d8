/**
 * A destination that cannot be reached when the run starts holds back only itself (issue 16):
 * each destination is listed, locked and planned on its own, and copies as soon as it is ready.
 * Through the CLI against the real sshd and Ceph RGW, a fault proxy (test/helpers/fault-proxy.ts)
 * blackholes one destination from the first byte: its listing times out and is retried (each try a
 * new connection to the proxy), while the
 * local destination copies everything and gets its manifest (checked on disk, and by `verify
 * --deep`, while the run is still retrying the other). Then the proxy is healed:
 * - S3: the bucket answers, the destination joins late, reads alone the files the local one has
 *   already copied (counted as a detachment and in `bytesReadAlone`), completes (exit 0), and
 *   both copies deep-verify;
 * - SFTP (an account the server refuses): the destination fails alone with its error in `--json`
 *   and on stderr (exit 4); the local copy is complete and the next run finds it up to date.
 *
 * Functional, not timed: the faults are switched only once the state they wait for is seen
 * (bounded polls), so the order of events is forced, not measured.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { jsonOf, runCli, startCli, tempDir, writeConfig } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { freshBucket, removeFreshBuckets, requireServer as requireS3 } from '../s3/server.js';
import { requireServer as requireSftp } from '../sftp/server.js';

const NAME = 'nightly_2025_10_01';
const MiB = 1024 * 1024;
const BUDGET = 2 * MiB;

interface ReplicateJson {
  bytes: number;
  bytesRead: number;
  detachments: number;
  peakBufferBytes: number;
  destinations: { name: string; status: string; bytesWritten: number; detachments: number; bytesReadAlone: number; errors: { code: string; message: string }[] }[];
}
interface VerifyJson { results: { destination: string; status: string }[] }

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('a destination unreachable at the start holds back only itself (CLI, sshd and RGW)', () => {
  const proxies: FaultProxy[] = [];
  let sourceRoot: string;

  before(async () => {
    sourceRoot = join(tempDir('fanout-start-source'), 'backups');
    await generateBackup({ root: sourceRoot, name: NAME, totalBytes: 6 * MiB, files: 16, seed: 93 });
  });
  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await removeFreshBuckets();
  });

  /** A config with `disk` (local) and `late` (sftp or s3 through a blackholed fault proxy). */
  async function setup(kind: 'sftp' | 's3', label: string, username?: string): Promise<{ dir: string; config: string; proxy: FaultProxy }> {
    const dir = tempDir(label);
    let proxy: FaultProxy;
    let late: string;
    if (kind === 'sftp') {
      const sftp = requireSftp();
      proxy = await startFaultProxy({ target: { host: sftp.host, port: sftp.port } });
      const root = join(sftp.root, `${label}-${Date.now()}`);
      mkdirSync(root, { recursive: true });
      late = `{ type: sftp, host: 127.0.0.1, port: ${proxy.port}, username: ${username ?? sftp.username}, privateKey: "${sftp.privateKey}", hostKey: "${sftp.hostKeyFingerprint}", root: "${root}", readyTimeoutMs: 1500 }`;
    } else {
      const s3 = requireS3();
      proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: Number(new URL(s3.endpoint).port) } });
      const bucket = await freshBucket(s3, label);
      late = `{ type: s3, endpoint: "http://127.0.0.1:${proxy.port}", region: ${s3.region}, bucket: ${bucket}, prefix: start/, accessKeyId: "${s3.accessKeyId}", secretAccessKey: "${s3.secretAccessKey}", connectTimeoutMs: 1000, requestTimeoutMs: 1500 }`;
    }
    proxies.push(proxy);
    proxy.setFault({ blackhole: true });
    const config = writeConfig(dir, [
      `source: { type: local, root: "${sourceRoot}" }`,
      'destinations:',
      `  disk: { type: local, root: "${join(dir, 'disk')}" }`,
      `  late: ${late}`,
      `options: { quietPeriod: 0s, chunkSize: 256KiB, memoryBudget: ${BUDGET / MiB}MiB }`,
    ].join('\n'));
    return { dir, config, proxy };
  }

  const diskManifest = (dir: string): string => join(dir, 'disk', NAME, '.offsite', 'manifest.json');

  /**
   * Starts the run with `late` blackholed and waits until the local manifest is there while `late`
   * is retrying; checks that the local copy is complete then, and that the run still goes on.
   */
  async function localCompletesFirst(s: { dir: string; config: string; proxy: FaultProxy }, t: { after: (fn: () => void) => void }) {
    // Retries enough for the blackhole to outlast the local copy whatever the machine's load.
    const run = startCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'disk,late', '--retries', '200']);
    t.after(run.stop);
    // `--json` prints no retry lines: the proxy shows the retries, each a new connection.
    const seen = (): boolean => existsSync(diskManifest(s.dir)) && s.proxy.stats().connections >= 2;
    for (let i = 0; i < 4800 && !seen() && run.running(); i++) await sleep(25);
    const during = run.output();
    assert.ok(existsSync(diskManifest(s.dir)), `the local manifest is written while the other destination cannot be reached:\n${during.stdout}${during.stderr}`);
    assert.ok(run.running(), `the run goes on for the unreachable destination:\n${during.stdout}${during.stderr}`);
    assert.ok(s.proxy.stats().connections >= 2, `the unreachable destination was retrying its first requests (${s.proxy.stats().connections} connections)`);
    assert.doesNotMatch(during.stderr, /late: replicate .* failed/, 'it has not failed yet');
    assert.equal(s.proxy.stats().bytesClientToServer, 0, 'nothing reached the blackholed server');
    const verify = await runCli(['--config', s.config, '--json', 'verify', NAME, '--at', 'disk', '--deep']);
    assert.equal(verify.code, 0, `the local copy is complete and whole while the other is unreachable: ${verify.stdout}${verify.stderr}`);
    assert.ok(run.running(), 'still waiting for the other destination after the local copy was verified');
    return run;
  }

  it('s3: the local copy completes while the bucket is blackholed; healed, the S3 destination joins late, reads alone and completes (exit 0)', async (t) => {
    const s = await setup('s3', 'fanout-start-s3');
    const run = await localCompletesFirst(s, t);
    s.proxy.clearFaults();
    const code = await run.exited;
    const { stdout, stderr } = run.output();
    assert.equal(code, 0, stdout + stderr);
    const result = jsonOf<ReplicateJson>({ code, stdout, stderr });
    const [disk, late] = result.destinations;
    assert.deepEqual([disk?.status, late?.status], ['complete', 'complete']);
    assert.ok((late?.detachments ?? 0) >= 1, `the late destination read alone what the other had started: ${stdout}`);
    assert.ok((late?.bytesReadAlone ?? 0) > 0, stdout);
    assert.ok(result.bytesRead <= 2 * result.bytes, `source read at most twice: ${result.bytesRead} of ${result.bytes}`);
    assert.ok(result.peakBufferBytes <= BUDGET, `chunk buffers within the budget: ${result.peakBufferBytes}`);
    const verify = await runCli(['--config', s.config, '--json', 'verify', NAME, '--at', 'disk,late', '--deep'], { timeoutMs: 120_000 });
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.deepEqual(jsonOf<VerifyJson>(verify).results.map((r) => [r.destination, r.status]), [['disk', 'ok'], ['late', 'ok']]);
  });

  it('sftp: the local copy completes while the NAS is blackholed; the NAS then fails alone (exit 4, its error reported)', async (t) => {
    // Once healed, the server refuses this account: the NAS fails at once, with a clear error.
    const s = await setup('sftp', 'fanout-start-sftp', 'offsite-no-such-user');
    const run = await localCompletesFirst(s, t);
    s.proxy.clearFaults();
    const code = await run.exited;
    const { stdout, stderr } = run.output();
    assert.equal(code, 4, stdout + stderr);
    const [disk, late] = jsonOf<ReplicateJson>({ code, stdout, stderr }).destinations;
    assert.deepEqual([disk?.status, late?.status], ['complete', 'failed']);
    assert.equal(late?.bytesWritten, 0);
    assert.match(late?.errors[0]?.message ?? '', /authentication/i);
    assert.match(stderr, /late: replicate nightly_2025_10_01 failed: .*authentication/i);
    const again = await runCli(['--config', s.config, '--json', 'replicate', NAME, '--to', 'disk']);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.deepEqual(jsonOf<ReplicateJson>(again).destinations.map((d) => [d.name, d.status]), [['disk', 'up-to-date']]);
  });
});
