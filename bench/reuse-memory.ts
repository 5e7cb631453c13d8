/**
 * Reuse memory benchmark (`npm run bench:reuse-memory`, issue 12 target: peak RSS under 200 MB
 * with 30 earlier copies of 100,000 files each at a destination).
 *
 * Set-up, at a local destination (cheap: one real replicate, the rest written directly):
 * - night A (100,000 files by default, scripts/gen-backup.ts) is replicated by offsite: a real
 *   copy with its real manifest (this run, with no earlier copy, is the reference figure);
 * - 29 older copies are only manifests (src/manifest/manifest.ts, written with writeManifestAt):
 *   the same paths as night A, each night further back with another 10% of the files holding
 *   other contents (hashes no source file has, so never a reuse candidate; their data files are
 *   not written at all);
 * - night B is night A's next night (scripts/gen-nightly.ts, 10% changed).
 *
 * Measured, each in a child process under GNU time (peak RSS):
 * - building the reuse index of the destination from the 30 manifests (src/core/reuse-copies.ts,
 *   `buildReuseIndex`), next to the same child that only loads the modules;
 * - `offsite replicate B` to that destination (which, once the engine reuses, builds the index
 *   and creates night A's kept files server-side); its manifest says how many were reused.
 *
 *   npm run bench:reuse-memory
 *   npm run bench:reuse-memory -- --files 2000 --copies 5 --size 16MiB     # smoke run
 *
 * `--keep` leaves the work folder (with its `offsite.yaml`) for runs by hand, a heap snapshot of
 * night B's replicate say (remove `dest/<night B>` before each).
 */
import { Command } from 'commander';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBytes } from '../src/config/units.js';
import { buildReuseIndex } from '../src/core/reuse-copies.js';
import { createDriver } from '../src/drivers/index.js';
import type { Driver } from '../src/drivers/types.js';
import { buildManifestBody, manifestKey, readManifestAt, writeManifestAt, type ManifestFile } from '../src/manifest/manifest.js';
import { generateBackup, parsePercent } from '../scripts/gen-backup.js';
import { generateNextNight } from '../scripts/gen-nightly.js';
import { offsiteBin as bin, positiveInteger, timed } from './lib.js';

const MiB = 1024 * 1024;
const DAY_MS = 86_400_000;
const FIRST_NIGHT = Date.UTC(2026, 0, 1, 2, 0, 0);

/** milvus-backup's default name for the night `index` days after FIRST_NIGHT (its time is in the name). */
function nightName(index: number): string {
  const d = new Date(FIRST_NIGHT + index * DAY_MS);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `backup_${d.getUTCFullYear()}_${two(d.getUTCMonth() + 1)}_${two(d.getUTCDate())}_02_00_00`;
}

async function localDestination(root: string): Promise<Driver> {
  return createDriver('vault', { type: 'local', root });
}

/** Child mode: build the index of the destination at `root` from `names` (newest first), or only load the modules. */
async function child(mode: string, root: string, names: string[]): Promise<void> {
  const driver = await localDestination(root);
  if (mode === '--child-index') {
    const index = await buildReuseIndex(driver, names);
    const result = `${index.size} distinct contents from ${index.backups.length} copies, heap ${(process.memoryUsage().heapUsed / MiB).toFixed(0)} MiB at the end`;
    writeFileSync(process.env['OFFSITE_BENCH_RESULT'] ?? '/dev/stdout', result);
  }
}

/** `xxh64:` + 16 hex digits that no real file hashes to in practice (a counter with a fixed prefix). */
function fakeHash(n: number): string {
  return `xxh64:0ff5${n.toString(16).padStart(12, '0')}`;
}

