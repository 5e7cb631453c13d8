/**
 * An encrypted copy an earlier offsite started in format version 1 (a file's identity `NAME/path`)
 * and this offsite finishes (version 2, identity `path`): the files sealed in version 1, recorded
 * in the old checkpoint or only committed, are sealed again, so the finished copy's manifest (whose
 * scheme says version 2) lists no version 1 file, and a later copy that reuses its files server-side
 * gets files that open under their new name: its deep verify passes and pull gives it back byte for
 * byte. Local folder destination, through the CLI.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir, treeDigest } from '../helpers/cli.js';
import { ENCRYPTION_SCHEME, openBuffer, OVERHEAD_BYTES } from '../../src/crypto/format.js';
import { DestinationKey } from '../../src/crypto/keys.js';
import { getHasher } from '../../src/hash/xxh64.js';
import { manifestDigest, type Manifest, type ManifestFile } from '../../src/manifest/manifest.js';

const OLD = 'backup_2025_10_01_03_00_00';
const NEW = 'backup_2025_10_02_03_00_00';
const CHUNK = 64 * 1024;
const V1_SCHEME = 'offsite-aes-256-gcm-chunked/v1';

/**
 * A file sealed as offsite's format version 1 wrote it (src/crypto/format.ts before version 2):
 * the same chunks, with version byte 1 and the whole key `NAME/path` as the file's identity.
 */
function sealVersion1(key: DestinationKey, fileKey: string, plain: Buffer): Buffer {
  const id = Buffer.from(fileKey, 'utf8');
  const { fileKey: aesKey, nonceKey } = key.fileKeys(id);
  const check = key.checkValue(Buffer.from('offsite key check', 'latin1')).subarray(0, 8);
  const count = Math.max(1, Math.ceil(plain.length / CHUNK));
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const chunk = plain.subarray(i * CHUNK, (i + 1) * CHUNK);
    const last = i === count - 1;
    const label = Buffer.alloc(18);
    label.write('chunk', 0, 'latin1');
    label.writeUInt32BE(CHUNK, 5);
    label.writeBigUInt64BE(BigInt(i), 9);
    label[17] = last ? 1 : 0;
    const mac = key.plaintextMac().update(label).update(chunk).digest();
    const nonce = createHmac('sha256', nonceKey).update(mac).digest().subarray(0, 12);
    const prefix = Buffer.concat([Buffer.from('OFSE', 'latin1'), Buffer.from([1, 0, 0, 0]), Buffer.alloc(4), check, nonce]);
    prefix.writeUInt32BE(CHUNK, 8);
    const tail = Buffer.alloc(4 + id.length + 9);
    tail.writeUInt32BE(id.length, 0);
    id.copy(tail, 4);
    tail.writeBigUInt64BE(BigInt(i), 4 + id.length);
    tail[tail.length - 1] = last ? 1 : 0;
    const cipher = createCipheriv('aes-256-gcm', aesKey, nonce);
    cipher.setAAD(Buffer.concat([prefix, tail]));
    out.push(prefix, cipher.update(chunk), cipher.final(), cipher.getAuthTag());
  }
  return Buffer.concat(out);
}

/** The format version of every chunk of a stored file. */
function versionsOf(stored: Buffer): Set<number> {
  const versions = new Set<number>();
  for (let at = 0; at < stored.length; at += CHUNK + OVERHEAD_BYTES) versions.add(stored[at + 4] as number);
  return versions;
}

