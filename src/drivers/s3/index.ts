/**
 * The `s3` flavour of the object-store driver (../object-store/): AWS S3 or any S3-compatible
 * service, on the AWS SDK v3. This folder holds only what is particular to it: the client
 * adapter (./client.ts, ./errors.ts) and the options (./options.ts).
 */
import { ObjectDriver } from '../object-store/driver.js';
import type { DriverFactory } from '../types.js';
import { AwsStore } from './client.js';
import { parseS3Options, s3Place, type S3Options } from './options.js';

export { ObjectDriver, HASH_METADATA, tempKeyOf } from '../object-store/driver.js';
export { describeS3, parseS3Options, type S3Options } from './options.js';
export { AwsStore } from './client.js';

/** Builds an `s3` driver from its options. No IO. */
export function createS3DriverFromOptions(name: string, options: S3Options): ObjectDriver {
  return new ObjectDriver(name, new AwsStore(options), {
    prefix: options.prefix,
    ...s3Place(options),
    maxConcurrency: options.maxConcurrency,
    maxParts: options.maxParts,
    listPageSize: options.listPageSize,
    ...(options.objectLock !== undefined ? { objectLock: options.objectLock } : {}),
  });
}

/** Validates the section and builds the driver. No IO: a missing bucket shows at the first request. */
export const createS3Driver: DriverFactory = async (name, section) => createS3DriverFromOptions(name, parseS3Options(name, section));
