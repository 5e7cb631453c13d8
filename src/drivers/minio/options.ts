/**
 * Options of the `minio` driver: the MinIO (or any S3) bucket that milvus-backup writes its
 * backups to, configured with the keys of milvus-backup's own `minio:` section:
 *
 *     source:
 *       type: minio
 *       milvusBackupConfig: /etc/milvus-backup/backup.yaml   # optional: start from its settings
 *       address: localhost
 *       port: 9000
 *       accessKeyID: ${MINIO_ACCESS_KEY}
 *       secretAccessKey: ${MINIO_SECRET_KEY}
 *       useSSL: false
 *       bucketName: a-bucket
 *       rootPath: backup
 *
 * Where the backups are (milvus-backup's rules):
 * - With `backupBucketName` or `backupRootPath` (milvus-backup's backup side), backups live in
 *   `backupBucketName` (else `bucketName`) under `backupRootPath` (default `backup`); `rootPath`
 *   is then Milvus's own data root and is not used. Likewise `backupAddress`, `backupPort`,
 *   `backupAccessKeyID`, `backupSecretAccessKey`, `backupUseSSL`, `backupRegion` win over the
 *   plain keys.
 * - Otherwise backups live in `bucketName` under `rootPath` (default `backup`).
 * - `milvusBackupConfig` reads milvus-backup's backup.yaml: the v1 keys (`minio.backupAddress`,
 *   `minio.backupBucketName`, `minio.backupRootPath`... falling back to `minio.address`,
 *   `minio.port`...) or the v2 keys (`configVersion: v2`: `backup.storage.*`, inheriting unset
 *   keys from `milvus.storage.*` except `rootPath`, which defaults to `backup`; credentials in
 *   `auth.accessKeyID`/`auth.secretAccessKey`/`auth.sessionToken`, or milvus-backup's
 *   environment variables `BACKUP_STORAGE_AUTH_*` / `MILVUS_STORAGE_AUTH_*`). Keys given directly
 *   in our section override the file.
 *
 * Also the tuning keys of the s3 driver (`requestTimeoutMs`, `maxConcurrency`...). The minio
 * client cannot bound the connection phase on its own, so for this driver `requestTimeoutMs`
 * bounds every request as a whole, connection included, and `connectTimeoutMs` is accepted but
 * has no separate effect.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { expandPath } from '../../config/paths.js';
import { ConfigError } from '../../errors.js';
import { checkBucketName, normalizePrefix, parseTuning, SectionReader, TUNING_OPTION_KEYS, type ObjectStoreTuning } from '../s3/options.js';

/** Where milvus-backup's backups are, resolved from its configuration keys. */
export interface MilvusBackupStorage {
  /** Host name or IP, without scheme or port. */
  readonly address: string;
  readonly port: number;
  readonly useSSL: boolean;
  readonly accessKeyID?: string;
  readonly secretAccessKey?: string;
  readonly sessionToken?: string;
  readonly region?: string;
  readonly bucketName: string;
  /** `''` or `folder/`: the root of the backups inside the bucket. */
  readonly rootPath: string;
}

export interface MinioOptions extends MilvusBackupStorage, ObjectStoreTuning {}

/** The storage keys of milvus-backup's `minio:` section that we read, without the `backup` prefix. */
const FIELDS = ['address', 'port', 'accessKeyID', 'secretAccessKey', 'token', 'useSSL', 'region', 'bucketName', 'rootPath'] as const;
type Field = (typeof FIELDS)[number];
type Flat = Partial<Record<Field, unknown>> & { storageType?: unknown; useIAM?: unknown };

const backupName = (field: string): string => `backup${field[0]?.toUpperCase()}${field.slice(1)}`;

const MINIO_KEYS = new Set<string>([
  'type', 'milvusBackupConfig', ...FIELDS, ...FIELDS.map(backupName), 'storageType', 'backupStorageType', 'cloudProvider',
  'useIAM', 'backupUseIAM', ...TUNING_OPTION_KEYS,
]);

