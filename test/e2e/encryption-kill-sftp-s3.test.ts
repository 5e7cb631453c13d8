/**
 * Interrupted encrypted uploads resume (issue 14, "Done when"): a replicate to each of three
 * encrypted destinations (a local folder, sshd, Ceph RGW) is SIGKILLed while that destination
 * holds both durable progress (files committed and recorded in a checkpoint) and an unfinished
 * write of the largest file (whole stored parts in its partial file; parts of an open multipart
 * upload). One rerun to all three must complete everywhere and resume what was there: the
 * recorded files are skipped, the stored parts are sealed again, compared and not sent (its
 * --json, and the bytes on the wire measured by proxies in front of sshd and RGW). An auditor
 * without the key then deep-verifies every copy, and pull with the key gives the backup back byte
 * for byte from each.
 *
 * Each kill waits for those states at the destination itself (polled), not for a time, so it
 * lands where it must on a loaded machine too; the bandwidth limit only keeps the run slow enough
 * to be caught there.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { ListMultipartUploadsCommand, ListPartsCommand, type S3Client } from '@aws-sdk/client-s3';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { OVERHEAD_BYTES, storedSize } from '../../src/crypto/format.js';
import { binPath, filesUnder, jsonOf, runCli, tempDir, treeDigest } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { adminClient, freshBucket, keysIn, removeFreshBuckets, requireServer as requireS3, s3Section } from '../s3/server.js';
import { freshRoot, makeFolder, removeFreshRoots, requireServer as requireSftp, sectionFor } from '../sftp/server.js';

const NAME = 'backup_2025_11_14_03_00_00';
const CHUNK = 1024 * 1024;
/** A local or SFTP part is one chunk; stored, it is 48 bytes longer. */
const STORED_PART = CHUNK + OVERHEAD_BYTES;
const S3_PART = 5 * CHUNK;

interface ReplicateJson {
  destinations: { name: string; status: string; filesCopied: number; filesSkipped: number; filesAdopted: number; bytesWritten: number; bytesResumed: number; bytesSkipped: number }[];
}
interface VerifyJson { results: { destination: string; status: string; damage: { message: string }[]; message?: string }[] }

after(async () => {
  await removeFreshBuckets();
  await removeFreshRoots();
});

/** Every file under `dir` whose name is an unfinished write (`.NAME.offsite-partial`), with its size. */
function partialsUnder(dir: string): { path: string; size: number }[] {
  const found: { path: string; size: number }[] = [];
  // The run renames and removes files while this looks: a file gone meanwhile is skipped.
  const gone = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT';
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (gone(err)) return [];
    throw err;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    // offsite's bookkeeping (.offsite: checkpoints, progress journals) is stored unsealed by
    // design, and a kill may leave one of its temp files: only backup files count here.
    if (entry.isDirectory()) {
      if (entry.name !== '.offsite') found.push(...partialsUnder(path));
    }
    else if (entry.name.endsWith('.offsite-partial')) {
      try {
        found.push({ path, size: statSync(path).size });
      } catch (err) {
        if (!gone(err)) throw err;
      }
    }
  }
  return found;
}

/**
 * A local or SFTP destination (sshd serves a folder of this machine) is ready to be killed once
 * it holds the copy's checkpoint and a partial file of three stored parts: with two parts in
 * flight, its first part is whole.
 */
function localState(root: string): { ready: boolean; seen: string } {
  const partial = Math.max(0, ...partialsUnder(root).map((p) => p.size));
  const checkpoint = checkpointedLocally(root);
  return { ready: checkpoint && partial >= 3 * STORED_PART, seen: `partial file of ${partial} bytes, checkpoint ${checkpoint}` };
}

/** True once the copy's progress checkpoint (progress.json or a journal entry) is there. */
function checkpointedLocally(root: string): boolean {
  const dir = join(root, NAME, '.offsite');
  try {
    return readdirSync(dir).some((n) => /^progress(-\d+)?\.json$/.test(n));
  } catch {
    return false;
  }
}

/** Stored sizes of the parts of every open multipart upload in the bucket. */
async function uploadedParts(client: S3Client, bucket: string): Promise<number[]> {
  const sizes: number[] = [];
  const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  for (const u of uploads.Uploads ?? []) {
    try {
      const parts = await client.send(new ListPartsCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }));
      for (const p of parts.Parts ?? []) sizes.push(p.Size ?? 0);
    } catch (err) {
      // Completed or aborted since it was listed.
      if (!/NoSuch(Upload|Key)/.test((err as Error).name)) throw err;
    }
  }
  return sizes;
}

