/**
 * Symlinks on the SFTP server, against the real sshd (it serves this machine's file system, so
 * the links are made here with node:fs): a symlink under the root that leads outside it is
 * refused like the local driver refuses it (stat, openRead, list, openWrite, delete, copyWithin;
 * `KeyError`, kind `permanent`, same message), nothing is written outside, symlinks that stay
 * inside are followed as the local driver follows them, and the checks cost no extra requests
 * for keys in folders a listing walked.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import type { WriteSession } from '../../src/drivers/types.js';
import { listAll, putObject, readKey, rejectsWithKind } from '../conformance/suite.js';
import { describeWithServer, freshRoot, recordRequests, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

const REFUSED = /^nas: key ".*" refused: a symlink on its path points outside the root \(to .*\)$/;

function driverFor(server: SftpTestServer, root: string): SftpDriver {
  return new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root)));
}

/** The same tree as the local driver's symlink tests, plus a link to /etc and dangling links. */
async function layout(server: SftpTestServer): Promise<{ dir: string; root: string; outside: string }> {
  const dir = await freshRoot(server, 'symlinks');
  const root = join(dir, 'root');
  const outside = join(dir, 'outside');
  await mkdir(join(outside, 'sub'), { recursive: true });
  await writeFile(join(outside, 'secret.txt'), 'secret');
  await mkdir(join(root, 'bad'), { recursive: true });
  await mkdir(join(root, 'good'), { recursive: true });
  await mkdir(join(root, 'b1'), { recursive: true });
  await mkdir(join(root, 'odd'), { recursive: true });
  await writeFile(join(root, 'good', 'real.txt'), 'inside');
  await symlink(join(outside, 'secret.txt'), join(root, 'bad', 'file-link'));
  await symlink('../../outside', join(root, 'bad', 'dir-link'));
  await symlink('/etc', join(root, 'b1', 'meta'));
  await symlink('real.txt', join(root, 'good', 'file-link'));
  await symlink('missing', join(root, 'good', 'dangling'));
  await symlink('good', join(root, 'good-dir-link'));
  await symlink(join(dir, 'no-such-folder', 'x'), join(root, 'odd', 'dangling-outside'));
  return { dir, root, outside };
}

async function refused(what: string, action: () => Promise<unknown>, target?: RegExp): Promise<void> {
  const err = await rejectsWithKind(action, 'permanent', what, 'E_BAD_KEY');
  assert.match(err.message, REFUSED, what);
  if (target) assert.match(err.message, target, what);
}

