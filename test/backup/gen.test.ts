import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { inspectBackup, readMetaJson } from '../../src/backup/index.js';
import { generateBackup, parseSize } from '../../scripts/gen-backup.js';
import { createFsSource } from './fs-source.js';
import { NOW, SMALL, gen, tempRoot } from './helpers.js';

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const dirent of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, dirent.name);
    if (dirent.isDirectory()) out.push(...await walk(path));
    else out.push(path);
  }
  return out.sort();
}

/** Hash of every relative path and its bytes. */
async function treeHash(dir: string): Promise<string> {
  const hash = createHash('sha256');
  for (const path of await walk(dir)) {
    hash.update(relative(dir, path).split(sep).join('/')).update('\0').update(await readFile(path)).update('\0');
  }
  return hash.digest('hex');
}

describe('generateBackup', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('gen')));
  after(() => cleanup());

  it('is deterministic: same seed, same bytes; another seed, other bytes', async () => {
    const a = await gen(join(root, 'one'), 'same', { seed: 5, variant: 'v0.5.9', noise: true });
    const b = await gen(join(root, 'two'), 'same', { seed: 5, variant: 'v0.5.9', noise: true, concurrency: 1 });
    const c = await gen(join(root, 'three'), 'same', { seed: 6, variant: 'v0.5.9' });
    assert.equal(await treeHash(join(root, 'one')), await treeHash(join(root, 'two')));
    assert.notEqual(await treeHash(a.dir), await treeHash(c.dir));
    assert.deepEqual(a.ids, b.ids);
    assert.deepEqual(a.noiseKeys, b.noiseKeys);
  });

  it('writes 18-digit int64 IDs byte for byte, as bare JSON numbers, and uses them in paths', async () => {
    const made = await gen(root, 'ids', { variant: 'head', seed: 8 });
    const text = await readFile(join(made.dir, 'meta', 'full_meta.json'), 'utf8');
    const all = [...made.ids.collections, ...made.ids.partitions, ...made.ids.segments, ...made.ids.l0Segments, made.ids.firstLogId];
    for (const id of all) {
      assert.match(id, /^\d{18}$/);
      assert.ok(BigInt(id) > 2n ** 53n);
    }
    assert.ok(text.includes(`"collection_id":${made.ids.collection},`), 'bare number in the JSON text');
    assert.ok(text.includes(`"log_id":${made.ids.firstLogId}`));
    assert.ok(!text.includes(`"${made.ids.collection}"`), 'never quoted');
    // Read back losslessly: the same digits.
    const meta = await readMetaJson(createFsSource(root), 'ids/meta/full_meta.json') as {
      collection_backups: Array<{ collection_id: string; partition_backups: Array<{ partition_id: string; segment_backups?: Array<{ segment_id: string; group_id?: string }> }>; l0_segments?: Array<{ segment_id: string; partition_id: string }> }>;
    };
    assert.deepEqual(meta.collection_backups.map((c) => c.collection_id), made.ids.collections);
    assert.deepEqual(meta.collection_backups.flatMap((c) => c.partition_backups.map((p) => p.partition_id)), made.ids.partitions);
    const segs = meta.collection_backups.flatMap((c) => c.partition_backups.flatMap((p) => p.segment_backups ?? []));
    assert.ok(segs.every((s) => s.group_id === s.segment_id), '0.4.4+: group_id == segment_id');
    assert.deepEqual(meta.collection_backups.flatMap((c) => (c.l0_segments ?? []).map((s) => s.partition_id)), made.ids.collections.map(() => '-1'));
    // Path components: binlogs/insert_log/<coll>/<part>/<seg>/<seg>/<field>/<log>.
    const files = (await walk(join(made.dir, 'binlogs'))).map((p) => relative(made.dir, p).split(sep));
    for (const parts of files) {
      assert.ok(made.ids.collections.includes(parts[2] as string), parts.join('/'));
      if (parts[1] === 'insert_log') {
        assert.equal(parts.length, 8, parts.join('/'));
        assert.ok(made.ids.partitions.includes(parts[3] as string));
        assert.equal(parts[4], parts[5], 'segment ID twice');
        assert.ok(['0', '1', '100', '101', '102'].includes(parts[6] as string));
        assert.match(parts[7] as string, /^\d{18}$/);
      } else {
        assert.equal(parts[1], 'delta_log');
        assert.equal(parts.length, parts[3] === '-1' ? 6 : 7, parts.join('/'));
      }
    }
  });

  it('log_path uses the Milvus key, log_size the real size, and file contents the right magic', async () => {
    for (const variant of ['v0.4.3', 'storage-v2'] as const) {
      const made = await gen(root, `magic_${variant.replace(/[.-]/g, '_')}`, { variant, seed: 9 });
      const text = await readFile(join(made.dir, 'meta', 'full_meta.json'), 'utf8');
      const logPaths = [...text.matchAll(/"log_path":"([^"]+)"/g)].map((m) => m[1] as string);
      assert.equal(logPaths.length, made.binlogs);
      assert.ok(logPaths.every((p) => /^files\/(insert_log|delta_log)\/\d{18}\/(\d{18}|-1)\/\d{18}\/(\d+\/)?\d{18}$/.test(p)), logPaths[0]);
      if (variant === 'v0.4.3') {
        assert.ok(!text.includes('"log_id"'), 'no log_id before 0.5.4');
        assert.ok(!text.includes('"group_id"'), 'no group_id before 0.4.4');
        assert.match(await readFile(join(made.dir, 'meta', 'backup_meta.json'), 'utf8'), /"state_code":2,"start_time":\d{13},/);
      } else {
        assert.match(text, /"storage_version":2/);
        assert.match(await readFile(join(made.dir, 'meta', 'backup_meta.json'), 'utf8'), /^\{"id":"[0-9a-f-]{36}","state_code":0,"name":/);
      }
      for (const path of await walk(join(made.dir, 'binlogs'))) {
        const bytes = await readFile(path);
        if (variant === 'storage-v2') {
          assert.equal(bytes.subarray(0, 4).toString('latin1'), 'PAR1');
          assert.equal(bytes.subarray(-4).toString('latin1'), 'PAR1');
        } else {
          assert.deepEqual([...bytes.subarray(0, 4)], [0xbc, 0xfa, 0xff, 0x00]);
        }
      }
      // inspectBackup compares every log_size with the file: complete means they all match.
      assert.equal((await inspectBackup(createFsSource(root), made.name, { nowMs: NOW })).state, 'complete');
    }
  });

  it('honours files and largestFileBytes; contents are incompressible', async () => {
    const made = await gen(root, 'many', { ...SMALL, files: 400, totalBytes: 1024 * 1024, largestFileBytes: 32 * 1024, seed: 10 });
    assert.ok(made.dataFiles >= 360 && made.dataFiles <= 460, `about 400 data files: ${made.dataFiles}`);
    const sizes = await Promise.all((await walk(join(made.dir, 'binlogs'))).map(async (p) => (await stat(p)).size));
    assert.ok(Math.max(...sizes) <= 32 * 1024);
    assert.ok(Math.min(...sizes) < 4096, 'some small files');
    const { gzipSync } = await import('node:zlib');
    const big = (await walk(join(made.dir, 'binlogs'))).find((p) => p.includes(`${sep}101${sep}`)) as string;
    const bytes = await readFile(big);
    assert.ok(gzipSync(bytes).length > bytes.length * 0.98, 'random, not compressible');
  });

  it('refuses to write over an existing backup unless asked', async () => {
    await gen(root, 'twice', { seed: 1 });
    await assert.rejects(gen(root, 'twice', { seed: 1 }), /already exists and is not empty/);
    await gen(root, 'twice', { seed: 2, overwrite: true });
    await assert.rejects(generateBackup({ root, name: '9lives' }), /invalid backup name/);
  });

  it('parseSize understands decimal and binary units', () => {
    assert.equal(parseSize('4MB'), 4_000_000);
    assert.equal(parseSize('4MiB'), 4 * 1024 * 1024);
    assert.equal(parseSize('1GiB'), 1024 ** 3);
    assert.equal(parseSize('512k'), 512 * 1024);
    assert.equal(parseSize('1000'), 1000);
    assert.throws(() => parseSize('lots'));
  });

  it('runs as a CLI', async () => {
    const script = fileURLToPath(new URL('../../scripts/gen-backup.js', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [script, '--root', join(root, 'cli'), '--name', 'from_cli',
      '--variant', 'v0.4.13', '--size', '200KiB', '--seed', '3', '--noise']);
    assert.match(stdout, /^made from_cli at .*from_cli in [\d.]+ s\n {2}variant v0\.4\.13, breakage none, seed 3\n {2}\d+ files, /);
    assert.match(stdout, /noise: milvus_backup_check_dst_/);
    const inspection = await inspectBackup(createFsSource(join(root, 'cli')), 'from_cli');
    assert.equal(inspection.state, 'complete', inspection.reason);
    await assert.rejects(promisify(execFile)(process.execPath, [script, '--root', root, '--name', 'x', '--variant', 'v9']),
      /Allowed choices are v0\.4\.3, v0\.4\.13/);
  });
});