/** Providers that speak S3 (what milvus-backup calls `storageType` / `provider`). */
const S3_PROVIDERS = new Set(['minio', 's3', 'aws', 'gcp', 'ali', 'aliyun', 'tc', 'tencent', 'hwc']);

function record(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function defined(...values: unknown[]): unknown {
  return values.find((v) => v !== undefined && v !== null && v !== '');
}

/** milvus-backup v1 (`minio.*`): the backup side, each key falling back to the Milvus side. */
function flattenV1(doc: Record<string, unknown>): Flat {
  const minio = record(doc['minio']);
  const flat: Flat = {};
  for (const field of FIELDS) {
    flat[field] = field === 'rootPath' ? defined(minio['backupRootPath'], 'backup')
      : field === 'bucketName' ? defined(minio['backupBucketName'], minio['bucketName'], 'a-bucket')
        : defined(minio[backupName(field)], minio[field]);
  }
  flat.storageType = defined(minio['backupStorageType'], minio['storageType'], minio['cloudProvider']);
  flat.useIAM = defined(minio['backupUseIAM'], minio['useIAM']);
  return flat;
}

/** milvus-backup v2 (`backup.storage.*` inheriting from `milvus.storage.*`). */
function flattenV2(doc: Record<string, unknown>, env: NodeJS.ProcessEnv): Flat {
  const backup = record(record(doc['backup'])['storage']);
  const milvus = record(record(doc['milvus'])['storage']);
  const pick = (key: string): unknown => defined(backup[key], milvus[key]);
  const auth = (key: string, envName: string): unknown =>
    defined(env[`BACKUP_STORAGE_AUTH_${envName}`], record(backup['auth'])[key], env[`MILVUS_STORAGE_AUTH_${envName}`], record(milvus['auth'])[key]);
  const authType = defined(record(backup['auth'])['type'], record(milvus['auth'])['type']);
  return {
    address: pick('address'),
    port: pick('port'),
    useSSL: pick('useSSL'),
    region: pick('region'),
    bucketName: defined(backup['bucketName'], milvus['bucketName'], 'a-bucket'),
    rootPath: defined(backup['rootPath'], 'backup'),
    accessKeyID: auth('accessKeyID', 'ACCESS_KEY_ID'),
    secretAccessKey: auth('secretAccessKey', 'SECRET_ACCESS_KEY'),
    token: auth('sessionToken', 'SESSION_TOKEN'),
    storageType: pick('provider'),
    useIAM: authType === 'iam' ? true : undefined,
  };
}

/** Reads milvus-backup's backup.yaml (v1 or v2) into the flat backup-side keys. */
export function readMilvusBackupYaml(text: string, source: string, env: NodeJS.ProcessEnv = process.env): Flat {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${source}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const root = record(doc);
  const v2 = root['configVersion'] === 'v2' || (root['minio'] === undefined && (record(root['backup'])['storage'] !== undefined || record(root['milvus'])['storage'] !== undefined));
  return v2 ? flattenV2(root, env) : flattenV1(root);
}

function splitAddress(name: string, raw: string): { host: string; port?: number; useSSL?: boolean } {
  const withScheme = /^[a-z]+:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new ConfigError(`${name}: "address" must be a host name like minio.lan or 127.0.0.1, got ${JSON.stringify(raw)}`);
  }
  if (url.username !== '' || url.password !== '') throw new ConfigError(`${name}: "address" must not carry credentials`);
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    ...(url.port !== '' ? { port: Number(url.port) } : {}),
    ...(/^[a-z]+:\/\//i.test(raw) ? { useSSL: url.protocol === 'https:' } : {}),
  };
}

/**
 * Resolves where the backups are from a `type: minio` section (and the backup.yaml it points
 * to). Throws `ConfigError` with a one-line message naming the source and the key. Reads only
 * the backup.yaml file, synchronously.
 */
