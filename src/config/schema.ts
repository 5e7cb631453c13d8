/**
 * The one reader of config sections. Each driver declares its keys in its options.ts as a
 * `Schema` (type, default, secret, path, allowed values, min/max); `readSection` reads any
 * section against its schema the same way:
 *
 * - numbers and booleans given as strings (what `${ENV}` substitution produces, e.g.
 *   `maxConcurrency: "4"`, `useSSL: "true"`) are read like the plain YAML values;
 * - an unknown key, a missing required key or a value of the wrong type is one `ConfigError`
 *   naming the file (when known), the section, the key and what is expected;
 * - a key marked `secret` never has its value in a message (only its type);
 * - a key marked as a path on this machine is expanded (`~/`, and relative to the config file's
 *   folder when the section came from a file, else to the working directory).
 *
 * The config loader (./config.ts) reads every section at load time, so a wrong key is reported
 * before anything runs; the driver reads its section again when it is built (the values are then
 * already normal, so the second read changes nothing) and adds the checks that involve several
 * keys or the environment.
 */
import { ConfigError } from '../errors.js';
import { expandPath } from './paths.js';
import { parseBytes, parseDuration } from './units.js';

/** Where a section comes from, for messages and for relative paths. */
export interface SectionContext {
  /** Path of the config file; named in every message when given. */
  readonly file?: string;
  /** How the section is named in the file (`source`, `destinations.nas`); the driver name otherwise. */
  readonly section: string;
  /** The section's `type`, for "unknown key ... for type s3". */
  readonly type?: string;
  /** Folder that relative paths are relative to. @default the working directory */
  readonly baseDir?: string;
}

/** Thrown by a key's reader when the value does not fit; the schema reader adds the rest. */
class Mismatch {
  constructor(readonly detail?: string) {}
}

/** One declared key. Build them with the helpers below (`integer`, `string`, `path`...). */
export interface KeySpec<T = unknown, Required extends boolean = boolean> {
  /** What kind of value, for documentation and tests. */
  readonly kind: 'string' | 'integer' | 'boolean' | 'enum' | 'size' | 'duration' | 'path' | 'custom';
  /** What the value must be, for messages: `an integer from 1 to 256`. */
  readonly expected: string;
  readonly required: Required;
  readonly default?: T;
  /** Never shown in a message (passwords, secret keys, tokens). */
  readonly secret: boolean;
  /** A path on this machine: expanded relative to the config file. */
  readonly path: boolean;
  readonly values?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  /** Converts a present value; throws `Mismatch` (via `refuse`) when it does not fit. */
  readonly read: (value: unknown, context: SectionContext) => T;
}

export type Schema = Readonly<Record<string, KeySpec<unknown, boolean>>>;

/** The values `readSection` returns for a schema: required or defaulted keys are always set. */
export type Values<S extends Schema> = {
  readonly [K in keyof S]: S[K] extends KeySpec<infer T, infer R> ? (R extends true ? T : T | undefined) : never;
};

interface Common<T> {
  readonly required?: boolean;
  readonly default?: T;
}
type RequiredOf<O> = O extends { readonly required: true } ? true : O extends { readonly default: unknown } ? true : false;

/** Refuses the value at hand, with an optional detail that replaces "got VALUE" context. */
export function refuse(detail?: string): never {
  throw new Mismatch(detail);
}

function spec<T, O extends Common<T>>(options: O, fields: Omit<KeySpec<T>, 'required' | 'default' | 'secret' | 'path'> & { secret?: boolean; path?: boolean }): KeySpec<T, RequiredOf<O>> {
  return {
    ...fields,
    required: (options.required === true) as RequiredOf<O>,
    ...(options.default !== undefined ? { default: options.default } : {}),
    secret: fields.secret ?? false,
    path: fields.path ?? false,
  };
}

/** A whole number; `"4"` reads as 4. */
export function integer<const O extends Common<number> & { readonly min: number; readonly max: number }>(options: O): KeySpec<number, RequiredOf<O>> {
  const { min, max } = options;
  return spec<number, O>(options, {
    kind: 'integer', expected: `an integer from ${min} to ${max}`, min, max,
    read: (value) => {
      const number = typeof value === 'string' && /^\s*-?\d+\s*$/.test(value) ? Number(value) : value;
      if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < min || number > max) refuse();
      return number;
    },
  });
}

