/**
 * Manifest signatures of encrypted copies (issue 14, README "Client-side encryption"). The
 * manifest of an encrypted copy carries `encryption` (the stored format and the destination's
 * Ed25519 public key) and `signature`: Ed25519 over the SHA-256 of the manifest's canonical
 * encoding (the same text its `digest` hashes: every field but `digest` and `signature`). The
 * XXH64 digest finds damage; only the signature finds a forged or replaced manifest, because
 * forging one needs the destination key. Anyone holding the public key checks it: an auditor needs
 * no secret.
 */
import type { DriverEncryption } from '../drivers/types.js';
import { verifySignature } from '../crypto/keys.js';
import { ManifestError, type ManifestEncryption } from './manifest.js';

const SIGNATURE_PREFIX = 'ed25519:';
/** What is signed: a fixed label and the SHA-256, so a signature means nothing elsewhere. */
function signedBytes(sha256: Buffer): Buffer {
  return Buffer.concat([Buffer.from('offsite-manifest-signature/v1\n', 'latin1'), sha256]);
}

/** The `encryption` field of manifests written through `driver`'s encryption. */
export function manifestEncryptionOf(encryption: DriverEncryption): ManifestEncryption {
  return { scheme: encryption.scheme, chunkBytes: encryption.chunkBytes, storedChunkBytes: encryption.storedChunkBytes, publicKey: encryption.publicKey };
}

/** The `signature` field for a manifest whose canonical encoding has this SHA-256. */
export function signManifest(encryption: DriverEncryption, sha256: Buffer): string {
  return SIGNATURE_PREFIX + encryption.sign(signedBytes(sha256));
}

/**
 * Checks that the manifest (its `encryption` and `signature` fields, and the SHA-256 of its
 * canonical encoding) was signed by the holder of `publicKey`; throws `ManifestError` (kind
 * `integrity`) saying what is wrong otherwise.
 */
export function checkManifestSignature(where: string, fields: ReadonlyMap<string, unknown>, sha256: Buffer, publicKey: string): void {
  const signature = fields.get('signature');
  const encryption = fields.get('encryption') as Partial<ManifestEncryption> | undefined;
  const forged = 'it was forged or replaced (or written by another offsite with another key); do not trust this copy: verify the others, and replicate it again';
  if (typeof signature !== 'string' || !signature.startsWith(SIGNATURE_PREFIX)) {
    throw new ManifestError(`${where}: manifest is not signed, though this destination is configured as encrypted: ${forged}`);
  }
  if (encryption?.publicKey !== publicKey) {
    throw new ManifestError(`${where}: manifest is signed with another key than this destination's (public key ${JSON.stringify(encryption?.publicKey ?? null)}, configured ${JSON.stringify(publicKey)}): ${forged}`);
  }
  if (!verifySignature(publicKey, signedBytes(sha256), signature.slice(SIGNATURE_PREFIX.length))) {
    throw new ManifestError(`${where}: manifest signature does not match its content: ${forged}`);
  }
}
