/**
 * Driver registry: config `type` -> factory and config schema. Factories are imported lazily so
 * that a run that only uses local folders never loads the SSH or AWS SDKs; the schemas (plain
 * data in each driver's options.ts) are imported eagerly: the config loader checks every section
 * against them (src/config/schema.ts).
 */
import type { Schema } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import { LOCAL_SCHEMA } from './local/options.js';
import { MINIO_SCHEMA } from './minio/options.js';
import { S3_SCHEMA } from './s3/options.js';
import { SFTP_SCHEMA } from './sftp/options.js';
import type { Driver, DriverFactory } from './types.js';

const factories: Record<string, () => Promise<DriverFactory>> = {
  local: async () => (await import('./local/index.js')).createLocalDriver,
  s3: async () => (await import('./s3/index.js')).createS3Driver,
  minio: async () => (await import('./minio/index.js')).createMinioDriver,
  sftp: async () => (await import('./sftp/index.js')).createSftpDriver,
};

const schemas: Record<string, Schema> = { local: LOCAL_SCHEMA, s3: S3_SCHEMA, minio: MINIO_SCHEMA, sftp: SFTP_SCHEMA };

/** The config keys a driver type declares; `undefined` for an unknown type. */
export function driverSchema(type: string): Schema | undefined {
  return Object.hasOwn(schemas, type) ? schemas[type] : undefined;
}

/** The driver types this build knows. */
export function driverTypes(): string[] {
  return Object.keys(factories).sort();
}

/** Builds the driver for one config section (`{ type: ..., ...options }`). */
export async function createDriver(name: string, section: Readonly<Record<string, unknown>>): Promise<Driver> {
  const type = section['type'];
  if (typeof type !== 'string' || type === '') {
    throw new ConfigError(`${name}: missing "type" (one of: ${driverTypes().join(', ')})`);
  }
  const load = Object.hasOwn(factories, type) ? factories[type] : undefined;
  if (!load) throw new ConfigError(`${name}: unknown type "${type}" (one of: ${driverTypes().join(', ')})`);
  return (await load())(name, section);
}
