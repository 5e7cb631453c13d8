/**
 * The ONE conformance suite every driver must pass, written against the contract in
 * src/drivers/types.ts only (never a driver's name or internals). A driver's test file calls
 * `runConformance(label, target)`; optional behaviour is skipped by capability, with the reason
 * in the skip message.
 *
 * A target that cannot be created (server down) makes every test FAIL with the reason; only an
 * explicit `skipReason` skips, loudly.
 *
 * Usage, in test/conformance/<driver>.test.ts:
 *
 *     runConformance('sftp', async () => {
 *       const reason = process.env['OFFSITE_TEST_SSHD_ERROR'];
 *       if (reason) throw new Error(reason);          // every test then fails with this reason
 *       return {
 *         create: () => createSftpDriver('nas', { type: 'sftp', ..., root: `/srv/t/${randomUUID()}` }),
 *         cleanup: async () => { ... remove what create() made ... },
 *       };
 *     });
 *
 * Every refusal the suite provokes is checked for its error `kind`, and for its `code` where the
 * contract fixes one (src/drivers/toolkit/errors.ts has the table), so a driver whose errors drift
 * from the others fails here: escaping or reserved keys `E_BAD_KEY` (`permanent`), bad arguments
 * `E_BAD_ARGUMENT` (`fatal`), a missing part at commit `E_MISSING_PART` (`fatal`, and the
 * resumable state stays), a wrong stored size `E_SIZE_MISMATCH` (`integrity`), a missing key
 * `E_NOT_FOUND` (`not-found`), a finished session `E_SESSION_CLOSED` and a closed driver
 * `E_CLOSED` (both `fatal`), an aborted signal `E_ABORTED`.
 *
 * Data sizes follow `capabilities.minPartBytes`: multi-part cases use parts of
 * max(minPartBytes, 4 KiB), the large case max(minPartBytes, 64 KiB), so an S3 driver with 5 MiB
 * parts moves roughly 100 MiB over the whole suite. Single-part objects are written with
 * `partBytes` = their size (like src/drivers/io.ts does), which may be below `minPartBytes`:
 * the minimum only applies to parts that are not the last.
 */
import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import type { Readable } from 'node:stream';
import { AbortedError, DriverError, OffsiteError, errorMessage } from '../../src/errors.js';
import { getHasher } from '../../src/hash/xxh64.js';
import { partCount, partRange } from '../../src/drivers/keys.js';
import type { Capabilities, CopyExpectation, Driver, Entry, ListOptions, WriteSession } from '../../src/drivers/types.js';

export interface ConformanceTarget {
  /** A fresh, empty driver instance rooted at a unique empty location; called once per test. */
  create(): Promise<Driver>;
  /** Optional: removes everything the target created (temp folders, buckets); called once after all tests. */
  cleanup?(): Promise<void>;
}

export interface ConformanceOptions {
  /** Skip the whole suite, loudly, with this reason (e.g. an explicitly allowed missing server). */
  readonly skipReason?: string;
  /** Per-test timeout. @default 60000 */
  readonly timeoutMs?: number;
  /** Cases skipped, loudly, by name, each with the reason (a stack for which a case costs too much, not one it fails). */
  readonly skipCases?: Readonly<Record<string, string>>;
}

const KiB = 1024;
/** Keys that must be refused by every method, before any IO. */
export const ESCAPING_KEYS: readonly string[] = ['../x', 'a/../../x', '..', '/abs', '/etc/passwd', 'a//b', 'a/./b', './a', 'a/', '', 'a\0b', 'a\\..\\..\\x'];
/** Bound for "rejects promptly" after an abort. */
const PROMPT_MS = 5000;

// ---------------------------------------------------------------------------------------------
// Helpers (exported so that driver-specific tests can reuse them)

/** Deterministic pseudo-random bytes (xorshift32) so that failures are reproducible. */
export function seededBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let state = (seed | 0) || 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    state ^= state << 13; state ^= state >>> 17; state ^= state << 5;
    out[i] = state & 0xff;
  }
  return out;
}

/** Reads a whole stream into one buffer. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

export async function readKey(driver: Driver, key: string, offset?: number, length?: number): Promise<Buffer> {
  return readAll(await driver.openRead(key, { offset, length }));
}

export async function listAll(driver: Driver, prefix: string, options: ListOptions = {}): Promise<Entry[]> {
  const entries: Entry[] = [];
  for await (const entry of driver.list(prefix, options)) entries.push(entry);
  return entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

export async function hashOf(bytes: Uint8Array): Promise<string> {
  return (await getHasher()).hash(bytes);
}

/** Part `index` of `data` for a session with `partBytes`. */
export function partOf(data: Buffer, index: number, partBytes: number): Buffer {
  const { start, end } = partRange(index, data.length, partBytes);
  return data.subarray(start, end);
}

/** Writes `data` as one object in parts (concurrently when the driver allows) and commits it. */
export async function putObject(driver: Driver, key: string, data: Buffer, partBytes = Math.max(1, data.length)): Promise<void> {
  const session = await driver.openWrite(key, { size: data.length, partBytes });
  try {
    await writeParts(driver.capabilities, session, data, [...Array(partCount(data.length, partBytes)).keys()]);
    await commitChecked(driver, session, key, data);
  } catch (err) {
    await session.abort().catch(() => undefined);
    throw err;
  }
}

/**
 * Commits `session` (of `key`, holding `data`). A fingerprint told by commit saves the engine a
 * stat per file: it must be the one stat shows, for one part and for several.
 */
export async function commitChecked(driver: Driver, session: WriteSession, key: string, data: Buffer): Promise<void> {
  const committed = await session.commit({ hash: await hashOf(data) });
  if (committed?.fingerprint !== undefined) assert.equal(committed.fingerprint, (await driver.stat(key))?.fingerprint, `${key}: commit's fingerprint is stat's`);
}

/** Writes the listed parts, concurrently (bounded) when `parallelPartWrites`, else in order. */
export async function writeParts(capabilities: Capabilities, session: WriteSession, data: Buffer, indexes: readonly number[]): Promise<void> {
  if (!capabilities.parallelPartWrites) {
    for (const index of indexes) await session.write(index, partOf(data, index, session.partBytes));
    return;
  }
  const queue = [...indexes];
  const width = Math.max(1, Math.min(capabilities.maxConcurrency, 8));
  await Promise.all(Array.from({ length: width }, async () => {
    for (let index = queue.shift(); index !== undefined; index = queue.shift()) await session.write(index, partOf(data, index, session.partBytes));
  }));
}

