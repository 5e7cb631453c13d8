/**
 * `copyWithin` on the sftp driver, each strategy on a server that forces it: OpenSSH's
 * `copy-data` (root account), a hard link and a copy through this machine (the SFTP-only
 * account, whose server is refused `copy-data`).
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import { putObject, readKey, seededBytes } from '../conformance/suite.js';
import { describeWithServer, freshRoot, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

const DATA = seededBytes(3 * 1024 * 1024 + 17, 9);

describeWithServer('sftp copyWithin', (server: SftpTestServer) => {
  after(removeFreshRoots);

  async function copyAndInspect(root: string, overrides: Record<string, unknown>, link = false): Promise<{ sameInode: boolean; sent: number; received: number }> {
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root, overrides)));
    try {
      await putObject(driver, 'old/backup/file.bin', DATA, 1024 * 1024);
      await putObject(driver, 'new/backup/file.bin', Buffer.from('to be replaced'));
      const before = { ...driver.counters };
      await driver.copyWithin('old/backup/file.bin', 'new/backup/file.bin', { link });
      await driver.copyWithin('old/backup/file.bin', 'fresh/deep/er/file.bin', { link });
      assert.ok((await readKey(driver, 'new/backup/file.bin')).equals(DATA));
      assert.ok((await readKey(driver, 'fresh/deep/er/file.bin')).equals(DATA));
      const sent = driver.counters.bytesWritten - before.bytesWritten;
      const received = driver.counters.bytesRead - before.bytesRead - 2 * DATA.length; // minus the checks above
      const [a, b] = await Promise.all([stat(join(root, 'old/backup/file.bin')), stat(join(root, 'new/backup/file.bin'))]);
      return { sameInode: a.ino === b.ino, sent, received };
    } finally {
      await driver.close();
    }
  }

  it('copy-data: a real copy made by the server, no file bytes over the connection', async () => {
    const result = await copyAndInspect(await freshRoot(server, 'copy'), {});
    assert.deepEqual(result, { sameInode: false, sent: 0, received: 0 });
  });

  it('without copy-data, serverSideCopy auto makes a hard link only when asked (link), else sends the bytes', async (t) => {
    if (!server.sftpOnlyUsername || !server.sftpOnlyRoot) return t.skip('no SFTP-only account on the test sshd');
    const linked = await copyAndInspect(await freshRoot(server, 'link', server.sftpOnlyRoot), { username: server.sftpOnlyUsername }, true);
    assert.deepEqual(linked, { sameInode: true, sent: 0, received: 0 });
    const copied = await copyAndInspect(await freshRoot(server, 'nolink', server.sftpOnlyRoot), { username: server.sftpOnlyUsername });
    assert.deepEqual(copied, { sameInode: false, sent: 2 * DATA.length, received: 2 * DATA.length });
  });

  it('without copy-data, serverSideCopy copy reads and writes through this machine', async (t) => {
    if (!server.sftpOnlyUsername || !server.sftpOnlyRoot) return t.skip('no SFTP-only account on the test sshd');
    const result = await copyAndInspect(await freshRoot(server, 'stream', server.sftpOnlyRoot), { username: server.sftpOnlyUsername, serverSideCopy: 'copy' });
    assert.deepEqual(result, { sameInode: false, sent: 2 * DATA.length, received: 2 * DATA.length });
  });

  it('serverSideCopy false turns the capability off', async () => {
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, '/x', { serverSideCopy: false })));
    assert.equal(driver.capabilities.serverSideCopy, false);
    await driver.close();
  });
});
