/**
 * The progress checkpoint as `progress.json` plus a journal: an interrupted run leaves records
 * that the next run reads (journal entries applied on top of progress.json, in order, those it
 * includes ignored, damaged ones skipped), skips what they record, and a complete run removes
 * them all. The old format (progress.json alone) is still read.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { readDestinationState, replicate } from '../../src/core/replicate.js';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import type { Driver, ReadOptions } from '../../src/drivers/types.js';
import { buildManifestBody, progressJournalKey, progressKey, writeManifestAt, type ManifestFile } from '../../src/manifest/manifest.js';

const NAME = 'nightly_2025_06_02';
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

async function setup(): Promise<{ source: string; dest: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'offsite-journal-'));
  dirs.push(dir);
  const source = join(dir, 'source');
  await generateBackup({ root: source, name: NAME, files: 400, totalBytes: 400 * 2048, largestFileBytes: 8192, seed: 5 });
  return { source, dest: join(dir, 'dest') };
}

/** `driver` with some methods replaced (a Proxy: the drivers keep private fields). */
function wrap(driver: Driver, overrides: Partial<Record<keyof Driver, unknown>>): Driver {
  return new Proxy(driver, {
    get(target, property, receiver) {
      if (Object.hasOwn(overrides, property)) return overrides[property as keyof Driver];
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function rec(path: string, size: number, n: number): ManifestFile {
  const hash = `xxh64:${n.toString(16).padStart(16, '0')}`;
  return { path, size, hash, chunks: size > 0 ? [hash] : [] };
}

describe('progress journal', () => {
  it('an interrupted run leaves progress.json and journal entries; the next run skips what they record and removes them', async () => {
    const { source, dest } = await setup();
    const src = await createLocalDriver('source', { type: 'local', root: source });
    const d1 = await createLocalDriver('d1', { type: 'local', root: dest });
    // A slow source and a destination whose sync is instant: many checkpoints within the run
    // (their interval grows with their cost, and a syncfs on a busy machine can take a second).
    const slowSource = wrap(src, { openRead: async (key: string, options?: ReadOptions) => { await new Promise((r) => setTimeout(r, 3)); return src.openRead(key, options); } });
    const quickSync = wrap(d1, { sync: async () => undefined });
    const controller = new AbortController();
    const journalEntries = () => readdirSync(join(dest, NAME, '.offsite')).filter((n) => /^progress-\d{8}\.json$/.test(n)).length;
    const first = await replicate({
      source: slowSource, backup: NAME, destinations: [quickSync], quietPeriodMs: 0, checkpointIntervalMs: 1, fileConcurrency: 2, signal: controller.signal,
      onEvent: (e) => { if (e.type === 'file-done' && journalEntries() >= 3) controller.abort(); },
    }).catch((err: unknown) => err);
    assert.ok(!(first && typeof first === 'object' && 'destinations' in first) || (first as { destinations: { status: string }[] }).destinations[0]?.status !== 'complete');
    const offsite = readdirSync(join(dest, NAME, '.offsite'));
    assert.ok(offsite.includes('progress.json'), offsite.join(' '));
    assert.ok(offsite.some((n) => /^progress-\d{8}\.json$/.test(n)), `journal entries: ${offsite.join(' ')}`);
    const state = await readDestinationState(d1, NAME);
    const recorded = state.progress?.files ?? [];
    assert.ok(recorded.length >= 3, `records read back: ${recorded.length}`);
    for (const f of recorded) assert.equal(statSync(join(dest, NAME, f.path)).size, f.size, f.path);
    assert.equal(new Set(recorded.map((f) => f.path)).size, recorded.length, 'one record per file');

    const second = await replicate({ source: src, backup: NAME, destinations: [d1], quietPeriodMs: 0 });
    const result = second.destinations[0];
    assert.equal(result?.status, 'complete');
    assert.ok((result?.filesSkipped ?? 0) >= recorded.length, `skipped ${result?.filesSkipped}, recorded ${recorded.length}`);
    assert.deepEqual(readdirSync(join(dest, NAME, '.offsite')), ['manifest.json'], 'checkpoint and journal removed');
  });

  it('reads entries after progress.json in order, ignores the ones it includes and damaged ones; reads the old format', async () => {
    const { source, dest } = await setup();
    const d1 = await createLocalDriver('d1', { type: 'local', root: dest });
    const src = await createLocalDriver('source', { type: 'local', root: source });
    // Some real files at the destination, so that records can be checked against what is present.
    await replicate({ source: src, backup: NAME, destinations: [d1], quietPeriodMs: 0 });
    const body = (files: ManifestFile[], extra: { includesThrough?: number; sequence?: number } = {}) =>
      buildManifestBody({ kind: 'progress', backup: NAME, source: 's', chunkBytes: 8 << 20, files, ...extra });

    await writeManifestAt(d1, progressKey(NAME), body([rec('a', 1, 1), rec('b', 2, 2)]));
    let state = await readDestinationState(d1, NAME);
    assert.deepEqual(state.progress?.files.map((f) => f.hash).sort(), [rec('a', 1, 1).hash, rec('b', 2, 2).hash], 'old format: progress.json alone');

    await writeManifestAt(d1, progressKey(NAME), body([rec('a', 1, 1), rec('b', 2, 2)], { includesThrough: 2 }));
    await writeManifestAt(d1, progressJournalKey(NAME, 1), body([rec('a', 1, 91)], { sequence: 1 })); // included: stale
    await writeManifestAt(d1, progressJournalKey(NAME, 2), body([rec('c', 3, 92)], { sequence: 2 })); // included
    await writeManifestAt(d1, progressJournalKey(NAME, 3), body([rec('b', 2, 3), rec('d', 4, 4)], { sequence: 3 }));
    await writeManifestAt(d1, progressJournalKey(NAME, 4), body([rec('d', 4, 5)], { sequence: 4 }));
    writeFileSync(join(dest, NAME, '.offsite', 'progress-00000005.json'), '{"damaged": true');
    await writeManifestAt(d1, progressJournalKey(NAME, 6), buildManifestBody({ kind: 'progress', backup: NAME, source: 's', chunkBytes: 1 << 20, files: [rec('e', 5, 6)], sequence: 6 }));
    await writeManifestAt(d1, progressJournalKey(NAME, 7), body([rec('f', 6, 7)], { sequence: 7 }));
    state = await readDestinationState(d1, NAME);
    const byPath = new Map(state.progress?.files.map((f) => [f.path, f.hash]));
    assert.deepEqual([...byPath.keys()].sort(), ['a', 'b', 'd', 'f'], 'entries 1-2 included; 5 damaged; 6 has another chunk size');
    assert.equal(byPath.get('a'), rec('a', 1, 1).hash, 'an included entry does not override progress.json');
    assert.equal(byPath.get('b'), rec('b', 2, 3).hash, 'a later entry overrides progress.json');
    assert.equal(byPath.get('d'), rec('d', 4, 5).hash, 'entries apply in order');
    assert.equal(state.progress?.chunkBytes, 8 << 20);
    assert.deepEqual(state.progressJournal.entries.map((e) => [e.sequence, e.included]), [[1, true], [2, true], [3, false], [4, false], [5, false], [6, false], [7, false]]);
    assert.equal(state.progressJournal.baseFiles, 2);
  });

  it('a rerun numbers its entries after those progress.json includes, and removes the unfinished entry a killed run left', async () => {
    const { source, dest } = await setup();
    const src = await createLocalDriver('source', { type: 'local', root: source });
    const d1 = await createLocalDriver('d1', { type: 'local', root: dest });
    // What a killed run leaves: progress.json including entries 1-7 (deleted since), and the temp
    // file of entry 8, which it was writing at the kill (no listing shows temp files).
    const offsiteDir = join(dest, NAME, '.offsite');
    const unfinished = join(offsiteDir, '.progress-00000008.json.offsite-partial');
    const killed = async () => {
      await writeManifestAt(d1, progressKey(NAME), buildManifestBody({ kind: 'progress', backup: NAME, source: 's', chunkBytes: 8 << 20, files: [], includesThrough: 7 }));
      writeFileSync(unfinished, '{"kind":"progress","files":[');
    };
    await killed();
    assert.equal((await readDestinationState(d1, NAME)).progressJournal.includesThrough, 7);

    // A rerun interrupted after some checkpoints: its entries come after 7, or a later reader
    // would take them for included ones and ignore them.
    const slowSource = wrap(src, { openRead: async (key: string, options?: ReadOptions) => { await new Promise((r) => setTimeout(r, 3)); return src.openRead(key, options); } });
    const quickSync = wrap(d1, { sync: async () => undefined });
    const entries = () => readdirSync(offsiteDir).filter((n) => /^progress-\d{8}\.json$/.test(n));
    const controller = new AbortController();
    await replicate({
      source: slowSource, backup: NAME, destinations: [quickSync], quietPeriodMs: 0, checkpointIntervalMs: 1, fileConcurrency: 2, signal: controller.signal,
      onEvent: (e) => { if (e.type === 'file-done' && entries().length >= 2) controller.abort(); },
    }).catch(() => undefined);
    const written = (await readDestinationState(d1, NAME)).progressJournal.entries.map((e) => e.sequence);
    assert.ok(written.length >= 2 && written.every((n) => n >= 8), `journal entries written by the rerun: ${written.join(' ')}`);

    // A rerun that writes no journal entry (one quick checkpoint-free run) still removes the temp.
    rmSync(offsiteDir, { recursive: true });
    await killed();
    const result = await replicate({ source: src, backup: NAME, destinations: [d1], quietPeriodMs: 0 });
    assert.equal(result.destinations[0]?.status, 'complete');
    assert.deepEqual(readdirSync(offsiteDir), ['manifest.json'], 'checkpoint and the unfinished journal entry removed');
  });
});
