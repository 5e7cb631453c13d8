/**
 * Driver registry: config `type` -> config schema, configured place and factory, in one table.
 * Factories are imported lazily so that a run that only uses local folders never loads the SSH,
 * MinIO or AWS SDKs (issue 13: the AWS SDK alone took ~180 ms to load; test/e2e/start-up-cli.test.ts
 * fails when a local-only command loads them again). The schemas and the places come from each
 * driver's options.ts (plain data and option parsing, no client library), imported eagerly: the
 * config loader checks every section against the schemas (src/config/schema.ts), and the overlap
 * checks compare every configured destination by its place without building its driver
 * (src/runtime/overlap.ts).
 */
import type { Schema } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import type { ConfiguredPlace } from './location.js';
import { LOCAL_SCHEMA, localPlace, parseLocalOptions } from './local/options.js';
import { MINIO_SCHEMA, minioPlace, parseMinioOptions } from './minio/options.js';
import { parseS3Options, S3_SCHEMA, s3Place } from './s3/options.js';
import { parseSftpOptions, SFTP_SCHEMA, sftpPlace } from './sftp/options.js';
import type { Driver, DriverFactory } from './types.js';

type Section = Readonly<Record<string, unknown>>;

export type { ConfiguredPlace } from './location.js';

interface DriverType {
  readonly schema: Schema;
  /** The section's place, from its options alone (validating them as the factory does; no client library, no network). */
  readonly place: (name: string, section: Section) => ConfiguredPlace;
  /**
   * Whether its drivers have `identify` (an identity that can differ from the location: local and
   * SFTP folders): comparing one by identity needs the driver itself.
   */
  readonly identifies: boolean;
  readonly load: () => Promise<DriverFactory>;
}

const TYPES: Readonly<Record<string, DriverType>> = {
  local: {
    schema: LOCAL_SCHEMA,
    place: (name, section) => localPlace(parseLocalOptions(name, section)),
    identifies: true,
    load: async () => (await import('./local/index.js')).createLocalDriver,
  },
  s3: {
    schema: S3_SCHEMA,
    place: (name, section) => s3Place(parseS3Options(name, section)),
    identifies: false,
    load: async () => (await import('./s3/index.js')).createS3Driver,
  },
  minio: {
    schema: MINIO_SCHEMA,
    place: (name, section) => minioPlace(parseMinioOptions(name, section)),
    identifies: false,
    load: async () => (await import('./minio/index.js')).createMinioDriver,
  },
  sftp: {
    schema: SFTP_SCHEMA,
    place: (name, section) => sftpPlace(parseSftpOptions(name, section)),
    identifies: true,
    load: async () => (await import('./sftp/index.js')).createSftpDriver,
  },
};

/** The config keys a driver type declares; `undefined` for an unknown type. */
export function driverSchema(type: string): Schema | undefined {
  return Object.hasOwn(TYPES, type) ? TYPES[type]?.schema : undefined;
}

/** The driver types this build knows. */
export function driverTypes(): string[] {
  return Object.keys(TYPES).sort();
}

function typeOf(name: string, section: Section): DriverType {
  const type = section['type'];
  if (typeof type !== 'string' || type === '') {
    throw new ConfigError(`${name}: missing "type" (one of: ${driverTypes().join(', ')})`);
  }
  const found = Object.hasOwn(TYPES, type) ? TYPES[type] : undefined;
  if (!found) throw new ConfigError(`${name}: unknown type "${type}" (one of: ${driverTypes().join(', ')})`);
  return found;
}

/** Builds the driver for one config section (`{ type: ..., ...options }`). */
export async function createDriver(name: string, section: Section): Promise<Driver> {
  return (await typeOf(name, section).load())(name, section);
}

/**
 * The place of one config section, as its driver would give it, without building the driver (no
 * client library loaded). Throws what `createDriver` would for an invalid section.
 */
export function configuredPlace(name: string, section: Section): ConfiguredPlace {
  return typeOf(name, section).place(name, section);
}

/** Whether the drivers of this section's type can have an identity other than their location (local and SFTP folders). */
export function identifiesItself(name: string, section: Section): boolean {
  return typeOf(name, section).identifies;
}
