/**
 * The driver toolkit (src/drivers/toolkit/) on its own: temp names, the part ledger, argument
 * checks, the folder cache and the semaphore. The drivers' use of them is checked by the
 * conformance suite (error kinds and codes) and the drivers' own tests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkByteCount, checkDriverKey, checkReadRange, checkWriteShape, copyTempName, FolderCache, isInside, isTempName,
  MAX_NAME_BYTES, PartLedger, partialName, partialPathOf, Semaphore,
} from '../../src/drivers/toolkit/index.js';
import { AbortedError, KeyError, OffsiteError } from '../../src/errors.js';

const context = { driver: 'nas', key: 'a/b.bin', action: 'write' };

function refusedWith(code: string, kind: string) {
  return (err: unknown): boolean => err instanceof OffsiteError && err.code === code && err.kind === kind && err.message.startsWith('nas: ');
}

describe('temp names', () => {
  it('keeps short names whole and recognises them', () => {
    assert.equal(partialName('b.bin'), '.b.bin.offsite-partial');
    assert.equal(partialPathOf('a/b/c.bin'), 'a/b/.c.bin.offsite-partial');
    assert.equal(partialPathOf('c.bin'), '.c.bin.offsite-partial');
    assert.equal(partialPathOf('/srv/root/c.bin'), '/srv/root/.c.bin.offsite-partial');
    assert.ok(isTempName(partialName('b.bin')));
    assert.match(copyTempName('b.bin'), /^\.b\.bin\.offsite-copy-[0-9a-f]{16}$/);
    assert.ok(isTempName(copyTempName('b.bin')));
    for (const name of ['b.bin', '.offsite-partial', '.x.offsite-copy-12', 'x.offsite-partial', '.hidden']) assert.ok(!isTempName(name), name);
  });

  it('shortens long names deterministically, within 255 bytes, for every alphabet', () => {
    for (const unit of ['a', 'é', '日', '🙂']) {
      for (const count of [50, 100, 200, 255]) {
        const name = unit.repeat(count);
        if (Buffer.byteLength(name) > MAX_NAME_BYTES) continue; // the final name itself could not exist
        for (const temp of [partialName(name), copyTempName(name)]) {
          assert.ok(Buffer.byteLength(temp) <= MAX_NAME_BYTES, `${unit} x ${count}: ${Buffer.byteLength(temp)} bytes`);
          assert.ok(isTempName(temp), `${unit} x ${count}: recognised`);
          assert.ok(!temp.includes('\uFFFD'), 'no code point cut in half');
        }
        assert.equal(partialName(name), partialName(name), 'deterministic');
      }
    }
    assert.notEqual(partialName('x'.repeat(250)), partialName(`${'x'.repeat(249)}y`), 'names sharing a long prefix get different temp names');
  });
});

describe('PartLedger', () => {
  it('checks indexes and lengths with E_BAD_ARGUMENT (fatal)', () => {
    const ledger = new PartLedger(25, 10);
    assert.equal(ledger.count, 3);
    assert.deepEqual(ledger.checkPart(2, Buffer.alloc(5), context), { start: 20, end: 25 });
    for (const index of [-1, 3, 1.5, Number.NaN]) assert.throws(() => ledger.checkIndex(index, context), refusedWith('E_BAD_ARGUMENT', 'fatal'), String(index));
    assert.throws(() => ledger.checkPart(0, Buffer.alloc(9), context), refusedWith('E_BAD_ARGUMENT', 'fatal'));
    assert.throws(() => ledger.checkPart(2, Buffer.alloc(10), context), refusedWith('E_BAD_ARGUMENT', 'fatal'));
    assert.deepEqual([...ledger.partsWithin(20)], [0, 1]);
    assert.deepEqual([...ledger.partsWithin(19)], [0]);
    assert.deepEqual([...ledger.partsWithin(25)], [0, 1, 2]);
  });

  it('refuses a commit with holes with E_MISSING_PART (fatal), naming the parts', () => {
    const ledger = new PartLedger(25, 10);
    ledger.record(0);
    ledger.record(2);
    assert.throws(() => ledger.requireComplete(context), (err: unknown) => refusedWith('E_MISSING_PART', 'fatal')(err) && /part 1 of 3/.test((err as Error).message));
    ledger.record(1);
    ledger.requireComplete(context);
    ledger.forget(1);
    assert.deepEqual(ledger.missing(), [1]);
    ledger.clear();
    assert.deepEqual(ledger.missing(), [0, 1, 2]);
    new PartLedger(0, 10).requireComplete(context); // an empty object has no parts
  });
});

describe('argument checks', () => {
  it('refuse bad sizes, offsets and part sizes with one code and kind', () => {
    assert.equal(checkByteCount(0, 'size', context), 0);
    for (const bad of [-1, 1.5, Number.NaN, Infinity, '4', undefined, 2 ** 53]) {
      assert.throws(() => checkByteCount(bad, 'size', context), refusedWith('E_BAD_ARGUMENT', 'fatal'), String(bad));
    }
    assert.deepEqual(checkReadRange({}, context), { offset: 0, length: undefined });
    assert.throws(() => checkReadRange({ offset: -1 }, context), refusedWith('E_BAD_ARGUMENT', 'fatal'));
    assert.throws(() => checkReadRange({ length: 0.5 }, context), refusedWith('E_BAD_ARGUMENT', 'fatal'));
    assert.deepEqual(checkWriteShape({ size: 10, partBytes: 4 }, 100, context), { size: 10, partBytes: 4 });
    for (const partBytes of [0, 101, -1]) assert.throws(() => checkWriteShape({ size: 10, partBytes }, 100, context), refusedWith('E_BAD_ARGUMENT', 'fatal'));
  });

  it('refuse escaping keys and temp names with a KeyError naming the driver', () => {
    assert.equal(checkDriverKey('nas', 'a/b'), 'a/b');
    for (const key of ['../x', '/abs', 'a//b', '', 'a/.b.offsite-partial', `.${'x'.repeat(300)}~0123456789abcdef.offsite-partial`]) {
      assert.throws(() => checkDriverKey('nas', key), (err: unknown) => err instanceof KeyError && refusedWith('E_BAD_KEY', 'permanent')(err), key);
    }
  });
});

describe('isInside and FolderCache', () => {
  it('isInside compares whole path segments', () => {
    assert.ok(isInside('/srv/a', '/srv/a'));
    assert.ok(isInside('/srv/a/b', '/srv/a'));
    assert.ok(!isInside('/srv/ab', '/srv/a'));
    assert.ok(isInside('/anything', '/'));
    assert.ok(isInside('/srv/a/b', '/srv/a/'));
  });

  it('FolderCache keeps the most recently used and forgets a path level by level', () => {
    const cache = new FolderCache<string>(2);
    cache.set('a', '/r/a');
    cache.set('a/b', '/r/a/b');
    assert.equal(cache.get('a'), '/r/a'); // 'a' is now the most recent
    cache.set('c', '/r/c'); // evicts 'a/b'
    assert.equal(cache.get('a/b'), undefined);
    assert.equal(cache.size, 2);
    assert.equal(cache.forgetPath(['a', 'b']), true);
    assert.equal(cache.get('a'), undefined);
    assert.equal(cache.forgetPath(['a', 'b']), false);
  });
});

describe('Semaphore', () => {
  it('lets `limit` run at once, the others in order, and frees a slot when a run fails', async () => {
    const slots = new Semaphore(2);
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    const job = (n: number, fail = false) => slots.run(undefined, 'job', async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((resolve) => setTimeout(resolve, 10));
      running--;
      order.push(n);
      if (fail) throw new Error(`job ${n} failed`);
      return n;
    });
    const results = await Promise.allSettled([job(1), job(2, true), job(3), job(4), job(5)]);
    assert.equal(peak, 2);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    assert.deepEqual(order.slice(2).sort(), [3, 4, 5]);
    assert.equal(slots.busy, 0);
  });

  it('a waiter whose signal fires rejects with AbortedError at once and never runs', async () => {
    const slots = new Semaphore(1);
    let release!: () => void;
    const holder = slots.run(undefined, 'holder', () => new Promise<void>((resolve) => { release = resolve; }));
    const controller = new AbortController();
    let ran = false;
    const waiter = slots.run(controller.signal, 'cloud: waiter', async () => { ran = true; });
    controller.abort();
    await assert.rejects(waiter, (err: unknown) => err instanceof AbortedError && err.message === 'cloud: waiter aborted');
    release();
    await holder;
    assert.equal(ran, false);
    assert.equal(slots.busy, 0, 'the aborted waiter took no slot');
    await slots.run(undefined, 'next', async () => undefined); // and the slot is usable
  });

  it('acquire/release without a signal, and a limit below 1 is refused', async () => {
    const slots = new Semaphore(1);
    await slots.acquire();
    let second = false;
    const waiting = slots.acquire().then(() => { second = true; });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(second, false);
    slots.release();
    await waiting;
    assert.equal(second, true);
    slots.release();
    assert.equal(slots.busy, 0);
    assert.throws(() => new Semaphore(0), RangeError);
  });
});

