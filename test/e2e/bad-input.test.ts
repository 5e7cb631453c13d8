/**
 * The bad-input table (issue 11): about 80 wrong configs, names, flags, source contents,
 * damaged destinations and signals, each run through the built CLI on local folders. Every case
 * asserts the exit code, the one-line message (a regex that must match one whole stderr line, or
 * stdout where said), no stack trace, and that nothing was certified: the source is unchanged
 * and no manifest appeared or changed anywhere (cases that are meant to write say so).
 *
 * Each case runs in a folder of its own, copied from one generated template: `src/` holds the
 * complete backup `nightly_1` (mtimes an hour old, so the quiet period is over), `d1/` and `d2/`
 * are the destinations, `made/` holds one copy replicated to d1 (for the destination damage
 * cases that need an existing copy, see `withCopy`).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { generateBackup } from '../../scripts/gen-backup.js';
import { binPath, jsonOf, runCli, tempDir, treeDigest, type CliRun } from '../helpers/cli.js';

const NAME = 'nightly_1';
const CONFIG = [
  'source: { type: local, root: ./src }',
  'destinations:',
  '  d1: { type: local, root: ./d1 }',
  '  d2: { type: local, root: ./d2 }',
  'options: { quietPeriod: 1s, chunkSize: 64KiB }',
].join('\n');

interface Ctx {
  readonly dir: string;
  readonly src: string;
  readonly config: string;
}

interface Case {
  readonly name: string;
  /** The config text (default CONFIG). */
  readonly config?: string;
  readonly setup?: (c: Ctx) => void | Promise<void>;
  /** Arguments after `--config FILE` (or the whole command line with `noConfig`). */
  readonly args: readonly string[];
  readonly noConfig?: boolean;
  readonly env?: NodeJS.ProcessEnv;
  readonly code: number;
  /** Must match one whole line of stderr. */
  readonly stderr?: RegExp;
  /** Must match stdout. */
  readonly stdout?: RegExp;
  /** Extra checks after the run. */
  readonly check?: (c: Ctx, run: CliRun) => void;
  /** The case is meant to write a copy (a stray link must not block a backup). */
  readonly writes?: boolean;
  /** Kill the run after this long (a case that used to hang). @default 120 s */
  readonly timeoutMs?: number;
}

let template = '';

/** Every manifest under `dir` (any depth) -> its content. */
function manifests(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name === 'manifest.json' && entry.isFile()) found.set(path.slice(dir.length), readFileSync(path, 'utf8'));
    }
  };
  walk(dir);
  return found;
}

/** The source tree's digest, symlinks and special files aside. */
function sourceDigest(src: string): string {
  if (!existsSync(src) || !statSync(src).isDirectory()) return existsSync(src) ? 'not a folder' : 'missing';
  const parts: string[] = [];
  const walk = (folder: string, rel: string): void => {
    for (const entry of readdirSync(folder, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) walk(path, `${rel}${entry.name}/`);
      else if (entry.isFile()) parts.push(`${rel}${entry.name}:${[...treeDigestOfFile(path)].join('')}`);
      else parts.push(`${rel}${entry.name}:special`);
    }
  };
  walk(src, '');
  return parts.join('\n');
}

function treeDigestOfFile(path: string): string {
  return readFileSync(path).toString('base64').slice(0, 64) + statSync(path).size;
}

/** Copies the template into a fresh folder. */
function fresh(label: string, config: string): Ctx {
  const dir = tempDir(`bad-${label.replace(/[^a-z0-9]+/gi, '-').slice(0, 30)}`);
  cpSync(template, dir, { recursive: true, preserveTimestamps: true });
  writeFileSync(join(dir, 'offsite.yaml'), config);
  return { dir, src: join(dir, 'src'), config: join(dir, 'offsite.yaml') };
}

/** Puts the copy replicated in the template (`made/`) at d1. */
function withCopy(c: Ctx): void {
  rmSync(join(c.dir, 'd1'), { recursive: true, force: true });
  renameSync(join(c.dir, 'made'), join(c.dir, 'd1'));
}

function manifestAt(c: Ctx, dest = 'd1'): string {
  return join(c.dir, dest, NAME, '.offsite', 'manifest.json');
}

function aBinlog(root: string): string {
  const walk = (folder: string): string | undefined => {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) { const f = walk(path); if (f) return f; } else if (entry.isFile()) return path;
    }
    return undefined;
  };
  return walk(join(root, NAME, 'binlogs')) as string;
}

/** Puts a FIFO (named pipe) at `path`, in place of whatever was there. */
function fifoAt(path: string): void {
  rmSync(path, { recursive: true, force: true });
  execFileSync('mkfifo', [path]);
}

/** Puts a folder at `path` in place of the file there, with `inside` (old mtimes) in it. */
function folderAt(path: string, inside?: string): void {
  rmSync(path);
  mkdirSync(path);
  if (inside !== undefined) {
    writeFileSync(join(path, inside), 'x');
    const old = new Date(Date.now() - 3600_000);
    utimesSync(join(path, inside), old, old);
  }
}

