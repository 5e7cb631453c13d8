/** The module `load` hook of ./module-log.ts: appends each URL loaded to `$OFFSITE_TEST_MODULE_LOG`. */
import { appendFileSync } from 'node:fs';

type NextLoad = (url: string, context: unknown) => Promise<unknown>;

export async function load(url: string, context: unknown, nextLoad: NextLoad): Promise<unknown> {
  const loaded = await nextLoad(url, context);
  const log = process.env['OFFSITE_TEST_MODULE_LOG'];
  if (log) appendFileSync(log, `${url}\n`);
  return loaded;
}
