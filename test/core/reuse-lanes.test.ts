/**
 * The replicate engine's two lanes at a destination that reuses (issue 12, src/core/replicate.ts):
 * the files it creates by server-side copies and the files it sends are dispatched each on their
 * own, so a full reuse lane never holds back the files to send. Here every server-side copy waits
 * until every file of the other lane has been committed, with one file at a time in each lane:
 * had the engine one loop for both, it would stop at the third kept file (one copy waiting, one
 * queued) before it reached the last file to send, and the run would never end.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateChain } from '../../scripts/gen-nightly.js';
import { replicate } from '../../src/core/replicate.js';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import type { CommitOptions, CopyWithinOptions, WriteOptions, WriteSession } from '../../src/drivers/types.js';

const NIGHT1 = 'backup_2025_12_01_02_00_00';
const NIGHT2 = 'backup_2025_12_02_02_00_00';
const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** `object` with some members replaced (a Proxy: drivers and sessions keep private fields). */
function wrap<T extends object>(object: T, overrides: Partial<Record<keyof T, unknown>>): T {
  return new Proxy(object, {
    get(target, property, receiver) {
      if (Object.hasOwn(overrides, property)) return overrides[property as keyof T];
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe('replicate: reuse and send lanes', () => {
  it('a reuse lane waiting on the server does not hold back the files to send', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'offsite-lanes-'));
    dirs.push(dir);
    const root = join(dir, 'source');
    await generateChain({ root, names: [NIGHT1, NIGHT2], totalBytes: 3 * 1024 * 1024, largestFileBytes: 256 * 1024, changed: 0.2, seed: 77 });
    const source = await createLocalDriver('source', { type: 'local', root });
    const disk = await createLocalDriver('disk', { type: 'local', root: join(dir, 'disk') });
    const first = await replicate({ source, backup: NIGHT1, destinations: [disk], quietPeriodMs: 0 });
    assert.equal(first.destinations[0]?.status, 'complete');

    // The plan: kept files (reuse) come before the last file to send (copy) in the files' order.
    const planned = await replicate({ source, backup: NIGHT2, destinations: [disk], quietPeriodMs: 0, dryRun: true, reuse: { disk: 'copy' } });
    const actions = planned.destinations[0]?.plan?.actions ?? [];
    const lastSent = actions.map((a) => a.action).lastIndexOf('copy');
    const toSend = new Set(actions.filter((a) => a.action === 'copy').map((a) => `${NIGHT2}/${a.path}`));
    assert.ok(lastSent >= 0, 'night 2 has files to send');
    assert.ok(actions.slice(0, lastSent).filter((a) => a.action === 'reuse').length >= 3, 'at least three kept files come before the last file to send');

    let sent!: () => void;
    const allSent = new Promise<void>((resolve) => { sent = resolve; });
    const unsent = new Set(toSend);
    let copiesBeforeSend = 0;
    let committed = false;
    const slow = wrap(disk, {
      capabilities: { ...disk.capabilities, maxConcurrency: 1, copyConcurrency: 1 },
      copyWithin: async (from: string, to: string, options?: CopyWithinOptions) => {
        await allSent;
        if (!committed) copiesBeforeSend++;
        return disk.copyWithin?.(from, to, options);
      },
      openWrite: async (key: string, options: WriteOptions): Promise<WriteSession> => {
        const session = await disk.openWrite(key, options);
        if (!toSend.has(key)) return session;
        return wrap(session, {
          commit: async (commit: CommitOptions) => {
            const done = await session.commit(commit);
            unsent.delete(key);
            if (unsent.size === 0) {
              committed = true;
              sent();
            }
            return done;
          },
        });
      },
    });
    const result = await replicate({
      source, backup: NIGHT2, destinations: [slow], quietPeriodMs: 0, fileConcurrency: 1, reuse: { disk: 'copy' },
      signal: AbortSignal.timeout(60_000),
    }).catch((err: unknown) => {
      throw new Error(`the run did not end: the reuse lane held back the files to send (${String(err)})`);
    });
    const copy = result.destinations[0];
    assert.equal(copy?.status, 'complete', JSON.stringify(copy?.errors));
    assert.ok((copy?.filesReused ?? 0) >= 3, `kept files reused (${copy?.filesReused})`);
    assert.ok((copy?.filesCopied ?? 0) >= 1, 'changed files sent');
    assert.equal(copiesBeforeSend, 0, 'no copy finished before every file to send was sent');
  });
});
