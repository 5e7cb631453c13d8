/**
 * WRITE requests go out without a copy of their data (src/drivers/sftp/write-request.ts): the
 * header and the data as separate pieces, queued behind whatever waits for the server's SSH
 * window. Many files written at once on one connection keep far more in flight than the window
 * (OpenSSH opens 2 MiB per channel), so pieces of every file, and ssh2's own requests (open,
 * fstat, fsync, rename), wait in that queue together: every file must arrive byte for byte.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import { packetPoolCounters } from '../../src/drivers/sftp/packet-pool.js';
import { putObject, seededBytes } from '../conformance/suite.js';
import { describeWithServer, freshRoot, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

describeWithServer('sftp writes beyond the SSH window', (server: SftpTestServer) => {
  after(removeFreshRoots);

  it('files written at once on one connection, far beyond the window, arrive byte for byte', async () => {
    const root = await freshRoot(server, 'window');
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root, { connections: 1, concurrencyPerFile: 16, requestBytes: 261_120 })));
    try {
      const reusedBefore = packetPoolCounters.slabsReused;
      // Odd sizes and part sizes: requests that end mid-packet, parts that end mid-request.
      const files = [0, 1, 2, 3].map((n) => ({ key: `w/f${n}.bin`, data: seededBytes(5 * 1024 * 1024 + 777 * n + 1, 40 + n) }));
      await Promise.all(files.map(({ key, data }) => putObject(driver, key, data, 1024 * 1024 + 4097)));
      for (const { key, data } of files) {
        const stored = await readFile(join(root, key));
        assert.equal(stored.length, data.length, `${key}: size`);
        assert.ok(stored.equals(data), `${key}: every byte where it belongs`);
      }
      assert.equal(driver.counters.bytesWritten, files.reduce((sum, f) => sum + f.data.length, 0), 'each byte sent once');
      // Packets went out in recycled buffers (src/drivers/sftp/packet-pool.ts) wherever ssh2 runs
      // its native cipher binding (it does on this project's machines); the bytes above prove
      // no buffer was reused before its packet had left.
      if (createRequire(import.meta.url)('ssh2/lib/protocol/crypto.js').bindingAvailable === true) {
        assert.ok(packetPoolCounters.ciphersPooled > 0, `the negotiated cipher's packets are pooled (${JSON.stringify(packetPoolCounters)})`);
        assert.ok(packetPoolCounters.slabsReused > reusedBefore, 'packet buffers are reused');
      }
    } finally {
      await driver.close();
    }
  });
});
