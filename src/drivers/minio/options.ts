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
import { createRequire } from 'node:module';
import type * as YamlModule from 'yaml';
import {
  boolean, contextFor, custom, integer, normalizeSection, path, readSection, refuse, secret, sectionError, sectionPrefix, shown, string,
  type KeySpec, type SectionContext,
} from '../../config/schema.js';
import { ConfigError } from '../../errors.js';
import { objectStoreLocation, type ConfiguredPlace } from '../location.js';
import { checkBucketName, normalizePrefix, TUNING_SCHEMA, tuningOf, type ObjectStoreTuning } from '../object-store/options.js';

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

/** milvus-backup's storage keys, each also with the `backup` prefix (`backupAddress`...). */
const FIELD_SCHEMA = {
  address: string({ expected: 'a host name like minio.lan or 127.0.0.1 (with :port or http(s):// if you like)' }),
  port: integer({ min: 1, max: 65535 }),
  accessKeyID: string(),
  secretAccessKey: secret(),
  token: secret(),
  useSSL: boolean(),
  region: string(),
  bucketName: string({ expected: 'the bucket name' }),
  /** `''` and `/` mean the bucket's top level, so an empty string is allowed here. */
  rootPath: custom({ expected: 'a folder path inside the bucket' }, (value): string => (typeof value === 'string' ? value : refuse())),
} satisfies Record<Field, KeySpec<unknown, false>>;

/** The config keys of `type: minio` (read by src/config/schema.ts). */
export const MINIO_SCHEMA = {
  milvusBackupConfig: path({ expected: 'the path of milvus-backup\'s backup.yaml' }),
  ...FIELD_SCHEMA,
  ...(Object.fromEntries(FIELDS.map((f) => [backupName(f), FIELD_SCHEMA[f]])) as { [F in Field as `backup${Capitalize<F>}`]: (typeof FIELD_SCHEMA)[F] }),
  storageType: string(),
  backupStorageType: string(),
  cloudProvider: string(),
  useIAM: boolean(),
  backupUseIAM: boolean(),
  ...TUNING_SCHEMA,
};

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
    // Loaded only here: every command reads this schema at start-up, few configs name a backup.yaml.
    doc = (createRequire(import.meta.url)('yaml') as typeof YamlModule).parse(text);
  } catch (err) {
    throw new ConfigError(`${source}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const root = record(doc);
  const v2 = root['configVersion'] === 'v2' || (root['minio'] === undefined && (record(root['backup'])['storage'] !== undefined || record(root['milvus'])['storage'] !== undefined));
  return v2 ? flattenV2(root, env) : flattenV1(root);
}

function splitAddress(context: SectionContext, raw: string): { host: string; port?: number; useSSL?: boolean } {
  const withScheme = /^[a-z]+:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw sectionError(context, `"address" must be a host name like minio.lan or 127.0.0.1, got ${JSON.stringify(raw)}`);
  }
  if (url.username !== '' || url.password !== '') throw sectionError(context, '"address" must not carry credentials');
  if (url.pathname.replace(/\/+$/, '') !== '') {
    throw sectionError(context, `"address" must not contain a path, got ${JSON.stringify(raw)}: give the bucket in "bucketName" and a folder inside it in "rootPath"`);
  }
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
export function resolveMilvusBackupStorage(
  raw: Readonly<Record<string, unknown>>,
  name = 'source',
  env: NodeJS.ProcessEnv = process.env,
  contextOverrides?: Partial<SectionContext>,
): MilvusBackupStorage {
  const context = contextFor(name, 'minio', contextOverrides);
  const section = normalizeSection(MINIO_SCHEMA, raw, context);
  let fromFile: Flat = {};
  const file = section['milvusBackupConfig'] as string | undefined;
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw sectionError(context, `cannot read milvusBackupConfig ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    fromFile = readMilvusBackupYaml(text, `${sectionPrefix(context)}milvusBackupConfig ${file}`, env);
  }
  const backupSide = section['backupBucketName'] !== undefined || section['backupRootPath'] !== undefined;
  const own = (field: Field): unknown => defined(section[backupName(field)], field === 'rootPath' && backupSide ? undefined : section[field]);
  const value = (field: Field): unknown => defined(own(field), fromFile[field]);
  // An explicit empty rootPath means the bucket's top level, so it is not "unset" here.
  const ownRoot = backupSide ? section['backupRootPath'] : section['rootPath'];

  const storageType = defined(section['backupStorageType'], section['storageType'], section['cloudProvider'], fromFile.storageType);
  if (typeof storageType === 'string' && storageType !== '' && !S3_PROVIDERS.has(storageType.toLowerCase())) {
    if (storageType === 'local') throw sectionError(context, 'milvus-backup keeps these backups on a local disk (storage type "local"): use "type: local" with "root" set to its rootPath');
    throw sectionError(context, `storage type "${storageType}" is not S3-compatible; the minio driver reads MinIO/S3 buckets`);
  }
  if (readBooleanLoosely(defined(section['backupUseIAM'], section['useIAM'], fromFile.useIAM)) === true) {
    throw sectionError(context, 'useIAM is not supported by the minio driver; use "type: s3" (it follows the AWS credential chain) or give accessKeyID/secretAccessKey');
  }

  // The merged values (ours over the file's) are read with the same key rules.
  const flat = readSection(FIELD_SCHEMA, Object.fromEntries(FIELDS.map((f) => [f, value(f)])), context);
  const address = splitAddress(context, flat.address ?? 'localhost');
  const port = flat.port ?? address.port ?? 9000;
  const useSSL = flat.useSSL ?? address.useSSL ?? false;
  if ((flat.accessKeyID === undefined) !== (flat.secretAccessKey === undefined)) {
    throw sectionError(context, 'give both "accessKeyID" and "secretAccessKey" (or neither, for anonymous access)');
  }
  if (flat.bucketName === undefined) throw sectionError(context, '"bucketName" (or "backupBucketName") is required: the bucket milvus-backup writes backups to');
  return {
    address: address.host,
    port,
    useSSL,
    ...(flat.accessKeyID !== undefined ? { accessKeyID: flat.accessKeyID } : {}),
    ...(flat.secretAccessKey !== undefined ? { secretAccessKey: flat.secretAccessKey } : {}),
    ...(flat.token !== undefined ? { sessionToken: flat.token } : {}),
    ...(flat.region !== undefined ? { region: flat.region } : {}),
    bucketName: checkBucketName(context, 'bucketName', flat.bucketName),
    rootPath: rootPathOf(context, typeof ownRoot === 'string' ? ownRoot : fromFile.rootPath),
  };
}