/** `true`/`false`; the strings `"true"`/`"false"` (any case) read alike. */
export function boolean<const O extends Common<boolean>>(options: O = {} as O): KeySpec<boolean, RequiredOf<O>> {
  return spec<boolean, O>(options, { kind: 'boolean', expected: 'true or false', read: readBoolean });
}

function readBoolean(value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string' && /^\s*(true|false)\s*$/i.test(value)) return value.trim().toLowerCase() === 'true';
  return refuse();
}

interface StringOptions<T> extends Common<T> {
  /** Said in messages instead of "a non-empty string". */
  readonly expected?: string;
  /** An extra rule: returns what is wrong (it replaces "got VALUE"), or `undefined`. */
  readonly check?: (value: string) => string | undefined;
}

/** A non-empty string, trimmed. */
export function string<const O extends StringOptions<string>>(options: O = {} as O): KeySpec<string, RequiredOf<O>> {
  return spec<string, O>(options, {
    kind: 'string', expected: options.expected ?? 'a non-empty string',
    read: (value) => {
      if (typeof value !== 'string' || value.trim() === '') refuse();
      const problem = options.check?.(value.trim());
      if (problem !== undefined) refuse(problem);
      return value.trim();
    },
  });
}

/** A non-empty string whose value never appears in a message; taken as is (not trimmed). */
export function secret<const O extends Common<string>>(options: O = {} as O): KeySpec<string, RequiredOf<O>> {
  return spec<string, O>(options, {
    kind: 'string', expected: 'a non-empty string', secret: true,
    read: (value) => (typeof value === 'string' && value !== '' ? value : refuse()),
  });
}

/** One of a few strings. */
export function oneOf<const V extends string, const O extends Common<V>>(values: readonly V[], options: O = {} as O): KeySpec<V, RequiredOf<O>> {
  return spec<V, O>(options, {
    kind: 'enum', expected: `one of ${values.join(', ')}`, values,
    read: (value) => (typeof value === 'string' && (values as readonly string[]).includes(value.trim()) ? (value.trim() as V) : refuse()),
  });
}

/** A path on this machine: `~/` expanded, relative paths resolved against the config file's folder. */
export function path<const O extends StringOptions<string>>(options: O = {} as O): KeySpec<string, RequiredOf<O>> {
  return spec<string, O>(options, {
    kind: 'path', expected: options.expected ?? 'a non-empty path', path: true,
    read: (value, context) => {
      if (typeof value !== 'string' || value.trim() === '') refuse();
      if (value.includes('\0')) refuse('it contains a NUL byte');
      const problem = options.check?.(value);
      if (problem !== undefined) refuse(problem);
      return expandPath(value.trim(), context.baseDir);
    },
  });
}

/** A size in bytes: `8MiB`, `512k`, `4096`. */
export function size<const O extends Common<number>>(options: O = {} as O): KeySpec<number, RequiredOf<O>> {
  return spec<number, O>(options, {
    kind: 'size', expected: 'a size like 8MiB, 512KiB, 2GB or 4096',
    read: (value) => {
      try {
        return parseBytes(value, '');
      } catch {
        return refuse();
      }
    },
  });
}

/** A duration in ms: `60s`, `10m`, `500ms`, or a plain number of seconds. */
export function duration<const O extends Common<number>>(options: O = {} as O): KeySpec<number, RequiredOf<O>> {
  return spec<number, O>(options, {
    kind: 'duration', expected: 'a duration like 60s, 10m, 1h or 500ms',
    read: (value) => {
      try {
        return parseDuration(value, '');
      } catch {
        return refuse();
      }
    },
  });
}

/** Anything else (`agent: true | PATH`, `hostKey: one | [list]`): `read` calls `refuse()` when it does not fit. */
export function custom<T, const O extends Common<T> & { readonly expected: string; readonly secret?: boolean; readonly path?: boolean }>(
  options: O,
  read: (value: unknown, context: SectionContext) => T,
): KeySpec<T, RequiredOf<O>> {
  return spec<T, O>(options, { kind: 'custom', expected: options.expected, read, secret: options.secret ?? false, path: options.path ?? false });
}

