/**
 * Reading and listing on the sftp driver: pieces shaped by `pieceBytes`/`allocate`, large
 * folders (several READDIR batches), symlinks, temp files hidden, the read-back counters.
 */
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import { listAll, putObject, readAll, seededBytes } from '../conformance/suite.js';
import { describeWithServer, freshRoot, recordRequests, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

function driverFor(server: SftpTestServer, root: string, overrides: Record<string, unknown> = {}): SftpDriver {
  return new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root, overrides)));
}

describeWithServer('sftp reads and lists', (server: SftpTestServer) => {
  after(removeFreshRoots);

  it('openRead yields pieces of exactly pieceBytes from the caller\'s allocate, at any offset', async () => {
    const driver = driverFor(server, await freshRoot(server, 'read'), { requestBytes: 40_000, concurrencyPerFile: 5 });
    try {
      const data = seededBytes(3 * 1024 * 1024 + 12_345, 1);
      await putObject(driver, 'f.bin', data, 1024 * 1024);
      for (const [offset, pieceBytes] of [[0, 1024 * 1024], [0, 100_000], [7, 65_536], [data.length - 10, 4096]] as const) {
        const handed = new Set<Buffer>();
        const allocate = (size: number): Buffer => {
          const buffer = Buffer.alloc(size);
          handed.add(buffer);
          return buffer;
        };
        const stream = await driver.openRead('f.bin', { offset, pieceBytes, allocate });
        const pieces: Buffer[] = [];
        for await (const piece of stream) pieces.push(piece as Buffer);
        const want = data.subarray(offset);
        assert.ok(Buffer.concat(pieces).equals(want), `offset ${offset} pieceBytes ${pieceBytes}`);
        pieces.forEach((piece, i) => {
          assert.ok(handed.has(piece), 'each piece is a buffer from allocate');
          if (i < pieces.length - 1) assert.equal(piece.length, pieceBytes);
        });
      }
    } finally {
      await driver.close();
    }
  });

  it('a read stream that is not consumed stops reading ahead (bounded memory)', async () => {
    const driver = driverFor(server, await freshRoot(server, 'read'), { requestBytes: 65_536, concurrencyPerFile: 4 });
    try {
      const data = seededBytes(16 * 1024 * 1024, 2);
      await putObject(driver, 'big.bin', data, 4 * 1024 * 1024);
      const before = driver.counters.bytesRead;
      const stream = await driver.openRead('big.bin', { pieceBytes: 1024 * 1024 });
      const first = await new Promise<Buffer>((resolve) => stream.once('data', resolve));
      stream.pause();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const ahead = driver.counters.bytesRead - before - first.length;
      assert.ok(ahead <= 4 * 65_536 + 3 * 1024 * 1024, `read ahead ${ahead} bytes while paused`);
      stream.resume();
      const rest = await readAll(stream);
      assert.ok(Buffer.concat([first, rest]).equals(data));
    } finally {
      await driver.close();
    }
  });

  it('lists folders larger than one READDIR reply, follows symlinks to files, hides temp files', async () => {
    const root = await freshRoot(server, 'list');
    await mkdir(join(root, 'many'), { recursive: true });
    for (let i = 0; i < 450; i++) await writeFile(join(root, 'many', `file-${String(i).padStart(3, '0')}`), String(i));
    await writeFile(join(root, 'many', '.file-001.offsite-partial'), 'partial');
    await mkdir(join(root, 'links'));
    await writeFile(join(root, 'target.bin'), 'target!');
    await symlink(join(root, 'target.bin'), join(root, 'links', 'to-file'));
    await symlink(join(root, 'many'), join(root, 'links', 'to-folder'));
    await symlink(join(root, 'missing'), join(root, 'links', 'dangling'));
    const driver = driverFor(server, root);
    try {
      const many = await listAll(driver, 'many/');
      assert.equal(many.length, 450);
      assert.equal(many[7]?.key, 'many/file-007');
      assert.deepEqual((await listAll(driver, 'links/')).map((e) => [e.key, e.size]), [['links/to-file', 7]]);
      assert.equal((await listAll(driver, '')).length, 452);
      assert.equal((await driver.stat('links/to-file'))?.size, 7);
    } finally {
      await driver.close();
    }
  });

  it('keys that name temp files are refused before any IO', async () => {
    const driver = driverFor(server, await freshRoot(server, 'keys'));
    try {
      await assert.rejects(() => driver.stat('a/.b.offsite-partial'), (err: unknown) => (err as { code?: string }).code === 'E_BAD_KEY');
    } finally {
      await driver.close();
    }
  });

  it('list with descend does not open the folders it turns down', async () => {
    const root = await freshRoot(server, 'descend');
    for (const folder of ['b1/.offsite', 'b1/binlogs/seg', 'b2/.offsite', 'b2/binlogs/seg/field']) await mkdir(join(root, folder), { recursive: true });
    for (const file of ['top', 'b1/.offsite/manifest.json', 'b1/binlogs/seg/f', 'b2/.offsite/manifest.json', 'b2/binlogs/seg/field/f']) await writeFile(join(root, file), 'x');
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root)));
    const log = recordRequests();
    try {
      const descend = (folder: string): boolean => !folder.includes('/') || folder.endsWith('/.offsite');
      const keys: string[] = [];
      for await (const entry of driver.list('', { descend })) keys.push(entry.key);
      assert.deepEqual(keys.sort(), ['b1/.offsite/manifest.json', 'b2/.offsite/manifest.json', 'top']);
      assert.equal(log.take().sent.filter((name) => name === 'opendir').length, 5, 'the root, b1, b1/.offsite, b2, b2/.offsite');
      assert.equal((await listAll(driver, '')).length, 5, 'without it, everything');
    } finally {
      log.restore();
      await driver.close();
    }
  });
});