export function resolveMilvusBackupStorage(section: Readonly<Record<string, unknown>>, name = 'source', env: NodeJS.ProcessEnv = process.env): MilvusBackupStorage {
  const reader = new SectionReader(name, 'minio', section);
  let fromFile: Flat = {};
  const file = reader.string('milvusBackupConfig');
  if (file !== undefined) {
    const path = expandPath(file);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`${name}: cannot read milvusBackupConfig ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    fromFile = readMilvusBackupYaml(text, `${name}: milvusBackupConfig ${path}`, env);
  }
  const backupSide = section['backupBucketName'] !== undefined || section['backupRootPath'] !== undefined;
  const own = (field: Field): unknown => defined(section[backupName(field)], field === 'rootPath' && backupSide ? undefined : section[field]);
  const value = (field: Field): unknown => defined(own(field), fromFile[field]);
  // An explicit empty rootPath means the bucket's top level, so it is not "unset" here.
  const ownRoot = backupSide ? section['backupRootPath'] : section['rootPath'];

  const storageType = defined(section['backupStorageType'], section['storageType'], section['cloudProvider'], fromFile.storageType);
  if (typeof storageType === 'string' && storageType !== '' && !S3_PROVIDERS.has(storageType.toLowerCase())) {
    if (storageType === 'local') throw new ConfigError(`${name}: milvus-backup keeps these backups on a local disk (storage type "local"): use "type: local" with "root" set to its rootPath`);
    throw new ConfigError(`${name}: storage type "${storageType}" is not S3-compatible; the minio driver reads MinIO/S3 buckets`);
  }
  if (defined(section['backupUseIAM'], section['useIAM'], fromFile.useIAM) === true) {
    throw new ConfigError(`${name}: useIAM is not supported by the minio driver; use "type: s3" (it follows the AWS credential chain) or give accessKeyID/secretAccessKey`);
  }

  const flat = new SectionReader(name, 'minio', Object.fromEntries(FIELDS.map((f) => [f, value(f)])));
  const rawAddress = flat.string('address') ?? 'localhost';
  const address = splitAddress(name, rawAddress);
  const port = flat.integer('port', 1, 65535) ?? address.port ?? 9000;
  const useSSL = flat.boolean('useSSL') ?? address.useSSL ?? false;
  const accessKeyID = flat.string('accessKeyID');
  const secretAccessKey = flat.secret('secretAccessKey');
  if ((accessKeyID === undefined) !== (secretAccessKey === undefined)) {
    throw new ConfigError(`${name}: give both "accessKeyID" and "secretAccessKey" (or neither, for anonymous access)`);
  }
  const bucketName = flat.string('bucketName');
  if (bucketName === undefined) throw new ConfigError(`${name}: "bucketName" (or "backupBucketName") is required: the bucket milvus-backup writes backups to`);
  const sessionToken = flat.secret('token');
  const region = flat.string('region');
  return {
    address: address.host,
    port,
    useSSL,
    ...(accessKeyID !== undefined ? { accessKeyID } : {}),
    ...(secretAccessKey !== undefined ? { secretAccessKey } : {}),
    ...(sessionToken !== undefined ? { sessionToken } : {}),
    ...(region !== undefined ? { region } : {}),
    bucketName: checkBucketName(name, 'bucketName', bucketName),
    rootPath: rootPathOf(name, typeof ownRoot === 'string' ? ownRoot : fromFile.rootPath),
  };
}

/** `''` and `/` mean the bucket's top level; anything else is a folder path. @default 'backup' */
function rootPathOf(name: string, raw: unknown): string {
  if (raw === undefined) return 'backup/';
  if (typeof raw !== 'string') throw new ConfigError(`${name}: "rootPath" must be a folder path inside the bucket, got ${typeof raw} ${JSON.stringify(raw)}`);
  return normalizePrefix(name, 'rootPath', raw);
}

/** Validates a `type: minio` section. Reads the backup.yaml it points to, nothing else. */
export function parseMinioOptions(name: string, section: Readonly<Record<string, unknown>>, env: NodeJS.ProcessEnv = process.env): MinioOptions {
  const reader = new SectionReader(name, 'minio', section);
  reader.refuseUnknown(MINIO_KEYS);
  return { ...resolveMilvusBackupStorage(section, name, env), ...parseTuning(reader) };
}