/** A copy of nightly_1 under another (possibly invalid) folder name at the source. */
function copyAs(c: Ctx, name: string): void {
  cpSync(join(c.src, NAME), join(c.src, name), { recursive: true, preserveTimestamps: true });
}

const JSON_USAGE = (run: CliRun): void => {
  const result = jsonOf<{ ok: boolean; error: { code: string; message: string } }>(run);
  assert.equal(result.ok, false);
  assert.equal(result.error.code, 'E_USAGE');
  assert.ok(result.error.message.length > 0);
};

const CASES: readonly Case[] = [
  // ---- config ----
  { name: 'config: --config names a missing file', args: ['list'], noConfig: true, code: 2, stderr: /^offsite: config file .*nope\.yaml does not exist$/, env: { OFFSITE_CONFIG: 'nope.yaml' } },
  { name: 'config: no config anywhere', setup: (c) => rmSync(c.config), args: ['list'], noConfig: true, code: 2, stderr: /^offsite: no config file: pass --config FILE/, env: { OFFSITE_CONFIG: '' } },
  { name: 'config: not YAML', config: 'source: { type: local\n  root: [', args: ['list'], code: 2, stderr: /^offsite: .*offsite\.yaml: not valid YAML at line \d+/ },
  { name: 'config: a list at the top', config: '- source\n- destinations\n', args: ['list'], code: 2, stderr: /expected a mapping with "source" and "destinations"$/ },
  { name: 'config: source missing', config: 'destinations: { d1: { type: local, root: ./d1 } }', args: ['list'], code: 2, stderr: /"source" is missing or not a mapping/ },
  { name: 'config: destinations missing', config: 'source: { type: local, root: ./src }', args: ['list'], code: 2, stderr: /"destinations" is missing or empty/ },
  { name: 'config: destinations given as a list', config: 'source: { type: local, root: ./src }\ndestinations:\n  - d1: { type: local, root: ./d1 }\n', args: ['list'], code: 2, stderr: /"destinations" is a list; it must be a mapping from a name to each destination/ },
  { name: 'config: destinations empty', config: 'source: { type: local, root: ./src }\ndestinations: {}\n', args: ['list'], code: 2, stderr: /"destinations" is missing or empty/ },
  { name: 'config: unknown top-level key', config: `${CONFIG}\nextra: 1\n`, args: ['list'], code: 2, stderr: /unknown top-level key "extra"/ },
  { name: 'config: unknown options key', config: CONFIG.replace('quietPeriod: 1s', 'quietPeriod: 1s, speed: 3'), args: ['list'], code: 2, stderr: /options: unknown key "speed"/ },
  { name: 'config: options.concurrency 0', config: CONFIG.replace('quietPeriod: 1s', 'quietPeriod: 1s, concurrency: 0'), args: ['list'], code: 2, stderr: /options: "concurrency" must be an integer from 1 to \d+, got number 0/ },
  { name: 'config: options.chunkSize not a size', config: CONFIG.replace('chunkSize: 64KiB', 'chunkSize: lots'), args: ['list'], code: 2, stderr: /options: "chunkSize" must be a size like 8MiB.*, got "lots"/ },
  { name: 'config: options.quietPeriod not a duration', config: CONFIG.replace('quietPeriod: 1s', 'quietPeriod: soon'), args: ['list'], code: 2, stderr: /options: "quietPeriod" must be a duration like 60s.*, got "soon"/ },
  { name: 'config: a variable that is not set', config: CONFIG.replace('root: ./d2', 'root: "${OFFSITE_TEST_UNSET_VAR}"'), args: ['list'], code: 2, stderr: /destinations\.d2\.root refers to \$\{OFFSITE_TEST_UNSET_VAR\}, which is not set in the environment/, env: { OFFSITE_TEST_UNSET_VAR: undefined } },
  { name: 'config: a variable set to empty is "set but empty", not "not set"', config: CONFIG.replace('root: ./d2', 'root: "${OFFSITE_TEST_EMPTY}"'), args: ['list'], code: 2, stderr: /destinations\.d2\.root refers to \$\{OFFSITE_TEST_EMPTY\}, which is set but empty/, env: { OFFSITE_TEST_EMPTY: '' } },
  { name: 'config: an unterminated ${ is an error, not a literal', config: CONFIG.replace('root: ./d2', 'root: "./d2_${OFFSITE_TEST_X"'), args: ['list'], code: 2, stderr: /destinations\.d2\.root has a "\$\{" that is not a complete \$\{NAME\}/, env: { OFFSITE_TEST_X: 'x' } },
  { name: 'config: a destination name with a space', config: CONFIG.replace('  d2:', '  "d 2":'), args: ['list'], code: 2, stderr: /destination name "d 2" must be letters, digits/ },
  { name: 'config: a destination that is not a mapping', config: CONFIG.replace('  d2: { type: local, root: ./d2 }', '  d2: ./d2'), args: ['list'], code: 2, stderr: /destinations\.d2 must be a mapping with a "type"/ },
  { name: 'config: an unknown driver type', config: CONFIG.replace('d2: { type: local', 'd2: { type: ftp'), args: ['replicate', NAME], code: 2, stderr: /^offsite: .*\bftp\b/ },
  { name: 'config: a local destination without root', config: CONFIG.replace('d2: { type: local, root: ./d2 }', 'd2: { type: local }'), args: ['replicate', NAME], code: 2, stderr: /^offsite: .*\broot\b/ },
  {
    name: 'config: an s3 endpoint with a path says where the bucket goes (not "bucket does not exist")', config: CONFIG.replace('d2: { type: local, root: ./d2 }', 'd2: { type: s3, endpoint: "http://127.0.0.1:7480/mybucket", bucket: mybucket }'),
    args: ['list'], code: 2, stderr: /^offsite: .*d2.*"endpoint" must be .*with a path \(\/mybucket\): the endpoint must not contain a path; put the bucket name in "bucket" and a folder inside it in "prefix"$/,
  },
  {
    name: 'config: a root with a folder name over 255 bytes is named', config: CONFIG.replace('root: ./d2', `root: ./${'n'.repeat(300)}`),
    args: ['list'], code: 2, stderr: /^offsite: .*d2.*"root" must be a non-empty folder path, got a folder name too long for a file system: "n{40}…" is 300 bytes, at most 255 are allowed; shorten it$/,
  },
  { name: 'source root missing: list fails, never "(none)"', config: CONFIG.replace('root: ./src', 'root: ./unmounted'), args: ['list'], code: 1, stderr: /^offsite: source: root .*unmounted does not exist/ },
  { name: 'source root missing: replicate --latest fails with the cause', config: CONFIG.replace('root: ./src', 'root: ./unmounted'), args: ['replicate', '--latest'], code: 1, stderr: /^offsite: source: root .*unmounted does not exist/ },
  { name: 'source root missing: watch --once fails', config: CONFIG.replace('root: ./src', 'root: ./unmounted'), args: ['watch', '--once'], code: 1, stderr: /^offsite: source: root .*unmounted does not exist/ },
  { name: 'source root missing: replicate by name names the root', config: CONFIG.replace('root: ./src', 'root: ./unmounted'), args: ['replicate', NAME], code: 1, stderr: /^offsite: source: root .*unmounted does not exist/ },
  { name: 'source root is a file: list fails', config: CONFIG.replace('root: ./src', 'root: ./afile'), setup: (c) => writeFileSync(join(c.dir, 'afile'), 'x'), args: ['list'], code: 1, stderr: /^offsite: source: root .*afile is not a folder/ },
  { name: 'source root is a file: watch --once fails', config: CONFIG.replace('root: ./src', 'root: ./afile'), setup: (c) => writeFileSync(join(c.dir, 'afile'), 'x'), args: ['watch', '--once'], code: 1, stderr: /^offsite: source: root .*afile is not a folder/ },

  // ---- names ----
  { name: 'name: with a space', args: ['replicate', 'my backup'], code: 2, stderr: /^offsite: "my backup" is not a milvus-backup backup name/ },
  { name: 'name: with a newline stays one line', args: ['replicate', 'a\nb'], code: 2, stderr: /^offsite: "a\\nb" is not a milvus-backup backup name/ },
  { name: 'name: starting with a digit', args: ['verify', '1abc', '--at', 'd1'], code: 2, stderr: /^offsite: "1abc" is not a milvus-backup backup name/ },
  { name: 'name: a path', args: ['verify', '../etc', '--at', 'd1'], code: 2, stderr: /^offsite: "\.\.\/etc" is not a milvus-backup backup name/ },
  { name: 'name: pull with a non-ASCII name', args: ['pull', 'bäckup_ü', '--from', 'd1', '--to', './restore'], code: 2, stderr: /^offsite: "bäckup_ü" is not a milvus-backup backup name/ },
  { name: 'name: a backup that does not exist', args: ['replicate', 'nightly_404'], code: 1, stderr: /^offsite: backup nightly_404 not found: no objects under nightly_404\// },
  { name: 'name: NAME and --latest together', args: ['replicate', NAME, '--latest'], code: 2, stderr: /^offsite: give a backup NAME or --latest, not both$/ },
  { name: 'name: neither NAME nor --latest', args: ['replicate'], code: 2, stderr: /^offsite: which backup\? give its NAME or --latest/ },
  {
    name: 'names milvus-backup never makes are not picked by replicate --latest',
    setup: (c) => { for (const n of ['my backup', 'bäckup_ü', '日本_1', 'a+b']) copyAs(c, n); rmSync(join(c.src, NAME), { recursive: true }); },
    args: ['replicate', '--latest'], code: 1, stderr: /^offsite: no complete backup at the source/,
    check: (_c, run) => {
      for (const n of ['my backup', 'bäckup_ü', '日本_1', 'a+b']) assert.match(run.stderr, new RegExp(`warning: skipped the folder ${JSON.stringify(n).replace('+', '\\+')} at the source: not a milvus-backup backup name`));
    },
  },
  {
    name: 'names milvus-backup never makes are not copied by watch',
    setup: (c) => { for (const n of ['my backup', '日本_1']) copyAs(c, n); },
    args: ['watch', '--once', '--to', 'd2'], code: 0, stdout: /warning: skipped the folder "my backup" at the source/, writes: true,
    check: (c) => {
      assert.deepEqual(readdirSync(join(c.dir, 'd2')).sort(), [NAME], 'only the valid backup was copied');
      assert.ok(existsSync(manifestAt(c, 'd2')));
    },
  },
  {
    name: 'list shows the valid backups and warns about the others',
    setup: (c) => copyAs(c, 'a+b'),
    args: ['list'], code: 0, stdout: new RegExp(`^  ${NAME}  complete`, 'm'), stderr: /^offsite: warning: skipped the folder "a\+b" at the source/,
    check: (_c, run) => assert.doesNotMatch(run.stdout, /a\+b/),
  },

  // ---- flags ----
  { name: 'flag: unknown option', args: ['replicate', NAME, '--fast'], code: 2, stderr: /^error: unknown option '--fast'$/ },
  { name: 'flag: unknown command', args: ['replikate'], code: 2, stderr: /^error: unknown command 'replikate'/ },
  { name: 'flag: --json with an unknown option prints a JSON error', args: ['--json', 'replicate', NAME, '--fast'], code: 2, stderr: /unknown option '--fast'/, check: (_c, run) => JSON_USAGE(run) },
  { name: 'flag: --json with an unknown command prints a JSON error', args: ['--json', 'replikate'], code: 2, stderr: /unknown command 'replikate'/, check: (_c, run) => JSON_USAGE(run) },
  { name: 'flag: --json with --concurrency 0 prints a JSON error', args: ['--json', 'replicate', NAME, '--concurrency', '0'], code: 2, stderr: /--concurrency <n>' argument '0' is invalid\. expected a whole number >= 1/, check: (_c, run) => JSON_USAGE(run) },
  { name: 'flag: --concurrency not a number', args: ['replicate', NAME, '--concurrency', 'many'], code: 2, stderr: /argument 'many' is invalid/ },
  { name: 'flag: --to an unknown destination', args: ['replicate', NAME, '--to', 'nope'], code: 2, stderr: /^offsite: unknown destination "nope" \(configured in .*: d1, d2\)$/ },
  { name: 'flag: --to the same destination twice in one list', args: ['replicate', NAME, '--to', 'd1,d1'], code: 2, stderr: /^offsite: a destination is named twice in "d1,d1"$/ },
  { name: 'flag: --to given twice adds up (never only the last)', args: ['replicate', NAME, '--to', 'd1', '--to', 'd1'], code: 2, stderr: /^offsite: a destination is named twice in "d1,d1"$/ },
  {
    name: 'flag: --to d1 --to d2 copies to both', args: ['replicate', NAME, '--to', 'd1', '--to', 'd2'], code: 0, writes: true,
    check: (c) => { assert.ok(existsSync(manifestAt(c, 'd1'))); assert.ok(existsSync(manifestAt(c, 'd2'))); },
  },
  { name: 'flag: --to with an empty list', args: ['replicate', NAME, '--to', ','], code: 2, stderr: /expected a comma-separated list of destination names/ },
  { name: 'flag: --chunk-size not a size', args: ['replicate', NAME, '--chunk-size', 'big'], code: 2, stderr: /size: "big" is not a size/ },
  { name: 'flag: --bwlimit not a rate', args: ['replicate', NAME, '--bwlimit', 'fast'], code: 2, stderr: /size: "fast" is not a size/ },
  { name: 'flag: --bwlimit 1 (one byte per second) warns', args: ['replicate', NAME, '--bwlimit', '1', '--dry-run'], code: 0, stderr: /^offsite: warning: --bwlimit 1 is 1 byte per second: .* did you mean 1MiB\? \(0 means no limit\)$/ },
  { name: 'flag: --bwlimit 0 means no limit (no warning)', args: ['replicate', NAME, '--bwlimit', '0', '--dry-run'], code: 0, check: (_c, run) => assert.doesNotMatch(run.stderr, /warning/) },
  { name: 'flag: --wait not a duration', args: ['replicate', '--latest', '--wait', 'long'], code: 2, stderr: /duration: "long" is not a duration/ },
  { name: 'flag: audit --sample 0%', args: ['audit', '--sample', '0%'], code: 2, stderr: /expected a percentage above 0 and at most 100/ },
  { name: 'flag: audit --slice 5/3', args: ['audit', '--slice', '5/3'], code: 2, stderr: /expected n\/t with 1 <= n <= t/ },
  {
    name: 'flag: audit --report into a missing folder fails before the audit', args: ['audit', '--report', 'no/such/dir/audit.html'], code: 2,
    stderr: /^offsite: --report no\/such\/dir\/audit\.html: the folder .*no\/such\/dir does not exist; create it or choose another path$/,
    check: (c) => { for (const d of ['d1', 'd2']) assert.ok(!existsSync(join(c.dir, d, '.offsite')), `${d}: no audit state written`); },
  },
  {
    name: 'flag: audit --metrics at a folder fails before the audit', setup: (c) => mkdirSync(join(c.dir, 'prom')), args: ['audit', '--metrics', 'prom'], code: 2,
    stderr: /^offsite: --metrics prom is a folder; give a file name/,
    check: (c) => { for (const d of ['d1', 'd2']) assert.ok(!existsSync(join(c.dir, d, '.offsite')), `${d}: no audit state written`); },
  },
  { name: 'flag: prune without a policy', args: ['prune'], code: 2, stderr: /^offsite: .*keep/ },
  { name: 'flag: pull without --from', args: ['pull', NAME, '--to', './restore'], code: 2, stderr: /required option '--from <destination>' not specified/ },
  { name: 'flag: pull --from and --to the same', args: ['pull', NAME, '--from', 'd1', '--to', 'd1'], code: 2, stderr: /^offsite: --from and --to are both "d1"/ },
  { name: 'flag: watch --interval below a second', args: ['watch', '--interval', '10ms'], code: 2, stderr: /^offsite: --interval must be at least 1s, got 10 ms$/ },
  { name: 'flag: --version prints the version', args: ['--version'], code: 0, stdout: /^\d+\.\d+\.\d+\n$/ },
  {
    name: 'flag: audit --help documents exit 2 for an unknown destination', args: ['audit', '--help'], code: 0,
    stdout: /^ {2}2 {2}usage or configuration error \(e\.g\. an unknown destination name/m,
    check: (_c, run) => assert.doesNotMatch(run.stdout, /1 {2}error \(e\.g\. the config names an unknown destination\)/),
  },
  { name: 'flag: audit --at an unknown destination exits 2 as documented', args: ['audit', '--at', 'nope'], code: 2, stderr: /^offsite: unknown destination "nope"/ },

  // ---- source content ----
  { name: 'source: binlogs without meta (failed backup)', setup: async (c) => { await generateBackup({ root: c.src, name: 'broken_1', breakage: 'no-meta', totalBytes: 64 * 1024, seed: 3 }); }, args: ['replicate', 'broken_1'], code: 1, stderr: /^offsite: backup broken_1 is not complete: .*without meta are a failed or abandoned backup/ },
  { name: 'source: full_meta.json missing', setup: async (c) => { await generateBackup({ root: c.src, name: 'broken_2', breakage: 'no-full-meta', totalBytes: 64 * 1024, seed: 3 }); }, args: ['replicate', 'broken_2'], code: 1, stderr: /^offsite: backup broken_2 is not complete: meta\/full_meta\.json missing/ },
  { name: 'source: a binlog missing', setup: async (c) => { await generateBackup({ root: c.src, name: 'broken_3', breakage: 'missing-binlog', totalBytes: 64 * 1024, seed: 3 }); }, args: ['replicate', 'broken_3'], code: 1, stderr: /^offsite: backup broken_3 is not complete: binlog binlogs\/.* missing/ },
  { name: 'source: a binlog short', setup: async (c) => { await generateBackup({ root: c.src, name: 'broken_4', breakage: 'short-binlog', totalBytes: 64 * 1024, seed: 3 }); }, args: ['replicate', 'broken_4'], code: 1, stderr: /^offsite: backup broken_4 is not complete: binlog binlogs\/.* is \d+ bytes, meta says \d+/ },
  { name: 'source: malformed meta', setup: async (c) => { await generateBackup({ root: c.src, name: 'broken_5', breakage: 'malformed-meta', totalBytes: 64 * 1024, seed: 3 }); }, args: ['replicate', 'broken_5'], code: 1, stderr: /^offsite: backup broken_5 is not complete: meta\/.*json/ },
  {
    name: 'source: changed within the quiet period', setup: (c) => { const f = join(c.src, NAME, 'meta', 'full_meta.json'); const now = new Date(); utimesSync(f, now, now); },
    config: CONFIG.replace('quietPeriod: 1s', 'quietPeriod: 1h'), args: ['replicate', NAME], code: 1, stderr: /^offsite: backup nightly_1 is not complete: last change \d+ s ago, quiet period is 3600 s$/,
  },
  { name: 'source: a symlink inside the backup leading outside', setup: (c) => symlinkSync('/etc', join(c.src, NAME, 'meta', 'escape')), args: ['replicate', NAME], code: 1, stderr: /^offsite: source: key "nightly_1\/meta\/escape" refused: a symlink on its path points outside the root \(to \/etc\)$/ },
  {
    name: 'source: a FIFO in place of a binlog is named as such (never opened), not "missing"', setup: (c) => fifoAt(aBinlog(c.src)), timeoutMs: 30_000,
    args: ['replicate', NAME], code: 1,
    stderr: /^offsite: backup nightly_1 is not complete: binlog binlogs\/\S+ is a FIFO \(named pipe\), not a regular file \(meta says \d+ bytes\): replace it with the binlog file, or make the backup again$/,
  },
  {
    name: 'source: list names a FIFO in place of a binlog', setup: (c) => fifoAt(aBinlog(c.src)), timeoutMs: 30_000,
    args: ['list'], code: 0, stdout: /^ {2}nightly_1 {2}failed\b.*binlog binlogs\/\S+ is a FIFO \(named pipe\), not a regular file/m,
  },
  {
    name: 'source: an empty folder in place of a binlog is named as such', setup: (c) => folderAt(aBinlog(c.src)),
    args: ['replicate', NAME], code: 1, stderr: /^offsite: backup nightly_1 is not complete: binlog binlogs\/\S+ is a folder, not a regular file \(meta says \d+ bytes\): replace it/,
  },
  {
    name: 'source: a folder with files in place of a binlog is named as such', setup: (c) => folderAt(aBinlog(c.src), 'stray'),
    args: ['replicate', NAME], code: 1, stderr: /^offsite: backup nightly_1 is not complete: binlog binlogs\/\S+ is a folder, not a regular file \(meta says \d+ bytes\)/,
  },
  {
    name: 'source: a FIFO in place of a meta file is named as such', setup: (c) => fifoAt(join(c.src, NAME, 'meta', 'full_meta.json')), timeoutMs: 30_000,
    args: ['replicate', NAME], code: 1, stderr: /^offsite: backup nightly_1 is not complete: meta\/full_meta\.json is a FIFO \(named pipe\), not a regular file: replace it with the meta file/,
  },
  {
    name: 'destination: a FIFO in place of the lock file is never opened (the run does not hang)',
    setup: (c) => { mkdirSync(join(c.dir, 'd1', NAME, '.offsite'), { recursive: true }); fifoAt(join(c.dir, 'd1', NAME, '.offsite', 'lock.json')); },
    timeoutMs: 30_000, args: ['replicate', NAME, '--to', 'd1'], code: 0, writes: true,
    check: (c) => {
      assert.ok(existsSync(manifestAt(c)), 'the copy was made');
      assert.ok(!existsSync(join(c.dir, 'd1', NAME, '.offsite', 'lock.json')), 'the lock was taken and released');
    },
  },
  {
    name: 'destination: a FIFO in place of .offsite/audit.json is named and left alone, not replaced by a fresh rotation',
    setup: (c) => { withCopy(c); mkdirSync(join(c.dir, 'd1', '.offsite'), { recursive: true }); fifoAt(join(c.dir, 'd1', '.offsite', 'audit.json')); },
    timeoutMs: 30_000, args: ['audit', '--at', 'd1'], code: 4,
    stdout: /^ +d1: \.offsite\/audit\.json: read: a FIFO \(named pipe\) is there, not a regular file .*remove it$/m,
    check: (c) => assert.ok(statSync(join(c.dir, 'd1', '.offsite', 'audit.json')).isFIFO(), 'the FIFO is still there'),
  },
  {
    name: 'source: a stray symlink at the root does not block replicate --latest', setup: (c) => symlinkSync('/etc', join(c.src, 'stray')),
    args: ['replicate', '--latest', '--to', 'd1'], code: 0, writes: true, stderr: /^offsite: warning: skipped "stray" at the source root: .*points outside the root \(to \/etc\)$/,
    check: (c) => assert.ok(existsSync(manifestAt(c, 'd1'))),
  },
  {
    name: 'source: a stray symlink at the root does not block list', setup: (c) => symlinkSync('/etc', join(c.src, 'stray')),
    args: ['list'], code: 0, stdout: /^ {2}nightly_1 {2}complete/m, stderr: /^offsite: warning: skipped "stray" at the source root/,
  },
  {
    name: 'source: only the backup holding an escaping link is skipped by --latest',
    setup: async (c) => {
      await generateBackup({ root: c.src, name: 'nightly_2', totalBytes: 64 * 1024, seed: 5, mtimeMs: Date.now() - 60_000 });
      symlinkSync('/etc', join(c.src, 'nightly_2', 'meta', 'escape'));
    },
    args: ['replicate', '--latest', '--to', 'd1'], code: 0, writes: true, stderr: /^offsite: warning: skipped backup nightly_2: source: key "nightly_2\/meta\/escape" refused/,
    check: (c) => { assert.ok(existsSync(manifestAt(c, 'd1')), 'nightly_1 copied'); assert.ok(!existsSync(join(c.dir, 'd1', 'nightly_2')), 'nightly_2 not copied'); },
  },
  {
    name: 'source: a stray symlink does not block watch --once', setup: (c) => symlinkSync('/etc', join(c.src, 'stray')),
    args: ['watch', '--once', '--to', 'd2'], code: 0, writes: true, stdout: /warning: skipped "stray" at the source root/,
    check: (c) => assert.ok(existsSync(manifestAt(c, 'd2'))),
  },

  // ---- destination damage ----
  {
    name: 'destination: root is a file; the error is on stderr too', setup: (c) => writeFileSync(join(c.dir, 'dfile'), 'x'),
    config: CONFIG.replace('root: ./d1', 'root: ./dfile'), args: ['replicate', NAME, '--to', 'd1'], code: 1, stderr: /^offsite: d1: replicate nightly_1 failed: /,
  },
  {
    name: 'destination: every destination fails: errors on stderr, exit 1', setup: (c) => { writeFileSync(join(c.dir, 'dfile'), 'x'); writeFileSync(join(c.dir, 'efile'), 'x'); },
    config: CONFIG.replace('root: ./d1', 'root: ./dfile').replace('root: ./d2', 'root: ./efile'), args: ['--json', 'replicate', NAME], code: 1, stderr: /^offsite: d2: replicate nightly_1 failed: /,
    check: (_c, run) => assert.match(run.stderr, /^offsite: d1: replicate nightly_1 failed: /m),
  },
  {
    name: 'destination: the manifest replaced by a folder', setup: (c) => { withCopy(c); rmSync(manifestAt(c)); mkdirSync(manifestAt(c)); },
    args: ['replicate', NAME, '--to', 'd1'], code: 1, stderr: /^offsite: d1: replicate nightly_1 failed: .*a folder is in the way \(a folder has the name this file needs; move it away and run again\)/,
  },
  {
    name: 'destination: the manifest digest field removed', setup: (c) => { withCopy(c); const m = JSON.parse(readFileSync(manifestAt(c), 'utf8')) as Record<string, unknown>; delete m['digest']; writeFileSync(manifestAt(c), JSON.stringify(m)); },
    args: ['verify', NAME, '--at', 'd1'], code: 3, stdout: /manifest has no digest field \(damaged, or edited by hand\)/, check: (_c, run) => assert.doesNotMatch(run.stdout + run.stderr, /undefined/),
  },
  {
    name: 'destination: the manifest digest changed', setup: (c) => { withCopy(c); const m = JSON.parse(readFileSync(manifestAt(c), 'utf8')) as Record<string, unknown>; m['digest'] = '0000000000000000'; writeFileSync(manifestAt(c), JSON.stringify(m)); },
    args: ['verify', NAME, '--at', 'd1'], code: 3, stdout: /manifest digest mismatch \(stored 0000000000000000, computed xxh64:[0-9a-f]+\): the manifest is damaged/,
  },
  {
    name: 'destination: the manifest is not JSON', setup: (c) => { withCopy(c); writeFileSync(manifestAt(c), '{ not json'); },
    args: ['verify', NAME, '--at', 'd1'], code: 3, stdout: /manifest is not valid JSON/,
  },
  {
    name: 'destination: list exits 4 when a copy cannot be read', setup: (c) => { withCopy(c); writeFileSync(manifestAt(c), '{ not json'); },
    args: ['list'], code: 4, stdout: /d1: error: .*manifest is not valid JSON/,
  },
  {
    name: 'destination: a file of the copy truncated', setup: (c) => { withCopy(c); writeFileSync(aBinlog(join(c.dir, 'd1')), 'short'); },
    args: ['verify', NAME, '--at', 'd1'], code: 3, stdout: /DAMAGED/,
  },
  {
    name: 'destination: a stray symlink at its root does not block prune', setup: (c) => { withCopy(c); symlinkSync('/etc', join(c.dir, 'd1', 'stray')); },
    args: ['prune', '--keep-last', '1', '--at', 'd1', '--dry-run'], code: 0, stdout: /keep +nightly_1/, stderr: /^offsite: warning: "stray" skipped at d1: d1: key "stray" refused: a symlink on its path points outside the root/,
  },
  {
    name: 'destination: a stray symlink at its root does not block audit', setup: (c) => { withCopy(c); symlinkSync('/etc', join(c.dir, 'd1', 'stray')); },
    args: ['audit', '--at', 'd1'], code: 0, writes: true, stdout: /nightly_1 +ok/, stderr: /^offsite: warning: "stray" skipped at d1/,
  },
];

/** Runs a case; returns the run. */
async function runCase(c: Ctx, k: Case): Promise<CliRun> {
  const args = k.noConfig ? [...k.args] : ['--config', c.config, ...k.args];
  return runCli(args, { cwd: c.dir, env: k.env, ...(k.timeoutMs !== undefined ? { timeoutMs: k.timeoutMs } : {}) });
}

describe('bad input (CLI, local folders): exit code, one-line message, nothing certified', () => {
  before(async () => {
    template = tempDir('bad-template');
    const src = join(template, 'src');
    await generateBackup({ root: src, name: NAME, totalBytes: 192 * 1024, seed: 21 });
    mkdirSync(join(template, 'd1'));
    mkdirSync(join(template, 'd2'));
    writeFileSync(join(template, 'offsite.yaml'), CONFIG.replace('root: ./d1', 'root: ./made'));
    const run = await runCli(['--config', join(template, 'offsite.yaml'), 'replicate', NAME, '--to', 'd1'], { cwd: template });
    assert.equal(run.code, 0, run.stderr);
  });

  it('has at least 60 cases', () => assert.ok(CASES.length >= 60, `${CASES.length} cases`));

  for (const k of CASES) {
    it(k.name, async () => {
      const c = fresh(k.name, k.config ?? CONFIG);
      await k.setup?.(c);
      const sourceBefore = sourceDigest(c.src);
      const manifestsBefore = manifests(c.dir);
      const run = await runCase(c, k);
      const shown = `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
      assert.equal(run.code, k.code, shown);
      if (k.stderr) assert.ok(run.stderr.split('\n').some((line) => k.stderr?.test(line)), `stderr has a line matching ${k.stderr}\n${shown}`);
      if (k.stdout) assert.match(run.stdout, k.stdout, shown);
      assert.doesNotMatch(run.stderr, /^\s+at /m, 'no stack trace');
      assert.doesNotMatch(run.stderr, /internal error/, 'no internal error');
      assert.equal(sourceDigest(c.src), sourceBefore, 'the source is unchanged');
      if (!k.writes) assert.deepEqual(manifests(c.dir), manifestsBefore, 'no manifest appeared or changed');
      k.check?.(c, run);
      rmSync(c.dir, { recursive: true, force: true });
    });
  }
});

/** Starts the CLI, sends `signal` once `ready` matches its output, and resolves with the run. */
function runUntil(args: readonly string[], cwd: string, ready: RegExp, signal: NodeJS.Signals): Promise<CliRun & { signalledAfterMs: number; exitedAfterMs: number }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [binPath, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sentAt = 0;
    const started = Date.now();
    const look = (): void => {
      if (sentAt === 0 && ready.test(stdout + stderr)) { sentAt = Date.now(); child.kill(signal); }
    };
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); look(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); look(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`timed out\n${stdout}\n${stderr}`)); }, 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr, signalledAfterMs: sentAt - started, exitedAfterMs: Date.now() - (sentAt || started) });
    });
  });
}

describe('bad input: signals', () => {
  it('SIGTERM while replicate --wait waits for an incomplete backup: exit 130 at once, nothing written', async () => {
    const c = fresh('sigterm-wait', CONFIG.replace('quietPeriod: 1s', 'quietPeriod: 1h'));
    const f = join(c.src, NAME, 'meta', 'full_meta.json');
    utimesSync(f, new Date(), new Date());
    const run = await runUntil(['--config', c.config, 'replicate', NAME, '--wait', '10m'], c.dir, /waiting up to 10 min for backup nightly_1/, 'SIGTERM');
    assert.equal(run.code, 130, run.stderr);
    assert.ok(run.exitedAfterMs < 10_000, `stopped in ${run.exitedAfterMs} ms`);
    assert.match(run.stderr, /^offsite: interrupted; stopping/m);
    assert.deepEqual(manifests(c.dir).size, 1, 'only the template copy under made/ has a manifest');
    rmSync(c.dir, { recursive: true, force: true });
  });

  it('SIGINT stops watch cleanly: exit 0, one stop line, nothing certified', async () => {
    const c = fresh('sigint-watch', CONFIG.replace('quietPeriod: 1s', 'quietPeriod: 1h'));
    utimesSync(join(c.src, NAME, 'meta', 'full_meta.json'), new Date(), new Date());
    const run = await runUntil(['--config', c.config, 'watch', '--interval', '1s'], c.dir, /not complete yet/, 'SIGINT');
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /stopped \(on a signal\): 0 copies made; failing: nothing/);
    assert.equal(manifests(join(c.dir, 'd1')).size + manifests(join(c.dir, 'd2')).size, 0);
    rmSync(c.dir, { recursive: true, force: true });
  });
});

describe('re-runs and repairs that used to fail (issue 11, findings 15 and 16)', () => {
  it('a finished pull run again succeeds, sends nothing and says the copy was already there', async () => {
    const c = fresh('pull-again', CONFIG);
    withCopy(c);
    const first = await runCli(['--config', c.config, '--json', 'pull', NAME, '--from', 'd1', '--to', './restore'], { cwd: c.dir });
    assert.equal(first.code, 0, first.stderr);
    const restored = treeDigest(join(c.dir, 'restore'));
    const again = await runCli(['--config', c.config, 'pull', NAME, '--from', 'd1', '--to', './restore'], { cwd: c.dir });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /nightly_1 was already at local:.*restore \(an earlier pull finished\): nothing sent/);
    assert.match(again.stdout, /\(0 B written\)/);
    assert.deepEqual(treeDigest(join(c.dir, 'restore')), restored);
    // Files a pull did not put there are still never overwritten.
    writeFileSync(join(c.dir, 'restore', NAME, 'meta', 'extra.json'), '{}');
    const other = await runCli(['--config', c.config, 'pull', NAME, '--from', 'd1', '--to', './restore'], { cwd: c.dir });
    assert.equal(other.code, 1);
    assert.match(other.stderr, /that a pull did not put there/);
    rmSync(c.dir, { recursive: true, force: true });
  });

  it('audit --repair --at d1 repairs from d2 when the source no longer has the backup', async () => {
    const c = fresh('repair-at', CONFIG);
    withCopy(c);
    cpSync(join(c.dir, 'd1'), join(c.dir, 'd2'), { recursive: true, preserveTimestamps: true });
    rmSync(join(c.src, NAME), { recursive: true });
    const victim = aBinlog(join(c.dir, 'd1'));
    const good = readFileSync(victim);
    writeFileSync(victim, Buffer.alloc(good.length, 7));
    const run = await runCli(['--config', c.config, '--json', 'audit', '--repair', '--at', 'd1', '--sample', '100%'], { cwd: c.dir });
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const result = jsonOf<{ copies: { destination: string; state: string; repairedFrom?: string }[] }>(run);
    assert.deepEqual(result.copies.map((x) => [x.destination, x.state, x.repairedFrom]), [['d1', 'repaired', 'd2']]);
    assert.deepEqual(readFileSync(victim), good);
    rmSync(c.dir, { recursive: true, force: true });
  });
});
