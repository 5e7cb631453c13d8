/**
 * Configuration of the `s3` and `minio` drivers, no server needed: defaults per vendor, refused
 * sections, and milvus-backup's backup.yaml (v1 `minio.*` and v2 `backup.storage.*` keys).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createDriver } from '../../src/drivers/index.js';
import { parseMinioOptions, readMilvusBackupYaml, resolveMilvusBackupStorage } from '../../src/drivers/minio/index.js';
import { parseS3Options } from '../../src/drivers/s3/index.js';
import { ConfigError } from '../../src/errors.js';

const V1 = `
log:
  level: info
milvus:
  address: localhost
  port: 19530
minio:
  storageType: "minio"
  address: milvus-minio.lan
  port: 9000
  accessKeyID: minioadmin
  secretAccessKey: minioadmin
  useSSL: false
  bucketName: "a-bucket"
  rootPath: "files"
  backupStorageType: "minio"
  backupAddress: backup-minio.lan
  backupPort: 9010
  backupAccessKeyID: backupkey
  backupSecretAccessKey: backupsecret
  backupBucketName: "milvus-backups"
  backupRootPath: "nightly"
  crossStorage: "false"
backup:
  parallelism:
    copydata: 128
`;

const V1_MINIMAL = `
minio:
  address: 10.0.0.5
  port: 9000
  accessKeyID: ak
  secretAccessKey: sk
  bucketName: "milvus-bucket"
  rootPath: "files"
`;

const V2 = `
configVersion: v2
milvus:
  grpc:
    address: localhost
    port: 19530
  storage:
    provider: minio
    address: milvus-minio.lan
    port: 9000
    useSSL: true
    bucketName: milvus-data
    rootPath: files
    auth:
      type: static
      accessKeyID: milvuskey
      secretAccessKey: milvussecret
backup:
  storage:
    bucketName: backups-v2
  concurrency:
    collections: 4
`;

const scratch: string[] = [];
async function file(name: string, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'offsite-s3-config-'));
  scratch.push(dir);
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

function refuses(action: () => unknown, message: RegExp): void {
  assert.throws(action, (err: unknown) => err instanceof ConfigError && message.test(err.message) && !err.message.includes('\n'), String(message));
}

describe('s3 options', () => {
  it('defaults for a non-AWS endpoint: WHEN_REQUIRED checksums, path style, us-east-1, no prefix', () => {
    const o = parseS3Options('cloud', { type: 's3', endpoint: 'http://127.0.0.1:7480/', bucket: 'bkt' });
    assert.equal(o.endpoint, 'http://127.0.0.1:7480');
    assert.equal(o.region, 'us-east-1');
    assert.equal(o.requestChecksumCalculation, 'WHEN_REQUIRED');
    assert.equal(o.responseChecksumValidation, 'WHEN_REQUIRED');
    assert.equal(o.forcePathStyle, true);
    assert.equal(o.prefix, '');
    assert.equal(o.credentials, undefined, 'no keys: the SDK default chain');
    assert.equal(o.maxParts, 10_000);
  });

  it('defaults for AWS: WHEN_SUPPORTED checksums, virtual-host style; overridable', () => {
    const aws = parseS3Options('cloud', { type: 's3', endpoint: 'https://s3.eu-central-1.amazonaws.com', region: 'eu-central-1', bucket: 'bkt', prefix: 'prod/' });
    assert.equal(aws.requestChecksumCalculation, 'WHEN_SUPPORTED');
    assert.equal(aws.responseChecksumValidation, 'WHEN_SUPPORTED');
    assert.equal(aws.forcePathStyle, false);
    assert.equal(aws.prefix, 'prod/');
    const noEndpoint = parseS3Options('cloud', { type: 's3', bucket: 'bkt' });
    assert.equal(noEndpoint.requestChecksumCalculation, 'WHEN_SUPPORTED');
    const overridden = parseS3Options('cloud', { type: 's3', bucket: 'bkt', endpoint: 'https://minio.lan', requestChecksumCalculation: 'WHEN_SUPPORTED', forcePathStyle: false });
    assert.equal(overridden.requestChecksumCalculation, 'WHEN_SUPPORTED');
    assert.equal(overridden.responseChecksumValidation, 'WHEN_REQUIRED');
    assert.equal(overridden.forcePathStyle, false);
    assert.equal(parseS3Options('c', { type: 's3', bucket: 'bkt', endpoint: 'https://x.r2.cloudflarestorage.com' }).region, 'auto');
    assert.equal(parseS3Options('c', { type: 's3', bucket: 'bkt', endpoint: 'https://s3.fr-par.scw.cloud' }).maxParts, 1000);
  });

  it('normalizes the prefix and takes static credentials, storage class, encryption, timeouts', () => {
    const o = parseS3Options('cloud', {
      type: 's3', bucket: 'bkt', prefix: '/a/b/', accessKeyId: 'AK', secretAccessKey: 'SK', sessionToken: 'T', storageClass: 'STANDARD_IA',
      sse: 'aws:kms', sseKmsKeyId: 'key-1', connectTimeoutMs: 1000, requestTimeoutMs: 2000, maxConcurrency: 4,
    });
    assert.equal(o.prefix, 'a/b/');
    assert.deepEqual(o.credentials, { accessKeyId: 'AK', secretAccessKey: 'SK', sessionToken: 'T' });
    assert.equal(o.storageClass, 'STANDARD_IA');
    assert.equal(o.sse, 'aws:kms');
    assert.equal(o.sseKmsKeyId, 'key-1');
    assert.equal(o.connectTimeoutMs, 1000);
    assert.equal(o.requestTimeoutMs, 2000);
    assert.equal(o.maxConcurrency, 4);
  });

  it('refuses bad sections with one-line messages that never show the secret', () => {
    refuses(() => parseS3Options('cloud', { type: 's3' }), /^cloud: "bucket" must be the bucket name, got nothing$/);
    refuses(() => parseS3Options('cloud', { type: 's3', bucket: 'bkt', bukket: 'x' }), /^cloud: unknown key "bukket" for type s3/);
    refuses(() => parseS3Options('cloud', { type: 's3', bucket: 'bkt', endpoint: 'ftp://x' }), /"endpoint" must be an http/);
    refuses(() => parseS3Options('cloud', { type: 's3', bucket: 'bkt', endpoint: 'https://u:p@x' }), /must not carry credentials/);
    refuses(() => parseS3Options('cloud', { type: 's3', bucket: 'bkt', accessKeyId: 'AK' }), /give both "accessKeyId" and "secretAccessKey"/);
    refuses(() => parseS3Options('cloud', { type: 's3', bucket: 'bkt', accessKeyId: 'AK', secretAccessKey: '' }), /"secretAccessKey" must be a non-empty string/);
    refuses(() => parseS3Options('cloud', { type: 's3', bucket: 'bkt', sse: 'rot13' }), /"sse" must be one of AES256, aws:kms/);
    refuses(() => parseS3Options('cloud', { type: 's3', bucket: 'bkt', sseKmsKeyId: 'k' }), /needs "sse: aws:kms"/);
    refuses(() => parseS3Options('cloud', { type: 's3', bucket: 'bkt', prefix: 'a/../b' }), /"prefix" must be a folder path/);
    refuses(() => parseS3Options('cloud', { type: 's3', bucket: 'bkt', requestTimeoutMs: 0 }), /"requestTimeoutMs" must be an integer/);
    try {
      parseS3Options('cloud', { type: 's3', bucket: 'bkt', accessKeyId: 42, secretAccessKey: 'TOPSECRET' });
      assert.fail('should refuse');
    } catch (err) {
      assert.ok(!(err as Error).message.includes('TOPSECRET'));
    }
  });

  it('the registry builds both drivers; descriptions carry no credentials', async () => {
    const s3 = await createDriver('cloud', { type: 's3', endpoint: 'http://127.0.0.1:1', bucket: 'bkt', prefix: 'p', accessKeyId: 'AK', secretAccessKey: 'SECRETVALUE' });
    assert.equal(s3.description, 's3://bkt/p/ @ http://127.0.0.1:1');
    await s3.close();
    const minio = await createDriver('source', { type: 'minio', address: 'minio.lan', port: 9000, bucketName: 'a-bucket', accessKeyID: 'AK', secretAccessKey: 'SECRETVALUE' });
    assert.equal(minio.description, 'minio://a-bucket/backup/ @ http://minio.lan:9000');
    await minio.close();
  });
});

describe('minio options (milvus-backup keys)', () => {
  after(async () => {
    for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  it('direct keys: bucketName/rootPath, or the backup side when backupBucketName/backupRootPath are given', () => {
    const plain = resolveMilvusBackupStorage({ type: 'minio', address: 'localhost', port: 9000, accessKeyID: 'a', secretAccessKey: 's', bucketName: 'a-bucket', rootPath: 'backup' });
    assert.deepEqual(plain, { address: 'localhost', port: 9000, useSSL: false, accessKeyID: 'a', secretAccessKey: 's', bucketName: 'a-bucket', rootPath: 'backup/' });
    const backupSide = resolveMilvusBackupStorage({ type: 'minio', address: 'm', bucketName: 'milvus', rootPath: 'files', backupBucketName: 'bk', backupRootPath: 'nightly/' });
    assert.equal(backupSide.bucketName, 'bk');
    assert.equal(backupSide.rootPath, 'nightly/');
    const onlyBucket = resolveMilvusBackupStorage({ type: 'minio', address: 'm', bucketName: 'milvus', rootPath: 'files', backupBucketName: 'bk' });
    assert.equal(onlyBucket.rootPath, 'backup/', 'rootPath is Milvus\'s data root once backup* keys are used');
    assert.equal(resolveMilvusBackupStorage({ type: 'minio', bucketName: 'bkt' }).rootPath, 'backup/', 'default root');
    assert.equal(resolveMilvusBackupStorage({ type: 'minio', bucketName: 'bkt', rootPath: '' }).rootPath, '', 'explicit top level');
    const ssl = resolveMilvusBackupStorage({ type: 'minio', address: 'https://s3.example.com', bucketName: 'bkt' });
    assert.deepEqual([ssl.address, ssl.port, ssl.useSSL], ['s3.example.com', 9000, true]);
    const withPort = resolveMilvusBackupStorage({ type: 'minio', address: 'minio.lan:9100', bucketName: 'bkt', backupAddress: 'backup.lan', backupPort: '9200' });
    assert.deepEqual([withPort.address, withPort.port], ['backup.lan', 9200]);
  });

  it('milvus-backup v1 backup.yaml: the backup* keys win, with fallback to the Milvus side', async () => {
    const full = readMilvusBackupYaml(V1, 'v1');
    assert.equal(full.address, 'backup-minio.lan');
    assert.equal(full.port, 9010);
    assert.equal(full.accessKeyID, 'backupkey');
    assert.equal(full.bucketName, 'milvus-backups');
    assert.equal(full.rootPath, 'nightly');
    const resolved = resolveMilvusBackupStorage({ type: 'minio', milvusBackupConfig: await file('backup.yaml', V1) });
    assert.deepEqual(resolved, {
      address: 'backup-minio.lan', port: 9010, useSSL: false, accessKeyID: 'backupkey', secretAccessKey: 'backupsecret', bucketName: 'milvus-backups', rootPath: 'nightly/',
    });
    const minimal = resolveMilvusBackupStorage({ type: 'minio', milvusBackupConfig: await file('backup.yaml', V1_MINIMAL) });
    assert.deepEqual(minimal, { address: '10.0.0.5', port: 9000, useSSL: false, accessKeyID: 'ak', secretAccessKey: 'sk', bucketName: 'milvus-bucket', rootPath: 'backup/' },
      'no backup* keys: Milvus\'s bucket, milvus-backup\'s default root "backup"');
  });

  it('milvus-backup v2 backup.yaml: backup.storage inherits milvus.storage (not rootPath); env credentials', async () => {
    const path = await file('backup.yaml', V2);
    const resolved = resolveMilvusBackupStorage({ type: 'minio', milvusBackupConfig: path }, 'source', {});
    assert.deepEqual(resolved, {
      address: 'milvus-minio.lan', port: 9000, useSSL: true, accessKeyID: 'milvuskey', secretAccessKey: 'milvussecret', bucketName: 'backups-v2', rootPath: 'backup/',
    });
    const fromEnv = resolveMilvusBackupStorage({ type: 'minio', milvusBackupConfig: path }, 'source', {
      BACKUP_STORAGE_AUTH_ACCESS_KEY_ID: 'envkey', BACKUP_STORAGE_AUTH_SECRET_ACCESS_KEY: 'envsecret',
    });
    assert.equal(fromEnv.accessKeyID, 'envkey');
    assert.equal(fromEnv.secretAccessKey, 'envsecret');
  });

  it('keys in our section override backup.yaml', async () => {
    const path = await file('backup.yaml', V1);
    const resolved = resolveMilvusBackupStorage({ type: 'minio', milvusBackupConfig: path, address: '127.0.0.1', port: 7480, backupRootPath: 'other', secretAccessKey: 'mine' });
    assert.equal(resolved.address, '127.0.0.1', 'plain address overrides the file\'s backupAddress');
    assert.equal(resolved.port, 7480);
    assert.equal(resolved.rootPath, 'other/');
    assert.equal(resolved.bucketName, 'milvus-backups');
    assert.equal(resolved.secretAccessKey, 'mine');
    assert.equal(resolved.accessKeyID, 'backupkey');
  });

  it('refuses what the minio driver cannot read, in one line', async () => {
    refuses(() => resolveMilvusBackupStorage({ type: 'minio', milvusBackupConfig: '/nonexistent/backup.yaml' }), /^source: cannot read milvusBackupConfig \/nonexistent\/backup\.yaml: ENOENT$/);
    const bad = await file('bad.yaml', 'minio: [unclosed');
    refuses(() => resolveMilvusBackupStorage({ type: 'minio', milvusBackupConfig: bad }), /not valid YAML/);
    refuses(() => resolveMilvusBackupStorage({ type: 'minio', bucketName: 'bkt', storageType: 'local' }), /use "type: local"/);
    refuses(() => resolveMilvusBackupStorage({ type: 'minio', bucketName: 'bkt', storageType: 'azure' }), /not S3-compatible/);
    refuses(() => resolveMilvusBackupStorage({ type: 'minio', bucketName: 'bkt', useIAM: true }), /useIAM is not supported/);
    refuses(() => resolveMilvusBackupStorage({ type: 'minio', address: 'x' }), /"bucketName" \(or "backupBucketName"\) is required/);
    refuses(() => resolveMilvusBackupStorage({ type: 'minio', bucketName: 'bkt', accessKeyID: 'a' }), /give both "accessKeyID" and "secretAccessKey"/);
    refuses(() => parseMinioOptions('source', { type: 'minio', bucketName: 'bkt', endpoint: 'x' }), /^source: unknown key "endpoint" for type minio/);
    refuses(() => resolveMilvusBackupStorage({ type: 'minio', bucketName: 'bkt', port: 70000 }), /"port" must be an integer from 1 to 65535/);
  });
});
