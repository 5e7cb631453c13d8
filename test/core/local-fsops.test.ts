/**
 * The local driver's ways of making file-system calls (src/drivers/local/fsops.ts, and the
 * file-system thread of src/drivers/local/worker-ops.ts): the whole driver conformance suite with
 * each forced, the thread's calls on their own, and the mount table reading that chooses one.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { LocalDriver } from '../../src/drivers/local/index.js';
import { adaptiveOps, fsTypeOf, opsFor, SYNC_OPS } from '../../src/drivers/local/fsops.js';
import { workerOps } from '../../src/drivers/local/worker-ops.js';
import { runConformance } from '../conformance/suite.js';

for (const metadataCalls of ['sync', 'async', 'worker'] as const) {
  const scratch: string[] = [];
  runConformance(`local, ${metadataCalls} metadata calls`, {
    create: async () => {
      const dir = await mkdtemp(join(tmpdir(), `offsite-fsops-${metadataCalls}-`));
      scratch.push(dir);
      return new LocalDriver('disk', { root: join(dir, 'root'), maxConcurrency: 8, metadataCalls });
    },
    cleanup: async () => {
      for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
    },
  });
}

describe('calls on the file-system thread', () => {
  it('answers like the synchronous calls: stats, folder entries, errno errors, data at an offset', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'offsite-fsops-thread-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const ops = workerOps();
    await ops.mkdir(join(dir, 'sub'));
    await writeFile(join(dir, 'file'), 'hello');
    await symlink('file', join(dir, 'link'));
    const [info, big, link] = await Promise.all([ops.stat(join(dir, 'file')), ops.statBig(join(dir, 'file')), ops.lstat(join(dir, 'link'))]);
    const expected = SYNC_OPS;
    assert.ok(info?.isFile() && !info.isDirectory());
    assert.equal(info?.size, 5);
    assert.deepEqual([big?.size, big?.ino, big?.mtimeNs], await expected.statBig(join(dir, 'file')).then((s) => [s?.size, s?.ino, s?.mtimeNs]));
    assert.ok(link?.isSymbolicLink());
    assert.equal(await ops.lstat(join(dir, 'missing')), undefined, 'missing is undefined');
    assert.equal(await ops.lstat(join(dir, 'file', 'below')), undefined, 'below a file is missing too');
    assert.equal(await ops.readdir(join(dir, 'missing')), undefined);
    const entries = (await ops.readdir(dir))?.map((e) => `${e.name}:${e.isFile() ? 'f' : e.isDirectory() ? 'd' : e.isSymbolicLink() ? 'l' : '?'}`).sort();
    assert.deepEqual(entries, ['file:f', 'link:l', 'sub:d']);
    await assert.rejects(ops.mkdir(join(dir, 'sub')), (err: NodeJS.ErrnoException) => err.code === 'EEXIST' && err.syscall === 'mkdir' && err.path === join(dir, 'sub'));
    await assert.rejects(ops.open(join(dir, 'missing', 'x'), 0), (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
    // A write from the middle of a larger buffer, a read into the middle of another.
    const fd = await ops.open(join(dir, 'data'), constants.O_RDWR | constants.O_CREAT, 0o644);
    const source = Buffer.from('xxpayloadxx');
    assert.equal(await ops.pwrite(fd, source, 2, 7, 3), 7);
    assert.equal((await ops.fstat(fd)).size, 10);
    const target = Buffer.alloc(9, '.');
    assert.equal(await ops.pread(fd, target, 1, 7, 3), 7);
    assert.equal(target.toString(), '.payload.');
    assert.equal(source.toString(), 'xxpayloadxx', 'the caller keeps its buffer');
    await ops.rename(join(dir, 'data'), join(dir, 'renamed'));
    await ops.close(fd);
    assert.equal((await ops.lstat(join(dir, 'renamed')))?.size, 10);
  });

  it('does not keep the process alive', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'offsite-fsops-exit-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const module = new URL('../../src/drivers/local/worker-ops.js', import.meta.url).href;
    await writeFile(join(dir, 'script.mjs'), `const m = await import(${JSON.stringify(module)});\nawait m.workerOps().lstat('/');\nconsole.log('done');\n`);
    assert.equal(execFileSync(process.execPath, [join(dir, 'script.mjs')], { timeout: 20_000, encoding: 'utf8' }).trim(), 'done');
  });
});

describe('choosing synchronous metadata calls', () => {
  const mountinfo = [
    '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
    '30 22 0:26 / /mnt/nas rw,relatime shared:9 - nfs4 nas:/volume1 rw,vers=4.2',
    '31 30 0:27 / /mnt/nas/local\\040disk rw - xfs /dev/sdb1 rw',
    '32 22 0:28 / /home/u/remote rw,nosuid - fuse.sshfs u@host:/ rw',
    '33 22 0:29 / /dev/shm rw shared:3 - tmpfs tmpfs rw',
    '34 22 0:30 / /dev/shm rw master:4 - nfs other:/x rw',
  ].join('\n');

  it('finds the deepest mount holding a path (the later of two at the same point), unescaping names', () => {
    assert.equal(fsTypeOf('/var/lib/milvus-backup', mountinfo), 'ext4');
    assert.equal(fsTypeOf('/mnt/nas/milvus', mountinfo), 'nfs4');
    assert.equal(fsTypeOf('/mnt/nas', mountinfo), 'nfs4');
    assert.equal(fsTypeOf('/mnt/nasty', mountinfo), 'ext4', 'a prefix of a name is not a parent folder');
    assert.equal(fsTypeOf('/mnt/nas/local disk/x', mountinfo), 'xfs');
    assert.equal(fsTypeOf('/home/u/remote/a', mountinfo), 'fuse.sshfs');
    assert.equal(fsTypeOf('/dev/shm/a', mountinfo), 'nfs', 'a later mount on the same point hides the earlier');
    assert.equal(fsTypeOf('/x', ''), undefined);
  });

  it('adaptive calls: synchronous while fast, asynchronous for a second after two slow ones close together', async () => {
    // now() is read before and after each synchronous call: `advanceNext` makes the next one "take" that long.
    let clock = 0;
    let advanceNext = 0;
    const ops = adaptiveOps(() => { const t = clock; clock += advanceNext; advanceNext = 0; return t; });
    assert.ok((await ops.lstat(tmpdir()))?.isDirectory());
    assert.equal(ops.slowCalls, 0);
    advanceNext = 5;
    await ops.lstat(tmpdir());
    assert.equal(ops.slowCalls, 1, 'a call over 1 ms is noticed');
    for (let i = 0; i < 8; i++) await ops.lstat(tmpdir()); // fast ones: still synchronous
    advanceNext = 5;
    await ops.lstat(tmpdir());
    assert.equal(ops.slowCalls, 2, 'a slow call far from the last one (the CPU taken away once) keeps the calls synchronous');
    advanceNext = 5;
    await ops.lstat(tmpdir());
    assert.equal(ops.slowCalls, 3, 'the next slow call right after it is timed too');
    clock += 10;
    advanceNext = 5;
    await ops.lstat(tmpdir()); // within the cool-down: asynchronous, not timed (now() read once)
    assert.equal(ops.slowCalls, 3);
    clock += 2000;
    advanceNext = 5;
    await ops.lstat(tmpdir()); // after the cool-down: synchronous again, and slow again (as the last one tried)
    assert.equal(ops.slowCalls, 4);
    advanceNext = 5;
    await ops.lstat(tmpdir()); // so asynchronous at once
    assert.equal(ops.slowCalls, 4);
    const fast = adaptiveOps();
    assert.equal(await fast.lstat(join(tmpdir(), 'no-such-thing-offsite')), undefined, 'missing is undefined, not an error');
    assert.equal(await fast.readdir(join(tmpdir(), 'no-such-thing-offsite')), undefined);
    await assert.rejects(fast.open(join(tmpdir(), 'no-such-thing-offsite', 'x'), 0), /ENOENT/, 'other calls reject (as a promise) with the errno error');
  });

  it('uses synchronous calls only on known local file systems; forcing works', async () => {
    assert.equal((await opsFor('/proc')).synchronous, false, 'proc is not a local disk file system');
    assert.equal((await opsFor(tmpdir(), 'async')).synchronous, false);
    assert.equal((await opsFor('/proc', 'sync')).synchronous, true);
  });
});
