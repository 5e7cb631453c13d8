#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (run `npm run build` first).
import module from 'node:module';
import { setFlagsFromString } from 'node:v8';
// Node 22.1+ keeps V8's compiled code of the modules it loads on disk (in the OS temp folder, or
// $NODE_COMPILE_CACHE; NODE_DISABLE_COMPILE_CACHE=1 turns it off), so later runs skip compiling
// them: a short command (a verify, a list) is mostly start-up (issue 13). Node 20 has no such call.
if (typeof module.enableCompileCache === 'function') {
  try { module.enableCompileCache(); } catch { /* a cache that cannot be used only costs the compile */ }
}
// File IO runs on libuv's thread pool (4 threads by default), which capped a many-file copy;
// it must be sized before the first asynchronous fs call.
process.env.UV_THREADPOOL_SIZE ??= '16';
// V8 flags the user gave (`node --flag bin/offsite.js`, or NODE_OPTIONS) win over ours below.
const userFlags = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
const userSet = (...names) => names.some((name) => new RegExp(`--${name.replaceAll('-', '[-_]')}\\b`).test(userFlags));
// V8 lets its heap grow to up to ~4 times what survived the last full collection while collecting
// is cheap: at 100,000 files a replicate with ~60 MB live peaked at ~380 MB RSS (issue 13). Growing
// it by 30% instead keeps the peak near the live heap, for a few more full collections (tens of ms
// each at that size). A complement to holding less per file, not a limit: the heap still grows as
// far as the work needs.
if (!userSet('heap-growing-percent')) setFlagsFromString('--heap-growing-percent=30');
// V8's young generation starts at 1 MB a semi-space and doubles under steady allocation up to a
// maximum derived from the machine's memory: here 16 MB (32 MB of RSS) on Node 20 and 22, 64 MB
// (128 MB) on Node 24, where a 20,000-file replicate peaked at 259 MB RSS, 131 MB with the young
// generation kept at its start (issues 12, 13). offsite's bulk bytes live outside the heap and its
// per-file objects die young, so a small young generation costs no measurable CPU here. The
// maximum is fixed at start-up; the growth factor is read when V8 grows it, so it can be set here.
if (!userSet('max-semi-space-size', 'min-semi-space-size', 'semi-space-growth-factor')) setFlagsFromString('--semi-space-growth-factor=1');
// The AWS SDK warns on every start under Node 20 that its 2027 releases will need Node 22. offsite
// supports Node 20 (see README); keep that notice out of users' cron mail and our one-line errors.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  const type = typeof rest[0] === 'string' ? rest[0] : rest[0] && rest[0].type;
  if (type === 'NodeVersionSupportWarning' || String(warning).includes('NodeVersionSupportWarning')) return;
  emitWarning(warning, ...rest);
};
// `offsite list | head`: a reader that closes the pipe early is not an error.
process.stdout.on('error', (err) => { if (err && err.code === 'EPIPE') process.exit(process.exitCode ?? 0); throw err; });
import('../dist/src/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`offsite: cannot start: ${err && err.message ? err.message : err}\n` +
    'Run `npm install && npm run build` in the offsite checkout first.\n');
  process.exit(1);
});