async function main(): Promise<void> {
  const program = new Command('bench-reuse-memory')
    .option('--files <n>', 'files in each copy', '100000')
    .option('--copies <n>', 'earlier copies at the destination', '30')
    .option('--size <size>', 'bytes of each night', '512MiB')
    .option('--changed <percent>', 'share that changes from one night to the next', '10%')
    .option('--seed <n>', 'generator seed', '7')
    .option('--dir <dir>', 'work folder (removed at the end)', join(tmpdir(), 'offsite-bench-reuse-memory'))
    .option('--keep', 'leave the work folder (source, destination, offsite.yaml) for runs by hand')
    .parse(process.argv);
  const opts = program.opts<{ files: string; copies: string; size: string; changed: string; seed: string; dir: string; keep?: boolean }>();
  const files = positiveInteger(opts.files, '--files');
  const copies = positiveInteger(opts.copies, '--copies');
  if (files < 10) throw new Error('--files must be an integer >= 10');
  const changed = parsePercent(opts.changed);
  const dir = opts.dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const sourceRoot = join(dir, 'source');
  const dest = join(dir, 'dest');
  const self = fileURLToPath(import.meta.url);
  try {
    const nameA = nightName(copies - 1);
    const nameB = nightName(copies);
    console.log(`generating night A = ${nameA} (about ${files} files, ${opts.size}) and its next night B = ${nameB} (${(100 * changed).toFixed(0)}% changed)...`);
    const a = await generateBackup({ root: sourceRoot, name: nameA, files, totalBytes: parseBytes(opts.size, '--size'), seed: Number(opts.seed), mtimeMs: Date.now() - 2 * 3_600_000 });
    const b = await generateNextNight({ from: a.dir, root: sourceRoot, name: nameB, changed, seed: Number(opts.seed) + 1 });
    const config = join(dir, 'offsite.yaml');
    writeFileSync(config, [
      `source: { type: local, root: ${JSON.stringify(sourceRoot)} }`,
      'destinations:',
      `  vault: { type: local, root: ${JSON.stringify(dest)} }`,
      'options: { quietPeriod: 0s }',
      '',
    ].join('\n'));

    const first = timed(process.execPath, [bin, '--config', config, '--quiet', 'replicate', nameA, '--to', 'vault']);
    const driver = await localDestination(dest);
    const manifestA = await readManifestAt(driver, manifestKey(nameA));
    if (manifestA?.kind !== 'complete') throw new Error(`no complete manifest of ${nameA} after replicating it`);

    // Older copies: only manifests, each night further back with another share of other contents.
    const started = Date.now();
    const current: ManifestFile[] = manifestA.files.map((f) => ({ path: f.path, size: f.size, hash: f.hash, chunks: f.chunks }));
    let fake = 0;
    let manifestBytes = 0;
    const names = [nameA];
    for (let night = copies - 2; night >= 0; night--) {
      const step = Math.max(1, Math.round(1 / Math.max(changed, 0.01)));
      for (let i = night % step; i < current.length; i += step) {
        const f = current[i] as ManifestFile;
        current[i] = { path: f.path, size: f.size, hash: fakeHash(fake++), chunks: f.chunks.map(() => fakeHash(fake++)) };
      }
      const name = nightName(night);
      const time = new Date(FIRST_NIGHT + night * DAY_MS);
      await writeManifestAt(driver, manifestKey(name), buildManifestBody({
        kind: 'complete', backup: name, source: manifestA.source, chunkBytes: manifestA.chunkBytes, files: current, createdAt: time, backupTime: time.toISOString(),
      }), { pretty: false });
      manifestBytes += readFileSync(join(dest, name, '.offsite', 'manifest.json')).length;
      names.push(name);
    }
    console.log(`${copies} copies of ${manifestA.files.length} files at the destination (1 real, ${copies - 1} manifests only, ` +
      `${(manifestBytes / MiB).toFixed(1)} MiB of them, written in ${((Date.now() - started) / 1000).toFixed(1)} s)`);

    const loadOnly = timed(process.execPath, [self, '--child-load', dest]);
    const resultFile = join(dir, 'index-result');
    const index = timed(process.execPath, [self, '--child-index', dest, ...names], { env: { OFFSITE_BENCH_RESULT: resultFile } });
    const indexOut = readFileSync(resultFile, 'utf8');
    const second = timed(process.execPath, [bin, '--config', config, '--quiet', 'replicate', nameB, '--to', 'vault']);
    const manifestB = await readManifestAt(driver, manifestKey(nameB));
    const reused = (manifestB?.files ?? []).filter((f) => typeof (f as { reusedFrom?: unknown }).reusedFrom === 'string').length;

    const row = (label: string, t: { maxRssMb: number; seconds: number }, extra = ''): void =>
      console.log(`  ${label.padEnd(48)} ${t.maxRssMb.toFixed(0).padStart(5)} MB  ${t.seconds.toFixed(1).padStart(6)} s${extra}`);
    console.log(`\npeak RSS (target: under 200 MB with ${copies} earlier copies of ${manifestA.files.length} files):`);
    row('node + these modules, nothing else', loadOnly);
    row(`reuse index of the ${copies} copies (buildReuseIndex)`, index, `  (${indexOut})`);
    row('offsite replicate night A (no earlier copy)', first);
    row(`offsite replicate night B (${copies} earlier copies)`, second,
      `  (reused ${reused} of ${manifestB?.files.length ?? 0} files; ${b.chain.keptFiles} are night A's byte for byte)`);
    const verdict = (mb: number): string => `${mb.toFixed(0)} MB, ${mb < 200 ? 'met' : 'NOT met'}`;
    console.log(`  target < 200 MB: reuse index ${verdict(index.maxRssMb)}; replicate of night B ${verdict(second.maxRssMb)}` +
      (reused === 0 ? ' (but it reused nothing: this build\'s replicate does not consult the index yet)' : ''));
  } finally {
    if (opts.keep === true) console.log(`work folder left at ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

const mode = process.argv[2];
if (mode === '--child-index' || mode === '--child-load') await child(mode, process.argv[3] as string, process.argv.slice(4));
else await main();