describeWithServer('sftp symlinks', (server: SftpTestServer) => {
  after(removeFreshRoots);

  it('a symlink leading outside the root is refused by stat and openRead, as a key or as a folder', async () => {
    const { root } = await layout(server);
    const driver = driverFor(server, root);
    try {
      await refused('stat of a file link', () => driver.stat('bad/file-link'), /outside\/secret\.txt\)$/);
      await refused('openRead of a file link', () => driver.openRead('bad/file-link'));
      await refused('stat through a folder link', () => driver.stat('bad/dir-link/secret.txt'), /outside\)$/);
      await refused('openRead through a folder link', () => driver.openRead('bad/dir-link/secret.txt', { offset: 1 }));
      await refused('stat of a missing key through a folder link', () => driver.stat('bad/dir-link/nothing-here'));
      await refused('stat through b1/meta -> /etc', () => driver.stat('b1/meta/passwd'), /\(to \/etc\)$/);
      await refused('openRead through b1/meta -> /etc', () => driver.openRead('b1/meta/hostname'));
      await refused('openRead deeper through b1/meta -> /etc', () => driver.openRead('b1/meta/ssh/sshd_config'));
      // Remembered folders do not let a refused one through on a second try.
      await refused('stat again', () => driver.stat('b1/meta/passwd'));
      assert.equal((await readKey(driver, 'good/real.txt')).toString(), 'inside', 'the rest of the root still works');
    } finally {
      await driver.close();
    }
  });

  it('list rejects when its walk meets an escaping symlink under the prefix, and never descends into one', async () => {
    const { root } = await layout(server);
    const driver = driverFor(server, root);
    try {
      await refused('list of everything', () => listAll(driver, ''));
      await refused('list bad/', () => listAll(driver, 'bad/'));
      await refused('list bad/file', () => listAll(driver, 'bad/file'));
      await refused('list b1/', () => listAll(driver, 'b1/'));
      await refused('list from inside a folder link', () => listAll(driver, 'bad/dir-link/'));
      await refused('list from inside b1/meta', () => listAll(driver, 'b1/meta/ssh/'));
      // Links outside the prefix are not looked at (as in the local driver).
      assert.deepEqual((await listAll(driver, 'bad/nothing')).map((e) => e.key), []);
      assert.deepEqual((await listAll(driver, 'good/')).map((e) => [e.key, e.size]), [['good/file-link', 6], ['good/real.txt', 6]]);
    } finally {
      await driver.close();
    }
  });

  it('list with onRefused reports each escaping symlink and lists the rest; requireRoot refuses a missing root', async () => {
    const { root } = await layout(server);
    const driver = driverFor(server, root);
    const missing = driverFor(server, join(root, 'no-such-root'));
    try {
      const refusedKeys: string[] = [];
      const keys: string[] = [];
      for await (const e of driver.list('', { onRefused: (key, err) => { assert.match(err.message, REFUSED); refusedKeys.push(key); } })) keys.push(e.key);
      assert.deepEqual(refusedKeys.sort(), ['b1/meta', 'bad/dir-link', 'bad/file-link']);
      assert.ok(keys.includes('good/real.txt') && keys.includes('good/file-link'), keys.join(','));
      assert.deepEqual(await listAll(missing, ''), [], 'without requireRoot a missing root lists nothing');
      const err = await rejectsWithKind(async () => { for await (const _ of missing.list('', { requireRoot: true })) { /* nothing */ } }, 'not-found', 'requireRoot', 'E_ROOT_MISSING');
      assert.match(err.message, /^nas: root .*no-such-root does not exist on the server/);
    } finally {
      await driver.close();
      await missing.close();
    }
  });

  it('openWrite, delete and copyWithin through an escaping symlink fail and write nothing outside', async () => {
    const { root, outside } = await layout(server);
    const driver = driverFor(server, root);
    try {
      await refused('openWrite through a folder link', () => driver.openWrite('bad/dir-link/new', { size: 1, partBytes: 1 }));
      await refused('openWrite deeper through a folder link', () => driver.openWrite('bad/dir-link/x/y/z', { size: 1, partBytes: 1 }));
      await refused('openWrite into an existing folder through a link', () => driver.openWrite('bad/dir-link/sub/new', { size: 1, partBytes: 1 }));
      await refused('putObject over the secret through a link', () => putObject(driver, 'bad/dir-link/secret.txt', Buffer.from('overwritten')));
      await refused('delete through a folder link', () => driver.delete('bad/dir-link/secret.txt'));
      await refused('copy from a file link', () => driver.copyWithin('bad/file-link', 'copied'));
      await refused('copy into a folder link', () => driver.copyWithin('good/real.txt', 'bad/dir-link/copied'));
      await refused('copy into a new folder under a folder link', () => driver.copyWithin('good/real.txt', 'bad/dir-link/new/copied'));
      assert.deepEqual((await readdir(outside)).sort(), ['secret.txt', 'sub'], 'nothing created outside');
      assert.deepEqual(await readdir(join(outside, 'sub')), [], 'nothing created outside');
      assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'secret');
      assert.equal(await driver.stat('copied'), undefined, 'nothing copied from outside');
      // Deleting a file link removes the link, never its target.
      await driver.delete('bad/file-link');
      assert.deepEqual((await readdir(join(root, 'bad'))).sort(), ['dir-link']);
      assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'secret');
    } finally {
      await driver.close();
    }
  });

  it('a symlink that stays inside the root is followed for files and folders; list does not walk symlinked folders', async () => {
    const { root } = await layout(server);
    const driver = driverFor(server, root);
    try {
      assert.equal((await driver.stat('good/file-link'))?.size, 6);
      assert.equal((await readKey(driver, 'good/file-link', 1, 3)).toString(), 'nsi');
      assert.equal((await driver.stat('good-dir-link/real.txt'))?.size, 6);
      assert.equal((await readKey(driver, 'good-dir-link/real.txt')).toString(), 'inside');
      assert.deepEqual((await listAll(driver, 'good-dir-link/')).map((e) => e.key), ['good-dir-link/file-link', 'good-dir-link/real.txt'], 'listing from a symlinked prefix');
      assert.deepEqual((await listAll(driver, 'g')).map((e) => e.key), ['good/file-link', 'good/real.txt'], 'the folder link itself is not walked');
      await putObject(driver, 'good-dir-link/new', Buffer.from('n'));
      assert.equal((await readKey(driver, 'good/new')).toString(), 'n');
      await putObject(driver, 'good-dir-link/deeper/still/new', Buffer.from('d'));
      assert.equal(await readFile(join(root, 'good', 'deeper', 'still', 'new'), 'utf8'), 'd');
      await driver.copyWithin('good/file-link', 'copies/of-link');
      assert.equal((await readKey(driver, 'copies/of-link')).toString(), 'inside', 'a copy of a link inside is a copy of its target');
      await driver.delete('good-dir-link/new');
      assert.equal(await driver.stat('good/new'), undefined);
    } finally {
      await driver.close();
    }
  });

  it('dangling symlinks are missing objects (listed nowhere), and in the way of folders', async () => {
    const { root } = await layout(server);
    const driver = driverFor(server, root);
    try {
      assert.equal(await driver.stat('good/dangling'), undefined);
      await rejectsWithKind(() => driver.openRead('good/dangling'), 'not-found', 'openRead of a dangling link');
      assert.equal(await driver.stat('odd/dangling-outside'), undefined, 'a dangling link to outside is missing, as in the local driver');
      assert.deepEqual(await listAll(driver, 'odd/'), []);
      await rejectsWithKind(() => driver.openWrite('good/dangling/x', { size: 1, partBytes: 1 }), 'permanent', 'a folder where a dangling link is', 'E_IN_THE_WAY');
      await rejectsWithKind(() => driver.openWrite('good/real.txt/x', { size: 1, partBytes: 1 }), 'permanent', 'a folder where a file is', 'E_IN_THE_WAY');
      await rejectsWithKind(() => driver.openWrite('odd/dangling-outside/x', { size: 1, partBytes: 1 }), 'permanent', 'a folder where a dangling link to outside is', 'E_IN_THE_WAY');
      assert.deepEqual((await readdir(root)).sort(), ['b1', 'bad', 'good', 'good-dir-link', 'odd']);
    } finally {
      await driver.close();
    }
  });

  it('a symlink planted under the temp name is refused, never written through', async () => {
    const { root, outside } = await layout(server);
    await writeFile(join(outside, 'victim'), 'untouched');
    await symlink(join(outside, 'victim'), join(root, 'good', '.obj.offsite-partial'));
    const driver = driverFor(server, root);
    try {
      const err = await rejectsWithKind(() => driver.openWrite('good/obj', { size: 3, partBytes: 3 }), 'permanent', 'openWrite with a symlinked temp name', 'E_TEMP_IN_THE_WAY');
      assert.match(err.message, /^nas: good\/obj: write: the temp name \.obj\.offsite-partial is taken by something that is not a file \(a symlink\); remove it$/);
      assert.equal(await readFile(join(outside, 'victim'), 'utf8'), 'untouched');
    } finally {
      await driver.close();
    }
  });

  it('costs: no folder checks for keys in folders a listing walked or the driver made; one LSTAT per new folder level', async () => {
    const root = await freshRoot(server, 'symlink-cost');
    await mkdir(join(root, 'b1', 'binlogs', 'seg1'), { recursive: true });
    await mkdir(join(root, 'b1', 'binlogs', 'seg2'), { recursive: true });
    await writeFile(join(root, 'b1', 'binlogs', 'seg1', 'f'), 'one');
    await writeFile(join(root, 'b1', 'binlogs', 'seg2', 'f'), 'two');
    const driver = driverFor(server, root);
    const log = recordRequests();
    try {
      const listed = await log.during(() => listAll(driver, 'b1/'));
      assert.deepEqual(listed.sent.filter((name) => name === 'opendir').length, 4, 'four folders listed');
      assert.equal(listed.roundTrips, 10, 'the LSTAT of b1, then two round trips a folder: OPENDIR, then READDIRs up to the end at once (its CLOSE goes with the next OPENDIR), and the last CLOSE');
      assert.deepEqual(await log.during(() => driver.stat('b1/binlogs/seg1/f')), { sent: ['lstat'], roundTrips: 1 }, 'stat: one LSTAT, as the STAT before');
      const read = await log.during(() => readKey(driver, 'b1/binlogs/seg2/f'));
      assert.deepEqual(read.sent.slice(0, 3), ['lstat', 'open', 'read'], 'openRead: an LSTAT (the file type: a FIFO is never opened) before the OPEN, no FSTAT after');
      assert.equal(read.sent.filter((name) => ['lstat', 'stat', 'realpath'].includes(name)).length, 1, 'openRead: no folder check');
      assert.deepEqual(await log.during(() => driver.stat('b1/binlogs/seg3/f')), { sent: ['lstat', 'lstat'], roundTrips: 1 }, 'a new folder: its LSTAT goes with the key\'s');
      const write = await log.during(() => putObject(driver, 'b1/binlogs/seg1/g', Buffer.from('g')));
      assert.deepEqual(write.sent.slice(0, 2), ['lstat', 'open'], 'openWrite in a listed folder: the temp file\'s LSTAT, then OPEN');
      const fresh = await log.during(() => driver.openWrite('b1/new/deep/f', { size: 1, partBytes: 1 }).then((s) => s.abort()));
      assert.deepEqual(fresh.sent.slice(0, 6), ['lstat', 'lstat', 'lstat', 'mkdir', 'mkdir', 'open'], 'openWrite into new folders: LSTATs at once, MKDIRs, OPEN');
      let session: WriteSession | undefined;
      const deeper = await log.during(async () => { session = await driver.openWrite('b1/newer/a/b/c/f', { size: 1, partBytes: 1 }); });
      assert.deepEqual(deeper.sent, ['lstat', 'lstat', 'lstat', 'lstat', 'lstat', 'mkdir', 'mkdir', 'mkdir', 'mkdir', 'open'], 'four new levels (and the temp file) looked at, then made');
      // Three round trips at most: the MKDIRs go out as soon as the first LSTAT says its level is
      // missing, so when the other LSTATs' answers come in a later read they overlap them (two).
      assert.ok(deeper.roundTrips <= 3, `the LSTATs at once, the MKDIRs at once (the server makes them in order), the OPEN: ${deeper.roundTrips} round trips`);
      await session?.abort();
      assert.deepEqual(await log.during(() => driver.stat('b1/new/deep/f')), { sent: ['lstat'], roundTrips: 1 }, 'folders the driver made are remembered');
      assert.deepEqual(await log.during(() => driver.delete('b1/binlogs/seg2/f')), { sent: ['unlink', 'unlink'], roundTrips: 1 }, 'delete: no folder check, the key and its temp name at once');
      await symlink('seg1', join(root, 'b1', 'binlogs', 'link'));
      assert.deepEqual(await log.during(() => driver.stat('b1/binlogs/link/f')), { sent: ['lstat', 'lstat', 'realpath', 'stat', 'realpath'], roundTrips: 3 }, 'a symlink folder: REALPATH + STAT, and the root\'s REALPATH once');
      assert.deepEqual(await log.during(() => driver.stat('b1/binlogs/link/f')), { sent: ['lstat'], roundTrips: 1 }, 'then remembered');
    } finally {
      log.restore();
      await driver.close();
    }
  });
});
