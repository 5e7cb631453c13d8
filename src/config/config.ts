/**
 * The offsite config file (YAML). Found via `--config FILE`, else `$OFFSITE_CONFIG`, else
 * `./offsite.yaml`. See config/offsite.example.yaml for every key.
 *
 * `${NAME}` in any string value is replaced by the environment variable NAME (after YAML
 * parsing, so a value can never inject YAML); `${NAME:-default}` gives a default; `$${` is a
 * literal `${`. An unset variable without a default is an error naming the key and the variable,
 * never a value: config values may be secrets. A variable set to the empty string is a value the
 * config cannot use: without a default it is an error ("set but empty"); `${NAME:-default}` takes
 * the default, as the shell does. A `${` that does not form `${NAME}` (unterminated) is an error.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError, errorMessage } from '../errors.js';
import { driverSchema, driverTypes } from '../drivers/index.js';
import { boolean, custom, duration, integer, normalizeSection, oneOf, readSection, refuse, sectionError, size, type SectionContext } from './schema.js';
import { expandPath } from './paths.js';
import { parseDestinationKey } from '../crypto/keys.js';

export type Section = Readonly<Record<string, unknown>>;

/** The values of a destination's `reuse` key (`ReusePolicy`). */
export const REUSE_POLICIES = ['copy', 'link', 'off'] as const;

export interface Settings {
  /** @default 8 MiB */
  readonly chunkBytes: number;
  /** Files transferred at once. @default 8 */
  readonly concurrency: number;
  /** Bytes of chunk buffers in flight, shared equally by the destinations still copying (`options.memoryBudget`). @default 64 MiB */
  readonly memoryBudgetBytes?: number;
  /** Quiet period of the completion rule. @default 60 s */
  readonly quietPeriodMs: number;
  /** Retries of a retryable error (reset, timeout, 5xx), per operation. @default 5 */
  readonly retries: number;
  /** Stop retrying an operation that has kept failing for this long. @default 10 min */
  readonly retryTimeoutMs: number;
  /** Total write rate limit in bytes per second; 0 = none. @default 0 */
  readonly bwlimitBytesPerSecond: number;
}

export interface OffsiteConfig {
  /** Absolute path of the file it came from. */
  readonly path: string;
  readonly source: Section;
  /** Destination name -> driver section (`type` plus the driver's options). */
  readonly destinations: Readonly<Record<string, Section>>;
  readonly settings: Settings;
}

export const DEFAULT_SETTINGS: Settings = { chunkBytes: 8 * 1024 * 1024, concurrency: 8, quietPeriodMs: 60_000, retries: 5, retryTimeoutMs: 600_000, bwlimitBytesPerSecond: 0 };

/** Where the config file is, by the documented precedence; `undefined` when none is given or found. */
export function findConfigPath(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  if (explicit) return resolve(cwd, explicit);
  if (env['OFFSITE_CONFIG']) return resolve(cwd, env['OFFSITE_CONFIG']);
  return resolve(cwd, 'offsite.yaml');
}

function substitute(value: unknown, path: string, env: NodeJS.ProcessEnv, file: string): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{/g, (match, name: string | undefined, fallback: string | undefined) => {
      if (match === '$${') return '${';
      if (name === undefined) {
        throw new ConfigError(`${file}: ${path} has a "\${" that is not a complete \${NAME} (unterminated, or not a variable name); close it with "}", or write "$\${" for a literal "\${"`);
      }
      const found = env[name];
      if (found !== undefined && found !== '') return found;
      // As in the shell, ${NAME:-default} also takes the default when NAME is set but empty.
      if (fallback !== undefined) return fallback;
      if (found === '') {
        throw new ConfigError(`${file}: ${path} refers to \${${name}}, which is set but empty; give ${name} a value, or a default with \${${name}:-value}`);
      }
      throw new ConfigError(`${file}: ${path} refers to \${${name}}, which is not set in the environment; export ${name} or give a default with \${${name}:-value}`);
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substitute(v, `${path}[${i}]`, env, file));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, path ? `${path}.${k}` : k, env, file)]));
  }
  return value;
}

