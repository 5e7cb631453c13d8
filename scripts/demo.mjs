#!/usr/bin/env node
// The built-in demo (`npm run demo`): generates a small synthetic milvus-backup backup in a temp
// folder, replicates it to two local destinations with the real CLI, verifies them, damages one
// copy to show that verify and audit catch it, repairs it with audit --repair, and pulls a copy
// back for restore. No servers needed.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const { generateBackup } = await import(join(root, 'dist', 'scripts', 'gen-backup.js'));

const dir = mkdtempSync(join(tmpdir(), 'offsite-demo-'));
const name = 'demo_backup_2026_01_15_02_00_00';
const say = (text) => process.stdout.write(`\n== ${text}\n`);

say(`generating a synthetic milvus-backup backup "${name}" in ${dir}/milvus-backup`);
const made = await generateBackup({ root: join(dir, 'milvus-backup'), name, totalBytes: 32 * 1024 * 1024, seed: 7 });
console.log(`   ${made.files} files, ${(made.bytes / 1048576).toFixed(1)} MiB`);

const config = join(dir, 'offsite.yaml');
writeFileSync(config, `# demo config written by scripts/demo.mjs
source:
  type: local
  root: ./milvus-backup
destinations:
  disk: { type: local, root: ./disk }
  nas:  { type: local, root: ./nas }
options:
  quietPeriod: 5s
`);
console.log(`   config: ${config}`);

function offsite(...args) {
  process.stdout.write(`\n$ offsite ${args.join(' ')}\n`);
  const run = spawnSync(process.execPath, [join(root, 'bin', 'offsite.js'), '--config', config, ...args], { stdio: 'inherit' });
  process.stdout.write(`(exit code ${run.status})\n`);
  return run.status;
}

function firstFile(folder) {
  for (const entry of readdirSync(folder)) {
    const path = join(folder, entry);
    if (statSync(path).isDirectory()) { const found = firstFile(path); if (found) return found; }
    else if (statSync(path).size > 1024) return path;
  }
  return undefined;
}

const codes = [];
say('what is at the source');
codes.push(offsite('list'));
say('replicate it to two destinations at once (each file is read once)');
codes.push(offsite('replicate', name, '--to', 'disk,nas'));
say('verify both copies byte for byte');
codes.push(offsite('verify', name, '--at', 'disk,nas', '--deep'));
say('run it again: nothing is copied twice');
codes.push(offsite('replicate', name, '--to', 'disk,nas'));

const victim = firstFile(join(dir, 'nas', name, 'binlogs'));
const bytes = readFileSync(victim);
bytes[bytes.length >> 1] ^= 0x01;
writeFileSync(victim, bytes);
say(`flip one bit in the middle of ${victim.slice(dir.length + 1)} at nas`);
const damaged = offsite('verify', name, '--at', 'disk,nas', '--deep');

say('audit every copy, reading all files back: the damage is found (exit 3)');
const audited = offsite('audit', '--sample', '100%');
say('audit --repair: the file is copied again from the source and read back; an HTML report is written');
codes.push(offsite('audit', '--repair', '--sample', '100%', '--report', join(dir, 'audit-report.html')));
say('bring the copy at nas back into a folder laid out for milvus-backup restore');
codes.push(offsite('pull', name, '--from', 'nas', '--to', join(dir, 'restore')));
const ok = codes.every((c) => c === 0) && damaged === 3 && audited === 3;
say(ok ? `demo finished: everything behaved as expected (files left in ${dir})` : 'demo FAILED: an exit code was not what it should be');
process.exit(ok ? 0 : 1);
