#!/usr/bin/env node
// Crash test at scale (issue 5): starts sshd and Ceph RGW like `npm test` does, then runs the
// crash trial of test/crash/trial.ts with random seeds until at least --kills SIGKILLs landed
// mid-run. Prints each seed (so a failure can be replayed) and a summary.
//
//   npm run build && node scripts/crash-test.mjs --kills 200
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const root = resolve(new URL('..', import.meta.url).pathname);
const { values } = parseArgs({ options: { kills: { type: 'string', default: '200' }, 'per-trial': { type: 'string', default: '20' }, seed: { type: 'string' } } });
const target = Number(values.kills);
const perTrial = Number(values['per-trial']);

const { servers } = await import(join(root, 'dist', 'test', 'servers', 'index.js'));
const { runCrashTrial } = await import(join(root, 'dist', 'test', 'crash', 'trial.js'));
const handles = [];
let failed = false;
try {
  const env = {};
  for (const server of servers) {
    const handle = await server.start(join(root, '.test-output', 'crash-servers', server.name));
    handles.push(handle);
    Object.assign(env, handle.env);
  }
  const sftp = JSON.parse(env.OFFSITE_TEST_SFTP);
  const s3 = JSON.parse(env.OFFSITE_TEST_S3);
  let kills = 0, trials = 0, sent = 0, bytes = 0;
  while (kills < target) {
    const seed = values.seed ? Number(values.seed) + trials : Math.floor(Math.random() * 2 ** 31);
    const report = await runCrashTrial({ seed, kills: perTrial, sftp, s3 });
    trials++;
    kills += report.killsMidRun;
    sent += report.sftpSent + report.s3Sent;
    bytes += 2 * report.totalBytes;
    console.log(`seed ${seed}: ${report.killsMidRun} kills mid-run, re-sent ${(((report.sftpSent + report.s3Sent) / (2 * report.totalBytes) - 1) * 100).toFixed(1)}% (incl. protocol overhead), ${report.problems.length ? `PROBLEMS: ${report.problems.join(' | ')}` : 'ok'}`);
    if (report.problems.length) failed = true;
  }
  console.log(`\n${trials} trials, ${kills} kills mid-run, ${failed ? 'FAILURES (see above)' : 'no lost or falsely complete copy'}; bytes sent to sftp+s3 = ${(sent / bytes).toFixed(3)}x the data`);
} finally {
  for (const handle of handles.reverse()) await handle.stop().catch(() => undefined);
}
process.exit(failed ? 1 : 0);
