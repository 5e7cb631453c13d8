/**
 * The local cache of earlier copies' manifests (src/core/manifest-cache.ts) at an sftp
 * destination: a manifest offsite wrote is read back the next night from the cache, only its last
 * bytes from the server; a manifest replaced at the server, or a damaged cache file, is read
 * whole from the server again and the index holds what the server's manifest says.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { ManifestCache } from '../../src/core/manifest-cache.js';
import { buildReuseIndex, reusableCopies } from '../../src/core/reuse-copies.js';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import type { Entry } from '../../src/drivers/types.js';
import { buildManifestBody, manifestKey, writeManifestAt, type ManifestFile } from '../../src/manifest/manifest.js';
import { describeWithServer, freshRoot, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

const NIGHT1 = 'backup_2026_01_01_02_00_00';
const NIGHT2 = 'backup_2026_01_02_02_00_00';

function files(count: number, hashDigit: string): ManifestFile[] {
  return Array.from({ length: count }, (_, i) => ({
    path: `binlogs/insert_log/1/2/3/${String(i).padStart(4, '0')}/100/1`, size: 1000 + i,
    hash: `xxh64:${hashDigit.repeat(12)}${i.toString(16).padStart(4, '0')}`, chunks: [`xxh64:${hashDigit.repeat(12)}${i.toString(16).padStart(4, '0')}`],
  }));
}

describeWithServer('manifest cache (sftp)', (server: SftpTestServer) => {
  const cacheDirs: string[] = [];
  after(async () => {
    await removeFreshRoots();
    for (const dir of cacheDirs) await rm(dir, { recursive: true, force: true });
  });

  /** Builds the reuse index of night 2 through `cache`; the bytes read from the server meanwhile. */
  async function index(driver: SftpDriver, cache: ManifestCache): Promise<{ bytesRead: number; holds: (file: ManifestFile) => boolean; size: number }> {
    const before = driver.counters.bytesRead;
    const listed = new Map<string, Entry>();
    const copies = await reusableCopies(driver, NIGHT2, { manifests: listed });
    const built = await buildReuseIndex(driver, copies, { cache: { manifests: cache, listed } });
    await cache.tidy(driver);
    return {
      bytesRead: driver.counters.bytesRead - before,
      holds: (file) => built.find(file, 1024 * 1024) !== undefined,
      size: built.size,
    };
  }

  it('a manifest offsite wrote is read from the cache (its last bytes from the server); a replaced one, or a damaged cache, is read whole again', async () => {
    const root = await freshRoot(server, 'manifest-cache');
    const cacheDir = await mkdtemp(join(tmpdir(), 'offsite-manifest-cache-'));
    cacheDirs.push(cacheDir);
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root)));
    try {
      const key = manifestKey(NIGHT1);
      const written = buildManifestBody({ kind: 'complete', backup: NIGHT1, source: 'test', chunkBytes: 1024 * 1024, files: files(300, 'a') });
      await writeManifestAt(new ManifestCache(cacheDir).recording(driver, key), key, written);
      const size = (await driver.stat(key))?.size ?? 0;
      assert.ok(size > 30_000, `a manifest of some size (${size} bytes)`);
      assert.equal((await readdir(join(cacheDir, 'manifests'))).filter((n) => n.endsWith('.meta')).length, 1, 'cached as written');

      // The next night: only the last bytes come from the server.
      const hit = await index(driver, new ManifestCache(cacheDir));
      assert.ok(hit.bytesRead > 0 && hit.bytesRead <= 256, `read ${hit.bytesRead} bytes of the ${size}-byte manifest from the server`);
      assert.equal(hit.size, 300);
      assert.ok(hit.holds(written.files[7] as ManifestFile));

      // Replaced at the server (same size, other hashes): read whole, and the index holds the new records.
      const replaced = buildManifestBody({ kind: 'complete', backup: NIGHT1, source: 'test', chunkBytes: 1024 * 1024, files: files(300, 'b'), createdAt: new Date(written.createdAt) });
      await writeManifestAt(driver, key, replaced);
      assert.equal((await driver.stat(key))?.size, size, 'the replacement has the same size');
      const missed = await index(driver, new ManifestCache(cacheDir));
      // Whole, and first its last bytes when the replacement landed within the same second as the
      // original (SFTP mtimes have 1-second resolution: same size, same fingerprint, other digest).
      assert.ok(missed.bytesRead === size || missed.bytesRead === size + 256, `the replaced manifest is read whole (read ${missed.bytesRead} bytes of ${size})`);
      assert.ok(missed.holds(replaced.files[7] as ManifestFile) && !missed.holds(written.files[7] as ManifestFile), 'the index holds what the server says');
      const again = await index(driver, new ManifestCache(cacheDir));
      assert.ok(again.bytesRead <= 256, 'and cached from that read');

      // A damaged cache file: read whole from the server again, nothing of the damage used.
      const manifests = join(cacheDir, 'manifests');
      const data = join(manifests, (await readdir(manifests)).find((n) => n.endsWith('.json')) as string);
      const bytes = await readFile(data);
      bytes[2000] = bytes[2000] === 0x61 ? 0x62 : 0x61;
      await writeFile(data, bytes);
      const healed = await index(driver, new ManifestCache(cacheDir));
      assert.equal(healed.bytesRead, size + bytes.subarray(-256).length, 'the tail, then the whole manifest');
      assert.ok(healed.holds(replaced.files[7] as ManifestFile) && healed.size === 300);
      assert.ok((await index(driver, new ManifestCache(cacheDir))).bytesRead <= 256, 'cached again');

      // A copy gone from the destination: its entry is removed from the cache.
      await driver.delete(key);
      await index(driver, new ManifestCache(cacheDir));
      assert.deepEqual(await readdir(manifests), []);
    } finally {
      await driver.close();
    }
  });
});
