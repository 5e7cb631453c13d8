import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertComplete, inspectBackup, listBackups, type BackupInspection } from '../../src/backup/index.js';
import { AbortedError, BackupError, DriverError } from '../../src/errors.js';
import type { Driver } from '../../src/drivers/types.js';
import { VARIANTS, type Breakage, type Variant } from '../../scripts/gen-backup.js';
import { createFsSource } from './fs-source.js';
import { NOW, OLD, gen, tempRoot } from './helpers.js';

const opts = { nowMs: NOW };

function expectState(inspection: BackupInspection, state: BackupInspection['state'], reason?: RegExp | string): void {
  assert.equal(inspection.state, state, `state of ${inspection.name}: ${inspection.reason ?? ''}`);
  if (reason instanceof RegExp) assert.match(inspection.reason ?? '', reason);
  else if (reason !== undefined) assert.equal(inspection.reason, reason);
  if (state === 'complete') assert.equal(inspection.reason, undefined);
  else assert.ok(inspection.reason && !inspection.reason.includes('\n'), 'one-line reason');
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

describe('inspectBackup: every variant generates and inspects as complete', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('variants')));
  after(() => cleanup());

  const layouts: Record<Variant, string> = {
    'v0.4.3': '<=0.4.3', 'v0.4.13': '0.4.13..0.5.3', 'v0.5.9': '0.5.4..0.5.9', head: '0.5.10+',
    'storage-v2': '0.5.10+, storage v2', snapshot: 'snapshot',
  };

  for (const variant of VARIANTS) {
    it(variant, async () => {
      const name = `b_${variant.replace(/[.-]/g, '_')}`;
      const made = await gen(root, name, { variant, seed: 7 });
      const source = createFsSource(root);
      const inspection = await inspectBackup(source, name, opts);
      expectState(inspection, 'complete');
      assert.equal(inspection.name, name);
      assert.equal(inspection.format, variant === 'snapshot' ? 'snapshot' : 'binlog');
      assert.equal(inspection.layout, layouts[variant]);
      assert.equal(inspection.files.length, made.files);
      assert.equal(inspection.totalBytes, made.bytes);
      assert.equal(inspection.binlogCount, made.binlogs);
      if (variant !== 'snapshot') assert.ok(made.binlogs > 20, `enough binlogs: ${made.binlogs}`);
      assert.equal(inspection.collections, made.ids.collections.length);
      assert.ok(Math.abs(inspection.lastChangeMs - OLD) < 1000);
      const keys = inspection.files.map((f) => f.key);
      assert.deepEqual(keys, [...keys].sort(), 'files sorted by key');
      assert.ok(keys.every((k) => k.startsWith(`${name}/`)));
      assert.ok(keys.includes(`${name}/meta/full_meta.json`));
      assert.equal(keys.includes(`${name}/meta/channel_cp_meta.json`), variant === 'v0.4.13' || variant === 'v0.5.9');
      assert.equal(keys.some((k) => k.includes('/meta/partition_meta.json')), variant !== 'snapshot');
      assert.doesNotThrow(() => assertComplete(inspection));
      // Bounded work: one listing of NAME/, and only meta files read.
      assert.deepEqual(source.calls.list, [`${name}/`]);
      assert.ok(source.calls.openRead.length > 0);
      assert.ok(source.calls.openRead.every((k) => k.startsWith(`${name}/meta/`)), source.calls.openRead.join(', '));
    });
  }

  it('v0.4.3 with a partition over the group limit uses group directories 1, 2, ...', async () => {
    const made = await gen(root, 'legacy_groups', { variant: 'v0.4.3', seed: 3, maxSegmentGroupBytes: 40 * 1024 });
    const inspection = await inspectBackup(createFsSource(root), 'legacy_groups', opts);
    expectState(inspection, 'complete');
    assert.equal(inspection.layout, '<=0.4.3');
    assert.equal(inspection.binlogCount, made.binlogs);
    const coll = made.ids.collection;
    const grouped = inspection.files.filter((f) => new RegExp(`/binlogs/insert_log/${coll}/\\d{18}/[12]/\\d{18}/\\d+/\\d{18}$`).test(f.key));
    assert.ok(grouped.length > 0, 'some binlogs under group 1 or 2');
  });
});

