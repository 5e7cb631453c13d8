/**
 * The run's paths held once (src/core/sorted-paths.ts): front-coded paths give back every path as
 * it was appended and find each by its place, in code-unit order whatever characters they hold
 * (UTF-8 byte order differs from it from U+D800 up), and find no path that was not appended; the
 * origin table's sorted view agrees with the paths it was given, sorted or not; and the records
 * of a run keyed by such a view are written in order from a snapshot of what was recorded.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OriginTable } from '../../src/core/origin-table.js';
import { RecordStore } from '../../src/core/records.js';
import { FrontCodedPaths, asSortedPaths } from '../../src/core/sorted-paths.js';
import type { ManifestFile } from '../../src/manifest/manifest.js';

/** A small deterministic generator, so that a failure can be run again. */
function generator(seed: number): (n: number) => number {
  let state = seed >>> 0;
  return (n) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return Math.floor((state / 2 ** 32) * n); // the high bits: an LCG's low bits repeat quickly
  };
}

function paths(random: (n: number) => number, alphabet: readonly string[], count: number): string[] {
  const set = new Set<string>();
  while (set.size < count) {
    let path = '';
    const length = random(14);
    for (let i = 0; i < length; i++) path += alphabet[random(alphabet.length)] as string;
    set.add(path);
  }
  return [...set].sort();
}

const ASCII = ['binlogs/', 'insert_log/', '4589', '3044', '/', '0', '1', '9', 'a'];
/** With characters whose UTF-8 order is not their code-unit order (a surrogate pair sorts before U+E000 in UTF-16, after it in UTF-8). */
const MIXED = ['a/', 'é', '/', '😀', '\ue000', '\uffff', 'z', '0'];

describe('FrontCodedPaths', () => {
  for (const [name, alphabet] of [['ASCII', ASCII], ['non-BMP and high-BMP characters', MIXED]] as const) {
    it(`gives back every path and finds each by its place (${name})`, () => {
      const random = generator(13);
      for (const count of [0, 1, 15, 16, 17, 300, 2100]) {
        const sorted = paths(random, alphabet, count);
        const held = new FrontCodedPaths();
        for (const path of sorted) held.push(path);
        assert.equal(held.length, sorted.length);
        for (const [i, path] of sorted.entries()) {
          assert.equal(held.at(i), path);
          assert.equal(held.indexOf(path), i, path);
        }
        const known = new Set(sorted);
        for (let k = 0; k < 300; k++) {
          const [other] = paths(random, alphabet, 1) as [string];
          if (!known.has(other)) assert.equal(held.indexOf(other), -1, other);
        }
      }
    });
  }

  it('keeps paths longer than its buffers, and shared prefixes beyond what it counts', () => {
    const long = 'x'.repeat(70_000);
    const sorted = ['a', long, `${long}/1`, `${long}/2`, 'y'];
    const held = new FrontCodedPaths();
    for (const path of sorted) held.push(path);
    for (const [i, path] of sorted.entries()) {
      assert.equal(held.at(i), path);
      assert.equal(held.indexOf(path), i);
    }
    assert.throws(() => held.at(5), RangeError);
  });
});

function record(path: string, i: number): ManifestFile {
  const hash = `xxh64:${(i * 2654435761 % 2 ** 32).toString(16).padStart(8, '0')}${(i * 40503 % 2 ** 32).toString(16).padStart(8, '0')}`;
  return { path, size: i, hash, chunks: [hash] };
}

describe('OriginTable.sortedPaths', () => {
  it('is the paths in code-unit order, whatever order the manifest lists them in', () => {
    const sorted = paths(generator(7), MIXED, 500);
    const shuffled = [...sorted].reverse();
    for (const order of [sorted, shuffled]) {
      const table = OriginTable.of(order.map(record), 'test');
      const view = table.sortedPaths();
      assert.equal(view.length, sorted.length);
      for (const [rank, path] of sorted.entries()) {
        assert.equal(view.at(rank), path);
        assert.equal(view.indexOf(path), rank);
        assert.equal(table.pathAt(table.indexOf(path)), path);
      }
      assert.equal(view.indexOf('not/there'), -1);
    }
  });
});

describe('RecordStore keyed by sorted paths', () => {
  it('writes what a snapshot recorded in order, the known paths by slot and the others by name', () => {
    const known = paths(generator(3), ASCII, 200);
    const table = OriginTable.of(known.map(record), 'test');
    const store = new RecordStore(table.sortedPaths());
    const others = ['0-first', 'binlogs/zz-between', '~last'];
    for (const [i, path] of known.entries()) if (i % 3 !== 0) store.set(record(path, i));
    for (const path of others) store.set(record(path, 7));
    const snapshot = store.recorded();
    store.set(record(known[0] as string, 0)); // after the snapshot: not in it
    const expected = [...known.filter((_, i) => i % 3 !== 0), ...others].sort();
    assert.equal(snapshot.length, expected.length);
    assert.deepEqual([...store.inOrder(snapshot)].map((r) => r.path), expected);
    assert.equal(store.bytesOf(snapshot), [...store.inOrder(snapshot)].reduce((sum, r) => sum + r.size, 0));
    assert.equal(store.knownSlotOf(known[1] as string), 1);
    assert.equal(store.knownSlotOf('0-first'), -1);
    assert.deepEqual(store.knownRecord(1), record(known[1] as string, 1));
    assert.equal(store.knownRecord(3), undefined);
    assert.deepEqual(store.sortedPaths(), [...expected, known[0] as string].sort());
  });

  it('takes an array of paths only when it is sorted with none twice', () => {
    assert.equal(asSortedPaths(['b', 'a']), undefined);
    assert.equal(asSortedPaths(['a', 'a']), undefined);
    assert.equal(asSortedPaths(['a', 'b'])?.indexOf('b'), 1);
  });
});