describe('interrupted encrypted uploads resume after SIGKILL (local folder, sshd, Ceph RGW; CLI)', () => {
  const proxies: FaultProxy[] = [];
  after(async () => { await Promise.all(proxies.map((p) => p.close())); });

  it('the rerun skips recorded files, resumes stored parts, completes; keyless deep verify and keyed pull agree', { timeout: 300_000 }, async () => {
    const sftp = requireSftp();
    const s3 = requireS3();
    const admin = adminClient(s3);
    const dir = tempDir('enc-kill');
    const source = join(dir, 'backups');
    // 19 files, ~15 MiB; the largest is ~7 MiB: two S3 parts (5 MiB + 2 MiB), seven local/SFTP parts.
    const made = await generateBackup({ root: source, name: NAME, totalBytes: 16 * 1024 * 1024, largestFileBytes: 9 * 1024 * 1024, files: 6, seed: 14 });
    const sizes = filesUnder(join(source, NAME)).map((p) => statSync(join(source, NAME, p)).size);
    const largest = Math.max(...sizes);
    assert.ok(largest > S3_PART + CHUNK, `the largest file (${largest} bytes) has two S3 parts`);
    const storedTotal = sizes.reduce((sum, s) => sum + storedSize(s, CHUNK), 0);
    const original = treeDigest(join(source, NAME));

    const disk = join(dir, 'disk');
    const nasRoot = await freshRoot(sftp, 'enc-kill');
    await makeFolder(nasRoot);
    const bucket = await freshBucket(s3, 'enc-kill');
    const s3Url = new URL(s3.endpoint);
    const nasProxy = await startFaultProxy({ target: { host: sftp.host, port: sftp.port } });
    const cloudProxy = await startFaultProxy({ target: { host: s3Url.hostname, port: Number(s3Url.port) } });
    proxies.push(nasProxy, cloudProxy);

    const keyHex = randomBytes(32).toString('hex');
    const env = { OFFSITE_KEY: keyHex };
    const writeConfigs = (name: string, encryption: Record<string, unknown> | undefined): string => {
      const path = join(dir, `${name}.yaml`);
      const enc = encryption ? { encryption } : {};
      writeFileSync(path, stringify({
        source: { type: 'local', root: source },
        destinations: {
          disk: { type: 'local', root: disk, ...enc },
          nas: { ...sectionFor(sftp, nasRoot, { port: nasProxy.port, host: '127.0.0.1' }), ...enc },
          cloud: { ...s3Section(s3, bucket, { endpoint: `http://127.0.0.1:${cloudProxy.port}` }), ...enc },
        },
        options: { quietPeriod: '0s', chunkSize: '1MiB', concurrency: 3 },
      }));
      return path;
    };
    const keyed = writeConfigs('keyed', { key: '${OFFSITE_KEY}' });
    const bare = writeConfigs('bare', undefined);
    const replicateArgs = ['replicate', NAME, '--to', 'disk,nas,cloud'];

    // One run per destination, each killed once that destination holds a checkpoint and an
    // unfinished file (one file at a time, slowly: the first small file is recorded while the
    // largest one is still being sent).
    const cloudParts: number[] = [];
    const states: Record<string, () => Promise<{ ready: boolean; seen: string }>> = {
      disk: async () => localState(disk),
      nas: async () => localState(nasRoot),
      cloud: async () => {
        const parts = await uploadedParts(admin, bucket);
        const checkpoint = (await keysIn(admin, bucket, `${NAME}/.offsite/progress`)).length > 0;
        if (parts.length > 0 && checkpoint) cloudParts.push(...parts);
        return { ready: parts.length > 0 && checkpoint, seen: `parts [${parts.join(', ')}], checkpoint ${checkpoint}` };
      },
    };
    for (const [name, look] of Object.entries(states)) {
      const child = spawn(process.execPath, [binPath, '--config', keyed, '--quiet', 'replicate', NAME, '--to', name, '--concurrency', '1', '--bwlimit', '2MiB'], {
        env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      let ended = false;
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => { ended = true; resolve(code); }));
      let state = { ready: false, seen: '' };
      try {
        for (let i = 0; i < 2400 && !ended && !state.ready; i++) {
          await sleep(25);
          state = await look();
        }
      } finally {
        child.kill('SIGKILL');
      }
      const code = await exited;
      assert.ok(state.ready && code !== 0, `${name}: killed mid-file, after a checkpoint (exit ${code}; ${state.seen}): ${stderr}`);
      console.log(`# ${name} killed with ${state.seen}`);
    }

    // Nothing claims to be complete, and what is stored holds no plaintext.
    const killed = await runCli(['--config', bare, '--json', 'verify', NAME, '--at', 'disk,nas,cloud'], { env });
    assert.equal(killed.code, 3, killed.stdout + killed.stderr);
    for (const partial of [...partialsUnder(disk), ...partialsUnder(nasRoot)]) {
      const bytes = readFileSync(partial.path);
      assert.equal(bytes.subarray(0, 4).toString('latin1'), 'OFSE', `${partial.path} is sealed`);
    }

    const sentBefore = { nas: nasProxy.stats().bytesClientToServer, cloud: cloudProxy.stats().bytesClientToServer };
    const rerun = await runCli(['--config', keyed, '--json', ...replicateArgs], { env, timeoutMs: 240_000 });
    assert.equal(rerun.code, 0, rerun.stdout + rerun.stderr);
    const sent = { nas: nasProxy.stats().bytesClientToServer - sentBefore.nas, cloud: cloudProxy.stats().bytesClientToServer - sentBefore.cloud };
    console.log(`# rerun: ${JSON.stringify(jsonOf<ReplicateJson>(rerun).destinations.map(({ name, filesCopied, filesSkipped, filesAdopted, bytesWritten, bytesResumed, bytesSkipped }) => ({ name, filesCopied, filesSkipped, filesAdopted, bytesWritten, bytesResumed, bytesSkipped })))}; on the wire ${JSON.stringify(sent)} of ${storedTotal} stored bytes`);
    for (const d of jsonOf<ReplicateJson>(rerun).destinations) {
      assert.equal(d.status, 'complete', d.name);
      assert.ok(d.filesSkipped > 0 && d.bytesSkipped > 0, `${d.name}: files recorded before the kill are skipped (${d.filesSkipped})`);
      assert.ok(d.bytesResumed >= CHUNK, `${d.name}: stored parts of the unfinished file are resumed, not sent (${d.bytesResumed} bytes)`);
      // A file committed after the last checkpoint is adopted (read back, not sent; its bytes are in none of these).
      assert.ok(d.filesAdopted > 0 || d.bytesWritten + d.bytesResumed + d.bytesSkipped >= made.bytes - 1, `${d.name}: every byte is accounted for`);
      assert.ok(d.bytesWritten <= made.bytes - d.bytesSkipped - d.bytesResumed, `${d.name}: nothing skipped or resumed was sent`);
    }
    // On the wire (stored bytes plus protocol): less than the whole copy minus what was resumed.
    const resumedCloud = Math.min(...cloudParts);
    assert.ok(sent.cloud < storedTotal - resumedCloud, `cloud: ${sent.cloud} bytes sent, less than ${storedTotal} - ${resumedCloud}`);
    assert.ok(sent.nas < storedTotal - 3 * STORED_PART, `nas: ${sent.nas} bytes sent, less than ${storedTotal} - 3 parts`);
    assert.deepEqual(await uploadedParts(admin, bucket), [], 'no multipart upload left open');
    assert.deepEqual([...partialsUnder(disk), ...partialsUnder(nasRoot)], [], 'no partial file left');

    // An auditor without the key proves every copy whole; the key brings the backup back.
    const verify = await runCli(['--config', bare, '--json', 'verify', NAME, '--at', 'disk,nas,cloud', '--deep'], { env });
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    for (const r of jsonOf<VerifyJson>(verify).results) assert.equal(r.status, 'ok', `${r.destination}: ${r.damage.map((x) => x.message).join('; ') || r.message}`);
    for (const from of ['disk', 'nas', 'cloud']) {
      const target = join(dir, `restore-${from}`);
      mkdirSync(target);
      const pull = await runCli(['--config', keyed, '--json', 'pull', NAME, '--from', from, '--to', target], { env });
      assert.equal(pull.code, 0, `${from}: ${pull.stdout}${pull.stderr}`);
      assert.deepEqual(treeDigest(join(target, NAME)), original, `${from}: byte-identical`);
    }
    admin.destroy();
  });
});
