/**
 * A FIFO, a socket or a folder where a file should be, on the local driver (issue 11, finding
 * 8): `whatIsAt` names it, `openRead` refuses it at once (a FIFO is never waited on: a blocking
 * open would hang the process), and `list` does not show it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { LocalDriver } from '../../src/drivers/local/index.js';
import { listAll, putObject, readKey, rejectsWithKind, seededBytes } from '../conformance/suite.js';

const scratch: string[] = [];
after(async () => {
  for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
});

for (const metadataCalls of ['sync', 'async'] as const) {
  describe(`local driver, special files in place of files (${metadataCalls} metadata calls)`, () => {
    it('names a FIFO, a socket and an empty folder; never opens the FIFO; lists none of them', { timeout: 20_000 }, async () => {
      const root = await mkdtemp(join(tmpdir(), 'offsite-special-'));
      scratch.push(root);
      const driver = new LocalDriver('disk', { root, maxConcurrency: 4, metadataCalls });
      try {
        await putObject(driver, 'b/file', seededBytes(10, 1));
        execFileSync('mkfifo', [join(root, 'b', 'pipe')]);
        await mkdir(join(root, 'b', 'empty'));
        const socket = createServer();
        await new Promise<void>((resolve) => socket.listen(join(root, 'b', 'sock'), resolve));
        try {
          assert.equal(await driver.whatIsAt('b/pipe'), 'fifo');
          assert.equal(await driver.whatIsAt('b/sock'), 'socket');
          assert.equal(await driver.whatIsAt('b/empty'), 'folder');
          for (const [key, what] of [['b/pipe', /a FIFO \(named pipe\) is there, not a regular file/], ['b/sock', /a socket is there/], ['b/empty', /a folder is there/]] as const) {
            const err = await rejectsWithKind(() => driver.openRead(key), 'not-found', `openRead(${key})`, 'E_NOT_A_FILE');
            assert.match(err.message, what);
            assert.match(err.message, new RegExp(`^disk: ${key}: read: `));
            const hashing = await rejectsWithKind(() => driver.readHashes(key, { size: 1, chunkBytes: 4 }), 'not-found', `readHashes(${key})`, 'E_NOT_A_FILE');
            assert.match(hashing.message, what);
          }
          assert.deepEqual((await listAll(driver, '')).map((e) => e.key), ['b/file']);
          assert.deepEqual(await readKey(driver, 'b/file'), seededBytes(10, 1), 'the driver still reads files');
        } finally {
          await new Promise<void>((resolve) => socket.close(() => resolve()));
        }
      } finally {
        await driver.close();
      }
    });
  });
}
