// A node:test reporter for scripts/run-tests.mjs: the test time of each file (the sum of its
// top-level tests and suites, hooks included; loading the file is not counted), slowest first,
// so a suite that grew slow shows which files to look at. A test is counted under the file that
// declares it: tests declared through a helper (test/sftp/server.ts's describeWithServer) count
// under the helper's file.
import { relative } from 'node:path';

export default async function* fileTimes(source) {
  const byFile = new Map();
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { file, nesting, details } = event.data;
    if (nesting !== 0 || file === undefined) continue;
    byFile.set(file, (byFile.get(file) ?? 0) + (details?.duration_ms ?? 0));
  }
  const rows = [...byFile].sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((sum, [, ms]) => sum + ms, 0);
  for (const [file, ms] of rows) yield `${(ms / 1000).toFixed(1).padStart(7)} s  ${relative(process.cwd(), file)}\n`;
  yield `${(total / 1000).toFixed(1).padStart(7)} s  in ${rows.length} files\n`;
}
