/**
 * The read side of the memory guard (issue 13 item 1): `list`, `verify`, `verify --deep`, `audit`
 * and `prune` of the ~20,000-file copy (and of its source) that test/e2e/memory-guard.test.ts replicates, each run
 * by the built CLI under a V8 heap far smaller than what reading such a manifest whole took.
 * Registered from that test file (after its replicate), so the data is generated once.
 *
 * Functional, not timed: a command that holds the manifest's text or every record of it (or
 * several manifests at once) dies with "JavaScript heap out of memory" instead of exiting 0.
 * Before manifests were streamed (src/manifest/read.ts), `verify` failed under this heap: see
 * READ_GUARD_HEAP_MB.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { CliRun } from '../helpers/cli.js';

/**
 * The V8 old-space limit `verify` and `prune` run under. At these ~20,000 files, with the
 * manifests read whole, `verify` and `verify --deep` died of "heap out of memory" under 24 MB
 * (quick verify needed ~32); streamed, they complete in it.
 */
export const READ_GUARD_HEAP_MB = 24;
// `list` and `audit` run under it too: they inspect the source, and with milvus-backup's meta
// parsed whole (full_meta.json and segment_meta.json, ~4 MB each here) and the root's listing
// held for every backup at once, both died of "heap out of memory" under 24 MB at these ~20,000
// files (they needed 32). Reading the meta lazily (src/backup/meta-scan.ts) and each backup's
// listing in turn (src/backup/summaries.ts), they complete in it.

type Run = (heapMb: number, args: readonly string[]) => Promise<CliRun>;

function json<T>(run: CliRun, what: string): T {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`${what}: not JSON (exit ${String(run.code)}):\n${run.stderr}`);
  }
}

/** Registers the read-side checks; `context` gives the config and backup name once the copy exists. */
export function readSideGuards(context: () => { config: string; name: string }, run: Run): void {
  const cli = async (args: readonly string[], heapMb = READ_GUARD_HEAP_MB): Promise<CliRun> => {
    const { config } = context();
    const done = await run(heapMb, ['--config', config, '--quiet', '--json', ...args]);
    assert.ok(!/heap out of memory|Allocation failed/i.test(done.stderr), `offsite ${args.join(' ')} ran out of memory under a ${heapMb} MB heap:\n${done.stderr}`);
    return done;
  };

  it(`list shows the copy complete under --max-old-space-size=${READ_GUARD_HEAP_MB}`, async () => {
    const done = await cli(['list']);
    assert.equal(done.code, 0, done.stderr);
    const result = json<{ backups: { name: string; copies: Record<string, string> }[] }>(done, 'list');
    assert.deepEqual(result.backups.map((b) => [b.name, b.copies['disk']]), [[context().name, 'complete']]);
  });

  for (const deep of [false, true]) {
    it(`verify${deep ? ' --deep' : ''} finds the copy whole under --max-old-space-size=${READ_GUARD_HEAP_MB}`, async () => {
      const done = await cli(['verify', context().name, '--at', 'disk', ...(deep ? ['--deep'] : [])]);
      assert.equal(done.code, 0, done.stderr);
      const result = json<{ results: { status: string; filesChecked: number; filesRead: number }[] }>(done, 'verify');
      assert.equal(result.results[0]?.status, 'ok');
      assert.ok((result.results[0]?.filesChecked ?? 0) >= 18_000, `checked ${result.results[0]?.filesChecked} files`);
      if (deep) assert.equal(result.results[0]?.filesRead, result.results[0]?.filesChecked);
    });
  }

  for (const mode of [[], ['--sample', '10%']]) {
    it(`audit ${mode.join(' ') || '(rotation)'} reads back part of the copy under --max-old-space-size=${READ_GUARD_HEAP_MB}`, async () => {
      const done = await cli(['audit', ...mode]);
      assert.equal(done.code, 0, done.stderr);
      const result = json<{ copies: { state: string; files: number; filesRead: number }[] }>(done, 'audit');
      const copy = result.copies[0];
      assert.equal(copy?.state, 'ok');
      assert.ok((copy?.files ?? 0) >= 18_000);
      const read = copy?.filesRead ?? 0;
      const files = copy?.files ?? 0;
      if (mode.length > 0) {
        // A tenth of the files.
        assert.ok(read > files / 20 && read < files / 4, `read back ${read} of ${files}`);
      } else {
        // A seventh of the bytes: slices hold about equal bytes, so a slice may be one large
        // file (the meta that lists ~20,000 binlogs) or thousands of tiny ones; never none or all.
        assert.ok(read >= 1 && read < files / 2, `read back ${read} of ${files}`);
      }
    });
  }

  it(`prune --dry-run reads the copy's manifest and keeps it under --max-old-space-size=${READ_GUARD_HEAP_MB}`, async () => {
    const done = await cli(['prune', '--keep-daily', '1', '--dry-run']);
    assert.equal(done.code, 0, done.stderr);
    const result = json<{ destinations: { kept: { name: string }[]; removed: unknown[]; skipped: unknown[] }[] }>(done, 'prune');
    assert.deepEqual(result.destinations[0]?.kept.map((k) => k.name), [context().name]);
    assert.deepEqual(result.destinations[0]?.skipped, []);
  });
}