/** milvus-backup's files write booleans as YAML booleans or as strings. */
function readBooleanLoosely(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string' && /^\s*(true|false)\s*$/i.test(value)) return value.trim().toLowerCase() === 'true';
  return undefined;
}

/** `''` and `/` mean the bucket's top level; anything else is a folder path. @default 'backup' */
function rootPathOf(context: SectionContext, raw: unknown): string {
  if (raw === undefined) return 'backup/';
  if (typeof raw !== 'string') throw sectionError(context, `"rootPath" must be a folder path inside the bucket, got ${shown(raw)}`);
  return normalizePrefix(context, 'rootPath', raw);
}

/** Validates a `type: minio` section. Reads the backup.yaml it points to, nothing else. */
export function parseMinioOptions(name: string, section: Readonly<Record<string, unknown>>, env: NodeJS.ProcessEnv = process.env, contextOverrides?: Partial<SectionContext>): MinioOptions {
  const context = contextFor(name, 'minio', contextOverrides);
  const tuning = tuningOf(readSection(MINIO_SCHEMA, section, context));
  return { ...resolveMilvusBackupStorage(section, name, env, contextOverrides), ...tuning };
}

/** `minio://bucket/root/ @ http://host:port`: where the driver points, without credentials. */
export function describeMinio(options: Pick<MinioOptions, 'bucketName' | 'rootPath' | 'address' | 'port' | 'useSSL'>): string {
  return `minio://${options.bucketName}/${options.rootPath} @ ${minioEndpoint(options)}`;
}

/** Its description and location (../location.ts `ConfiguredPlace`). */
export function minioPlace(options: Pick<MinioOptions, 'bucketName' | 'rootPath' | 'address' | 'port' | 'useSSL'>): ConfiguredPlace {
  return { description: describeMinio(options), location: objectStoreLocation({ endpoint: minioEndpoint(options), bucket: options.bucketName, prefix: options.rootPath }) };
}

/** The service URL the `minio` client talks to, as an `s3` driver's `endpoint` would say it. */
function minioEndpoint(options: Pick<MinioOptions, 'address' | 'port' | 'useSSL'>): string {
  const host = options.address.includes(':') ? `[${options.address}]` : options.address;
  return `${options.useSSL ? 'https' : 'http'}://${host}:${options.port}`;
}
