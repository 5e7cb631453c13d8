/**
 * Network faults between the driver and sshd (through an in-process TCP proxy): refused
 * connections, a silent server, a reset in the middle of a write or a read. Each must give a
 * `retryable` error, and a write session must be usable again for a retry of the same part.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { after, it } from 'node:test';
import { createSftpDriver } from '../../src/drivers/sftp/index.js';
import { hashOf, partOf, readAll, readKey, putObject, rejectsWithKind, seededBytes } from '../conformance/suite.js';
import { startProxy } from './proxy.js';
import { describeWithServer, freshRoot, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';
import { closedPort } from '../servers/net.js';

describeWithServer('sftp faults', (server: SftpTestServer) => {
  after(removeFreshRoots);

  it('a refused connection is retryable and says where it tried', async () => {
    const port = await closedPort();
    const driver = await createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'faults'), { port }));
    try {
      const err = await rejectsWithKind(() => driver.stat('x'), 'retryable', 'connection refused');
      assert.ok(err.message.startsWith(`nas: connect to 127.0.0.1:${port}: `), err.message);
      assert.match(err.message, /ECONNREFUSED/);
    } finally {
      await driver.close();
    }
  });

  it('a server that never answers hits readyTimeoutMs: retryable, promptly', async () => {
    const proxy = await startProxy(server.port, { blackhole: true });
    const driver = await createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'faults'), { port: proxy.port, readyTimeoutMs: 700 }));
    const started = Date.now();
    try {
      const err = await rejectsWithKind(() => driver.stat('x'), 'retryable', 'silent server');
      assert.match(err.message, /Timed out while waiting for handshake/);
      assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    } finally {
      await driver.close();
      await proxy.close();
    }
  });

  it('a reset in the middle of a write is retryable, and the same session retries the part on a new connection', async () => {
    const proxy = await startProxy(server.port, { resetFirstAfterBytes: 600 * 1024 });
    const partBytes = 1024 * 1024;
    const data = seededBytes(partBytes * 2, 7);
    const driver = await createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'faults'), { port: proxy.port, connections: 1 }));
    try {
      const session = await driver.openWrite('reset/me.bin', { size: data.length, partBytes });
      await rejectsWithKind(() => session.write(0, partOf(data, 0, partBytes)), 'retryable', 'write through a reset connection');
      await session.write(0, partOf(data, 0, partBytes));
      await session.write(1, partOf(data, 1, partBytes));
      await session.commit({ hash: await hashOf(data) });
      assert.ok((await readKey(driver, 'reset/me.bin')).equals(data));
      assert.equal(proxy.connections(), 2, 'one reconnect');
    } finally {
      await driver.close();
      await proxy.close();
    }
  });

  it('a full disk on the server is permanent (SFTP FAILURE), and leaves no final object', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to mount a tiny tmpfs');
    const root = await freshRoot(server, 'full');
    await mkdir(root, { recursive: true });
    const run = promisify(execFile);
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'offsite-test-full', root]);
    } catch (err) {
      return t.skip(`cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]}`);
    }
    const driver = await createSftpDriver('nas', sectionFor(server, root));
    try {
      const err = await rejectsWithKind(() => putObject(driver, 'big.bin', seededBytes(3 * 1024 * 1024, 9), 1024 * 1024), 'permanent', 'write to a full disk', 'E_SFTP_FAILURE');
      assert.match(err.message, /^nas: big\.bin: write part \d: .*disk full/);
      assert.equal(await driver.stat('big.bin'), undefined);
    } finally {
      await driver.close();
      await run('umount', [root]);
      await rm(root, { recursive: true, force: true });
    }
  });

  it('a reset while a read stream is open fails the stream with kind retryable; the next call reconnects', async () => {
    const proxy = await startProxy(server.port);
    const data = seededBytes(8 * 1024 * 1024, 8);
    const driver = await createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'faults'), { port: proxy.port, connections: 1 }));
    try {
      await putObject(driver, 'r.bin', data, 1024 * 1024);
      const stream = await driver.openRead('r.bin');
      let seen = 0;
      const reading = (async () => {
        for await (const chunk of stream) {
          seen += (chunk as Buffer).length;
          if (seen > 1024 * 1024) proxy.resetAll();
        }
      })();
      await rejectsWithKind(() => reading, 'retryable', 'read through a reset connection');
      assert.ok((await readAll(await driver.openRead('r.bin'))).equals(data), 'the next read reconnects');
    } finally {
      await driver.close();
      await proxy.close();
    }
  });
});
