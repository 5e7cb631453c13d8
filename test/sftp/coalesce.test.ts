/**
 * Small SFTP requests sent in one turn share SSH packets (src/drivers/sftp/coalesce.ts): many
 * requests at once on one connection must leave in fewer packets than requests, and every
 * request must still reach the server whole and in order, mixed with file data that is sent as
 * it comes (small WRITEs gathered, large ones not).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { coalesceCounters } from '../../src/drivers/sftp/coalesce.js';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import { putObject, seededBytes } from '../conformance/suite.js';
import { describeWithServer, freshRoot, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

describeWithServer('sftp small requests share SSH packets', (server: SftpTestServer) => {
  after(removeFreshRoots);

  it('files small and large written at once on one connection arrive byte for byte, in fewer packets than requests', async () => {
    const root = await freshRoot(server, 'coalesce');
    const driver = new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root, { connections: 1 })));
    try {
      const before = { ...coalesceCounters };
      // Sizes around the gathering limit (2 KiB) and one far above it: small WRITEs are
      // gathered with the other requests, large ones go out as they come, between them.
      const files = [0, 1, 100, 2000, 2048, 2049, 3000, 70_000, 1_500_000].map((size, n) => ({ key: `c/${n}/f.bin`, data: seededBytes(size, 7 + n) }));
      await Promise.all(files.map(({ key, data }) => putObject(driver, key, data, Math.max(1, Math.min(data.length, 600_000)))));
      for (const { key, data } of files) {
        const stored = await readFile(join(root, key));
        assert.ok(stored.equals(data), `${key}: ${data.length} bytes, every byte where it belongs`);
      }
      // Many looks at once: each an LSTAT, all sent in the same turn.
      const entries = await Promise.all(Array.from({ length: 40 }, (_, i) => driver.stat((files[i % files.length] as { key: string }).key)));
      entries.forEach((entry, i) => assert.equal(entry?.size, (files[i % files.length] as { data: Buffer }).data.length, `stat ${i}`));
      assert.ok(coalesceCounters.channelsCoalesced > before.channelsCoalesced, `the connection gathers small requests (${JSON.stringify(coalesceCounters)})`);
      const gathered = coalesceCounters.payloadsGathered - before.payloadsGathered;
      const packets = coalesceCounters.packetsSent - before.packetsSent;
      assert.ok(gathered >= 40 && packets * 2 < gathered, `${gathered} small requests left in ${packets} packets`);
    } finally {
      await driver.close();
    }
  });
});
