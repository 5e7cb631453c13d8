/** The compact listing index: the same answers as a Map, exact on keys whose hashes collide or that share prefixes. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ListingIndex, PackedStrings } from '../../src/listing-index.js';

describe('ListingIndex', () => {
  it('answers like a Map for many keys (growing past its first capacity), unicode keys included', () => {
    const index = new ListingIndex();
    const map = new Map<string, { size: number; fingerprint?: string; hash?: string }>();
    for (let i = 0; i < 5000; i++) {
      const key = `binlogs/insert_log/${i % 7}/${i}/ü€${i % 3 === 0 ? '😀' : ''}/${i * 31}`;
      const value = { size: i * 3, ...(i % 2 === 0 ? { fingerprint: `local:${i}:${i * 7}` } : {}), ...(i % 5 === 0 ? { hash: `xxh64:${i.toString(16)}` } : {}) };
      index.set(key, value.size, value.fingerprint, value.hash);
      map.set(key, value);
    }
    assert.equal(index.count, map.size);
    for (const [key, value] of map) {
      assert.deepEqual(index.get(key), value, key);
      assert.equal(index.sizeOf(key), value.size);
      assert.equal(index.has(key), true);
    }
    // Near misses: a key that is a prefix of a listed one, one a byte longer, one differing in its last character.
    for (const key of ['binlogs/insert_log/0/0/ü€😀', 'binlogs/insert_log/0/0/ü€😀/00', 'binlogs/insert_log/0/0/ü€😀/1', 'binlogs/insert_log/1/1/ü€/32']) {
      assert.equal(index.get(key), undefined, key);
      assert.equal(index.sizeOf(key), undefined, key);
    }
  });

  it('replaces a key set twice, forgets a removed one, and finds prefixes of present keys only', () => {
    const index = new ListingIndex();
    index.set('meta/full_meta.json', 10, 'a');
    index.set('meta/full_meta.json', 12, undefined, 'h');
    index.set('binlogs/x/1', 0);
    assert.deepEqual(index.get('meta/full_meta.json'), { size: 12, hash: 'h' });
    assert.equal(index.count, 2);
    assert.equal(index.hasPrefix('binlogs/'), true);
    assert.equal(index.hasPrefix('bundle/'), false);
    index.remove('binlogs/x/1');
    assert.equal(index.has('binlogs/x/1'), false);
    assert.equal(index.hasPrefix('binlogs/'), false);
    assert.equal(index.count, 1);
    index.set('binlogs/x/1', 5);
    assert.equal(index.sizeOf('binlogs/x/1'), 5);
    assert.equal(index.count, 2);
    // Any number is a size, NaN included (full_meta's "no size given").
    index.set('n', NaN);
    assert.ok(Number.isNaN(index.sizeOf('n')));
  });
});

describe('PackedStrings', () => {
  it('gives back every string across blocks, with strings longer than a block and empty ones', () => {
    const strings = new PackedStrings();
    const texts: string[] = [];
    for (let i = 0; i < 40_000; i++) texts.push(i % 997 === 0 ? 'é'.repeat(600_000 + i) : i % 13 === 0 ? '' : `binlogs/insert_log/${i}/ü€/${'x'.repeat(i % 300)}`);
    const at = texts.map((text) => {
      const start = strings.append(text);
      assert.equal(strings.lastLength, Buffer.byteLength(text));
      return start;
    });
    for (const [i, text] of texts.entries()) {
      const bytes = Buffer.from(text);
      assert.equal(strings.text(at[i] as number, bytes.length), text, `string ${i}`);
      assert.equal(strings.equals(at[i] as number, bytes, bytes.length), true);
    }
  });
});

describe('ListingIndex sized for an expected count', () => {
  it('answers the same when the count is exact, too low or far too high', () => {
    for (const expected of [0, 3000, 100, 1_000_000]) {
      const index = new ListingIndex(expected);
      for (let i = 0; i < 3000; i++) index.set(`k/${i}`, i, `f${i}`);
      assert.equal(index.count, 3000);
      for (let i = 0; i < 3000; i++) assert.deepEqual(index.get(`k/${i}`), { size: i, fingerprint: `f${i}` });
      assert.equal(index.has('k/3000'), false);
    }
  });
});
