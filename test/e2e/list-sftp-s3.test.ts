/**
 * `offsite list` with a destination it cannot read, against the real sshd and Ceph RGW (issue
 * 11, finding 16): a missing bucket, a changed host key and an endpoint nobody listens on each
 * make `list` exit 4 (partial) with the reason on the copy's line, never 0 with "absent".
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { generateBackup } from '../../scripts/gen-backup.js';
import { jsonOf, runCli, tempDir } from '../helpers/cli.js';
import { requireServer as requireS3, s3Section } from '../s3/server.js';
import { requireServer as requireSftp, sectionFor } from '../sftp/server.js';
import { closedPort } from '../servers/net.js';

const NAME = 'nightly_1';

interface ListJson { backups: { name: string; copies: Record<string, string> }[]; unreadable: string[] }

describe('list with a destination that cannot be read (CLI, sshd + RGW): exit 4, the reason shown', () => {
  let dir: string;
  before(async () => {
    dir = tempDir('list-unreadable');
    await generateBackup({ root: join(dir, 'src'), name: NAME, totalBytes: 64 * 1024, seed: 7, mtimeMs: Date.now() - 3600_000 });
  });

  const cases: Array<{ label: string; destination: () => Promise<Record<string, unknown>>; reason: RegExp }> = [
    {
      label: 'its bucket does not exist',
      destination: async () => s3Section(requireS3(), `no-such-bucket-${Date.now()}`),
      reason: /bucket no-such-bucket-\d+ does not exist/,
    },
    {
      label: 'its host key changed',
      destination: async () => sectionFor(requireSftp(), join(requireSftp().root, 'list-hostkey'), { hostKey: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }),
      reason: /CHANGED/,
    },
    {
      label: 'its endpoint does not answer',
      destination: async () => s3Section(requireS3(), 'any-bucket', { endpoint: `http://127.0.0.1:${await closedPort()}`, connectTimeoutMs: 1000, requestTimeoutMs: 2000 }),
      reason: /cannot reach endpoint/,
    },
  ];
  for (const k of cases) {
    it(`${k.label}: exit 4, "error: ..." for that copy, the others listed`, async () => {
      const config = join(dir, `${k.label.replace(/\W+/g, '-')}.yaml`);
      writeFileSync(config, stringify({
        source: { type: 'local', root: join(dir, 'src') },
        destinations: { bad: await k.destination(), disk: { type: 'local', root: join(dir, 'disk') } },
        options: { quietPeriod: '1s', retries: 0 },
      }));
      const run = await runCli(['--config', config, '--json', 'list'], { timeoutMs: 60_000 });
      assert.equal(run.code, 4, run.stdout + run.stderr);
      const result = jsonOf<ListJson>(run);
      assert.deepEqual(result.unreadable, ['bad']);
      const copies = result.backups.find((b) => b.name === NAME)?.copies ?? {};
      assert.match(copies['bad'] ?? '', /^error: /);
      assert.match(copies['bad'] ?? '', k.reason);
      assert.equal(copies['disk'], 'absent');
    });
  }
});
