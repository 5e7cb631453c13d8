#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (run `npm run build` first).
// File IO runs on libuv's thread pool (4 threads by default), which capped a many-file copy;
// it must be sized before the first asynchronous fs call.
process.env.UV_THREADPOOL_SIZE ??= '16';
import('../dist/src/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`offsite: cannot start: ${err && err.message ? err.message : err}\n` +
    'Run `npm install && npm run build` in the offsite checkout first.\n');
  process.exit(1);
});
