/**
 * The reuse index of an encrypted destination (src/core/reuse-index.ts, `encrypted`): files match by
 * path, plain size and keyed plaintext MAC only, a match gives the stored record its new record
 * takes, and only copies signed by the destination's key in the current format are indexed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { buildReuseIndex } from '../../src/core/reuse-copies.js';
import { createReuseIndex } from '../../src/core/reuse-index.js';
import { ENCRYPTION_SCHEME, OVERHEAD_BYTES } from '../../src/crypto/format.js';
import { DestinationKey } from '../../src/crypto/keys.js';
import { createDriver } from '../../src/drivers/index.js';
import { withEncryption } from '../../src/drivers/wrappers/encrypt.js';
import { buildManifestBody, manifestKey, writeManifestAt, type ManifestFile } from '../../src/manifest/manifest.js';

const CHUNK = 64 * 1024;
const hex = (n: number): string => `xxh64:${n.toString(16).padStart(16, '0')}`;
const mac = (n: number): string => `hmac-sha256:${n.toString(16).padStart(64, '0')}`;

function sealed(path: string, content: number, size = 1000 + content): ManifestFile {
  return { path, size, hash: hex(content), chunks: [hex(content + 0x1000)], storedSize: size + OVERHEAD_BYTES, mac: mac(content) };
}

describe('reuse index at an encrypted destination', () => {
  const encrypted = { scheme: ENCRYPTION_SCHEME, publicKey: 'pk' };

  it('matches the same path with the same size and MAC (in any indexed copy), and gives the stored record', async () => {
    const index = await createReuseIndex({ encrypted });
    index.add({ backup: 'night2', chunkBytes: CHUNK, files: [sealed('a/1', 1), sealed('a/dup', 1)] });
    index.add({ backup: 'night1', chunkBytes: CHUNK, files: [sealed('old/9', 9)] });
    const query = (f: ManifestFile) => ({ path: f.path, size: f.size, hash: hex(999), chunks: [hex(998)], mac: f.mac });
    assert.deepEqual(index.match(query(sealed('a/1', 1)), CHUNK), { backup: 'night2', path: 'a/1', stored: { size: 1001 + OVERHEAD_BYTES, hash: hex(1), chunks: [hex(0x1001)] } });
    assert.deepEqual(index.match(query(sealed('old/9', 9)), CHUNK)?.backup, 'night1', 'the same path in an older copy');
    assert.equal(index.match(query(sealed('b/moved', 1)), CHUNK), undefined, 'the same plaintext at another path does not open there');
    assert.equal(index.match(query(sealed('a/1', 2, 1001)), CHUNK), undefined, 'another MAC');
    assert.equal(index.match({ ...query(sealed('a/1', 1)), size: 5 }, CHUNK), undefined, 'another size');
    assert.ok(index.mayHold(1001, 'a/1') && index.mayHold(1009, 'old/9'));
    const elsewhere = Array.from({ length: 200 }, (_, i) => `x/${i}`).filter((p) => index.mayHold(1001, p));
    assert.ok(elsewhere.length < 20, `the size bit is per path: ${elsewhere.length} of 200 other paths say maybe`);
    index.add({ backup: 'plain', chunkBytes: CHUNK, files: [{ path: 'p', size: 3, hash: hex(3), chunks: [] }] });
    assert.equal(index.match({ path: 'p', size: 3, hash: hex(3), chunks: [] }, CHUNK), undefined, 'a record without a MAC is not indexed');
  });

  it('indexes only copies signed by this destination\'s key in the current format', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-reuse-enc-'));
    try {
      const inner = await createDriver('vault', { type: 'local', root: join(dir, 'vault') });
      const key = new DestinationKey('vault', Buffer.alloc(32, 5));
      const other = new DestinationKey('vault', Buffer.alloc(32, 6));
      const driver = withEncryption(inner, key, CHUNK);
      const otherDriver = withEncryption(inner, other, CHUNK);
      const body = (backup: string) => buildManifestBody({ kind: 'complete', backup, source: 's', chunkBytes: CHUNK, files: [sealed('a/1', 1)] });
      await writeManifestAt(driver, manifestKey('night3'), body('night3'));
      await writeManifestAt(otherDriver, manifestKey('night2'), body('night2'));
      await writeManifestAt(inner, manifestKey('night1'), body('night1'));
      const skipped: string[] = [];
      const encryption = driver.encryption as NonNullable<typeof driver.encryption>;
      const index = await buildReuseIndex(driver, ['night3', 'night2', 'night1'], {
        encrypted: { scheme: encryption.scheme, publicKey: encryption.publicKey }, onSkipped: (b) => skipped.push(b),
      });
      assert.deepEqual(index.backups, ['night3']);
      // Their manifests do not carry this destination's signature: left out, with a warning (as an audit there reports them).
      assert.deepEqual(skipped, ['night2', 'night1']);
      await driver.close();
      await otherDriver.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
