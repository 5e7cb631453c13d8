/**
 * SFTP handle lifetimes. OpenSSH's sftp-server gives a freed handle value to the next OPEN at
 * once, so a WRITE sent with a handle after its CLOSE lands in whatever file was opened since on
 * that connection. A session closed while one of its parts is still being written must never
 * send another request with its handle: the other file stays exactly what its own writer wrote.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import { hashOf, seededBytes } from '../conformance/suite.js';
import { describeWithServer, freshRoot, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

describeWithServer('sftp handles', (server: SftpTestServer) => {
  after(removeFreshRoots);

  it('a session suspended while a part is being written sends nothing more with its handle, even when another file takes the handle value', async () => {
    const root = await freshRoot(server, 'handles');
    // One connection, one small request at a time: the big part takes many round trips.
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root, { connections: 1, requestBytes: 4096, concurrencyPerFile: 1 })));
    try {
      const big = seededBytes(4 * 1024 * 1024, 1);
      const first = await driver.openWrite('a/big.bin', { size: big.length, partBytes: big.length });
      const writing = first.write(0, big).then(() => 'written', (err: unknown) => (err as { code?: string }).code ?? 'failed');
      while (driver.counters.bytesWritten === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      await first.suspend(); // not what the engine does (it waits for its parts), but it must be safe

      // The same connection (the pool has one): the temp file may get the value the first had.
      const small = seededBytes(5000, 2);
      const second = await driver.openWrite('a/small.bin', { size: small.length, partBytes: small.length });
      await second.write(0, small);
      await second.commit({ hash: await hashOf(small) });

      const outcome = await writing;
      assert.ok(['written', 'E_STALE_HANDLE'].includes(outcome), `the interrupted write ends cleanly (${outcome})`);
      const stored = await readFile(join(root, 'a/small.bin'));
      assert.equal(stored.length, small.length, 'no byte of the other file landed in this one');
      assert.ok(stored.equals(small));
      assert.ok(driver.counters.bytesWritten < big.length + small.length, 'the suspended part stopped being sent');
    } finally {
      await driver.close();
    }
  });
});
