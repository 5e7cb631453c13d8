/**
 * The `minio` flavour of the object-store driver (../object-store/): the bucket milvus-backup
 * writes its backups to, configured with milvus-backup's own keys (./options.ts), on the `minio`
 * client (./client.ts, ./errors.ts). Everything else is the shared driver.
 */
import { ObjectDriver } from '../object-store/driver.js';
import type { DriverFactory } from '../types.js';
import { MinioStore } from './client.js';
import { minioPlace, parseMinioOptions, type MinioOptions } from './options.js';

export { describeMinio, parseMinioOptions, resolveMilvusBackupStorage, readMilvusBackupYaml, type MilvusBackupStorage, type MinioOptions } from './options.js';
export { MinioStore } from './client.js';
export { describeMinioError } from './errors.js';

/** Builds a `minio` driver from resolved options. No IO. */
export function createMinioDriverFromOptions(name: string, options: MinioOptions): ObjectDriver {
  return new ObjectDriver(name, new MinioStore(options), {
    prefix: options.rootPath,
    ...minioPlace(options),
    maxConcurrency: options.maxConcurrency,
    maxParts: 10_000,
    listPageSize: options.listPageSize,
  });
}

/** Validates the section (reading the backup.yaml it names) and builds the driver. No network IO. */
export const createMinioDriver: DriverFactory = async (name, section) => createMinioDriverFromOptions(name, parseMinioOptions(name, section));
