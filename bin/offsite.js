#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (run `npm run build` first).
import('../dist/src/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  process.stderr.write(`offsite: cannot start: ${err && err.message ? err.message : err}\n` +
    'Run `npm install && npm run build` in the offsite checkout first.\n');
  process.exit(1);
});