function isSection(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Parses config text (already read from `file`). After `${NAME}` substitution every section is
 * read against a schema (./schema.ts): `options` against `OPTIONS_SCHEMA`, the source and each
 * destination against the keys its driver type declares in its options.ts plus the engine's
 * keys (`ENGINE_SCHEMA`). Errors name the file, the section and the key; the sections returned
 * are normalized (numbers and booleans from strings, paths on this machine absolute, relative to
 * this file's folder).
 */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): OffsiteConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    const pos = (err as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    const where = pos ? ` at line ${pos.line}, column ${pos.col}` : '';
    const reason = errorMessage(err).replace(/ at line \d+, column \d+.*$/, '');
    throw new ConfigError(`${file}: not valid YAML${where}: ${reason}`);
  }
  if (!isSection(raw)) throw new ConfigError(`${file}: expected a mapping with "source" and "destinations"`);
  const config = substitute(raw, '', env, file) as Record<string, unknown>;
  const baseDir = dirname(file);
  const source = config['source'];
  if (!isSection(source)) throw new ConfigError(`${file}: "source" is missing or not a mapping (e.g. source: { type: local, root: /var/lib/milvus-backup })`);
  const destinations = config['destinations'];
  if (Array.isArray(destinations)) {
    throw new ConfigError(`${file}: "destinations" is a list; it must be a mapping from a name to each destination (e.g. destinations: { disk: { type: local, root: /mnt/backup } }, no "-" before the names)`);
  }
  if (!isSection(destinations) || Object.keys(destinations).length === 0) {
    throw new ConfigError(`${file}: "destinations" is missing or empty (e.g. destinations: { disk: { type: local, root: /mnt/backup } })`);
  }
  for (const [name, section] of Object.entries(destinations)) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new ConfigError(`${file}: destination name "${name}" must be letters, digits, '.', '_' or '-'`);
    if (!isSection(section)) throw new ConfigError(`${file}: destinations.${name} must be a mapping with a "type"`);
  }
  const known = new Set(['source', 'destinations', 'options']);
  for (const key of Object.keys(config)) if (!known.has(key)) throw new ConfigError(`${file}: unknown top-level key "${key}" (expected source, destinations, options)`);
  const options = config['options'] ?? {};
  if (!isSection(options)) throw new ConfigError(`${file}: "options" must be a mapping`);
  const o = readSection(OPTIONS_SCHEMA, options, { file, section: 'options' });
  const settings: Settings = {
    chunkBytes: o.chunkSize, concurrency: o.concurrency, quietPeriodMs: o.quietPeriod, retries: o.retries, retryTimeoutMs: o.timeout, bwlimitBytesPerSecond: o.bwlimit,
    ...(o.memoryBudget === undefined ? {} : { memoryBudgetBytes: o.memoryBudget }),
  };
  const read = (where: string, section: Record<string, unknown>): Section => readDriverSection(section, { file, section: where, baseDir });
  if (source['encryption'] !== undefined) throw new ConfigError(`${file}: source: "encryption" is a destination option (the source is milvus-backup's own storage, read as it is)`);
  if (source['trustEtags'] !== undefined && (source['type'] === 'local' || source['type'] === 'sftp')) {
    throw new ConfigError(`${file}: source: "trustEtags" is for a bucket source (type minio); remove it: a ${String(source['type'])} source has no ETags`);
  }
  for (const [name, section] of Object.entries(destinations)) {
    if (isSection(section) && section['trustEtags'] !== undefined) throw new ConfigError(`${file}: destinations.${name}: "trustEtags" is a source option (source: { type: minio, trustEtags: true }); remove it here`);
  }
  return {
    path: file,
    source: read('source', source),
    destinations: Object.fromEntries(Object.entries(destinations).map(([n, s]) => [n, read(`destinations.${n}`, s as Record<string, unknown>)])),
    settings,
  };
}

/** The `options:` section. */
const OPTIONS_SCHEMA = {
  chunkSize: size({ default: DEFAULT_SETTINGS.chunkBytes }),
  concurrency: integer({ default: DEFAULT_SETTINGS.concurrency, min: 1, max: 1024 }),
  quietPeriod: duration({ default: DEFAULT_SETTINGS.quietPeriodMs }),
  retries: integer({ default: DEFAULT_SETTINGS.retries, min: 0, max: 1000 }),
  timeout: duration({ default: DEFAULT_SETTINGS.retryTimeoutMs }),
  bwlimit: size({ default: DEFAULT_SETTINGS.bwlimitBytesPerSecond }),
  memoryBudget: size(),
};

/**
 * Keys of a driver section that belong to the engine, not to the driver (src/runtime/overlap.ts
 * `RUNTIME_KEYS` takes them out before the driver is built): `bwlimit`, the write rate limit of
 * this destination; `reuse`, how it may reuse files it already holds in other complete copies
 * (`ReusePolicy`); `trustEtags` (source only, a bucket), its ETags are the MD5 of the bytes
 * (`ReplicateOptions.trustSourceEtags`).
 */
