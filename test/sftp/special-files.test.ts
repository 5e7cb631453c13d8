/**
 * The sftp driver against the real sshd, where the server's folder holds something other than a
 * file (issue 11, findings 8 and 16): a FIFO is named and never opened (OpenSSH's sftp-server
 * would block in open(2) and the whole session with it), a folder is named, and a name over 255
 * bytes is named instead of the server's "Bad message".
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import { ConfigError } from '../../src/errors.js';
import { listAll, putObject, readKey, rejectsWithKind, seededBytes } from '../conformance/suite.js';
import { describeWithServer, freshRoot, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

function driverFor(server: SftpTestServer, root: string): SftpDriver {
  return new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root)));
}

describeWithServer('sftp: special files and long names', (server: SftpTestServer) => {
  after(removeFreshRoots);

  it('a FIFO or a folder where a file should be: named, never opened, not listed; the session stays usable', { timeout: 20_000 }, async () => {
    const root = await freshRoot(server, 'special');
    const driver = driverFor(server, root);
    try {
      await putObject(driver, 'b/file', seededBytes(10, 2));
      execFileSync('mkfifo', [join(root, 'b', 'pipe')]);
      await mkdir(join(root, 'b', 'empty'));
      assert.equal(await driver.whatIsAt('b/pipe'), 'fifo');
      assert.equal(await driver.whatIsAt('b/empty'), 'folder');
      for (const [key, what] of [['b/pipe', /a FIFO \(named pipe\) is there, not a regular file/], ['b/empty', /a folder is there/]] as const) {
        const err = await rejectsWithKind(() => driver.openRead(key), 'not-found', `openRead(${key})`, 'E_NOT_A_FILE');
        assert.match(err.message, what);
      }
      assert.deepEqual((await listAll(driver, '')).map((e) => e.key), ['b/file']);
      assert.deepEqual(await readKey(driver, 'b/file'), seededBytes(10, 2), 'the connection still answers');
    } finally {
      await driver.close();
    }
  });

  it('a name over 255 bytes: refused in the config for root, named in the error for a key', async () => {
    const long = 'n'.repeat(300);
    assert.throws(() => parseSftpOptions('nas', sectionFor(server, `/tmp/${long}`)), (err: unknown) =>
      err instanceof ConfigError && /"root" has a folder name too long for the server's file system: "n{40}…" is 300 bytes, at most 255 are allowed; shorten it$/.test(err.message));
    const driver = driverFor(server, await freshRoot(server, 'long'));
    try {
      const err = await rejectsWithKind(() => putObject(driver, `${long}/file`, seededBytes(4, 3)), 'permanent', 'writing under a 300-byte folder name', 'E_NAME_TOO_LONG');
      assert.match(err.message, /a name in the key is too long for the server's file system: "n{40}…" is 300 bytes, at most 255 are allowed/);
      assert.doesNotMatch(err.message, /malformed|Bad message/);
    } finally {
      await driver.close();
    }
  });
});