it('a copy started in encryption format version 1 and finished by this offsite holds only version 2 files, and a copy reusing them opens', async () => {
  const dir = tempDir('enc-format');
  const source = join(dir, 'backups');
  const vault = join(dir, 'vault');
  // Two nightly backups with the same files (same seed): the second copy reuses the first's.
  await generateBackup({ root: source, name: OLD, totalBytes: 1024 * 1024, seed: 5 });
  await generateBackup({ root: source, name: NEW, totalBytes: 1024 * 1024, seed: 5 });
  const keyHex = randomBytes(32).toString('hex');
  const key = new DestinationKey('vault', Buffer.from(keyHex, 'hex'));
  const config = join(dir, 'offsite.yaml');
  writeFileSync(config, [
    `source: { type: local, root: ${JSON.stringify(source)} }`,
    'destinations:',
    `  vault: { type: local, root: ${JSON.stringify(vault)}, encryption: { key: "\${OFFSITE_KEY}" } }`,
    'options: { quietPeriod: 0s, chunkSize: 64KiB }',
    '',
  ].join('\n'));
  const cli = (args: string[]) => runCli(['--config', config, ...args], { env: { OFFSITE_KEY: keyHex } });

  // A whole copy of OLD, then turned into what an earlier offsite leaves when it is stopped: every
  // file sealed in version 1; the checkpoint (scheme v1) records half of them, the others were
  // committed but not recorded yet; no manifest.
  const first = await cli(['replicate', OLD, '--to', 'vault']);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  const manifest = JSON.parse(readFileSync(join(vault, OLD, '.offsite', 'manifest.json'), 'utf8')) as Manifest;
  assert.equal(manifest.encryption?.scheme, ENCRYPTION_SCHEME);
  const hasher = await getHasher();
  const records: ManifestFile[] = [];
  for (const [i, file] of manifest.files.entries()) {
    const plain = readFileSync(join(source, OLD, file.path));
    const sealed = sealVersion1(key, `${OLD}/${file.path}`, plain);
    assert.deepEqual(openBuffer(key, `${OLD}/${file.path}`, sealed), plain, 'the version 1 file opens (this offsite reads version 1)');
    writeFileSync(join(vault, OLD, file.path), sealed);
    const chunks: string[] = [];
    for (let at = 0; at < sealed.length; at += CHUNK + OVERHEAD_BYTES) chunks.push(hasher.hash(sealed.subarray(at, at + CHUNK + OVERHEAD_BYTES)));
    const { destinationFingerprint: _fingerprint, ...rest } = file;
    if (i % 2 === 0) records.push({ ...rest, hash: hasher.hash(sealed), chunks, storedSize: sealed.length });
  }
  const { digest: _digest, signature: _signature, ...body } = manifest;
  const progress = {
    ...body, kind: 'progress' as const, encryption: { ...manifest.encryption, scheme: V1_SCHEME } as Manifest['encryption'], files: records,
    fileCount: records.length, totalBytes: records.reduce((n, f) => n + f.size, 0),
  };
  writeFileSync(join(vault, OLD, '.offsite', 'progress.json'), JSON.stringify({ ...progress, digest: await manifestDigest(progress) }));
  rmSync(join(vault, OLD, '.offsite', 'manifest.json'));
  assert.ok(records.length > 0 && records.length < manifest.files.length);

  // This offsite finishes the copy: the version 1 files are sealed again, recorded or not.
  const finish = await cli(['--json', 'replicate', OLD, '--to', 'vault']);
  assert.equal(finish.code, 0, finish.stdout + finish.stderr);
  const finished = JSON.parse(readFileSync(join(vault, OLD, '.offsite', 'manifest.json'), 'utf8')) as Manifest;
  assert.equal(finished.encryption?.scheme, ENCRYPTION_SCHEME);
  for (const file of finished.files) {
    assert.deepEqual([...versionsOf(readFileSync(join(vault, OLD, file.path)))], [2], `${OLD}/${file.path} is sealed in version 2 under a version 2 manifest`);
  }

  // The next copy reuses those files server-side; each must open under its new name.
  const next = await cli(['--json', 'replicate', NEW, '--to', 'vault']);
  assert.equal(next.code, 0, next.stdout + next.stderr);
  const reused = jsonOf<{ destinations: { filesReused: number }[] }>(next).destinations[0]?.filesReused ?? 0;
  assert.ok(reused > 0, `the second copy reuses files of the first: ${next.stdout}`);
  const newFiles = filesUnder(join(vault, NEW)).filter((k) => !k.startsWith('.offsite/'));
  assert.ok(newFiles.length > 0);
  for (const path of newFiles) {
    assert.deepEqual(openBuffer(key, `${NEW}/${path}`, readFileSync(join(vault, NEW, path))), readFileSync(join(source, NEW, path)), `${NEW}/${path} opens`);
  }
  const verify = await cli(['verify', NEW, '--at', 'vault', '--deep']);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  const target = join(dir, 'restore');
  const pull = await cli(['pull', NEW, '--from', 'vault', '--to', target]);
  assert.equal(pull.code, 0, pull.stdout + pull.stderr);
  assert.deepEqual(treeDigest(join(target, NEW), ['.offsite']), treeDigest(join(source, NEW)));
});
