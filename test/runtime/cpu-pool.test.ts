/**
 * The CPU pool (src/runtime/cpu-pool.ts): answers match the inline computation, the caller's
 * buffer is never detached or changed, a key goes to a worker once, a failing task or a dying
 * worker rejects (never hangs) and the pool goes on, and a process using it exits by itself.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { FileSealer, OVERHEAD_BYTES, PlaintextMac, sealBuffer, chunkCount, storedSize } from '../../src/crypto/format.js';
import { DestinationKey } from '../../src/crypto/keys.js';
import { AbortedError } from '../../src/errors.js';
import { getHasher } from '../../src/hash/xxh64.js';
import { CpuPool, CpuTaskError, defaultWorkers, MAX_WORKERS } from '../../src/runtime/cpu-pool.js';

const TEST_WORKER = new URL('../helpers/cpu-test-worker.js', import.meta.url);
const POOL_MODULE = new URL('../../src/runtime/cpu-pool.js', import.meta.url);
const KEY_BYTES = Buffer.alloc(32, 0x5a);

/** A pool that sends every task to a worker (none inline), with the misbehaving test tasks. */
function testPool(workers = 1): CpuPool {
  return new CpuPool({ workers, inlineBelowBytes: 0, workerUrl: TEST_WORKER });
}

/** `run` for the test worker's extra tasks, which the typed table does not name. */
function runRaw(pool: CpuPool, task: string, params: unknown, input: Uint8Array = Buffer.alloc(1), signal?: AbortSignal): Promise<unknown> {
  return (pool.run as unknown as (t: string, p: unknown, i: Uint8Array, o: { signal?: AbortSignal }) => Promise<unknown>)(task, params, input, { signal });
}

async function rejectsWith(promise: Promise<unknown>, pattern: RegExp, type: new (...args: never[]) => Error = CpuTaskError): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    return true;
  });
}

