/**
 * Preload (`node --import`) for test/e2e/launcher-heap.test.ts: when the process exits it
 * allocates short-lived objects with some survivors (enough for V8 to grow a young generation
 * left to its defaults to its maximum) and writes the young generation's size, in MiB, to
 * $OFFSITE_TEST_YOUNG_GEN_LOG.
 */
import { writeFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';

process.on('exit', () => {
  const kept: object[] = [];
  for (let i = 0; i < 3_000_000; i++) {
    const o = { n: i, s: `x${i}` };
    if (i % 3 === 0) kept.push(o);
    if (kept.length > 300_000) kept.splice(0, 100_000);
  }
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  writeFileSync(process.env['OFFSITE_TEST_YOUNG_GEN_LOG'] as string, String((young?.space_size ?? 0) / (1024 * 1024)));
});
