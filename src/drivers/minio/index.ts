/**
 * The `minio` flavour of the object-store driver (../object-store/): the bucket milvus-backup
 * writes its backups to, configured with milvus-backup's own keys (./options.ts), on the `minio`
 * client (./client.ts, ./errors.ts). Everything else is the shared driver.
 */
import { ObjectDriver } from '../object-store/driver.js';
import type { DriverFactory } from '../types.js';
import { MinioStore } from './client.js';
import { objectStoreLocation } from '../location.js';
import { parseMinioOptions, type MinioOptions } from './options.js';

export { parseMinioOptions, resolveMilvusBackupStorage, readMilvusBackupYaml, type MilvusBackupStorage, type MinioOptions } from './options.js';
export { MinioStore } from './client.js';
export { describeMinioError } from './errors.js';

/** `minio://bucket/root/ @ http://host:port`: where the driver points, without credentials. */
export function describeMinio(options: Pick<MinioOptions, 'bucketName' | 'rootPath' | 'address' | 'port' | 'useSSL'>): string {
  const host = options.address.includes(':') ? `[${options.address}]` : options.address;
  return `minio://${options.bucketName}/${options.rootPath} @ ${options.useSSL ? 'https' : 'http'}://${host}:${options.port}`;
}

/** The service URL the `minio` client talks to, as an `s3` driver's `endpoint` would say it. */
function minioEndpoint(options: Pick<MinioOptions, 'address' | 'port' | 'useSSL'>): string {
  const host = options.address.includes(':') ? `[${options.address}]` : options.address;
  return `${options.useSSL ? 'https' : 'http'}://${host}:${options.port}`;
}

/** Builds a `minio` driver from resolved options. No IO. */
export function createMinioDriverFromOptions(name: string, options: MinioOptions): ObjectDriver {
  return new ObjectDriver(name, new MinioStore(options), {
    prefix: options.rootPath,
    description: describeMinio(options),
    location: objectStoreLocation({ endpoint: minioEndpoint(options), bucket: options.bucketName, prefix: options.rootPath }),
    maxConcurrency: options.maxConcurrency,
    maxParts: 10_000,
    listPageSize: options.listPageSize,
  });
}

/** Validates the section (reading the backup.yaml it names) and builds the driver. No network IO. */
export const createMinioDriver: DriverFactory = async (name, section) => createMinioDriverFromOptions(name, parseMinioOptions(name, section));