/** `file: section: ` or `name: `: the start of every message about a section. */
export function sectionPrefix(context: SectionContext): string {
  return context.file !== undefined ? `${context.file}: ${context.section}: ` : `${context.section}: `;
}

/** A `ConfigError` about a section (for checks that involve several keys). */
export function sectionError(context: SectionContext, message: string): ConfigError {
  return new ConfigError(`${sectionPrefix(context)}${message}`);
}

/** How a value is shown in a message: `"x"`, `number 42`, `nothing`; for secrets only the type. */
export function shown(value: unknown, isSecret = false): string {
  if (value === undefined || value === null) return 'nothing';
  if (isSecret) return typeof value === 'string' && value === '' ? 'an empty string' : typeof value;
  return typeof value === 'string' ? JSON.stringify(value) : `${typeof value} ${JSON.stringify(value)}`;
}

/** The message for a key whose value does not fit. */
export function keyError(context: SectionContext, key: string, keySpec: Pick<KeySpec, 'expected' | 'secret'>, value: unknown, detail?: string): ConfigError {
  return sectionError(context, `"${key}" must be ${keySpec.expected}, ${detail ?? `got ${shown(value, keySpec.secret)}`}`);
}

/** Reads one key of a section (absent: the default, or `undefined`; required and absent: refused). */
export function readKey<T, R extends boolean>(context: SectionContext, key: string, keySpec: KeySpec<T, R>, value: unknown): R extends true ? T : T | undefined {
  type Out = R extends true ? T : T | undefined;
  if (value === undefined || value === null) {
    if (keySpec.required) throw keyError(context, key, keySpec, value);
    return keySpec.default as Out;
  }
  try {
    return keySpec.read(value, context) as Out;
  } catch (err) {
    if (err instanceof Mismatch) throw keyError(context, key, keySpec, value, err.detail);
    throw err;
  }
}

/** The closest declared key to a misspelt one (same letters in another case, or 1-2 edits away). */
function closest(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  const sameCase = known.find((k) => k.toLowerCase() === lower);
  if (sameCase !== undefined) return sameCase;
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min((previous[j] as number) + 1, (row[j - 1] as number) + 1, (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length] as number;
}

/** Refuses keys the schema does not declare (`type` is always allowed); names the close one. */
export function refuseUnknownKeys(context: SectionContext, schema: Schema, section: Readonly<Record<string, unknown>>): void {
  const known = Object.keys(schema).filter((k) => k !== 'type');
  for (const key of Object.keys(section)) {
    if (key === 'type' || Object.hasOwn(schema, key)) continue;
    const guess = closest(key, known);
    const forType = context.type !== undefined ? ` for type ${context.type}` : '';
    throw sectionError(context, `unknown key "${key}"${forType}${guess !== undefined ? ` (did you mean "${guess}"?)` : ''} (known: ${known.join(', ')})`);
  }
}

/** Reads a whole section against its schema: unknown keys refused, every key read by its spec. */
export function readSection<S extends Schema>(schema: S, section: Readonly<Record<string, unknown>>, context: SectionContext): Values<S> {
  refuseUnknownKeys(context, schema, section);
  const out: Record<string, unknown> = {};
  for (const [key, keySpec] of Object.entries(schema)) out[key] = readKey(context, key, keySpec, section[key]);
  return out as Values<S>;
}

/**
 * The section with every key that is present replaced by its read value (numbers from strings,
 * booleans from strings, paths expanded); absent keys stay absent so that the driver's own
 * defaults (some depend on other keys) still apply. What the config loader hands to drivers.
 */
export function normalizeSection(schema: Schema, section: Readonly<Record<string, unknown>>, context: SectionContext): Record<string, unknown> {
  refuseUnknownKeys(context, schema, section);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(section)) {
    const keySpec = schema[key];
    out[key] = keySpec === undefined || value === undefined || value === null ? value : readKey(context, key, keySpec, value);
  }
  return out;
}

/** Builds a context for a driver section read outside a config file (library use, tests). */
export function contextFor(name: string, type: string, context?: Partial<SectionContext>): SectionContext {
  return { section: name, type, ...context };
}
