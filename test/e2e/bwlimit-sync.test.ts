/**
 * Regression (issue 10, "a bandwidth limit turns durability off"): with a bandwidth limit
 * configured, a local destination must still be synced before each progress checkpoint and
 * before (and after) its manifest. The bandwidth layer had no `sync`, so the engine, which is
 * handed the wrapped driver, skipped every sync as soon as `bwlimit` was set anywhere.
 *
 * Runs the CLI's own entry point (`main`, in this process, so that the calls can be counted)
 * with the limit given each way a user can: the destination's `bwlimit` key, `options.bwlimit`,
 * and `--bwlimit`. The local driver's `sync` and the commits of its write sessions are recorded
 * in order on the prototype, below every wrapper.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { main } from '../../src/cli/main.js';
import { LocalDriver } from '../../src/drivers/local/index.js';
import type { CommitOptions, SignalOptions, WriteOptions, WriteSession } from '../../src/drivers/types.js';
import { tempDir, writeConfig } from '../helpers/cli.js';

/** `sync-start <driver>`, `sync <driver>` (resolved) and `commit <driver> <key>`, in order. */
const events: string[] = [];
/** Event index of a progress record's or manifest's commit -> the file paths it lists. */
const recorded = new Map<number, string[]>();
const dirs: string[] = [];
const original = { sync: LocalDriver.prototype.sync, openWrite: LocalDriver.prototype.openWrite };

before(() => {
  LocalDriver.prototype.sync = async function sync(this: LocalDriver, options) {
    events.push(`sync-start ${this.name}`);
    await original.sync.call(this, options);
    events.push(`sync ${this.name}`);
  };
  LocalDriver.prototype.openWrite = async function openWrite(this: LocalDriver, key: string, options: WriteOptions): Promise<WriteSession> {
    const session = await original.openWrite.call(this, key, options);
    const name = this.name;
    const parts: Buffer[] = [];
    const write = session.write.bind(session);
    const commit = session.commit.bind(session);
    Object.defineProperty(session, 'write', {
      value: async (index: number, bytes: Uint8Array, o?: SignalOptions) => { parts[index] = Buffer.from(bytes); await write(index, bytes, o); },
    });
    Object.defineProperty(session, 'commit', {
      value: async (o: CommitOptions) => {
        await commit(o);
        events.push(`commit ${name} ${key}`);
        if (key.includes('/.offsite/')) recorded.set(events.length - 1, [...Buffer.concat(parts).toString('utf8').matchAll(/"path":\s*"([^"]+)"/g)].map((m) => m[1] as string));
      },
    });
    return session;
  };
});
after(() => {
  LocalDriver.prototype.sync = original.sync;
  LocalDriver.prototype.openWrite = original.openWrite;
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Runs `offsite ARGS` through the CLI entry point; returns its exit code. */
async function offsite(args: readonly string[]): Promise<number> {
  const before = process.exitCode;
  try {
    await main(['node', 'offsite', ...args]);
    return Number(process.exitCode ?? 0);
  } finally {
    process.exitCode = before;
  }
}

/**
 * Checks the order: every file that a progress record or the manifest lists was committed before
 * a sync that started after that commit and resolved before the record was committed; and the
 * manifest is synced after its own commit.
 */
function assertSyncedInOrder(destination: string): void {
  const committedAt = (path: string, before: number): number => events.findLastIndex((e, i) => i < before && e.startsWith(`commit ${destination} `) && e.endsWith(`/${path}`));
  let checkpoints = 0;
  let manifestAt = -1;
  for (const [at, paths] of recorded) {
    const what = events[at] as string;
    if (what.endsWith('/.offsite/manifest.json')) manifestAt = at; else checkpoints++;
    for (const path of paths) {
      const c = committedAt(path, at);
      assert.ok(c >= 0, `${what} lists ${path}, never committed before it`);
      const synced = events.some((e, i) => i > c && e === `sync-start ${destination}` && events.indexOf(`sync ${destination}`, i) < at && events.indexOf(`sync ${destination}`, i) > i);
      assert.ok(synced, `${what} lists ${path}, which no sync made durable before it:\n${events.join('\n')}`);
    }
  }
  assert.ok(manifestAt >= 0, `no manifest was written:\n${events.join('\n')}`);
  assert.ok(events.slice(manifestAt + 1).includes(`sync ${destination}`), 'the manifest was not synced after it was written');
  assert.ok(checkpoints >= 1, `the run was expected to write a progress checkpoint (slow enough under the limit):\n${events.join('\n')}`);
}

describe('a local destination under a bandwidth limit is synced before checkpoints and the manifest', () => {
  const cases: { label: string; section: string; options: string; flags: string[] }[] = [
    { label: 'bwlimit in the destination section', section: '\n    bwlimit: 400KiB', options: '', flags: [] },
    { label: 'options.bwlimit', section: '', options: '\n  bwlimit: 400KiB', flags: [] },
    { label: '--bwlimit', section: '', options: '', flags: ['--bwlimit', '400KiB'] },
  ];
  for (const c of cases) {
    it(c.label, async () => {
      const dir = tempDir('bwlimit-sync');
      dirs.push(dir);
      await generateBackup({ root: join(dir, 'source'), name: 'b1', totalBytes: 1024 * 1024, seed: 11 });
      const config = writeConfig(dir, `source:
  type: local
  root: ${join(dir, 'source')}
destinations:
  d1:
    type: local
    root: ${join(dir, 'd1')}${c.section}
options:
  quietPeriod: 0s${c.options}
`);
      events.length = 0;
      recorded.clear();
      const code = await offsite(['--config', config, '--quiet', 'replicate', 'b1', '--to', 'd1', ...c.flags]);
      assert.equal(code, 0, events.join('\n'));
      assert.ok(events.filter((e) => e === 'sync d1').length >= 2, `sync calls: ${events.filter((e) => e === 'sync d1').length}`);
      assertSyncedInOrder('d1');
    });
  }
});
