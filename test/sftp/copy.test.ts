/**
 * `copyWithin` on the sftp driver, each strategy on a server that forces it: OpenSSH's
 * `copy-data` (root account), a hard link and a copy through this machine (the SFTP-only
 * account, whose server is refused `copy-data`); what a copy costs in requests and round trips,
 * and what it does with whatever holds its temp name.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import { listAll, putObject, readKey, rejectsWithKind, seededBytes } from '../conformance/suite.js';
import { describeWithServer, freshRoot, recordRequests, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

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

  it('copy-data costs four round trips; a new backup\'s folders are made without LSTATs, shared by copies at once', async () => {
    const root = await freshRoot(server, 'copy-cost');
    await mkdir(join(root, 'old', 'seg1'), { recursive: true });
    await mkdir(join(root, 'old', 'seg2'), { recursive: true });
    await mkdir(join(root, 'new'), { recursive: true });
    await writeFile(join(root, 'old', 'seg1', 'f'), 'one');
    await writeFile(join(root, 'old', 'seg2', 'f'), 'two');
    // One connection: the copies at once share it, and the order of their requests is known.
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root, { connections: 1 })));
    const log = recordRequests();
    try {
      await listAll(driver, '');
      // The source's OPEN may go out while the temp's OPEN is still unanswered, so the waits can
      // merge into 3; never more than 4 (it was 6).
      const known = await log.during(() => driver.copyWithin('old/seg1/f', 'new/f'));
      assert.deepEqual(known.sent, ['lstat', 'open', 'open', 'ext_copy_data', 'fstat', 'ext_openssh_fsync', 'close', 'close', 'ext_openssh_rename'], 'in known folders: the source\'s LSTAT with the temp\'s OPEN (O_EXCL: no LSTAT of it), the source\'s OPEN, copy + FSTAT + fsync, CLOSEs + rename');
      assert.ok(known.roundTrips >= 3 && known.roundTrips <= 4, `in known folders: 3 or 4 round trips, not ${known.roundTrips}`);
      const fresh = await log.during(() => driver.copyWithin('old/seg1/f', 'night/a/b/f'));
      assert.deepEqual(fresh.sent.filter((name) => name === 'lstat' || name === 'mkdir'), ['lstat', 'lstat', 'lstat', 'lstat', 'mkdir', 'mkdir', 'mkdir'], 'new folders under a listed one: looked at once, then made');
      // Below folders this driver made: MKDIR at once, and copies into the same new folder share it.
      const shared = await log.during(() => Promise.all([driver.copyWithin('old/seg1/f', 'night/a/c/f1'), driver.copyWithin('old/seg2/f', 'night/a/c/f2')]));
      assert.deepEqual(shared.sent.filter((name) => name === 'lstat' || name === 'mkdir').sort(), ['lstat', 'lstat', 'mkdir'], 'the sources\' LSTATs and one MKDIR');
      assert.ok(shared.roundTrips <= 4, `the folder made along with the sources' LSTATs: four round trips, not ${shared.roundTrips}`);
      for (const [key, body] of [['new/f', 'one'], ['night/a/b/f', 'one'], ['night/a/c/f1', 'one'], ['night/a/c/f2', 'two']] as const) {
        assert.equal(await readFile(join(root, key), 'utf8'), body, key);
      }
      assert.deepEqual((await readdir(join(root, 'night', 'a', 'c'))).sort(), ['f1', 'f2'], 'no temp file left');
    } finally {
      log.restore();
      await driver.close();
    }
  });

  it('a file a killed copy left under the temp name is replaced; a symlink there is refused, never written through', async () => {
    const root = await freshRoot(server, 'copy-temp');
    const outside = await freshRoot(server, 'copy-temp-outside');
    await mkdir(join(root, 'old'), { recursive: true });
    await mkdir(join(root, 'new'), { recursive: true });
    await writeFile(join(root, 'old', 'f'), 'the bytes');
    await writeFile(join(root, 'new', '.left.offsite-partial'), 'half a copy from a killed run, longer than the source');
    await mkdir(outside, { recursive: true });
    await writeFile(join(outside, 'victim'), 'untouched');
    await symlink(join(outside, 'victim'), join(root, 'new', '.linked.offsite-partial'));
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root)));
    try {
      await driver.copyWithin('old/f', 'new/left', { expect: { size: 9 } });
      assert.equal(await readFile(join(root, 'new', 'left'), 'utf8'), 'the bytes');
      const err = await rejectsWithKind(() => driver.copyWithin('old/f', 'new/linked'), 'permanent', 'copy onto a symlinked temp name', 'E_TEMP_IN_THE_WAY');
      assert.match(err.message, /the temp name \.linked\.offsite-partial is taken by something that is not a file \(a symlink\); remove it$/);
      assert.equal(await readFile(join(outside, 'victim'), 'utf8'), 'untouched');
      assert.deepEqual((await readdir(join(root, 'new'))).sort(), ['.linked.offsite-partial', 'left'], 'the old temp file gone, nothing made under the name');
      await rejectsWithKind(() => driver.copyWithin('old/f', 'new/other', { expect: { size: 8 } }), 'integrity', 'a source that is not as expected', 'E_COPY_SOURCE_CHANGED');
      assert.deepEqual((await readdir(join(root, 'new'))).sort(), ['.linked.offsite-partial', 'left'], 'the temp file made with the source\'s look removed again');
    } finally {
      await driver.close();
    }
  });
});
