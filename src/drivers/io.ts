/**
 * Small whole-object helpers on top of the driver contract, for objects that are small by
 * construction (manifests, meta JSON, checkpoints). Never use them for backup data files.
 */
import type { Driver, SignalOptions } from './types.js';

/** Reads a whole (small) object. A missing key rejects with kind `not-found`. */
export async function readBytes(driver: Driver, key: string, options: SignalOptions = {}): Promise<Buffer> {
  const stream = await driver.openRead(key, options);
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.isBuffer(part) ? part : Buffer.from(part as Uint8Array));
  return Buffer.concat(parts);
}

/** Writes a whole (small) object atomically as a single part. `unpaced`: see `WriteOptions.unpaced`. */
export async function writeBytes(driver: Driver, key: string, bytes: Uint8Array, hash: string, options: SignalOptions & { readonly unpaced?: boolean } = {}): Promise<void> {
  const session = await driver.openWrite(key, { size: bytes.length, partBytes: Math.max(1, bytes.length), signal: options.signal, unpaced: options.unpaced });
  try {
    if (bytes.length > 0) await session.write(0, bytes, { signal: options.signal });
    await session.commit({ hash, signal: options.signal });
  } catch (err) {
    await session.abort();
    throw err;
  }
}