describe('inspectBackup: breakages are refused with a precise reason', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  let source: Driver;
  before(async () => {
    ({ root, cleanup } = await tempRoot('breakages'));
    source = createFsSource(root);
  });
  after(() => cleanup());

  const cases: Array<{ variant: Variant; breakage: Breakage; reason: (broken: string) => RegExp }> = [];
  for (const variant of ['v0.4.3', 'v0.4.13', 'v0.5.9', 'head', 'storage-v2'] as const) {
    cases.push(
      { variant, breakage: 'no-meta', reason: () => /^meta\/full_meta\.json missing, and no other meta: \d+ objects without meta are a failed or abandoned backup$/ },
      { variant, breakage: 'no-full-meta', reason: () => /^meta\/full_meta\.json missing$/ },
      { variant, breakage: 'missing-binlog', reason: (b) => new RegExp(`^binlog ${escape(b)} missing \\(meta says \\d+ bytes\\)$`) },
      { variant, breakage: 'short-binlog', reason: (b) => new RegExp(`^binlog ${escape(b)} is \\d+ bytes, meta says \\d+$`) },
      { variant, breakage: 'malformed-meta', reason: () => /^meta\/full_meta\.json is malformed JSON at line 1, column \d+ \(position \d+\): .+$/ },
    );
  }
  for (const variant of ['v0.5.9', 'head', 'storage-v2'] as const) {
    cases.push({ variant, breakage: 'l0-missing', reason: (b) => new RegExp(`^binlog ${escape(b)} missing \\(meta says \\d+ bytes\\)$`) });
  }
  cases.push(
    { variant: 'snapshot', breakage: 'no-full-meta', reason: () => /^meta\/full_meta\.json missing$/ },
    { variant: 'snapshot', breakage: 'missing-binlog', reason: (b) => new RegExp(`^snapshot metadata ${escape(b)} missing$`) },
    { variant: 'snapshot', breakage: 'malformed-meta', reason: () => /^meta\/full_meta\.json is malformed JSON at line 1, column \d+/ },
  );

  for (const { variant, breakage, reason } of cases) {
    it(`${variant} ${breakage}`, async () => {
      const name = `${variant}_${breakage}`.replace(/[.-]/g, '_');
      const made = await gen(root, name, { variant, breakage, seed: 11 });
      assert.ok(made.brokenKey, 'generator says what it broke');
      const inspection = await inspectBackup(source, name, opts);
      expectState(inspection, 'failed', reason(made.brokenKey));
      if (breakage === 'l0-missing') assert.match(made.brokenKey, /^binlogs\/delta_log\/\d{18}\/-1\/\d{18}\/\d{18}$/);
      if (breakage === 'missing-binlog' || breakage === 'short-binlog') assert.equal(inspection.binlogCount, made.binlogs);
      assert.throws(() => assertComplete(inspection), (err: unknown) => {
        assert.ok(err instanceof BackupError);
        assert.equal(err.code, 'E_BACKUP_FAILED');
        assert.equal(err.message, `backup ${name} is not complete: ${inspection.reason as string}`);
        return true;
      });
    });
  }

  it('a breakage that cannot apply to the variant is refused by the generator', async () => {
    await assert.rejects(gen(root, 'nope', { variant: 'v0.4.3', breakage: 'l0-missing' }), /l0-missing needs L0 segments/);
    await assert.rejects(gen(root, 'nope2', { variant: 'snapshot', breakage: 'short-binlog' }), /does not apply/);
  });

  it('a binlog larger than its log_size fails too', async () => {
    const made = await gen(root, 'grown', { seed: 12 });
    const inspection0 = await inspectBackup(source, 'grown', opts);
    const victim = inspection0.files.find((f) => f.key.includes('/insert_log/') && f.key.includes('/101/'));
    assert.ok(victim);
    const path = join(made.dir, '..', ...victim.key.split('/'));
    await appendFile(path, Buffer.from('xx'));
    await utimes(path, new Date(OLD), new Date(OLD));
    const inspection = await inspectBackup(source, 'grown', opts);
    const rel = victim.key.slice('grown/'.length);
    expectState(inspection, 'failed', `binlog ${rel} is ${victim.size + 2} bytes, meta says ${victim.size}`);
  });

  it('several problems: the first is named and the rest counted', async () => {
    const made = await gen(root, 'holes', { seed: 13 });
    const inspection0 = await inspectBackup(source, 'holes', opts);
    const victims = inspection0.files.filter((f) => f.key.includes('/binlogs/')).slice(0, 3);
    for (const v of victims) await rm(join(made.dir, '..', ...v.key.split('/')));
    const inspection = await inspectBackup(source, 'holes', opts);
    expectState(inspection, 'failed', /^binlog binlogs\/\S+ missing \(meta says \d+ bytes\) \(and 2 more problems\)$/);
  });

  it('a name with nothing under it is failed, and assertComplete says not found', async () => {
    const inspection = await inspectBackup(source, 'does_not_exist', opts);
    expectState(inspection, 'failed', 'no objects under does_not_exist/ (no such backup)');
    assert.equal(inspection.format, 'unknown');
    assert.throws(() => assertComplete(inspection), (err: unknown) => {
      assert.ok(err instanceof BackupError);
      assert.equal(err.code, 'E_BACKUP_NOT_FOUND');
      assert.equal(err.kind, 'not-found');
      return true;
    });
  });

  it('refuses names that cannot be a folder before any IO', async () => {
    for (const bad of ['', '..', 'a/b', '.']) {
      await assert.rejects(inspectBackup(source, bad, opts), (err: unknown) => err instanceof BackupError && err.code === 'E_BACKUP_NAME');
    }
  });
});

