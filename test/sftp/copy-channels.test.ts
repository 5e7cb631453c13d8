/**
 * Server-side copies run on channels of their own (src/drivers/sftp/copy-channels.ts): a
 * compressed connection apart from the ones files are sent on, with several channels (each an
 * sftp-server process); where the server refuses more channels, or the connection itself, the
 * copies still complete on what there is.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { SftpConnection } from '../../src/drivers/sftp/connection.js';
import { COPY_CHANNELS, copyChannelCounters } from '../../src/drivers/sftp/copy-channels.js';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import { describeWithServer, freshRoot, recordRequests, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

const FILES = 48;

describeWithServer('sftp copies on channels of their own', (server: SftpTestServer) => {
  after(removeFreshRoots);

  /**
   * `FILES` files under old/, copied to new/ in two waves of copies at once; each checked byte for
   * byte, and every new folder made once (copies on different channels share a folder's MKDIR).
   */
  async function copyMany(root: string): Promise<void> {
    for (let i = 0; i < FILES; i++) {
      await mkdir(join(root, 'old', 'segment', String(i)), { recursive: true });
      await writeFile(join(root, 'old', 'segment', String(i), 'log'), `file ${i} `.repeat(i + 1));
    }
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root)));
    const log = recordRequests();
    try {
      const copy = (i: number): Promise<unknown> => driver.copyWithin(`old/segment/${i}/log`, `new/segment/${i}/log`, { serverOnly: true });
      // The first wave starts before any copy channel is up; the second finds them.
      await Promise.all(Array.from({ length: FILES / 2 }, (_, i) => copy(i)));
      await Promise.all(Array.from({ length: FILES / 2 }, (_, i) => copy(FILES / 2 + i)));
      assert.equal(log.take().sent.filter((name) => name === 'mkdir').length, FILES + 2, 'new, new/segment and a folder per file, each made once');
    } finally {
      log.restore();
      await driver.close();
    }
    for (let i = 0; i < FILES; i++) {
      assert.equal(await readFile(join(root, 'new', 'segment', String(i), 'log'), 'utf8'), `file ${i} `.repeat(i + 1), `copy ${i}`);
      assert.deepEqual(await readdir(join(root, 'new', 'segment', String(i))), ['log'], `no temp file left beside copy ${i}`);
    }
  }

  it('copies at once run on several channels of a compressed connection, and every copy is whole', async () => {
    const before = { ...copyChannelCounters };
    await copyMany(await freshRoot(server, 'copy-channels'));
    assert.equal(copyChannelCounters.connections - before.connections, 1, 'one copy connection');
    assert.equal(copyChannelCounters.compressed - before.compressed, 1, 'compressed (OpenSSH offers zlib@openssh.com)');
    assert.ok(copyChannelCounters.channels - before.channels > 1, `several channels (${copyChannelCounters.channels - before.channels})`);
  });

  it('prepareCopies opens the copy connection and its channels before the first copy, once', async () => {
    const root = await freshRoot(server, 'copy-prepared');
    await mkdir(join(root, 'old'), { recursive: true });
    await writeFile(join(root, 'old', 'log'), 'kept bytes');
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root)));
    const before = { ...copyChannelCounters };
    try {
      driver.prepareCopies();
      driver.prepareCopies();
      // Opened in the background: waits until they are up (bounded: a failure, not a hang).
      for (let i = 0; i < 1000 && copyChannelCounters.channels - before.channels < COPY_CHANNELS; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(copyChannelCounters.channels - before.channels, COPY_CHANNELS, 'every copy channel is up before any copy');
      assert.equal(copyChannelCounters.connections - before.connections, 1, 'on one copy connection');
      await driver.copyWithin('old/log', 'new/log', { serverOnly: true });
      assert.equal(await readFile(join(root, 'new', 'log'), 'utf8'), 'kept bytes');
      assert.equal(copyChannelCounters.channels - before.channels, COPY_CHANNELS, 'the copy opened no channel of its own');
    } finally {
      await driver.close();
    }
  });

  it('prepareCopies does nothing where server-side copies are off', async () => {
    const root = await freshRoot(server, 'copy-prepared-off');
    const driver = new SftpDriver('nas', parseSftpOptions('nas', { ...sectionFor(server, root), serverSideCopy: false }));
    const open = SftpConnection.open.bind(SftpConnection);
    let copyConnections = 0;
    SftpConnection.open = (name, options, hooks, extra) => { if (extra?.compress === true) copyConnections++; return open(name, options, hooks, extra); };
    try {
      assert.equal(driver.capabilities.serverSideCopy, false);
      driver.prepareCopies();
      assert.equal(copyConnections, 0, 'no copy connection is opened');
    } finally {
      SftpConnection.open = open;
      await driver.close();
    }
  });

  it('a server that refuses more channels: the copies share the one the connection has', async () => {
    const openChannel = SftpConnection.prototype.openChannel;
    SftpConnection.prototype.openChannel = () => Promise.reject(new Error('(SSH) Channel open failure: open failed'));
    try {
      const before = { ...copyChannelCounters };
      await copyMany(await freshRoot(server, 'copy-one-channel'));
      assert.equal(copyChannelCounters.channels - before.channels, 1, 'the copy connection\'s own channel only');
    } finally {
      SftpConnection.prototype.openChannel = openChannel;
    }
  });

  it('a copy connection that cannot be opened: the copies run on the connections files are sent on', async () => {
    const open = SftpConnection.open.bind(SftpConnection);
    SftpConnection.open = (name, options, hooks, extra) => (extra?.compress === true ? Promise.reject(new Error('connection refused')) : open(name, options, hooks, extra));
    try {
      const before = { ...copyChannelCounters };
      await copyMany(await freshRoot(server, 'copy-no-connection'));
      assert.equal(copyChannelCounters.channels - before.channels, 0, 'no copy channel');
    } finally {
      SftpConnection.open = open;
    }
  });
});
