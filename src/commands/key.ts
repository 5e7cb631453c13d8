/**
 * `offsite key` as a library function: the Ed25519 public key that checks the manifests of each
 * encrypted destination (README, "Client-side encryption"), for the config of an audit host
 * (`encryption: { publicKey: ... }`). It reads the config only: no destination is contacted, so
 * it works before the first copy exists. The secret key is never part of the result.
 */
import { encryptionOf, type OffsiteConfig } from '../config/config.js';
import { UsageError } from '../errors.js';
import { manifestPublicKeyOf } from '../runtime/drivers.js';

export interface DestinationPublicKey {
  readonly destination: string;
  /** Base64 of the 32 raw bytes: what `encryption.publicKey` takes. */
  readonly publicKey: string;
  /** Where it comes from: derived from `encryption.key` or `encryption.keyFile`, or configured as `encryption.publicKey`. */
  readonly from: 'key' | 'keyFile' | 'publicKey';
}

export interface KeyCommandResult {
  readonly keys: readonly DestinationPublicKey[];
}

/**
 * The public key of each named destination (every encrypted one when `destinations` is empty).
 * A `UsageError` for an unknown name, a named destination without `encryption`, or a config with
 * no encrypted destination; a `ConfigError` for a key that cannot be read (a missing key file).
 */
export function keyCommand(config: OffsiteConfig, options: { destinations?: readonly string[] } = {}): KeyCommandResult {
  const known = Object.keys(config.destinations);
  const named = options.destinations ?? [];
  for (const name of named) {
    if (!config.destinations[name]) throw new UsageError(`unknown destination ${JSON.stringify(name)} (configured in ${config.path}: ${known.join(', ')})`);
    if (!encryptionOf(config.destinations[name])) {
      throw new UsageError(`destination "${name}" is not encrypted (its config has no "encryption" section), so its manifests are not signed and it has no public key`);
    }
  }
  const wanted = named.length > 0 ? [...new Set(named)] : known.filter((name) => encryptionOf(config.destinations[name] ?? {}) !== undefined);
  if (wanted.length === 0) throw new UsageError(`no destination in ${config.path} is encrypted (none has an "encryption" section): only encrypted destinations have a public key`);
  return {
    keys: wanted.map((destination) => {
      const encryption = encryptionOf(config.destinations[destination] ?? {});
      const from = encryption?.key !== undefined ? 'key' : encryption?.keyFile !== undefined ? 'keyFile' : 'publicKey';
      return { destination, publicKey: manifestPublicKeyOf(config, destination) as string, from };
    }),
  };
}
