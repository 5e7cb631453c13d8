/**
 * Runs that take one destination lock at the same moment (the shards of a set finishing together,
 * src/core/shard.ts) write the same lock file through the same deterministic temp name: one's
 * commit may find the temp file renamed away by another's, or cut short by another's open. Either
 * way that run lost the race and is told so (`E_LOCKED`, which a finisher waits out), never an
 * integrity failure; and at most one of them holds the lock. Real sshd (separate connections, as
 * separate processes have) and local folders (separate drivers).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { acquireLock, type HeldLock } from '../../src/core/lock.js';
import { OffsiteError } from '../../src/errors.js';
import { LocalDriver } from '../../src/drivers/local/index.js';
import { parseSftpOptions, SftpDriver } from '../../src/drivers/sftp/index.js';
import type { Driver } from '../../src/drivers/types.js';
import { describeWithServer, freshRoot, removeFreshRoots, sectionFor } from './server.js';

const opened: Driver[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.all(opened.map((d) => d.close()));
  await removeFreshRoots();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const RACERS = 4;
const ROUNDS = 12;

/** `ROUNDS` times, every driver takes the lock of `b1` at once: losers get E_LOCKED, at most one wins. */
async function race(drivers: readonly Driver[]): Promise<{ won: number; lost: number }> {
  let won = 0;
  let lost = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const results = await Promise.allSettled(drivers.map((d) => acquireLock(d, 'b1', { settleMs: 50 })));
    const holders: HeldLock[] = [];
    for (const r of results) {
      if (r.status === 'fulfilled') holders.push(r.value);
      else {
        const err: unknown = r.reason;
        assert.ok(err instanceof OffsiteError && err.code === 'E_LOCKED', `round ${round}: a lost race is E_LOCKED, not ${err instanceof Error ? `${(err as OffsiteError).code ?? err.name}: ${err.message}` : String(err)}`);
        lost++;
      }
    }
    assert.ok(holders.length <= 1, `round ${round}: ${holders.length} runs hold the lock at once`);
    won += holders.length;
    for (const h of holders) await h.release();
  }
  return { won, lost };
}

/**
 * Every driver takes and releases the lock in turn: the race left nothing that stops a later run.
 * (A round may end with every racer told E_LOCKED, each having seen another's write: under load
 * on sftp all 12 rounds once did. That is safe; shard finishers wait with jitter and try again.)
 */
async function takeInTurn(drivers: readonly Driver[]): Promise<void> {
  for (const d of drivers) await (await acquireLock(d, 'b1', { settleMs: 50 })).release();
}

describeWithServer('the destination lock taken by several runs at once (real sshd)', (server) => {
  it('sftp: each loser is told E_LOCKED, at most one holds it', async () => {
    const root = await freshRoot(server, 'lock-race');
    const drivers = Array.from({ length: RACERS }, (_, i) => new SftpDriver(`nas${i}`, parseSftpOptions(`nas${i}`, sectionFor(server, root))));
    opened.push(...drivers);
    const { won, lost } = await race(drivers);
    assert.equal(won + lost, RACERS * ROUNDS);
    await takeInTurn(drivers);
  });
});

it('local: each loser is told E_LOCKED, at most one holds it', async () => {
  const root = mkdtempSync(join(tmpdir(), 'offsite-lock-race-'));
  dirs.push(root);
  const drivers = Array.from({ length: RACERS }, (_, i) => new LocalDriver(`disk${i}`, { root, maxConcurrency: 4 }));
  opened.push(...drivers);
  const { won, lost } = await race(drivers);
  assert.equal(won + lost, RACERS * ROUNDS);
  await takeInTurn(drivers);
});
