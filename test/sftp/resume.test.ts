/**
 * Resuming interrupted SFTP uploads from the partial temp file on the server: only the parts
 * that are not already there (and confirmed by reading them back) go over the wire again.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { createSftpDriver, parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import { partCount, partRange } from '../../src/drivers/keys.js';
import { hashOf, listAll, partOf, readKey, seededBytes } from '../conformance/suite.js';
import { describeWithServer, freshRoot, removeFreshRoots, sectionFor, type SftpTestServer } from './server.js';

const PART = 256 * 1024;
const SIZE = PART * 5 + 1000; // 6 parts, the last one short

function driverFor(server: SftpTestServer, root: string, overrides: Record<string, unknown> = {}): SftpDriver {
  return new SftpDriver('nas', parseSftpOptions('nas', sectionFor(server, root, overrides)));
}

function bytesOf(data: Buffer, indexes: readonly number[]): number {
  return indexes.reduce((sum, index) => sum + partOf(data, index, PART).length, 0);
}

/**
 * What the engine does on a resumed run: confirm each resumable part with `matches`, write the
 * rest, commit. Returns the parts it had to write.
 */
async function resumeAndCommit(driver: SftpDriver, key: string, data: Buffer): Promise<number[]> {
  const session = await driver.openWrite(key, { size: data.length, partBytes: PART });
  const written: number[] = [];
  for (let index = 0; index < partCount(data.length, PART); index++) {
    if (session.resumableParts.has(index) && (await session.matches(index, partOf(data, index, PART)))) continue;
    await session.write(index, partOf(data, index, PART));
    written.push(index);
  }
  await session.commit({ hash: await hashOf(data) });
  return written;
}

