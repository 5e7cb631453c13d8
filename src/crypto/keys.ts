/**
 * The key of an encrypted destination (README, "Client-side encryption"), and the keys derived
 * from it. One 32-byte destination key, given as `encryption: { key: ${ENV} }` or
 * `encryption: { keyFile: PATH }`, yields with HKDF-SHA256 (each under its own label):
 * - per file, an AES-256-GCM key and a nonce key from the file's key (its path in the
 *   destination), so no two files share a key (src/crypto/format.ts);
 * - a key-check key: a keyed check value in every chunk tells a wrong key apart from damaged
 *   bytes, without revealing anything about the key;
 * - a MAC key for the keyed plaintext MACs (HMAC-SHA256): each chunk's (which also picks the
 *   chunk's nonce) and each file's, which the manifest records for reuse and pull: a bare
 *   plaintext hash would let anyone holding the manifest confirm a guessed file;
 * - an Ed25519 key pair that signs the manifests of the copy; its public key may be handed to
 *   an auditor, who then detects a forged or replaced manifest without holding any secret.
 *
 * The key is a secret: it never appears in a message, a log, a manifest or --json output.
 * Messages name the destination and the config key, never the value.
 */
import { createHmac, createPrivateKey, createPublicKey, hkdfSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { OffsiteError } from '../errors.js';

/** Bytes of a destination key (AES-256). */
export const DESTINATION_KEY_BYTES = 32;

/** The HKDF labels; changing one makes every existing encrypted copy unreadable. */
const LABEL = {
  file: 'offsite/enc/v1 file key',
  nonce: 'offsite/enc/v1 nonce key',
  check: 'offsite/enc/v1 key check',
  mac: 'offsite/enc/v1 plaintext mac',
  sign: 'offsite/enc/v1 manifest signing',
} as const;

/** HKDF-Expand's counter byte of its first (and, for 32-byte keys, only) block. */
const HKDF_FIRST_BLOCK = Buffer.of(1);

/** The PKCS#8 DER prefix of an Ed25519 private key; the 32-byte seed follows it (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A wrong or unusable encryption key: never retried; the message names the destination only. */
export class EncryptionKeyError extends OffsiteError {
  constructor(message: string) {
    super('E_ENCRYPTION_KEY', message, { kind: 'auth' });
  }
}

function derive(key: Buffer, salt: Buffer, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', key, salt, label, 32));
}

/**
 * Parses a key's text: 64 hexadecimal characters, or base64 of 32 bytes (as printed by
 * `openssl rand -hex 32` or `openssl rand -base64 32`). `where` names the config key for the
 * message; the text itself is never shown.
 */
export function parseDestinationKey(text: string, where: string): Buffer {
  const trimmed = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return Buffer.from(trimmed, 'hex');
  if (/^[A-Za-z0-9+/]{43}=?$/.test(trimmed)) {
    const bytes = Buffer.from(trimmed, 'base64');
    if (bytes.length === DESTINATION_KEY_BYTES) return bytes;
  }
  throw new EncryptionKeyError(`${where} must be 32 random bytes written as 64 hexadecimal characters or as base64 (make one with "openssl rand -hex 32" and keep a copy apart from the backups), got ${trimmed.length} characters that are neither`);
}

/** The `encryption` section of a destination as read from the config. */
export interface EncryptionSection {
  /** The key's text (usually `${OFFSITE_KEY}`, substituted from the environment). */
  readonly key?: string;
  /** A file holding the key's text, or its 32 raw bytes. */
  readonly keyFile?: string;
}

/** Reads the key of destination `destination` from its `encryption` section. */
export function destinationKeyOf(destination: string, section: EncryptionSection): DestinationKey {
  const where = `destination "${destination}": encryption`;
  if ((section.key === undefined) === (section.keyFile === undefined)) {
    throw new EncryptionKeyError(`${where} needs exactly one of "key" (e.g. key: \${OFFSITE_KEY}) or "keyFile"`);
  }
  if (section.key !== undefined) return new DestinationKey(destination, parseDestinationKey(section.key, `${where}.key`));
  let bytes: Buffer;
  try {
    bytes = readFileSync(section.keyFile as string);
  } catch (err) {
    throw new EncryptionKeyError(`${where}.keyFile: cannot read ${JSON.stringify(section.keyFile)} (${(err as NodeJS.ErrnoException).code ?? 'error'}): check the path and its permissions`);
  }
  if (bytes.length === DESTINATION_KEY_BYTES) return new DestinationKey(destination, bytes);
  return new DestinationKey(destination, parseDestinationKey(bytes.toString('utf8'), `${where}.keyFile ${JSON.stringify(section.keyFile)}`));
}

/** A destination key and what is derived from it. Holds secrets: never log or serialize it. */
export class DestinationKey {
  readonly #key: Buffer;
  readonly #checkKey: Buffer;
  readonly #macKey: Buffer;
  #signing?: { readonly privateKey: KeyObject; readonly publicKey: KeyObject };

  /** `destination` is the destination's name, used in messages only. */
  constructor(readonly destination: string, key: Buffer) {
    if (key.length !== DESTINATION_KEY_BYTES) throw new EncryptionKeyError(`destination "${destination}": an encryption key has ${DESTINATION_KEY_BYTES} bytes, got ${key.length}`);
    this.#key = Buffer.from(key);
    this.#checkKey = derive(this.#key, Buffer.alloc(0), LABEL.check);
    this.#macKey = derive(this.#key, Buffer.alloc(0), LABEL.mac);
  }

  /**
   * The raw destination key, for the one place that hands it on: the CPU pool, which gives it to
   * each worker thread once so that parts are sealed off the main thread (src/runtime/cpu-pool.ts).
   * A copy; never log or serialize it.
   */
  secretBytes(): Buffer {
    return Buffer.from(this.#key);
  }

  /**
   * The AES-256-GCM key (`fileKey`) and the key that turns a chunk's plaintext MAC into its nonce
   * (`nonceKey`) of the file whose identity is `fileId` (UTF-8; src/crypto/format.ts
   * `sealedIdentity`): HKDF-SHA256 (RFC 5869) with the file's identity as salt, exactly what
   * `hkdfSync` gives, written out with HMAC so that both keys share one extract step.
   * A file's keys are derived once per file sealed or opened: for a backup of many small files,
   * two `hkdfSync` calls (~28 us) were a visible part of the main thread's time; this is ~12 us.
   */
  fileKeys(fileId: Buffer): { readonly fileKey: Buffer; readonly nonceKey: Buffer } {
    const prk = createHmac('sha256', fileId).update(this.#key).digest();
    const expand = (label: string): Buffer => createHmac('sha256', prk).update(label, 'latin1').update(HKDF_FIRST_BLOCK).digest();
    return { fileKey: expand(LABEL.file), nonceKey: expand(LABEL.nonce) };
  }

  /** A keyed check value of `label` (src/crypto/format.ts stores the first bytes of one in each chunk). */
  checkValue(label: Buffer): Buffer {
    return createHmac('sha256', this.#checkKey).update(label).digest();
  }

  /** A keyed MAC of plaintext (HMAC-SHA256); feed the bytes with `update`, read `digest('hex')`. */
  plaintextMac(): ReturnType<typeof createHmac> {
    return createHmac('sha256', this.#macKey);
  }

  #pair(): { readonly privateKey: KeyObject; readonly publicKey: KeyObject } {
    if (!this.#signing) {
      const seed = derive(this.#key, Buffer.alloc(0), LABEL.sign);
      const privateKey = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
      this.#signing = { privateKey, publicKey: createPublicKey(privateKey) };
    }
    return this.#signing;
  }

  /** The public key that checks this destination's manifest signatures (base64 of 32 bytes). */
  get publicKey(): string {
    return publicKeyText(this.#pair().publicKey);
  }

  /** The Ed25519 signature of `bytes` (base64). */
  sign(bytes: Buffer): string {
    return sign(null, bytes, this.#pair().privateKey).toString('base64');
  }

  /** Keeps the key out of console.log, util.inspect and JSON. */
  toJSON(): string {
    return `[encryption key of ${this.destination}]`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toJSON();
  }
}

/** The raw 32 bytes of an Ed25519 public key, base64: what a config or an auditor holds. */
function publicKeyText(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  return Buffer.from(jwk.x as string, 'base64url').toString('base64');
}

/**
 * Checks an Ed25519 signature made by `DestinationKey.sign` against a public key given as
 * base64 of its 32 bytes. False for a bad signature; throws for an unusable public key.
 */
export function verifySignature(publicKey: string, bytes: Buffer, signature: string): boolean {
  const raw = Buffer.from(publicKey, 'base64');
  if (raw.length !== 32) throw new EncryptionKeyError(`a manifest public key is 32 bytes in base64, got ${raw.length} bytes`);
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  const sig = Buffer.from(signature, 'base64');
  if (sig.length !== 64) return false;
  return verify(null, bytes, key, sig);
}
