// Loaded into every test file's process by scripts/run-tests.mjs (`--import`). A handle a test
// left open (a socket, a server, a timer, a child process) keeps a file's process alive after its
// tests are done, and node's test runner then waits for it forever: one such leak hung a whole CI
// run. So once a file's tests are done, its process gets GRACE_MS to finish its own `after` hooks
// (they run after this one) and exit; if it has not, what keeps it alive is named on stderr (shown
// under the file's tests) and in the file OFFSITE_TEST_LEAKS_FILE (summarised by run-tests.mjs),
// and the process exits with 1, so that the runner reports the file as failed: an open handle in
// an in-process test may be a driver that does not let go of its connections.
// (node's own --test-force-exit would end the runner before its reporters have written their files.)
import { appendFileSync } from 'node:fs';
import { relative } from 'node:path';
import { after } from 'node:test';

// The runner's own pipes to this process.
const RUNNER_OWN = new Set(['PipeWrap', 'TTYWrap', 'CloseReq']);
const GRACE_MS = Number(process.env.OFFSITE_TEST_EXIT_GRACE_MS ?? 60_000);

// Only in a test file's process, not in the runner that starts them.
if (process.env.NODE_TEST_CONTEXT?.startsWith('child')) {
  after(() => {
    setTimeout(() => {
      const open = process.getActiveResourcesInfo().filter((name) => !RUNNER_OWN.has(name));
      // Nothing open: a slow synchronous clean-up held the timer back, and the process ends by itself.
      if (open.length === 0) return;
      const line = `${relative(process.cwd(), process.argv[1] ?? '?')}: ${open.join(', ')}`;
      process.stderr.write(`still running ${GRACE_MS / 1000} s after its tests ended, so ended now: ${line}\n`);
      if (process.env.OFFSITE_TEST_LEAKS_FILE) appendFileSync(process.env.OFFSITE_TEST_LEAKS_FILE, `${line}\n`);
      process.exit(1);
    }, GRACE_MS).unref();
  });
}