export const ENGINE_SCHEMA = {
  bwlimit: size(),
  reuse: oneOf(REUSE_POLICIES),
  trustEtags: boolean(),
  encryption: custom({ expected: '{ key: ${ENV_VAR} } or { keyFile: PATH } (an audit host without the key: { publicKey: BASE64 })', secret: true }, readEncryption),
};

/**
 * A destination's `encryption` section (README, "Client-side encryption"): exactly one of `key`
 * (the key's text, normally `${OFFSITE_KEY}`), `keyFile` (a file holding it) or `publicKey` (an
 * audit host without the key: it checks manifest signatures only). Read back in the same shape
 * (the loader reads a section twice); `keyFile` made absolute. Messages never show a value.
 */
export interface EncryptionSettings {
  readonly key?: string;
  readonly keyFile?: string;
  readonly publicKey?: string;
}

function readEncryption(value: unknown, context: SectionContext): EncryptionSettings {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return refuse();
  const { key, keyFile, publicKey, ...rest } = value as Record<string, unknown>;
  const unknownKeys = Object.keys(rest);
  if (unknownKeys.length > 0) refuse(`got the unknown key ${JSON.stringify(unknownKeys[0])} (known: key, keyFile, publicKey)`);
  const given = [key, keyFile, publicKey].filter((v) => v !== undefined && v !== null).length;
  if (given !== 1) refuse(`got ${given === 0 ? 'none' : 'several'} of key, keyFile and publicKey; give exactly one`);
  if (key !== undefined && key !== null) {
    if (typeof key !== 'string') refuse('"key" must be text');
    try {
      parseDestinationKey(key, 'encryption.key');
    } catch (err) {
      refuse(errorMessage(err).replace(/^encryption\.key /, '"key" '));
    }
    return { key };
  }
  if (keyFile !== undefined && keyFile !== null) {
    if (typeof keyFile !== 'string' || keyFile === '') refuse('"keyFile" must be a path');
    return { keyFile: expandPath(keyFile, context.baseDir) };
  }
  if (typeof publicKey !== 'string' || Buffer.from(publicKey, 'base64').length !== 32) refuse('"publicKey" must be the 32-byte Ed25519 public key in base64 that offsite prints for the destination');
  return { publicKey: publicKey as string };
}

/** The `encryption` settings of a config section, when it has them. */
export function encryptionOf(section: Section): EncryptionSettings | undefined {
  const value = section['encryption'];
  return value !== null && typeof value === 'object' ? value as EncryptionSettings : undefined;
}

/**
 * What a destination does with a file it already holds, byte for byte, in another complete copy
 * (README, "Reusing files of earlier copies"):
 * - `copy` (default): create it by a server-side copy (S3 CopyObject, SFTP `copy-data`, a
 *   reflink or in-kernel copy on local disks): no bytes over the wire, every copy's bytes its own;
 * - `link`: a hard link where the storage has them (local, sftp), a copy elsewhere: saves the
 *   space too, but one damaged block damages every copy sharing it;
 * - `off`: always send the bytes.
 */
export type ReusePolicy = (typeof REUSE_POLICIES)[number];

/** The policy of a destination's config section (`copy` when the key is absent). */
export function reusePolicyOf(section: Section): ReusePolicy {
  const value = section['reuse'];
  return typeof value === 'string' && (REUSE_POLICIES as readonly string[]).includes(value) ? (value as ReusePolicy) : 'copy';
}

/**
 * Checks a driver section against its type's schema plus the engine keys, and returns it with
 * values normalized (numbers and booleans from strings, paths on this machine made absolute
 * relative to the config file). Checks that need several keys or the environment run when the
 * driver is built.
 */
function readDriverSection(section: Record<string, unknown>, context: SectionContext): Section {
  const type = section['type'];
  if (typeof type !== 'string' || type === '') throw sectionError(context, `missing "type" (one of: ${driverTypes().join(', ')})`);
  const schema = driverSchema(type);
  if (schema === undefined) throw sectionError(context, `unknown type "${type}" (one of: ${driverTypes().join(', ')})`);
  return normalizeSection({ ...schema, ...ENGINE_SCHEMA }, section, { ...context, type });
}

/** Reads and parses the config file found by `findConfigPath`. */
export function loadConfig(explicit?: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): OffsiteConfig {
  const file = findConfigPath(explicit, env, cwd);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ConfigError(explicit || env['OFFSITE_CONFIG']
        ? `config file ${file} does not exist`
        : `no config file: pass --config FILE, set OFFSITE_CONFIG, or create ./offsite.yaml (see config/offsite.example.yaml)`);
    }
    throw new ConfigError(`cannot read config file ${file}: ${code ?? errorMessage(err)}`);
  }
  return parseConfig(text, file, env);
}