describe('inspectBackup: source failures are thrown, not turned into a state', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('io')));
  after(() => cleanup());

  it('a retryable read error keeps its kind; an aborted signal aborts', async () => {
    await gen(root, 'flaky', { seed: 51 });
    const base = createFsSource(root);
    const flaky: Driver = {
      ...base,
      list: (prefix, o) => base.list(prefix, o),
      openRead: () => Promise.reject(new DriverError('E_NET', 'src: connection reset', { kind: 'retryable' })),
    };
    await assert.rejects(inspectBackup(flaky, 'flaky', opts), (err: unknown) => err instanceof DriverError && err.kind === 'retryable');
    await assert.rejects(listBackups(flaky, opts), (err: unknown) => err instanceof DriverError && err.kind === 'retryable');
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(inspectBackup(base, 'flaky', { ...opts, signal: controller.signal }), (err: unknown) => err instanceof AbortedError);
    await assert.rejects(listBackups(base, { ...opts, signal: controller.signal }), (err: unknown) => err instanceof AbortedError);
  });
});

describe('inspectBackup: quiet period', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('quiet')));
  after(() => cleanup());

  it('a backup changed 12 s ago is incomplete and says so', async () => {
    const mtime = NOW - 12_300;
    await gen(root, 'fresh', { mtimeMs: mtime, seed: 21 });
    const source = createFsSource(root);
    const inspection = await inspectBackup(source, 'fresh', opts);
    expectState(inspection, 'incomplete', 'last change 12 s ago, quiet period is 60 s');
    assert.equal(inspection.binlogCount > 0, true, 'meta is still read for the summary');
    assert.throws(() => assertComplete(inspection), (err: unknown) =>
      err instanceof BackupError && err.code === 'E_BACKUP_INCOMPLETE'
      && err.message === 'backup fresh is not complete: last change 12 s ago, quiet period is 60 s');
    // A shorter quiet period accepts it; the reason uses the configured period.
    expectState(await inspectBackup(source, 'fresh', { nowMs: NOW, quietPeriodMs: 10_000 }), 'complete');
    expectState(await inspectBackup(source, 'fresh', { nowMs: NOW, quietPeriodMs: 90_500 }), 'incomplete',
      'last change 12 s ago, quiet period is 90.5 s');
  });

  it('missing meta within the quiet period is incomplete (may still be written), then failed', async () => {
    await gen(root, 'writing', { mtimeMs: NOW - 5_000, breakage: 'no-full-meta', seed: 22 });
    const source = createFsSource(root);
    expectState(await inspectBackup(source, 'writing', opts), 'incomplete',
      'last change 5 s ago, quiet period is 60 s; so far: meta/full_meta.json missing');
    expectState(await inspectBackup(source, 'writing', { nowMs: NOW + 60_000 }), 'failed', 'meta/full_meta.json missing');
  });

  it('binlogs without meta, still moving: incomplete; quiet: failed', async () => {
    await gen(root, 'running', { mtimeMs: NOW - 1_000, breakage: 'no-meta', seed: 23 });
    const source = createFsSource(root);
    const running = await inspectBackup(source, 'running', opts);
    expectState(running, 'incomplete', /^last change 1 s ago, quiet period is 60 s; so far: meta\/full_meta\.json missing/);
    expectState(await inspectBackup(source, 'running', { nowMs: NOW + 3_600_000 }), 'failed', /^meta\/full_meta\.json missing, and no other meta/);
  });

  it('one new file resets the clock', async () => {
    const made = await gen(root, 'touched', { seed: 24 });
    const source = createFsSource(root);
    expectState(await inspectBackup(source, 'touched', opts), 'complete');
    const extra = join(made.dir, 'binlogs', 'late');
    await writeFile(extra, 'x');
    await utimes(extra, new Date(NOW - 30_000), new Date(NOW - 30_000));
    expectState(await inspectBackup(source, 'touched', opts), 'incomplete', 'last change 30 s ago, quiet period is 60 s');
  });

  it('an mtime in the future is not quiet', async () => {
    await gen(root, 'future', { mtimeMs: NOW + 120_000, seed: 25 });
    expectState(await inspectBackup(createFsSource(root), 'future', opts), 'incomplete',
      'last change is 120 s in the future (clock skew?), quiet period is 60 s');
  });
});