/** Asserts that `action` rejects with an `OffsiteError` of `kind` (and optionally a class/code). */
export async function rejectsWithKind(action: () => Promise<unknown>, kind: string, what: string, code?: string): Promise<OffsiteError> {
  let caught: unknown;
  try {
    await action();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `${what}: expected a rejection with kind "${kind}", but it resolved`);
  assert.ok(caught instanceof OffsiteError, `${what}: expected an OffsiteError, got ${caught instanceof Error ? caught.constructor.name : typeof caught}: ${errorMessage(caught)}`);
  assert.equal(caught.kind, kind, `${what}: expected kind "${kind}", got "${caught.kind}" (${caught.message})`);
  if (code !== undefined) assert.equal(caught.code, code, `${what}: expected code ${code}, got ${caught.code} (${caught.message})`);
  return caught;
}

/** Asserts a prompt rejection with `AbortedError` (kind `fatal`, code `E_ABORTED`). */
async function rejectsAborted(action: () => Promise<unknown>, what: string): Promise<void> {
  const started = Date.now();
  const err = await rejectsWithKind(action, 'fatal', what);
  assert.ok(err instanceof AbortedError || err.code === 'E_ABORTED', `${what}: expected AbortedError (E_ABORTED), got ${err.code}: ${err.message}`);
  assert.ok(Date.now() - started < PROMPT_MS, `${what}: took ${Date.now() - started} ms to honour the aborted signal`);
}

async function drain(iterable: AsyncIterable<unknown>): Promise<number> {
  let count = 0;
  for await (const _ of iterable) count++;
  return count;
}

/** A part size the driver accepts for multi-part tests: at least its minimum, at least `floor`. */
function partSizeFor(capabilities: Capabilities, floor: number): number {
  const bytes = Math.max(capabilities.minPartBytes, floor);
  assert.ok(bytes <= capabilities.maxPartBytes, `minPartBytes ${capabilities.minPartBytes} > maxPartBytes ${capabilities.maxPartBytes}`);
  return bytes;
}

/** Skips (with the reason) unless the capability is set; returns whether the test should go on. */
function requires(t: TestContext, driver: Driver, capability: keyof Capabilities): boolean {
  if (driver.capabilities[capability]) return true;
  t.skip(`driver "${driver.name}" does not declare capabilities.${capability}`);
  return false;
}

async function assertAbsent(driver: Driver, key: string, when: string): Promise<void> {
  assert.equal(await driver.stat(key), undefined, `${when}: stat(${key}) should be undefined`);
  await rejectsWithKind(() => driver.openRead(key), 'not-found', `${when}: openRead(${key})`);
  const listed = (await listAll(driver, '')).map((e) => e.key);
  assert.ok(!listed.includes(key), `${when}: list('') should not contain ${key}, got ${JSON.stringify(listed)}`);
}

async function assertObject(driver: Driver, key: string, data: Buffer): Promise<void> {
  const entry = await driver.stat(key);
  assert.ok(entry, `stat(${key}) should find the committed object`);
  assert.equal(entry.key, key);
  assert.equal(entry.size, data.length, `stat(${key}).size`);
  const read = await readKey(driver, key);
  assert.equal(read.length, data.length, `read ${key}: length`);
  assert.ok(read.equals(data), `read ${key}: bytes differ from what was written`);
}

// ---------------------------------------------------------------------------------------------

type TargetSource = ConformanceTarget | (() => ConformanceTarget | Promise<ConformanceTarget>);
type Case = (driver: Driver, t: TestContext) => Promise<void>;