describeWithServer('sftp resume', (server: SftpTestServer) => {
  after(removeFreshRoots);

  it('after a connection dies mid-file, a new driver resumes: only the missing parts are sent', async () => {
    const root = await freshRoot(server, 'resume');
    const data = seededBytes(SIZE, 1);
    const first = driverFor(server, root);
    const session = await first.openWrite('backup/big.bin', { size: SIZE, partBytes: PART });
    for (const index of [0, 1, 2]) await session.write(index, partOf(data, index, PART));
    await first.close(); // no suspend, no abort: the process "died"
    assert.equal(first.counters.bytesWritten, bytesOf(data, [0, 1, 2]));

    const second = driverFor(server, root);
    try {
      const probe = await second.openWrite('backup/big.bin', { size: SIZE, partBytes: PART });
      assert.deepEqual([...probe.resumableParts].sort(), [0, 1, 2]);
      await probe.suspend();
      const written = await resumeAndCommit(second, 'backup/big.bin', data);
      assert.deepEqual(written, [3, 4, 5]);
      assert.equal(second.counters.bytesWritten, bytesOf(data, [3, 4, 5]), 'bytes sent on the resumed run = the missing parts only');
      assert.equal(second.counters.bytesRead, bytesOf(data, [0, 1, 2]), 'the kept prefix was read back once to confirm it');
      assert.ok((await readKey(second, 'backup/big.bin')).equals(data));
      assert.deepEqual((await listAll(second, '')).map((e) => e.key), ['backup/big.bin']);
      assert.deepEqual((await readdir(join(root, 'backup'))).sort(), ['big.bin'], 'no temp file left on the server');
    } finally {
      await second.close();
    }
  });

  it('a process killed with SIGKILL mid-upload leaves a temp file that the next run resumes', async () => {
    const root = await freshRoot(server, 'resume-kill');
    const data = seededBytes(SIZE, 2);
    const driverModule = new URL('../../src/drivers/sftp/index.js', import.meta.url).href;
    const script = `
      import { createSftpDriver } from ${JSON.stringify(driverModule)};
      const section = JSON.parse(process.argv[1]);
      const driver = await createSftpDriver('nas', section);
      const { seededBytes } = await import(${JSON.stringify(new URL('../conformance/suite.js', import.meta.url).href)});
      const bytes = seededBytes(${SIZE}, 2);
      const session = await driver.openWrite('killed.bin', { size: ${SIZE}, partBytes: ${PART} });
      for (const index of [0, 1, 2, 3]) await session.write(index, bytes.subarray(index * ${PART}, (index + 1) * ${PART}));
      process.stdout.write('written\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(sectionFor(server, root))], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('written')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));

    const temp = join(root, '.killed.bin.offsite-partial');
    assert.equal((await stat(temp)).size, PART * 4, 'the temp file holds the parts written before the kill');
    const driver = driverFor(server, root);
    try {
      const written = await resumeAndCommit(driver, 'killed.bin', data);
      assert.deepEqual(written, [4, 5]);
      assert.equal(driver.counters.bytesWritten, bytesOf(data, [4, 5]));
      assert.ok((await readFile(join(root, 'killed.bin'))).equals(data));
    } finally {
      await driver.close();
    }
  });

  it('a torn last part and a corrupted byte are not trusted: those parts are sent again', async () => {
    const root = await freshRoot(server, 'resume-damaged');
    const data = seededBytes(SIZE, 3);
    const first = driverFor(server, root);
    const session = await first.openWrite('f.bin', { size: SIZE, partBytes: PART });
    for (const index of [0, 1, 2, 3]) await session.write(index, partOf(data, index, PART));
    await session.suspend();
    await first.close();
    const temp = join(root, '.f.bin.offsite-partial');
    await truncate(temp, PART * 3 + 100); // part 3 torn
    const bytes = await readFile(temp);
    const flipAt = partRange(1, SIZE, PART).start + 777;
    bytes[flipAt] = (bytes[flipAt] as number) ^ 0x01; // part 1 damaged
    await writeFile(temp, bytes);

    const driver = driverFor(server, root);
    try {
      const probe = await driver.openWrite('f.bin', { size: SIZE, partBytes: PART });
      assert.deepEqual([...probe.resumableParts].sort(), [0, 1, 2], 'the torn part is not offered');
      await probe.suspend();
      const written = await resumeAndCommit(driver, 'f.bin', data);
      assert.deepEqual(written, [1, 3, 4, 5]);
      assert.equal(driver.counters.bytesWritten, bytesOf(data, [1, 3, 4, 5]));
      assert.ok((await readFile(join(root, 'f.bin'))).equals(data));
    } finally {
      await driver.close();
    }
  });

  it('a temp file longer than the new size is started over', async () => {
    const root = await freshRoot(server, 'resume-longer');
    const driver = driverFor(server, root);
    try {
      const big = seededBytes(PART * 3, 4);
      const session = await driver.openWrite('g.bin', { size: big.length, partBytes: PART });
      for (const index of [0, 1, 2]) await session.write(index, partOf(big, index, PART));
      await session.suspend();
      const small = seededBytes(PART + 5, 5);
      const again = await driver.openWrite('g.bin', { size: small.length, partBytes: PART });
      assert.deepEqual([...again.resumableParts], []);
      await again.write(0, partOf(small, 0, PART));
      await again.write(1, partOf(small, 1, PART));
      await again.commit({ hash: await hashOf(small) });
      assert.ok((await readKey(driver, 'g.bin')).equals(small));
    } finally {
      await driver.close();
    }
  });

  it('concurrencyPerFile 1: strictly serial writes still resume and round-trip', async () => {
    const root = await freshRoot(server, 'resume-serial');
    const data = seededBytes(SIZE, 6);
    const first = await createSftpDriver('nas', sectionFor(server, root, { concurrencyPerFile: 1, requestBytes: 32 * 1024 }));
    assert.equal(first.capabilities.parallelPartWrites, false);
    const session = await first.openWrite('s.bin', { size: SIZE, partBytes: PART });
    await session.write(0, partOf(data, 0, PART));
    await session.write(1, partOf(data, 1, PART));
    await session.suspend();
    await first.close();
    const second = driverFor(server, root, { concurrencyPerFile: 1, requestBytes: 32 * 1024 });
    try {
      assert.deepEqual(await resumeAndCommit(second, 's.bin', data), [2, 3, 4, 5]);
      assert.ok((await readKey(second, 's.bin')).equals(data));
    } finally {
      await second.close();
    }
  });
});
