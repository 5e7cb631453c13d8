/**
 * Reading a bucket source (a `minio` source on the real Ceph RGW), as replicate does it: the
 * backup is listed once without a request per object (the listing's ETags are the fingerprints),
 * files are read in pieces of the chunk size with `If-Match` on every GET, and no HEAD follows a
 * read. A source object rewritten after the listing fails that file with E_SOURCE_CHANGED
 * naming it, at every destination, and no manifest is written; the next run, once the backup is
 * stable again, copies it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { generateBackup } from '../../scripts/gen-backup.js';
import { replicate } from '../../src/core/replicate.js';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import { createMinioDriver } from '../../src/drivers/minio/index.js';
import { ForwardingDriver } from '../../src/drivers/wrappers/forwarding.js';
import type { Driver, Entry, ListOptions, ReadOptions, SignalOptions } from '../../src/drivers/types.js';
import type { Readable } from 'node:stream';
import { filesUnder, tempDir, treeDigest } from '../helpers/cli.js';
import { adminClient, freshBucket, removeFreshBuckets, requireServer, type S3TestServer } from '../s3/server.js';
import { minioSection } from '../s3/minio-section.js';

const NAME = 'nightly_2025_08_01';
const MiB = 1024 * 1024;

/** The source's requests, as the engine makes them. */
class Counting extends ForwardingDriver {
  stats = 0;
  listings: ListOptions[] = [];
  reads: ReadOptions[] = [];
  beforeRead: ((key: string) => Promise<void>) | undefined;

  override list(prefix: string, options?: ListOptions): AsyncIterable<Entry> {
    this.listings.push(options ?? {});
    return this.inner.list(prefix, options);
  }

  override async stat(key: string, options?: SignalOptions): Promise<Entry | undefined> {
    this.stats++;
    return this.inner.stat(key, options);
  }

  override async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
    this.reads.push(options);
    await this.beforeRead?.(key);
    return this.inner.openRead(key, options);
  }
}

describe('a minio source on Ceph RGW', () => {
  let server: S3TestServer;
  let admin: S3Client;
  let dir: string;
  let bucket: string;
  let generated: string;

  before(async () => {
    server = requireServer();
    admin = adminClient(server);
    dir = tempDir('minio-source');
    generated = join(dir, 'generated');
    // Files of several chunks (1 MiB chunks below) and many of one.
    await generateBackup({ root: generated, name: NAME, totalBytes: 10 * MiB, files: 20, seed: 47 });
    bucket = await freshBucket(server, 'source');
    for (const path of filesUnder(join(generated, NAME))) {
      await admin.send(new PutObjectCommand({ Bucket: bucket, Key: `backup/${NAME}/${path}`, Body: readFileSync(join(generated, NAME, path)) }));
    }
  });
  after(async () => { admin?.destroy(); await removeFreshBuckets(); });

  const source = async (): Promise<Counting> => new Counting(await createMinioDriver('source', minioSection(server, { bucketName: bucket, rootPath: 'backup' })) as Driver);

  it('is listed without stored hashes, read conditionally in pieces, and never stat-ed', async () => {
    const counting = await source();
    const disk = await createLocalDriver('disk', { type: 'local', root: join(dir, 'disk') });
    const result = await replicate({ source: counting, backup: NAME, destinations: [disk], quietPeriodMs: 0, chunkBytes: MiB });
    await counting.close();
    assert.equal(result.destinations[0]?.status, 'complete', JSON.stringify(result.destinations[0]?.errors));
    assert.deepEqual(treeDigest(join(dir, 'disk', NAME), ['.offsite/']), treeDigest(join(generated, NAME)));
    assert.ok(counting.listings.length > 0 && counting.listings.every((l) => l.hashes === false), `listings ask for no stored hashes: ${JSON.stringify(counting.listings)}`);
    assert.equal(counting.stats, 0, 'no stat of a source object (the conditional reads say that none changed)');
    const dataReads = counting.reads.filter((r) => r.length !== undefined);
    assert.ok(dataReads.length >= filesUnder(join(generated, NAME)).length - 6, `${dataReads.length} data reads`);
    assert.ok(dataReads.every((r) => r.ifFingerprint?.startsWith('etag:') && r.pieceBytes === MiB), 'every data read is conditional on the listed ETag, in chunk-sized pieces');
  });

  it('fails a file rewritten after the listing with E_SOURCE_CHANGED naming it, and writes no manifest', async () => {
    const victim = filesUnder(join(generated, NAME)).find((p) => p.includes('insert_log')) as string;
    const counting = await source();
    counting.beforeRead = async (key) => {
      if (!key.endsWith(victim)) return;
      counting.beforeRead = undefined;
      // The same size, other bytes: only the ETag tells.
      const bytes = readFileSync(join(generated, NAME, victim));
      await admin.send(new PutObjectCommand({ Bucket: bucket, Key: `backup/${NAME}/${victim}`, Body: Buffer.from(bytes.map((b) => b ^ 0xff)) }));
    };
    const a = await createLocalDriver('a', { type: 'local', root: join(dir, 'a') });
    const b = await createLocalDriver('b', { type: 'local', root: join(dir, 'b') });
    const result = await replicate({ source: counting, backup: NAME, destinations: [a, b], quietPeriodMs: 0, chunkBytes: MiB });
    await counting.close();
    for (const d of result.destinations) {
      assert.equal(d.status, 'failed', d.name);
      const error = d.errors.find((e) => e.code === 'E_SOURCE_CHANGED');
      assert.ok(error, JSON.stringify(d.errors));
      assert.match(error.message, new RegExp(`${NAME}/${victim.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} changed while it was being copied.*run replicate again once the backup is stable`));
    }
    for (const root of ['a', 'b']) assert.deepEqual(filesUnder(join(dir, root, NAME)).filter((p) => p.endsWith('manifest.json') || p === victim), [], `no manifest and no ${victim} at ${root}`);
  });
});
