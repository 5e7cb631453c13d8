/**
 * Replication from a verified copy (origin mode: pull and repair) looks at the copy no more than
 * it must: one listing for sizes (without the stored hash an object store fetches with a HEAD
 * per object) and one read per file, no `stat` after each read. Each file is proved by its
 * record's hash instead, so a copy whose bytes changed is still never committed at the target.
 */
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { replicate } from '../../src/core/replicate.js';
import { verifyCopy } from '../../src/core/verify.js';
import { LocalDriver } from '../../src/drivers/local/index.js';
import type { Readable } from 'node:stream';
import type { Capabilities, Entry, ListOptions, ReadOptions, SignalOptions } from '../../src/drivers/types.js';
import { manifestKey, readManifestAt, type Manifest } from '../../src/manifest/manifest.js';

const KiB = 1024;
const NAME = 'origin_2025_07_01';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** A local copy that counts the calls replication makes of it. */
class CountingDriver extends LocalDriver {
  readonly stats: string[] = [];
  readonly listings: (ListOptions | undefined)[] = [];

  override stat(key: string, options?: SignalOptions): Promise<Entry | undefined> {
    this.stats.push(key);
    return super.stat(key, options);
  }

  override list(prefix: string, options?: ListOptions): AsyncIterable<Entry> {
    this.listings.push(options);
    return super.list(prefix, options);
  }
}

/**
 * A local copy that says it reads conditionally (as object stores do, with If-Match), and keeps
 * the condition each data read was given; the read itself is the local one.
 */
class ConditionalDriver extends CountingDriver {
  readonly conditions = new Map<string, string | undefined>();

  constructor(name: string, options: ConstructorParameters<typeof LocalDriver>[1], conditional: boolean) {
    super(name, options);
    (this as { capabilities: Capabilities }).capabilities = { ...this.capabilities, conditionalReads: conditional };
  }

  override openRead(key: string, options?: ReadOptions): Promise<Readable> {
    if (!key.includes('/.offsite/')) this.conditions.set(key, options?.ifFingerprint);
    const { ifFingerprint: _condition, ...rest } = options ?? {};
    return super.openRead(key, rest);
  }
}

async function copyWithManifest(): Promise<{ dir: string; manifest: Manifest }> {
  const dir = mkdtempSync(join(tmpdir(), 'offsite-origin-'));
  dirs.push(dir);
  await generateBackup({ root: join(dir, 'source'), name: NAME, totalBytes: 2 * 1024 * KiB, files: 12, seed: 23 });
  const source = new LocalDriver('source', { root: join(dir, 'source'), maxConcurrency: 8 });
  const copy = new LocalDriver('copy', { root: join(dir, 'copy'), maxConcurrency: 8 });
  const made = await replicate({ source, backup: NAME, destinations: [copy], quietPeriodMs: 0, chunkBytes: 64 * KiB });
  assert.equal(made.destinations[0]?.status, 'complete');
  const manifest = await readManifestAt(copy, manifestKey(NAME));
  assert.ok(manifest);
  return { dir, manifest };
}

function pullFrom(origin: LocalDriver, target: LocalDriver, manifest: Manifest) {
  return replicate({
    source: origin, backup: NAME, destinations: [target],
    origin: { files: manifest.files, chunkBytes: manifest.chunkBytes, source: manifest.source },
  });
}

describe('replication from a verified copy (origin mode)', () => {
  it('lists the copy once without stored hashes and never stats a data file; the target deep-verifies', async () => {
    const { dir, manifest } = await copyWithManifest();
    const origin = new CountingDriver('copy', { root: join(dir, 'copy'), maxConcurrency: 8 });
    const target = new LocalDriver('target', { root: join(dir, 'target'), maxConcurrency: 8 });
    const result = await pullFrom(origin, target, manifest);
    assert.equal(result.destinations[0]?.status, 'complete', JSON.stringify(result.destinations[0]?.errors));
    const dataStats = origin.stats.filter((key) => !key.includes('/.offsite/'));
    assert.deepEqual(dataStats, [], 'no stat of a data file after its read');
    assert.deepEqual(origin.listings.map((o) => o?.hashes), [false], 'one listing, sizes only');
    const check = await verifyCopy({ driver: target, backup: NAME, level: 'deep' });
    assert.equal(check.status, 'ok', JSON.stringify(check.damage));
  });

  it('a byte flipped in the copy (same size, same listing) is still caught by its hash: that file is not committed', async () => {
    const { dir, manifest } = await copyWithManifest();
    const largest = [...manifest.files].sort((a, b) => b.size - a.size)[0];
    assert.ok(largest && largest.size > 0);
    const path = join(dir, 'copy', NAME, largest.path);
    const fd = openSync(path, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, 0);
    byte[0] = (byte[0] as number) ^ 0xff;
    writeSync(fd, byte, 0, 1, 0);
    closeSync(fd);
    assert.equal(statSync(path).size, largest.size);
    const origin = new CountingDriver('copy', { root: join(dir, 'copy'), maxConcurrency: 8 });
    const target = new LocalDriver('target', { root: join(dir, 'target'), maxConcurrency: 8 });
    const result = await pullFrom(origin, target, manifest);
    const copied = result.destinations[0];
    assert.equal(copied?.status, 'failed');
    assert.ok(copied?.errors.some((e) => e.path === largest.path && /E_ORIGIN_DAMAGED|damaged/.test(`${e.code ?? ''} ${e.message}`)), JSON.stringify(copied?.errors));
    assert.equal(await target.stat(`${NAME}/${largest.path}`), undefined, 'the damaged file is not committed under its name');
  });

  it('a source that reads conditionally reads each file on the fingerprint its listing gave; one that does not is given none (the hash proves the read)', async () => {
    const { dir, manifest } = await copyWithManifest();
    for (const conditional of [true, false]) {
      const origin = new ConditionalDriver('copy', { root: join(dir, 'copy'), maxConcurrency: 8 }, conditional);
      const target = new LocalDriver('target', { root: join(dir, `target-${conditional}`), maxConcurrency: 8 });
      const result = await pullFrom(origin, target, manifest);
      assert.equal(result.destinations[0]?.status, 'complete', JSON.stringify(result.destinations[0]?.errors));
      const listed = new Map<string, string | undefined>();
      for await (const entry of origin.list(`${NAME}/`)) if (!entry.key.includes('/.offsite/')) listed.set(entry.key, entry.fingerprint);
      assert.equal(origin.conditions.size, manifest.files.length, 'every file read once');
      for (const [key, condition] of origin.conditions) {
        if (conditional) assert.ok(condition !== undefined && condition === listed.get(key), `${key}: read on ${condition}, listed as ${listed.get(key)}`);
        else assert.equal(condition, undefined, key);
      }
    }
  });
});
