/**
 * The local driver's two ways of making metadata calls (src/drivers/local/fsops.ts): the whole
 * driver conformance suite with each forced, and the mount table reading that chooses one.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { LocalDriver } from '../../src/drivers/local/index.js';
import { adaptiveOps, fsTypeOf, opsFor } from '../../src/drivers/local/fsops.js';
import { runConformance } from '../conformance/suite.js';

for (const metadataCalls of ['sync', 'async'] as const) {
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

  it('adaptive calls: synchronous while fast, asynchronous for a second once three of the last eight were slow', async () => {
    // now() is read before and after each synchronous call: `advanceNext` makes the next one "take" that long.
    let clock = 0;
    let advanceNext = 0;
    const ops = adaptiveOps(() => { const t = clock; clock += advanceNext; advanceNext = 0; return t; });
    const slowCall = async (): Promise<void> => { advanceNext = 5; await ops.lstat(tmpdir()); };
    assert.ok((await ops.lstat(tmpdir()))?.isDirectory());
    assert.equal(ops.slowCalls, 0);
    await slowCall();
    assert.equal(ops.slowCalls, 1, 'a call over 1 ms is noticed');
    for (let i = 0; i < 8; i++) await ops.lstat(tmpdir()); // fast ones: still synchronous
    await slowCall();
    await slowCall();
    assert.equal(ops.slowCalls, 3, 'two slow calls in a row (the CPU taken away on a busy machine) keep the calls synchronous, and timed');
    for (let i = 0; i < 5; i++) await ops.lstat(tmpdir()); // both still among the last eight
    await slowCall();
    assert.equal(ops.slowCalls, 4, 'the third slow call among the last eight is timed too');
    clock += 10;
    advanceNext = 5;
    await ops.lstat(tmpdir()); // within the cool-down: asynchronous, not timed (now() read once)
    assert.equal(ops.slowCalls, 4);
    clock += 2000;
    await slowCall(); // after the cool-down: synchronous again, timed afresh
    await slowCall();
    assert.equal(ops.slowCalls, 6);
    await ops.lstat(tmpdir());
    await slowCall(); // a disk that stays slow: three of the last eight again
    assert.equal(ops.slowCalls, 7);
    advanceNext = 5;
    await ops.lstat(tmpdir()); // so asynchronous
    assert.equal(ops.slowCalls, 7);
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