/** Registers the conformance tests for one driver as a `describe` block. */
export function runConformance(label: string, target: TargetSource, options: ConformanceOptions = {}): void {
  const title = `conformance: ${label}`;
  if (options.skipReason !== undefined) {
    console.error(`# SKIPPING the conformance suite for ${label}: ${options.skipReason}`);
    describe(title, { skip: `SKIPPED: ${options.skipReason}` }, () => {});
    return;
  }
  let resolved: Promise<ConformanceTarget> | undefined;
  const getTarget = (): Promise<ConformanceTarget> => {
    resolved ??= (async () => (typeof target === 'function' ? target() : target))();
    return resolved;
  };
  const timeout = options.timeoutMs ?? 60_000;

  const test = (name: string, body: Case): void => {
    const skip = options.skipCases?.[name];
    it(name, { timeout, ...(skip !== undefined ? { skip } : {}) }, async (t) => {
      let targetValue: ConformanceTarget;
      try {
        targetValue = await getTarget();
      } catch (err) {
        throw new Error(`${label}: the test target could not be set up: ${errorMessage(err)}`, { cause: err });
      }
      let driver: Driver;
      try {
        driver = await targetValue.create();
      } catch (err) {
        throw new Error(`${label}: could not create a driver: ${errorMessage(err)}`, { cause: err });
      }
      try {
        await body(driver, t);
      } finally {
        await driver.close();
      }
    });
  };

  describe(title, () => {
    after(async () => {
      if (resolved === undefined) return;
      const value = await resolved.catch(() => undefined);
      await value?.cleanup?.();
    });

    test('declares a name, a description and sane capabilities', async (driver) => {
      assert.equal(typeof driver.name, 'string');
      assert.ok(driver.name.length > 0, 'name must not be empty');
      assert.equal(typeof driver.description, 'string');
      assert.ok(driver.description.length > 0, 'description must not be empty');
      assert.doesNotMatch(driver.description, /secret|password|:[^/@:]+@/i, 'description must not carry credentials');
      const c = driver.capabilities;
      for (const flag of ['rangeReads', 'resumableWrites', 'atomicCommit', 'storedHash', 'serverSideCopy', 'parallelPartWrites'] as const) {
        assert.equal(typeof c[flag], 'boolean', `capabilities.${flag} must be a boolean`);
      }
      assert.ok(Number.isInteger(c.minPartBytes) && c.minPartBytes >= 1, 'minPartBytes >= 1');
      assert.ok(c.maxPartBytes >= c.minPartBytes, 'maxPartBytes >= minPartBytes');
      assert.ok(c.maxParts >= 1, 'maxParts >= 1');
      assert.ok(Number.isInteger(c.maxConcurrency) && c.maxConcurrency >= 1, 'maxConcurrency >= 1');
      if (c.serverSideCopy) assert.equal(typeof driver.copyWithin, 'function', 'serverSideCopy is set, so copyWithin must be implemented');
    });

    test('a fresh driver is empty, close() is idempotent, and a closed driver refuses calls (E_CLOSED, fatal)', async (driver) => {
      assert.deepEqual(await listAll(driver, ''), []);
      await driver.close();
      await driver.close();
      await rejectsWithKind(() => driver.stat('a'), 'fatal', 'stat after close', 'E_CLOSED');
      await rejectsWithKind(() => driver.openWrite('a', { size: 1, partBytes: 1 }), 'fatal', 'openWrite after close', 'E_CLOSED');
    });

    test('write + commit + stat + list + read round trip', async (driver) => {
      const data = seededBytes(10_000, 1);
      const before = Date.now();
      await putObject(driver, 'dir/file.bin', data);
      await assertObject(driver, 'dir/file.bin', data);
      const entry = await driver.stat('dir/file.bin');
      assert.ok(entry && Number.isFinite(entry.mtimeMs), 'mtimeMs must be a number');
      assert.ok(Math.abs(entry.mtimeMs - before) < 24 * 3600_000, `mtimeMs ${entry.mtimeMs} should be close to now (${before})`);
      const listed = await listAll(driver, '');
      assert.deepEqual(listed.map((e) => [e.key, e.size]), [['dir/file.bin', data.length]]);
    });

    test('zero-length object: no parts, commit, stat size 0, empty read, listed', async (driver) => {
      const session = await driver.openWrite('empty', { size: 0, partBytes: partSizeFor(driver.capabilities, 1) });
      await session.commit({ hash: await hashOf(Buffer.alloc(0)) });
      await assertObject(driver, 'empty', Buffer.alloc(0));
      assert.deepEqual((await listAll(driver, '')).map((e) => [e.key, e.size]), [['empty', 0]]);
      assert.equal((await readKey(driver, 'empty', 0)).length, 0);
    });

    test('unicode, spaces, punctuation and 12-level nested keys', async (driver) => {
      const keys = [
        'a/ü/日本/語/ñ/ø/π/й/ع/한/🙂/deep/leaf.bin',
        'names/with space and+plus=equals,comma;semi@at#hash%percent&amp~tilde!bang(paren)\'quote',
        'names/Ünïcödé 文件.json',
        '1/2/3/4/5/6/7/8/9/10/11/12',
      ];
      for (const [i, key] of keys.entries()) await putObject(driver, key, seededBytes(100 + i, 10 + i));
      for (const [i, key] of keys.entries()) await assertObject(driver, key, seededBytes(100 + i, 10 + i));
      assert.deepEqual((await listAll(driver, '')).map((e) => e.key), [...keys].sort());
      assert.deepEqual((await listAll(driver, 'a/ü/日本/')).map((e) => e.key), [keys[0]]);
      assert.deepEqual((await listAll(driver, 'names/')).map((e) => e.key), [keys[1], keys[2]].sort());
      await driver.delete(keys[0] as string);
      assert.equal(await driver.stat(keys[0] as string), undefined);
    });

    test('keys escaping the root are refused by every method, before any IO', async (driver) => {
      await putObject(driver, 'a/x', seededBytes(10, 2)); // something real next to the traps
      const hash = await hashOf(Buffer.alloc(0));
      for (const key of ESCAPING_KEYS) {
        const shown = JSON.stringify(key);
        const checks: Array<[string, () => Promise<unknown>]> = [
          ['stat', () => driver.stat(key)],
          ['openRead', () => driver.openRead(key)],
          ['openWrite', async () => { const s = await driver.openWrite(key, { size: 0, partBytes: 1 }); await s.commit({ hash }); }],
          ['delete', () => driver.delete(key)],
        ];
        if (key !== '' && key !== 'a/') checks.push(['list', () => drain(driver.list(key.endsWith('/') ? key : `${key}/`))]);
        if (driver.capabilities.serverSideCopy && driver.copyWithin) {
          const copy = driver.copyWithin.bind(driver);
          checks.push(['copyWithin(from)', () => copy(key, 'copy-target')], ['copyWithin(to)', () => copy('a/x', key)]);
        }
        for (const [method, call] of checks) {
          const err = await rejectsWithKind(call, 'permanent', `${method}(${shown})`);
          assert.ok(err instanceof DriverError, `${method}(${shown}): expected a DriverError (KeyError), got ${err.constructor.name}`);
          assert.equal(err.code, 'E_BAD_KEY', `${method}(${shown}): expected code E_BAD_KEY, got ${err.code}: ${err.message}`);
        }
      }
      assert.deepEqual((await listAll(driver, '')).map((e) => e.key), ['a/x'], 'refused keys must leave no trace');
      await assertObject(driver, 'a/x', seededBytes(10, 2));
    });

    test('keys shaped like our temp names are refused (E_BAD_KEY, permanent), and temp names stay hidden for long keys', async (driver) => {
      const long = `long/${'n'.repeat(246)}.bin`; // a 250-byte name: its temp name must be shortened to fit in 255 bytes
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes * 2, 80);
      const session = await driver.openWrite(long, { size: data.length, partBytes });
      await session.write(0, partOf(data, 0, partBytes));
      await session.suspend();
      assert.deepEqual(await listAll(driver, ''), [], 'a suspended write of a long key is not listed');
      const again = await driver.openWrite(long, { size: data.length, partBytes });
      if (driver.capabilities.resumableWrites) assert.ok(again.resumableParts.has(0), 'the suspended write of a long key is found again');
      await writeParts(driver.capabilities, again, data, [0, 1]);
      await again.commit({ hash: await hashOf(data) });
      await assertObject(driver, long, data);
      const hash = await hashOf(Buffer.alloc(0));
      for (const key of ['a/.b.bin.offsite-partial', '.top.offsite-partial', `a/.${'x'.repeat(60)}~0123456789abcdef.offsite-partial`]) {
        const checks: Array<[string, () => Promise<unknown>]> = [
          ['stat', () => driver.stat(key)],
          ['openRead', () => driver.openRead(key)],
          ['openWrite', async () => { const s = await driver.openWrite(key, { size: 0, partBytes: 1 }); await s.commit({ hash }); }],
          ['delete', () => driver.delete(key)],
        ];
        for (const [method, call] of checks) await rejectsWithKind(call, 'permanent', `${method}(${JSON.stringify(key)})`, 'E_BAD_KEY');
      }
      assert.deepEqual((await listAll(driver, '')).map((e) => e.key), [long]);
    });

    test('bad read ranges are refused before any IO (E_BAD_ARGUMENT, fatal)', async (driver) => {
      await putObject(driver, 'r', seededBytes(10, 81));
      for (const [offset, length] of [[-1, undefined], [1.5, undefined], [0, -1], [0, 2.5], [Number.NaN, undefined]] as const) {
        await rejectsWithKind(() => driver.openRead('r', { offset, length }), 'fatal', `openRead offset ${offset} length ${length}`, 'E_BAD_ARGUMENT');
        await rejectsWithKind(() => driver.openRead('missing', { offset, length }), 'fatal', `openRead of a missing key, offset ${offset} length ${length}`, 'E_BAD_ARGUMENT');
      }
    });

    test('range reads: offset, offset + length, across parts, at the end, length 0', async (driver) => {
      const data = seededBytes(5000, 3);
      await putObject(driver, 'r', data);
      const cases: Array<[number, number | undefined]> = [[0, undefined], [1, undefined], [1234, undefined], [4999, undefined], [5000, undefined], [0, 1], [0, 5000], [100, 200], [4990, 10], [2500, 0], [5000, 0]];
      for (const [offset, length] of cases) {
        const got = await readKey(driver, 'r', offset, length);
        const want = data.subarray(offset, length === undefined ? undefined : offset + length);
        assert.ok(got.equals(want), `openRead offset ${offset} length ${length}: got ${got.length} bytes, want ${want.length}${got.length === want.length ? ' (bytes differ)' : ''}`);
      }
    });

    test('reads in pieces, and conditional reads (ifFingerprint): another object under the key is E_READ_SOURCE_CHANGED', async (driver, t) => {
      const pieceBytes = 4 * KiB;
      const data = seededBytes(pieceBytes * 6 + 5, 31);
      await putObject(driver, 'cond', data);
      const entry = (await listAll(driver, 'cond', { hashes: false })).find((e) => e.key === 'cond');
      assert.ok(entry, 'list finds the object');
      // In pieces, into buffers from allocate: every range comes back whole.
      for (const [offset, length] of [[0, data.length], [1, data.length - 1], [pieceBytes - 1, pieceBytes + 2], [data.length - 3, 3], [0, data.length + 100]] as const) {
        const sizes: number[] = [];
        const got = await readAll(await driver.openRead('cond', { offset, length, pieceBytes, allocate: (size) => { sizes.push(size); return Buffer.alloc(size); } }));
        assert.ok(got.equals(data.subarray(offset, offset + length)), `pieced read offset ${offset} length ${length}: got ${got.length} bytes`);
        assert.ok(sizes.every((size) => size <= pieceBytes), `pieced read offset ${offset} length ${length}: buffers of ${sizes.join(', ')} bytes`);
      }
      if (!requires(t, driver, 'conditionalReads')) return;
      assert.ok(entry.fingerprint !== undefined, 'a driver with conditionalReads fingerprints its listings');
      const ifFingerprint = entry.fingerprint;
      assert.ok((await readAll(await driver.openRead('cond', { ifFingerprint, length: data.length, pieceBytes }))).equals(data), 'the object of that fingerprint reads back');
      // Rewritten while a read is under way: the rest of the read is refused, not taken from the new object.
      const stream = await driver.openRead('cond', { ifFingerprint, length: data.length, pieceBytes });
      const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      for (let piece = 0; piece < 2; piece++) assert.equal((await iterator.next()).done, false, `piece ${piece} of the first object`);
      await putObject(driver, 'cond', seededBytes(data.length, 32));
      // A request already in flight while the object was replaced may fail as a server error
      // instead (Ceph RGW answers a read-ahead GET that overlaps the PUT with a 500 now and then):
      // also a refusal, which a retry turns into the refusal checked just below.
      let rest: unknown;
      try {
        for (;;) if ((await iterator.next()).done) break;
      } catch (err) {
        rest = err;
      }
      assert.ok(rest instanceof OffsiteError, `the rest of a read of a rewritten object: expected a rejection, got ${rest === undefined ? 'the whole read' : errorMessage(rest)}`);
      if (rest.kind !== 'retryable') assert.equal(rest.code, 'E_READ_SOURCE_CHANGED', `the rest of a read of a rewritten object: ${rest.message}`);
      stream.destroy();
      // Rewritten before the read: refused at once.
      await rejectsWithKind(() => driver.openRead('cond', { ifFingerprint, length: data.length, pieceBytes }), 'integrity', 'a read of a rewritten object', 'E_READ_SOURCE_CHANGED');
      await rejectsWithKind(() => driver.openRead('cond', { ifFingerprint }), 'integrity', 'a whole read of a rewritten object', 'E_READ_SOURCE_CHANGED');
    });

    test('the same part written twice: the last write wins', async (driver) => {
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes * 2 + 100, 4);
      const session = await driver.openWrite('twice', { size: data.length, partBytes });
      await session.write(0, seededBytes(partBytes, 99));
      await session.write(0, partOf(data, 0, partBytes));
      await session.write(1, partOf(data, 1, partBytes));
      await session.write(2, partOf(data, 2, partBytes));
      await session.write(2, partOf(data, 2, partBytes));
      await commitChecked(driver, session, 'twice', data);
      await assertObject(driver, 'twice', data);
    });

    test('parts written out of order and concurrently', async (driver, t) => {
      if (!requires(t, driver, 'parallelPartWrites')) return;
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes * 3 + 7, 5);
      const session = await driver.openWrite('parallel', { size: data.length, partBytes });
      await session.write(3, partOf(data, 3, partBytes)); // the short last part first
      await session.write(1, partOf(data, 1, partBytes));
      await Promise.all([2, 0, 1].map((i) => session.write(i, partOf(data, i, partBytes))));
      await commitChecked(driver, session, 'parallel', data);
      await assertObject(driver, 'parallel', data);
    });

    test('nothing is visible under the key before commit', async (driver, t) => {
      if (!requires(t, driver, 'atomicCommit')) return;
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes * 2 + 1, 6);
      const session = await driver.openWrite('pending/obj', { size: data.length, partBytes });
      await assertAbsent(driver, 'pending/obj', 'after openWrite');
      await writeParts(driver.capabilities, session, data, [0, 1, 2]);
      await assertAbsent(driver, 'pending/obj', 'after writing every part');
      assert.deepEqual(await listAll(driver, 'pending/'), [], 'list(pending/) before commit');
      await commitChecked(driver, session, 'pending/obj', data);
      await assertObject(driver, 'pending/obj', data);
      assert.deepEqual((await listAll(driver, '')).map((e) => e.key), ['pending/obj'], 'no temp objects listed after commit');
    });

    test('an existing object stays untouched until a new commit replaces it', async (driver) => {
      const old = seededBytes(3000, 7);
      const next = seededBytes(7000, 8);
      await putObject(driver, 'over', old);
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const session = await driver.openWrite('over', { size: next.length, partBytes });
      await writeParts(driver.capabilities, session, next, [...Array(partCount(next.length, partBytes)).keys()]);
      if (driver.capabilities.atomicCommit) await assertObject(driver, 'over', old);
      await commitChecked(driver, session, 'over', next);
      await assertObject(driver, 'over', next);
      assert.deepEqual((await listAll(driver, '')).map((e) => [e.key, e.size]), [['over', next.length]]);
      await putObject(driver, 'over', Buffer.alloc(0));
      await assertObject(driver, 'over', Buffer.alloc(0));
    });

    test('commit with a missing part rejects (E_MISSING_PART, fatal), leaves no final object and keeps the resumable state', async (driver) => {
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes * 3, 9);
      const hash = await hashOf(data);
      const session = await driver.openWrite('missing-part', { size: data.length, partBytes });
      await session.write(0, partOf(data, 0, partBytes));
      await session.write(2, partOf(data, 2, partBytes));
      // `fatal`, not `integrity`: the engine aborts (and so deletes the resumable state) only on `integrity`.
      await rejectsWithKind(() => session.commit({ hash }), 'fatal', 'commit without part 1', 'E_MISSING_PART');
      await assertAbsent(driver, 'missing-part', 'after a refused commit');
      await session.suspend();
      const again = await driver.openWrite('missing-part', { size: data.length, partBytes });
      if (driver.capabilities.resumableWrites) {
        assert.ok(again.resumableParts.has(0), `a refused commit must keep what was stored: resumableParts ${JSON.stringify([...again.resumableParts])}`);
        assert.equal(await again.matches(0, partOf(data, 0, partBytes)), true, 'part 0 is still stored after the refused commit');
      }
      await again.abort();
      await assertAbsent(driver, 'missing-part', 'after abort');
    });

    test('commit with the last part missing (short object) rejects and leaves no final object', async (driver) => {
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes * 2 + 10, 10);
      const session = await driver.openWrite('short', { size: data.length, partBytes });
      await session.write(0, partOf(data, 0, partBytes));
      await session.write(1, partOf(data, 1, partBytes));
      await rejectsWithKind(async () => session.commit({ hash: await hashOf(data) }), 'fatal', 'commit without the last part', 'E_MISSING_PART');
      await session.abort();
      await assertAbsent(driver, 'short', 'after a refused commit');
    });

    test('a part of the wrong length is refused (at write or at commit) and leaves no final object', async (driver) => {
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes + 500, 11);
      const session = await driver.openWrite('wrong-size', { size: data.length, partBytes });
      let refused = false;
      await session.write(0, partOf(data, 0, partBytes));
      try {
        await session.write(1, data.subarray(partBytes, partBytes + 400)); // 100 bytes short
      } catch (err) {
        assert.ok(err instanceof OffsiteError, `write of a short part: expected an OffsiteError, got ${errorMessage(err)}`);
        assert.deepEqual([err.kind, err.code], ['fatal', 'E_BAD_ARGUMENT'], `write of a short part: ${err.message}`);
        refused = true;
      }
      if (!refused) await rejectsWithKind(async () => session.commit({ hash: await hashOf(data) }), 'integrity', 'commit with a total size below `size`', 'E_SIZE_MISMATCH');
      await session.abort();
      await assertAbsent(driver, 'wrong-size', 'after a wrong-size write');
    });

    test('part indexes outside 0..n-1 are refused', async (driver) => {
      const session = await driver.openWrite('bad-index', { size: 10, partBytes: 10 });
      try {
        await rejectsWithKind(() => session.write(1, Buffer.alloc(10)), 'fatal', 'write(1) of a 1-part object', 'E_BAD_ARGUMENT');
        await rejectsWithKind(() => session.write(-1, Buffer.alloc(10)), 'fatal', 'write(-1)', 'E_BAD_ARGUMENT');
        await rejectsWithKind(() => session.write(0.5, Buffer.alloc(10)), 'fatal', 'write(0.5)', 'E_BAD_ARGUMENT');
        await rejectsWithKind(() => session.matches(1, Buffer.alloc(10)), 'fatal', 'matches(1) of a 1-part object', 'E_BAD_ARGUMENT');
      } finally {
        await session.abort();
      }
      await assertAbsent(driver, 'bad-index', 'after refused writes');
    });

    test('a committed or aborted session refuses more writes (E_SESSION_CLOSED, fatal)', async (driver) => {
      const data = seededBytes(10, 82);
      const committed = await driver.openWrite('closed/a', { size: 10, partBytes: 10 });
      await committed.write(0, data);
      await committed.commit({ hash: await hashOf(data) });
      await rejectsWithKind(() => committed.write(0, data), 'fatal', 'write after commit', 'E_SESSION_CLOSED');
      const aborted = await driver.openWrite('closed/b', { size: 10, partBytes: 10 });
      await aborted.abort();
      await rejectsWithKind(() => aborted.write(0, data), 'fatal', 'write after abort', 'E_SESSION_CLOSED');
      await rejectsWithKind(async () => aborted.commit({ hash: await hashOf(data) }), 'fatal', 'commit after abort', 'E_SESSION_CLOSED');
      await assertObject(driver, 'closed/a', data);
      assert.equal(await driver.stat('closed/b'), undefined);
    });

    test('abort leaves nothing, removes the resumable state, and is idempotent', async (driver) => {
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes * 3, 12);
      const session = await driver.openWrite('aborted/obj', { size: data.length, partBytes });
      await session.write(0, partOf(data, 0, partBytes));
      await session.write(1, partOf(data, 1, partBytes));
      await session.abort();
      await session.abort();
      await assertAbsent(driver, 'aborted/obj', 'after abort');
      assert.deepEqual(await listAll(driver, ''), [], 'abort leaves nothing listed');
      const again = await driver.openWrite('aborted/obj', { size: data.length, partBytes });
      assert.deepEqual([...again.resumableParts], [], 'resumableParts after abort');
      await again.abort();
    });

    test('suspend, then a new openWrite resumes: matches() confirms right bytes, refuses wrong ones', async (driver, t) => {
      if (!requires(t, driver, 'resumableWrites')) return;
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes * 3 + 333, 13);
      const first = await driver.openWrite('resume/obj', { size: data.length, partBytes });
      await first.write(0, partOf(data, 0, partBytes));
      await first.write(1, partOf(data, 1, partBytes));
      await first.suspend();
      await first.suspend();
      if (driver.capabilities.atomicCommit) await assertAbsent(driver, 'resume/obj', 'while suspended');
      assert.deepEqual(await listAll(driver, ''), [], 'a suspended write is not listed');

      const second = await driver.openWrite('resume/obj', { size: data.length, partBytes });
      const found = [...second.resumableParts].sort((a, b) => a - b);
      assert.ok(found.includes(0) && found.includes(1), `resumableParts should include 0 and 1, got ${JSON.stringify(found)}`);
      assert.ok(found.every((i) => Number.isInteger(i) && i >= 0 && i < 4), `resumableParts out of range: ${JSON.stringify(found)}`);
      assert.equal(await second.matches(0, partOf(data, 0, partBytes)), true, 'matches(0, right bytes)');
      assert.equal(await second.matches(3, partOf(data, 3, partBytes)), false, 'matches(3) for a part never written');
      const wrong = Buffer.from(partOf(data, 1, partBytes));
      wrong[wrong.length - 1] = (wrong[wrong.length - 1] as number) ^ 0xff;
      assert.equal(await second.matches(1, wrong), false, 'matches(1, wrong bytes)');
      // A false answer may discard part 1 (and later parts): write everything that is not confirmed.
      await writeParts(driver.capabilities, second, data, [1, 2, 3]);
      await second.commit({ hash: await hashOf(data) });
      await assertObject(driver, 'resume/obj', data);
      const third = await driver.openWrite('resume/obj', { size: data.length, partBytes });
      assert.deepEqual([...third.resumableParts], [], 'no resumable state remains after commit');
      await third.abort();
      await assertObject(driver, 'resume/obj', data);
    });

    test('resuming with every part confirmed by matches() commits without rewriting', async (driver, t) => {
      if (!requires(t, driver, 'resumableWrites')) return;
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes * 2 + 1, 14);
      const first = await driver.openWrite('resume-all', { size: data.length, partBytes });
      await writeParts(driver.capabilities, first, data, [0, 1, 2]);
      await first.suspend();
      const second = await driver.openWrite('resume-all', { size: data.length, partBytes });
      for (const index of [0, 1, 2]) {
        if (!second.resumableParts.has(index)) await second.write(index, partOf(data, index, partBytes));
        else assert.equal(await second.matches(index, partOf(data, index, partBytes)), true, `matches(${index})`);
      }
      await second.commit({ hash: await hashOf(data) });
      await assertObject(driver, 'resume-all', data);
    });

    test('missing key: stat undefined, openRead not-found, delete resolves', async (driver) => {
      await putObject(driver, 'present/file', seededBytes(5, 15));
      for (const key of ['nope', 'no/such/folder/file', 'present/nope', 'present/file/below-a-file']) {
        assert.equal(await driver.stat(key), undefined, `stat(${key})`);
        await rejectsWithKind(() => driver.openRead(key), 'not-found', `openRead(${key})`, 'E_NOT_FOUND');
        await rejectsWithKind(() => driver.openRead(key, { offset: 1, length: 2 }), 'not-found', `openRead(${key}, range)`, 'E_NOT_FOUND');
        await driver.delete(key);
      }
      assert.equal(await driver.stat('present'), undefined, 'a folder-like prefix is not an object');
      await rejectsWithKind(() => driver.openRead('present'), 'not-found', 'openRead of a folder-like prefix');
      await assertObject(driver, 'present/file', seededBytes(5, 15));
    });

    test('readHashes gives the hashes of exactly the stored bytes; another size, a missing key, an aborted signal are refused', async (driver, t) => {
      if (driver.readHashes === undefined) {
        t.skip(`driver "${driver.name}" has no readHashes (deep checks read its stream)`);
        return;
      }
      const hasher = await getHasher();
      const chunkBytes = 4 * KiB;
      const data = seededBytes(3 * chunkBytes + 17, 41);
      await putObject(driver, 'rh/file', data);
      await putObject(driver, 'rh/empty', Buffer.alloc(0));
      const expected = [0, 1, 2, 3].map((i) => hasher.hash(data.subarray(i * chunkBytes, (i + 1) * chunkBytes)));
      let told = 0;
      const found = await driver.readHashes('rh/file', { size: data.length, chunkBytes, whole: true, onBytes: (n) => { told += n; } });
      assert.deepEqual(found.chunks, expected, 'chunk hashes');
      assert.equal(found.hash, hasher.hash(data), 'whole-file hash');
      assert.equal(told, data.length, 'onBytes told every byte once');
      const oneChunk = await driver.readHashes('rh/file', { size: data.length, chunkBytes: 8 * chunkBytes });
      assert.deepEqual(oneChunk, { chunks: [hasher.hash(data)] }, 'one chunk, no whole-file hash unless asked');
      assert.deepEqual(await driver.readHashes('rh/empty', { size: 0, chunkBytes, whole: true }), { chunks: [], hash: hasher.hash(new Uint8Array(0)) }, 'an empty object');
      for (const size of [data.length - 1, data.length + 1, 0]) {
        await rejectsWithKind(() => driver.readHashes?.('rh/file', { size, chunkBytes, whole: true }) as Promise<unknown>, 'integrity', `readHashes with size ${size} of a ${data.length}-byte object`, 'E_SIZE_CHANGED');
      }
      await rejectsWithKind(() => driver.readHashes?.('rh/empty', { size: 1, chunkBytes }) as Promise<unknown>, 'integrity', 'readHashes of an empty object with size 1', 'E_SIZE_CHANGED');
      for (const key of ['rh/nope', 'no/such/folder/file', 'rh/file/below-a-file']) {
        await rejectsWithKind(() => driver.readHashes?.(key, { size: 1, chunkBytes }) as Promise<unknown>, 'not-found', `readHashes(${key})`, 'E_NOT_FOUND');
      }
      await rejectsWithKind(() => driver.readHashes?.('rh', { size: 1, chunkBytes }) as Promise<unknown>, 'not-found', 'readHashes of a folder-like prefix');
      for (const key of ESCAPING_KEYS) {
        await rejectsWithKind(() => driver.readHashes?.(key, { size: 1, chunkBytes }) as Promise<unknown>, 'permanent', `readHashes(${JSON.stringify(key)})`, 'E_BAD_KEY');
      }
      await rejectsWithKind(() => driver.readHashes?.('rh/file', { size: data.length, chunkBytes: 0 }) as Promise<unknown>, 'fatal', 'readHashes with chunkBytes 0', 'E_BAD_ARGUMENT');
      await rejectsAborted(() => driver.readHashes?.('rh/file', { size: data.length, chunkBytes, signal: AbortSignal.abort() }) as Promise<unknown>, 'readHashes with an aborted signal');
      const stop = new AbortController();
      await rejectsAborted(() => driver.readHashes?.('rh/file', { size: data.length, chunkBytes: 1024, signal: stop.signal, onBytes: () => stop.abort() }) as Promise<unknown>, 'readHashes aborted after its first piece');
      assert.deepEqual((await driver.readHashes('rh/file', { size: data.length, chunkBytes })).chunks, expected, 'the driver still hashes after the refusals');
    });

    test('whatIsAt names a file, a folder and a missing key', async (driver, t) => {
      if (driver.whatIsAt === undefined) {
        t.skip(`driver "${driver.name}" has no whatIsAt (its listings show all there is)`);
        return;
      }
      await putObject(driver, 'kinds/inner/file', seededBytes(3, 16));
      assert.equal(await driver.whatIsAt('kinds/inner/file'), 'file');
      assert.equal(await driver.whatIsAt('kinds/inner'), 'folder');
      assert.equal(await driver.whatIsAt('kinds/nope'), 'missing');
      assert.equal(await driver.whatIsAt('no/such/folder/file'), 'missing');
      assert.equal(await driver.whatIsAt('kinds/inner/file/below-a-file'), 'missing');
      await rejectsWithKind(() => driver.openRead('kinds/inner'), 'not-found', 'openRead of a folder', 'E_NOT_A_FILE');
    });

    test('delete removes the object, twice is fine, siblings stay, resumable state goes too', async (driver) => {
      await putObject(driver, 'del/a', seededBytes(10, 16));
      await putObject(driver, 'del/b', seededBytes(10, 17));
      await driver.delete('del/a');
      await driver.delete('del/a');
      await assertAbsent(driver, 'del/a', 'after delete');
      await assertObject(driver, 'del/b', seededBytes(10, 17));
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const data = seededBytes(partBytes * 2, 18);
      const session = await driver.openWrite('del/partial', { size: data.length, partBytes });
      await session.write(0, partOf(data, 0, partBytes));
      await session.suspend();
      await driver.delete('del/partial');
      const again = await driver.openWrite('del/partial', { size: data.length, partBytes });
      assert.deepEqual([...again.resumableParts], [], 'delete must remove resumable state');
      await again.abort();
      assert.deepEqual((await listAll(driver, '')).map((e) => e.key), ['del/b']);
    });

    test('list(prefix) returns exactly that subtree, never temp/partial objects', async (driver) => {
      const keys = ['p/a', 'p/b/c', 'p/b/d/e', 'pq/x', 'q/p/y', 'top'];
      for (const [i, key] of keys.entries()) await putObject(driver, key, seededBytes(i + 1, 20 + i));
      const partBytes = partSizeFor(driver.capabilities, 4 * KiB);
      const pending = await driver.openWrite('p/b/pending', { size: partBytes * 2, partBytes });
      await pending.write(0, seededBytes(partBytes, 30));
      await pending.suspend();
      const open = await driver.openWrite('p/open', { size: partBytes * 2, partBytes });
      await open.write(1, seededBytes(partBytes, 31));
      const entries = await listAll(driver, '');
      assert.deepEqual(entries.map((e) => [e.key, e.size]), keys.map((k, i) => [k, i + 1]), 'list(\'\')');
      assert.deepEqual((await listAll(driver, '', { hashes: false })).map((e) => [e.key, e.size]), keys.map((k, i) => [k, i + 1]), 'list(\'\', { hashes: false })');
      assert.deepEqual((await listAll(driver, 'p/')).map((e) => e.key), ['p/a', 'p/b/c', 'p/b/d/e']);
      assert.deepEqual((await listAll(driver, 'p/b/')).map((e) => e.key), ['p/b/c', 'p/b/d/e']);
      assert.deepEqual((await listAll(driver, 'p/b/d/')).map((e) => e.key), ['p/b/d/e']);
      assert.deepEqual(await listAll(driver, 'nothing/'), [], 'a missing prefix yields nothing');
      assert.deepEqual(await listAll(driver, 'p/a/'), [], 'a file used as a folder prefix yields nothing');
      for (const entry of entries) assert.ok(Number.isFinite(entry.mtimeMs), `${entry.key}: mtimeMs`);
      await open.abort();
      await pending.abort();
    });

    test('a multi-part object (3 parts of max(minPartBytes, 64 KiB)) round-trips byte for byte', async (driver) => {
      const partBytes = partSizeFor(driver.capabilities, 64 * KiB);
      const data = seededBytes(partBytes * 2 + Math.floor(partBytes / 2) + 3, 40);
      const hash = await hashOf(data);
      const session = await driver.openWrite('big/object.bin', { size: data.length, partBytes });
      assert.equal(session.key, 'big/object.bin');
      assert.equal(session.size, data.length);
      assert.equal(session.partBytes, partBytes);
      await writeParts(driver.capabilities, session, data, [0, 1, 2]);
      await session.commit({ hash });
      await assertObject(driver, 'big/object.bin', data);
      assert.equal(await hashOf(await readKey(driver, 'big/object.bin')), hash, 'whole-object hash of the read-back bytes');
      const across = await readKey(driver, 'big/object.bin', partBytes - 10, 20);
      assert.ok(across.equals(data.subarray(partBytes - 10, partBytes + 10)), 'range read across a part boundary');
      const tail = await readKey(driver, 'big/object.bin', partBytes * 2);
      assert.ok(tail.equals(data.subarray(partBytes * 2)), 'range read of the last part');
    });

    test('an aborted signal makes every method reject promptly with AbortedError', async (driver) => {
      await putObject(driver, 'sig/file', seededBytes(1000, 50));
      const signal = AbortSignal.abort();
      await rejectsAborted(() => driver.stat('sig/file', { signal }), 'stat');
      await rejectsAborted(() => driver.openRead('sig/file', { signal }), 'openRead');
      await rejectsAborted(() => driver.openWrite('sig/new', { size: 1, partBytes: 1, signal }), 'openWrite');
      await rejectsAborted(() => driver.delete('sig/file', { signal }), 'delete');
      await rejectsAborted(() => drain(driver.list('', { signal })), 'list');
      if (driver.capabilities.serverSideCopy && driver.copyWithin) {
        const copy = driver.copyWithin.bind(driver);
        await rejectsAborted(() => copy('sig/file', 'sig/copy', { signal }), 'copyWithin');
      }
      const session = await driver.openWrite('sig/new', { size: 1, partBytes: 1 });
      await rejectsAborted(() => session.write(0, Buffer.from('x'), { signal }), 'session.write');
      await session.write(0, Buffer.from('x'));
      await rejectsAborted(() => session.matches(0, Buffer.from('x'), { signal }), 'session.matches');
      const hash = await hashOf(Buffer.from('x'));
      await rejectsAborted(() => session.commit({ hash, signal }), 'session.commit');
      await session.abort();
      await assertObject(driver, 'sig/file', seededBytes(1000, 50));
      assert.equal(await driver.stat('sig/new'), undefined, 'an aborted commit leaves no object');
    });

    test('a signal fired while a read stream is open destroys it with AbortedError', async (driver) => {
      const partBytes = partSizeFor(driver.capabilities, 64 * KiB);
      const data = seededBytes(partBytes * 3, 51);
      await putObject(driver, 'sig/big', data, partBytes);
      const controller = new AbortController();
      const stream = await driver.openRead('sig/big', { signal: controller.signal });
      const started = Date.now();
      controller.abort();
      await rejectsAborted(() => readAll(stream), 'reading a stream after its signal fired');
      assert.ok(Date.now() - started < PROMPT_MS);
    });

    test('stat and list return the hash given to commit (storedHash)', async (driver, t) => {
      if (!requires(t, driver, 'storedHash')) return;
      const data = seededBytes(2000, 60);
      const hash = await hashOf(data);
      await putObject(driver, 'hashed/obj', data);
      assert.equal((await driver.stat('hashed/obj'))?.hash, hash, 'stat().hash');
      const listed = await listAll(driver, 'hashed/');
      assert.equal(listed[0]?.hash, hash, 'list().hash');
      const empty = Buffer.alloc(0);
      await putObject(driver, 'hashed/empty', empty);
      assert.equal((await driver.stat('hashed/empty'))?.hash, await hashOf(empty), 'stat().hash of a zero-length object');
    });

    test('copyWithin copies an object (serverSideCopy)', async (driver, t) => {
      if (!requires(t, driver, 'serverSideCopy')) return;
      const copy = driver.copyWithin?.bind(driver);
      assert.ok(copy, 'serverSideCopy is set but copyWithin is missing');
      const data = seededBytes(20_000, 70);
      await putObject(driver, 'src/one', data);
      await copy('src/one', 'dst/deeper/one');
      await assertObject(driver, 'dst/deeper/one', data);
      await assertObject(driver, 'src/one', data);
      await putObject(driver, 'dst/two', seededBytes(5, 71));
      await copy('src/one', 'dst/two');
      await assertObject(driver, 'dst/two', data);
      await rejectsWithKind(() => copy('src/missing', 'dst/three'), 'not-found', 'copyWithin from a missing key', 'E_NOT_FOUND');
      assert.equal(await driver.stat('dst/three'), undefined);
      assert.deepEqual((await listAll(driver, '')).map((e) => e.key), ['dst/deeper/one', 'dst/two', 'src/one']);
    });

    test('copyWithin: the final key shows nothing until the copy is whole, and stored hashes carry over', async (driver, t) => {
      if (!requires(t, driver, 'serverSideCopy')) return;
      const copy = driver.copyWithin?.bind(driver);
      assert.ok(copy, 'serverSideCopy is set but copyWithin is missing');
      const data = seededBytes(6 * 1024 * 1024 + 5, 72);
      const partBytes = partSizeFor(driver.capabilities, 4 * 1024 * 1024);
      await putObject(driver, 'big/src', data, partBytes);
      const sourceBefore = await driver.stat('big/src');
      let finished = false;
      const seen: string[] = [];
      const copying = copy('big/src', 'big/copy').finally(() => { finished = true; });
      while (!finished) {
        // Let the copy's own IO callbacks run: a driver answering from synchronous calls would
        // otherwise keep this loop on microtasks forever.
        await new Promise((resolve) => setImmediate(resolve));
        const entry = await driver.stat('big/copy');
        if (entry !== undefined && entry.size !== data.length) seen.push(`stat size ${entry.size}`);
        for (const listed of await listAll(driver, 'big/')) if (listed.key !== 'big/src' && listed.key !== 'big/copy') seen.push(`listed ${listed.key}`);
      }
      await copying;
      assert.deepEqual(seen, [], 'during the copy the final key must be absent or whole, and no temp name listed');
      await assertObject(driver, 'big/copy', data);
      await assertObject(driver, 'big/src', data);
      const [source, target] = [await driver.stat('big/src'), await driver.stat('big/copy')];
      assert.equal(source?.size, sourceBefore?.size, 'source size untouched');
      if (driver.capabilities.storedHash) assert.equal(target?.hash, source?.hash, 'the copy carries the stored hash of its source');
      assert.deepEqual((await listAll(driver, '')).map((e) => e.key), ['big/copy', 'big/src']);
    });

    test('copyWithin checks expect on the source and resolves with the copy\'s fingerprint', async (driver, t) => {
      if (!requires(t, driver, 'serverSideCopy')) return;
      const copy = driver.copyWithin?.bind(driver);
      assert.ok(copy, 'serverSideCopy is set but copyWithin is missing');
      const data = seededBytes(12_345, 75);
      await putObject(driver, 'exp/src', data);
      const source = await driver.stat('exp/src');
      const hash = await hashOf(data);
      const committed = await copy('exp/src', 'exp/copy', { expect: { size: data.length, hash, ...(source?.fingerprint !== undefined ? { fingerprint: source.fingerprint } : {}) } });
      await assertObject(driver, 'exp/copy', data);
      const after = await driver.stat('exp/copy');
      if (committed?.fingerprint !== undefined) assert.equal(committed.fingerprint, after?.fingerprint, 'the fingerprint copyWithin resolved with is the one stat shows');
      const refusals: [string, CopyExpectation][] = [
        ['another size', { size: data.length + 1 }],
      ];
      if (source?.fingerprint !== undefined) {
        // Rewritten since (same size): the fingerprint the caller recorded is no longer the one there.
        await putObject(driver, 'exp/other', seededBytes(data.length, 77));
        const other = (await driver.stat('exp/other'))?.fingerprint;
        if (other !== undefined && other !== source.fingerprint) refusals.push(['another fingerprint', { size: data.length, hash, fingerprint: other }]);
        await driver.delete('exp/other');
      }
      if (driver.capabilities.storedHash) refusals.push(['another stored hash', { size: data.length, hash: 'xxh64:0000000000000000' }]);
      for (const [why, expect] of refusals) {
        await rejectsWithKind(() => copy('exp/src', 'exp/refused', { expect }), 'integrity', `copyWithin from a source with ${why}`, 'E_COPY_SOURCE_CHANGED');
        assert.equal(await driver.stat('exp/refused'), undefined, `a refused copy (${why}) leaves nothing under the target key`);
      }
      await putObject(driver, 'exp/kept', seededBytes(10, 76));
      await rejectsWithKind(() => copy('exp/src', 'exp/kept', { expect: { size: 1 } }), 'integrity', 'a refused copy onto an existing key', 'E_COPY_SOURCE_CHANGED');
      await assertObject(driver, 'exp/kept', seededBytes(10, 76));
      assert.deepEqual((await listAll(driver, '')).map((e) => e.key), ['exp/copy', 'exp/kept', 'exp/src']);
    });

    test('copyWithin with link: the copy survives deleting or replacing its source', async (driver, t) => {
      if (!requires(t, driver, 'serverSideCopy')) return;
      const copy = driver.copyWithin?.bind(driver);
      assert.ok(copy, 'serverSideCopy is set but copyWithin is missing');
      const data = seededBytes(30_000, 73);
      await putObject(driver, 'old/file', data);
      await copy('old/file', 'new/file', { link: true });
      await copy('old/file', 'new/other', { link: true });
      await assertObject(driver, 'new/file', data);
      await putObject(driver, 'old/file', seededBytes(100, 74)); // a rewrite replaces by rename, never in place
      await assertObject(driver, 'new/file', data);
      await driver.delete('old/file');
      await assertObject(driver, 'new/file', data);
      await assertObject(driver, 'new/other', data);
      await rejectsWithKind(() => copy('old/file', 'new/third', { link: true }), 'not-found', 'linking a missing key', 'E_NOT_FOUND');
      assert.deepEqual((await listAll(driver, '')).map((e) => e.key), ['new/file', 'new/other']);
    });

    test('invalid write options are refused (E_BAD_ARGUMENT, fatal)', async (driver) => {
      for (const [size, partBytes] of [[10, 0], [10, -1], [-1, 10], [1.5, 10], [10, 2.5], [Number.NaN, 10]] as const) {
        await rejectsWithKind(async () => {
          const session = await driver.openWrite('bad-options', { size, partBytes });
          await session.abort();
        }, 'fatal', `openWrite size ${size} partBytes ${partBytes}`, 'E_BAD_ARGUMENT');
      }
      assert.equal(await driver.stat('bad-options'), undefined);
    });
  });
}
