/** The plan's reuse actions (src/core/plan.ts, issue 12): a table of files against a destination's reuse lookup. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ACTION_KINDS, planReplication, type ReuseLookup } from '../../src/core/plan.js';

const CHUNK = 1024 * 1024;

/** Night 1 holds `same` (100 bytes) at the same path, and some file of 300 bytes elsewhere. */
const lookup: ReuseLookup = {
  candidate: (path, size) => (path === 'same' && size === 100 ? { backup: 'night1', path } : undefined),
  mayHold: (size) => size === 100 || size === 300,
};

describe('plan: reuse actions', () => {
  it('plans reuse for missing files an earlier copy may hold; copy for the rest; nothing for present ones', () => {
    const files = [
      { path: 'same', size: 100 }, { path: 'moved', size: 300 }, { path: 'new', size: 200 }, { path: 'empty', size: 0 },
      { path: 'resized', size: 100 }, { path: 'there', size: 100 },
    ];
    const plan = planReplication('night2', files, [
      { name: 'reusing', present: new Map([['resized', 50], ['there', 100]]) },
      { name: 'sending', present: new Map() },
    ], CHUNK, new Map([['reusing', lookup]]));
    const table = (name: string) => plan.destinations.find((d) => d.destination === name)?.actions.map((a) => [a.path, a.action, a.reuseFrom]);
    assert.deepEqual(table('reusing'), [
      ['empty', 'copy', undefined],
      ['moved', 'reuse', undefined],
      ['new', 'copy', undefined],
      ['resized', 'copy', undefined], // present with another size: rewritten, as before
      ['same', 'reuse', 'night1/same'],
      ['there', 'adopt', undefined],
    ]);
    assert.ok(table('sending')?.every(([, action]) => action === 'copy'), 'no lookup: every missing file is sent');
    // What a run killed between reuses and its next checkpoint leaves: present, unrecorded. The one
    // the newest copy holds under its path with its size is copied there again, not read back.
    const resumed = planReplication('night2', files, [{ name: 'resumed', present: new Map([['same', 100], ['moved', 300]]) }], CHUNK, new Map([['resumed', lookup]]));
    assert.deepEqual(resumed.destinations[0]?.actions.filter((a) => a.path === 'same' || a.path === 'moved').map((a) => [a.path, a.action, a.reuseFrom]), [
      ['moved', 'adopt', undefined], // no copy holds this path: read back and compared
      ['same', 'reuse', 'night1/same'],
    ]);
    const reusing = plan.destinations[0];
    assert.equal(reusing?.reuseFiles, 2);
    assert.equal(reusing?.reuseBytes, 400);
    assert.equal(reusing?.copyFiles, 3);
    assert.equal(reusing?.upToDate, false);
  });

  it('a compact plan says what the actions say, without them', () => {
    const files = [
      { path: 'empty', size: 0 }, { path: 'moved', size: 300 }, { path: 'new', size: 200 }, { path: 'recorded', size: 7 },
      { path: 'same', size: 100 }, { path: 'there', size: 100 },
    ];
    const record = { path: 'recorded', size: 7, hash: 'xxh64:0000000000000007', chunks: ['xxh64:0000000000000007'] };
    const manifest = { format: 'offsite-manifest', version: 1, kind: 'progress', backup: 'night2', source: 's', createdAt: '2026-01-01T00:00:00.000Z', chunkBytes: CHUNK, hashAlgorithm: 'xxh64', fileCount: 1, totalBytes: 7, files: [record], digest: '' } as const;
    const state = { name: 'd', present: new Map([['recorded', 7], ['same', 100], ['there', 100]]), progress: manifest as never };
    const full = planReplication('night2', files, [state], CHUNK, new Map([['d', lookup]])).destinations[0];
    const compact = planReplication('night2', files, [state], CHUNK, new Map([['d', lookup]]), { compact: true }).destinations[0];
    assert.ok(full !== undefined && compact?.compact !== undefined);
    assert.deepEqual(compact.actions, []);
    assert.equal(compact.compact.inGivenOrder, true);
    assert.deepEqual([...compact.compact.kinds].map((k) => ACTION_KINDS[k]), full.actions.map((a) => a.action));
    assert.deepEqual(compact.compact.records, full.actions.flatMap((a) => (a.record ? [a.record] : [])));
    assert.deepEqual(compact.compact.present, ['same']);
    assert.deepEqual(full.actions.map((a) => a.action), ['copy', 'reuse', 'copy', 'skip', 'reuse', 'adopt']);
    const { actions: _a, compact: _c, ...counts } = compact;
    const { actions: _b, ...fullCounts } = full;
    assert.deepEqual(counts, fullCounts);
    assert.equal(full.adoptBytes, 100);
    // Files not sorted: the kinds follow the sorted order, which is not the order given.
    assert.equal(planReplication('night2', [...files].reverse(), [state], CHUNK, undefined, { compact: true }).destinations[0]?.compact?.inGivenOrder, false);
  });
});
