/**
 * Driver registry: config `type` -> factory. Factories are imported lazily so that a run that
 * only uses local folders never loads the SSH or AWS SDKs.
 */
import { ConfigError } from '../errors.js';
import type { Driver, DriverFactory } from './types.js';

const factories: Record<string, () => Promise<DriverFactory>> = {
  local: async () => (await import('./local/index.js')).createLocalDriver,
  s3: async () => (await import('./s3/index.js')).createS3Driver,
  minio: async () => (await import('./minio/index.js')).createMinioDriver,
  sftp: async () => (await import('./sftp/index.js')).createSftpDriver,
};

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
  const load = factories[type];
  if (!load) throw new ConfigError(`${name}: unknown type "${type}" (one of: ${driverTypes().join(', ')})`);
  return (await load())(name, section);
}
