#!/usr/bin/env node
// The test command behind `npm test` (after build and lint): starts the real servers the tests
// need (OpenSSH sshd, Ceph RGW; installing them with apt-get when missing), runs every compiled
// test file with node's test runner, stops the servers by PID, and ends with the plain line
// `N passed, N failed, N skipped`, after the test time of each file, slowest first
// (scripts/file-times.mjs; the full list is kept in .test-output/file-times-PID.txt).
//
// Nothing can hang the run: a test fails after 10 minutes unless it sets its own timeout, a file's
// process is ended a minute after its tests are done even if a handle it left open would keep it
// alive (scripts/test-leaks.mjs names such handles, and they are listed at the end), and the whole
// run is stopped, counted as a failure, after OFFSITE_TEST_DEADLINE_MINUTES (65 by default).
//
// A server that cannot start does not make its tests pass: the reason is passed to them in
// OFFSITE_TEST_<NAME>_ERROR and they fail with it (or skip loudly when OFFSITE_TEST_ALLOW_SKIP=1
// outside CI).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const dist = join(root, 'dist', 'test');
const outDir = join(root, '.test-output');
mkdirSync(outDir, { recursive: true });

function findTests(dir) {
  const found = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...findTests(path));
    else if (name.endsWith('.test.js')) found.push(path);
  }
  return found.sort();
}

const only = process.argv.slice(2);
let files = findTests(dist);
// Matched against the path under dist/ only (test/...): the checkout's own path (e.g. a worktree named
// after a word like "verify") must not make every file match.
if (only.length > 0) files = files.filter((f) => only.some((o) => f.slice(join(root, 'dist').length + 1).includes(o)));

// Servers are described in dist/test/servers/index.js: each has a name, an env variable its
// tests read, and start() -> { env, stop() }.
const { servers } = await import(join(dist, 'servers', 'index.js'));
const running = [];
const env = { ...process.env };
const wanted = servers.filter((s) => files.some((f) => s.neededBy(f)));
for (const server of wanted) {
  const started = Date.now();
  try {
    const handle = await server.start(join(outDir, 'servers', server.name));
    running.push(handle);
    Object.assign(env, handle.env);
    console.log(`# started ${server.name} in ${Date.now() - started} ms`);
  } catch (err) {
    const reason = err && err.message ? err.message : String(err);
    env[server.errorEnv] = reason;
    console.log(`# could not start ${server.name}: ${reason}`);
  }
}

// The CLI caches earlier copies' manifests (src/core/manifest-cache.ts): tests keep theirs here,
// not in the user's ~/.cache, and start with none.
const cacheDir = join(outDir, `cache-${process.pid}`);
env.OFFSITE_CACHE_DIR = cacheDir;

const tapFile = join(outDir, `results-${process.pid}.tap`); // one per runner: runs may overlap in one checkout
const timesFile = join(outDir, `file-times-${process.pid}.txt`);
const leaksFile = join(outDir, `leaks-${process.pid}.txt`);
for (const file of [tapFile, timesFile, leaksFile]) rmSync(file, { force: true });
env.OFFSITE_TEST_LEAKS_FILE = leaksFile;
const deadlineMinutes = Number(process.env.OFFSITE_TEST_DEADLINE_MINUTES ?? 65);
// Its own process group, so that a stop (deadline, Ctrl-C) ends the test files' processes and the
// CLIs they started too; the servers are stopped below either way.
const child = spawn(process.execPath, [
  '--import', join(root, 'scripts', 'test-leaks.mjs'),
  '--test', '--test-concurrency=1', '--test-timeout=600000',
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  '--test-reporter=tap', `--test-reporter-destination=${tapFile}`,
  `--test-reporter=${join(root, 'scripts', 'file-times.mjs')}`, `--test-reporter-destination=${timesFile}`,
  ...files,
], { stdio: ['ignore', 'inherit', 'inherit'], env, detached: true });
let stoppedBy;
const stopTests = (reason) => {
  if (stoppedBy !== undefined) return;
  stoppedBy = reason;
  console.log(`# ${reason}: stopping the tests`);
  try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
};
const deadline = setTimeout(() => stopTests(`the tests did not finish within ${deadlineMinutes} minutes (the file that hung is the one after the last result above)`), deadlineMinutes * 60_000);
process.on('SIGINT', () => stopTests('interrupted'));
process.on('SIGTERM', () => stopTests('terminated'));
const code = await new Promise((resolveExit) => child.on('exit', (c, sig) => resolveExit(c ?? (sig ? 1 : 0))));
clearTimeout(deadline);

rmSync(cacheDir, { recursive: true, force: true });
for (const handle of running.reverse()) {
  try { await handle.stop(); } catch (err) { console.log(`# stopping a server failed: ${err.message}`); }
}

if (existsSync(timesFile)) {
  const times = readFileSync(timesFile, 'utf8').trimEnd().split('\n');
  console.log('# test time per file, slowest first:');
  for (const line of [...times.slice(0, -1).slice(0, 15), times.at(-1)]) console.log(`# ${line}`);
}

if (existsSync(leaksFile)) {
  console.log('# files whose process outlived its tests (ended by scripts/test-leaks.mjs):');
  for (const line of readFileSync(leaksFile, 'utf8').trimEnd().split('\n')) console.log(`#   ${line}`);
}

const tap = existsSync(tapFile) ? readFileSync(tapFile, 'utf8') : '';
const count = (name) => Number((tap.match(new RegExp(`^# ${name} (\\d+)$`, 'm')) ?? [])[1] ?? 0);
const passed = count('pass'), failed = count('fail'), skipped = count('skipped');
const cancelled = count('cancelled');
// A stopped run counts as one more failure: the tests it did not reach are not passes.
const stopped = stoppedBy === undefined ? 0 : 1;
console.log(`${passed} passed, ${failed + cancelled + stopped} failed, ${skipped} skipped`);
process.exit(code !== 0 || failed + cancelled + stopped > 0 || passed === 0 ? 1 : 0);