describe('listBackups', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('list')));
  after(() => cleanup());

  it('lists every backup folder sorted by name, ignoring probes, markers and non-backups', async () => {
    const a = await gen(root, 'nightly_b', { noise: true, seed: 31 });
    await gen(root, 'nightly_a', { variant: 'v0.4.13', seed: 32 });
    await gen(root, 'broken_one', { breakage: 'missing-binlog', seed: 33 });
    await gen(root, 'snap', { variant: 'snapshot', seed: 34 });
    assert.equal(a.noiseKeys.length, 1);
    assert.match(a.noiseKeys[0] as string, /^milvus_backup_check_dst_[0-9a-f-]{36}$/);
    // More noise: a v0.5-style probe (timestamp suffix), a zero-byte file at the root, a folder that
    // is not a backup, a folder holding only our own manifests, and our manifest inside a backup.
    await writeFile(join(root, 'milvus_backup_check_dst_1717171717'), 'x');
    await writeFile(join(root, 'marker'), '');
    await mkdir(join(root, 'lost_and_found', 'x'), { recursive: true });
    await writeFile(join(root, 'lost_and_found', 'x', 'file'), 'hello');
    await mkdir(join(root, 'only_ours', '.offsite'), { recursive: true });
    await writeFile(join(root, 'only_ours', '.offsite', 'manifest.json'), '{}');
    await mkdir(join(root, 'nightly_a', '.offsite'), { recursive: true });
    await writeFile(join(root, 'nightly_a', '.offsite', 'manifest.json'), '{}');
    await utimes(join(root, 'nightly_a', '.offsite', 'manifest.json'), new Date(NOW), new Date(NOW));

    const source = createFsSource(root);
    const list = await listBackups(source, opts);
    assert.deepEqual(list.map((b) => b.name), ['broken_one', 'nightly_a', 'nightly_b', 'snap']);
    assert.deepEqual(list.map((b) => b.state), ['failed', 'complete', 'complete', 'complete']);
    assert.equal(list[0]?.reason?.startsWith('binlog binlogs/'), true);
    const nightlyA = list[1] as BackupInspection;
    assert.ok(nightlyA.files.every((f) => !f.key.includes('.offsite')), 'our manifests are not backup files');
    assert.equal(list[3]?.format, 'snapshot');
    assert.deepEqual(source.calls.list, [''], 'one listing of the whole root');
    assert.ok(source.calls.openRead.every((k) => /^[a-z_]+\/meta\//.test(k)));
    // The same answers as inspecting each backup on its own.
    for (const entry of list) {
      const alone = await inspectBackup(source, entry.name, opts);
      assert.deepEqual(alone, entry);
    }
  });

  it('an empty or missing root lists nothing', async () => {
    assert.deepEqual(await listBackups(createFsSource(join(root, 'nope')), opts), []);
  });
});

describe('through the real local driver, when it is available', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('local')));
  after(() => cleanup());

  it('gives the same inspection as the test source', async (t) => {
    const modulePath = '../../src/drivers/local/index.js';
    let create: ((name: string, section: Record<string, unknown>) => Promise<Driver>) | undefined;
    try {
      const mod = await import(modulePath) as { createLocalDriver?: typeof create };
      create = mod.createLocalDriver;
    } catch {
      create = undefined;
    }
    if (create === undefined) { t.skip('src/drivers/local is not built yet'); return; }
    await gen(root, 'via_local', { variant: 'head', noise: true, seed: 41 });
    await gen(root, 'via_local_broken', { variant: 'v0.5.9', breakage: 'l0-missing', seed: 42 });
    const driver = await create('src', { type: 'local', root });
    try {
      const viaLocal = await listBackups(driver, opts);
      const viaTest = await listBackups(createFsSource(root), opts);
      assert.deepEqual(viaLocal.map((b) => [b.name, b.state, b.reason, b.binlogCount, b.files.length, b.totalBytes]),
        viaTest.map((b) => [b.name, b.state, b.reason, b.binlogCount, b.files.length, b.totalBytes]));
    } finally {
      await driver.close();
    }
  });
});