describe('CPU pool', () => {
  it('sizes itself from the cores (1..MAX_WORKERS) unless OFFSITE_CPU_THREADS says otherwise', () => {
    const n = defaultWorkers({});
    assert.ok(n >= 1 && n <= MAX_WORKERS, `${n} workers`);
    assert.equal(defaultWorkers({ OFFSITE_CPU_THREADS: '0' }), 0);
    assert.equal(defaultWorkers({ OFFSITE_CPU_THREADS: '3' }), 3);
    assert.throws(() => defaultWorkers({ OFFSITE_CPU_THREADS: 'many' }), /OFFSITE_CPU_THREADS must be a whole number/);
  });

  it('gives the MD5 the main thread computes, for empty, small, odd-sized and large inputs, and leaves the caller buffer as it was', async () => {
    const pool = testPool(2);
    try {
      // A view into a larger buffer, as the fan-out's pooled chunks are: only the view's bytes count.
      const backing = randomBytes(9 * 1024 * 1024);
      const inputs = [Buffer.alloc(0), randomBytes(1), randomBytes(300 * 1024 + 7), backing.subarray(1000, 1000 + 8 * 1024 * 1024)];
      const before = inputs.map((b) => Buffer.from(b));
      const answers = await Promise.all(inputs.map((b) => pool.run('md5', {}, b)));
      inputs.forEach((b, i) => {
        const digest = createHash('md5').update(b).digest();
        assert.deepEqual(answers[i], { hex: digest.toString('hex'), base64: digest.toString('base64') }, `input ${i}`);
        assert.equal(b.buffer.byteLength > 0 || b.length === 0, true, `input ${i} not detached`);
        assert.ok(b.equals(before[i] as Buffer), `input ${i} unchanged`);
      });
      assert.equal(backing.buffer.byteLength >= backing.length, true);
      assert.ok(pool.started >= 1 && pool.started <= 2, `${pool.started} workers started`);
    } finally {
      await pool.close();
    }
  });

  it('reads an input in shared memory in place (at its offset), and takes the same MD5 of it as of a copy', async () => {
    const pool = testPool(1);
    try {
      const shared = Buffer.from(new SharedArrayBuffer(3 * 1024 * 1024));
      randomBytes(shared.length).copy(shared);
      const view = shared.subarray(12345, 12345 + 2 * 1024 * 1024 + 3);
      const expected = createHash('md5').update(view).digest('hex');
      assert.equal((await pool.run('md5', {}, view)).hex, expected);
      // In place: the worker sees what the buffer holds when the task runs (bytes outside the view do not count).
      shared.fill(7, 0, 12345);
      assert.equal((await pool.run('md5', {}, view)).hex, expected);
      view[0] = (view[0] as number) ^ 1;
      assert.equal((await pool.run('md5', {}, view)).hex, createHash('md5').update(view).digest('hex'));
      assert.notEqual(createHash('md5').update(view).digest('hex'), expected);
    } finally {
      await pool.close();
    }
  });

  it('seals a part into the caller\'s shared output exactly as the main thread does (bytes, chunk hashes, MACs, the part\'s MD5, SHA-256 and XXH64) and sends the key to each worker once', async () => {
    const pool = testPool(1);
    const chunkBytes = 64 * 1024;
    const key = new DestinationKey('vault', KEY_BYTES);
    const hasher = await getHasher();
    const fileId = 'bk/binlogs/insert_log/1/2/3/100/7';
    const plain = randomBytes(5 * chunkBytes + 123);
    const expected = sealBuffer(key, fileId, plain, chunkBytes);
    const chunks = chunkCount(plain.length, chunkBytes);
    const sealer = new FileSealer(key, fileId, chunkBytes);
    try {
      const secret = pool.secret(key, () => key.secretBytes());
      assert.equal(pool.secret(key, () => { throw new Error('read twice'); }), secret, 'one id per key');
      // Parts of 2 chunks: 0-1, 2-3, 4-5 (the last one short), each into a shared buffer with room to spare.
      const outputs = [0, 1, 2].map(() => Buffer.from(new SharedArrayBuffer(2 * (chunkBytes + OVERHEAD_BYTES) + 100)).fill(0xee));
      const parts = await Promise.all([0, 1, 2].map((p) => pool.run('seal', {
        secret, destination: 'vault', fileId, chunkBytes, firstChunk: 2 * p, chunks, md5: p !== 1, hash: p === 1, sha256: p !== 0,
      }, plain.subarray(2 * p * chunkBytes, (2 * p + 2) * chunkBytes), { secret, output: outputs[p] })));
      const sealed = parts.map((p, i) => (outputs[i] as Buffer).subarray(0, p.length));
      assert.ok(Buffer.concat(sealed).equals(expected), 'sealed bytes equal the inline seal');
      assert.ok((outputs[0] as Buffer).subarray(parts[0]?.length).every((b) => b === 0xee), 'nothing written past the sealed part');
      assert.equal(parts[0]?.md5?.hex, createHash('md5').update(sealed[0] as Buffer).digest('hex'), 'MD5 of part 0');
      assert.equal(parts[2]?.md5?.base64, createHash('md5').update(sealed[2] as Buffer).digest('base64'), 'MD5 of part 2');
      assert.equal(parts[1]?.md5, undefined, 'no MD5 unless asked for');
      assert.equal(parts[1]?.sha256, createHash('sha256').update(sealed[1] as Buffer).digest('hex'), 'SHA-256 of part 1');
      assert.equal(parts[2]?.sha256, createHash('sha256').update(sealed[2] as Buffer).digest('hex'), 'SHA-256 of part 2 (the short last one)');
      assert.equal(parts[0]?.sha256, undefined, 'no SHA-256 unless asked for');
      assert.equal(parts[1]?.hash, hasher.hash(sealed[1] as Buffer), 'XXH64 of part 1');
      assert.equal(parts[0]?.hash, undefined, 'no XXH64 of the part unless asked for');
      const storedChunk = chunkBytes + OVERHEAD_BYTES;
      const hashes = parts.flatMap((p) => [...p.hashes]);
      const macs = parts.flatMap((p) => [...p.macs]);
      for (let i = 0; i < chunks; i++) {
        assert.equal(hashes[i], hasher.hash(expected.subarray(i * storedChunk, (i + 1) * storedChunk)), `hash of chunk ${i}`);
        const inline = sealer.seal(i, plain.subarray(i * chunkBytes, (i + 1) * chunkBytes), i === chunks - 1);
        assert.ok(Buffer.from(macs[i] as Uint8Array).equals(inline.mac), `MAC of chunk ${i}`);
      }
      // A whole file of one chunk: its stored hash is the chunk's (taken once, not in a second pass).
      const small = randomBytes(1000);
      const smallOut = Buffer.from(new SharedArrayBuffer(small.length + OVERHEAD_BYTES));
      const one = await pool.run('seal', { secret, destination: 'vault', fileId, chunkBytes, firstChunk: 0, chunks: 1, md5: true, hash: true, sha256: true }, small, { secret, output: smallOut, inlineBelowBytes: 0 });
      assert.ok(smallOut.equals(sealBuffer(key, fileId, small, chunkBytes)), 'a one-chunk file sealed as inline');
      assert.equal(one.hash, hasher.hash(smallOut), 'XXH64 of a one-chunk part');
      assert.deepEqual(one.hashes, [one.hash], 'the chunk hash is the part hash');
      assert.equal(one.md5?.hex, createHash('md5').update(smallOut).digest('hex'), 'MD5 of a one-chunk part');
      assert.equal(one.sha256, createHash('sha256').update(smallOut).digest('hex'), 'SHA-256 of a one-chunk part (sealed inline)');
      // The file's plaintext MAC comes with a part that is the whole file, never with one of several parts.
      assert.ok(parts.every((p) => p.fileMac === undefined), 'no file MAC from a part of a file of several parts');
      const smallMac = new PlaintextMac(key, small.length, chunkBytes);
      smallMac.update(small);
      assert.equal(one.fileMac, smallMac.digest(), 'the file MAC of a one-chunk file');
      const wholeOut = Buffer.from(new SharedArrayBuffer(storedSize(plain.length, chunkBytes)));
      const whole = await pool.run('seal', { secret, destination: 'vault', fileId, chunkBytes, firstChunk: 0, chunks }, plain, { secret, output: wholeOut });
      const wholeMac = new PlaintextMac(key, plain.length, chunkBytes);
      wholeMac.update(plain);
      assert.ok(wholeOut.equals(expected), 'a file of several chunks sealed in one part as inline');
      assert.equal(whole.fileMac, wholeMac.digest(), 'the file MAC of a file of several chunks in one part');
      assert.equal(pool.secretsSent, 1, 'the key went to the worker once, not per task');
      await rejectsWith(pool.run('seal', { secret, destination: 'vault', fileId, chunkBytes, firstChunk: 0, chunks }, plain, { secret, output: Buffer.alloc(plain.length + 1000) }), /must be shared memory/, RangeError);
    } finally {
      await pool.close();
    }
  });

  it('warms up: starts its workers with the key before the first task, which then needs neither; many MiB sealed in one worker stay exact', async () => {
    const pool = testPool(2);
    const key = new DestinationKey('vault', KEY_BYTES);
    const chunkBytes = 1024 * 1024;
    const fileId = 'bk/binlogs/insert_log/1/2/3/100/8';
    try {
      const secret = pool.secret(key, () => key.secretBytes());
      assert.equal(pool.started, 0, 'lazy until asked');
      pool.warm(secret);
      assert.equal(pool.started, 2, 'both workers started');
      assert.equal(pool.secretsSent, 2, 'each got the key once');
      pool.warm(secret);
      assert.equal(pool.secretsSent, 2, 'warming again sends nothing');
      // 12 parts of 1 MiB through the warmed workers.
      const plain = randomBytes(12 * chunkBytes + 5);
      const chunks = chunkCount(plain.length, chunkBytes);
      const outputs = Array.from({ length: chunks }, () => Buffer.from(new SharedArrayBuffer(chunkBytes + OVERHEAD_BYTES)));
      const parts = await Promise.all(outputs.map((output, i) => pool.run('seal', {
        secret, destination: 'vault', fileId, chunkBytes, firstChunk: i, chunks,
      }, plain.subarray(i * chunkBytes, (i + 1) * chunkBytes), { secret, output })));
      const sealed = Buffer.concat(parts.map((p, i) => (outputs[i] as Buffer).subarray(0, p.length)));
      assert.ok(sealed.equals(sealBuffer(key, fileId, plain, chunkBytes)), 'sealed bytes equal the inline seal');
      assert.equal(pool.started, 2, 'no other worker started');
      assert.equal(pool.secretsSent, 2, 'no task sent the key again');
    } finally {
      await pool.close();
    }
    const closed = testPool(1);
    await closed.close();
    closed.warm();
    assert.equal(closed.started, 0, 'a closed pool starts nothing');
    const inline = new CpuPool({ workers: 0, workerUrl: TEST_WORKER });
    inline.warm();
    assert.equal(inline.started, 0, 'a pool without workers starts nothing');
  });

  it('settles a running task that writes an output only once its worker is done with it, even when aborted', async () => {
    const pool = testPool(1);
    try {
      const output = Buffer.from(new SharedArrayBuffer(4096));
      const controller = new AbortController();
      const late = (pool.run as unknown as (t: string, p: unknown, i: Uint8Array, o: object) => Promise<unknown>)('fillLate', { ms: 300, value: 9 }, Buffer.alloc(1), { signal: controller.signal, output });
      setTimeout(() => controller.abort(), 50);
      await rejectsWith(late, /aborted/, AbortedError);
      assert.ok(output.every((b) => b === 9), 'the worker had written the whole output before the task rejected');
    } finally {
      await pool.close();
    }
  });

  it('never shows the key in an error, and refuses a task whose key was forgotten', async () => {
    const pool = testPool(1);
    const key = new DestinationKey('vault', KEY_BYTES);
    try {
      const secret = pool.secret(key, () => key.secretBytes());
      // A part that is not whole chunks: the sealer refuses it in the worker.
      const bad = pool.run('seal', { secret, destination: 'vault', fileId: 'f', chunkBytes: 1024, firstChunk: 0, chunks: 3 }, randomBytes(1500), { secret, output: Buffer.from(new SharedArrayBuffer(4096)) });
      await assert.rejects(bad, (err: Error) => {
        assert.match(err.message, /f: chunk 1 has 476 bytes; only the last chunk may be shorter than 1024/);
        for (const text of [KEY_BYTES.toString('hex'), KEY_BYTES.toString('base64'), KEY_BYTES.toString('latin1')]) assert.ok(!err.message.includes(text));
        return true;
      });
      pool.forget(key);
      await rejectsWith(pool.run('seal', { secret, destination: 'vault', fileId: 'f', chunkBytes: 1024, firstChunk: 0, chunks: 1 }, randomBytes(10), { secret, output: Buffer.from(new SharedArrayBuffer(4096)) }), /no longer registered/);
    } finally {
      await pool.close();
    }
  });

  it('rejects a task that throws, with its message, and goes on with the next', async () => {
    const pool = testPool(1);
    try {
      await rejectsWith(runRaw(pool, 'throw', { message: 'bad input 42' }), /CPU task throw failed: bad input 42/);
      assert.equal(await runRaw(pool, 'block', { ms: 1 }, Buffer.alloc(5)), 5);
    } finally {
      await pool.close();
    }
  });

  it('rejects the task of a worker that exits or dies of an uncaught error, and runs the queued tasks on a new worker', async () => {
    const pool = testPool(1);
    try {
      const exiting = runRaw(pool, 'exit', { code: 7 });
      const queued = pool.run('md5', {}, Buffer.from('after the crash'));
      await rejectsWith(exiting, /CPU task exit was not done: the worker thread running it stopped \(it exited with code 7\)/);
      assert.equal((await queued).hex, createHash('md5').update('after the crash').digest('hex'));
      await rejectsWith(runRaw(pool, 'uncaught', { message: 'boom in a callback' }), /CPU task uncaught was not done: .*boom in a callback/);
      assert.equal(await runRaw(pool, 'block', { ms: 1 }, Buffer.alloc(3)), 3);
    } finally {
      await pool.close();
    }
  });

  it('gives a worker its next tasks before it answers, runs the smallest queued task first, and queues again what a dead worker had not started', async () => {
    const pool = new CpuPool({ workers: 1, inlineBelowBytes: 0, workerUrl: TEST_WORKER, maxQueuedMs: 60_000 });
    const MiB = 1024 * 1024;
    try {
      const order: string[] = [];
      const track = (name: string, promise: Promise<unknown>): Promise<unknown> => promise.then((value) => { order.push(name); return value; });
      // The worker runs the first; the second is given to it at once (nothing ahead of it yet);
      // the rest wait here, with over a megabyte given ahead.
      const first = track('first', runRaw(pool, 'block', { ms: 300 }, Buffer.alloc(2 * MiB)));
      const given = track('given', runRaw(pool, 'block', { ms: 1 }, Buffer.alloc(2 * MiB)));
      const large = track('large', runRaw(pool, 'block', { ms: 1 }, Buffer.alloc(3 * MiB)));
      const small = track('small', runRaw(pool, 'block', { ms: 1 }, Buffer.alloc(10)));
      const middle = track('middle', runRaw(pool, 'block', { ms: 1 }, Buffer.alloc(MiB)));
      assert.deepEqual(await Promise.all([first, given, large, small, middle]), [2 * MiB, 2 * MiB, 3 * MiB, 10, MiB]);
      assert.deepEqual(order, ['first', 'given', 'small', 'middle', 'large']);
      assert.equal(pool.started, 1);

      // Given to the worker behind a task that kills it: run on a new worker, not lost.
      const exiting = runRaw(pool, 'exit', { code: 3 });
      const behind = [pool.run('md5', {}, Buffer.from('one')), pool.run('md5', {}, Buffer.from('two'))];
      await rejectsWith(exiting, /CPU task exit was not done: the worker thread running it stopped \(it exited with code 3\)/);
      assert.deepEqual((await Promise.all(behind)).map((r) => r.hex), ['one', 'two'].map((t) => createHash('md5').update(t).digest('hex')));
    } finally {
      await pool.close();
    }
  });

  it('rejects a queued task whose signal fires, and every task still pending at close', async () => {
    const pool = testPool(1);
    const running = runRaw(pool, 'block', { ms: 500 });
    const controller = new AbortController();
    const aborted = runRaw(pool, 'block', { ms: 1 }, Buffer.alloc(1), controller.signal);
    const queued = runRaw(pool, 'block', { ms: 1 });
    controller.abort();
    await rejectsWith(aborted, /aborted/, AbortedError);
    const checked = [rejectsWith(running, /the CPU pool was closed/), rejectsWith(queued, /the CPU pool was closed/)];
    await pool.close();
    await Promise.all(checked);
    await rejectsWith(pool.run('md5', {}, Buffer.alloc(1)), /the CPU pool is closed/);
  });

  it('starts its workers when Node was given flags a worker thread refuses (such as --title, --perf-basic-prof)', () => {
    const script = `import { cpuPool } from ${JSON.stringify(POOL_MODULE.href)};
      const answer = await cpuPool().run('md5', {}, Buffer.alloc(1024 * 1024));
      console.log('answer', answer.hex, cpuPool().started);`;
    const child = spawnSync(process.execPath, ['--title=offsite-cpu-pool-test', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(child.status, 0, `exit status (stderr: ${child.stderr})`);
    assert.equal(child.stdout.trim(), `answer ${createHash('md5').update(Buffer.alloc(1024 * 1024)).digest('hex')} 1`);
  });

  it('does not keep a process alive, and keeps it alive while a task runs', () => {
    // No script closes its pool: the first must wait for its 300 ms task, then all must exit by themselves.
    const scripts = [
      `import { CpuPool } from ${JSON.stringify(POOL_MODULE.href)};
       const pool = new CpuPool({ workers: 1, inlineBelowBytes: 0, workerUrl: new URL(${JSON.stringify(TEST_WORKER.href)}) });
       console.log('answer', await pool.run('block', { ms: 300 }, Buffer.alloc(10)));`,
      `import { cpuPool } from ${JSON.stringify(POOL_MODULE.href)};
       const answer = await cpuPool().run('md5', {}, Buffer.alloc(1024 * 1024));
       setTimeout(() => console.log('answer', answer.hex), 50);`,
      // Only warmed up, no task ever run: its idle workers must not hold the process either.
      `import { cpuPool } from ${JSON.stringify(POOL_MODULE.href)};
       const pool = cpuPool();
       pool.warm();
       console.log('warmed', pool.started > 0);`,
    ];
    const expected = ['answer 10', `answer ${createHash('md5').update(Buffer.alloc(1024 * 1024)).digest('hex')}`, 'warmed true'];
    scripts.forEach((script, i) => {
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(child.signal, null, `script ${i} was killed after 60 s: it hung (stderr: ${child.stderr})`);
      assert.equal(child.status, 0, `script ${i} exit status (stderr: ${child.stderr})`);
      assert.equal(child.stdout.trim(), expected[i]);
    });
  });
});
