/**
 * Preload for a child Node process (`node --import <this module's URL> ...`) that records every
 * module the process loads, one file URL or path per line, into the file named by
 * `$OFFSITE_TEST_MODULE_LOG` (test/e2e/start-up-cli.test.ts). Both kinds of loading are seen:
 *
 * - ES modules (and CommonJS modules imported from them) through a `load` hook
 *   (./module-log-hooks.ts, registered with `module.register`), which writes each URL as it loads;
 * - CommonJS modules loaded with `require()` (the AWS SDK is, src/drivers/s3/client.ts) from
 *   `require.cache`, written when the process exits.
 */
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const log = process.env['OFFSITE_TEST_MODULE_LOG'];
if (log) {
  register(new URL('./module-log-hooks.js', import.meta.url));
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => { appendFileSync(log, Object.keys(cache).map((path) => `${path}\n`).join('')); });
}
