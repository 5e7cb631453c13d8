/**
 * The fingerprint column of the compact record tables (src/core/fingerprint-column.ts): every
 * fingerprint comes back exactly as it was given, whether it is held as numbers (a canonical local
 * one) or as its string (any other), and slots grow and are replaced independently.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FingerprintColumn } from '../../src/core/fingerprint-column.js';
import { RecordStore } from '../../src/core/records.js';

const FINGERPRINTS: (string | undefined)[] = [
  'local:1126:1796477165896763824:3435193',
  'local:0:0:0',
  `local:${Number.MAX_SAFE_INTEGER}:18446744073709551615:${Number.MAX_SAFE_INTEGER}`,
  // Not canonical, beyond exact range, or another driver's: kept as strings.
  'local:01:2:3',
  'local:1:2:9007199254740993',
  'local:1:18446744073709551616:3',
  'local:1:2',
  'local:-1:2:3',
  'sftp:1126:1764931200',
  'etag:0123456789abcdef0123456789abcdef:1126',
  '',
  undefined,
];

describe('FingerprintColumn', () => {
  it('gives back every fingerprint exactly, across growth and replacement', () => {
    const column = new FingerprintColumn(2);
    const expected: (string | undefined)[] = [];
    for (let slot = 0; slot < 40; slot++) {
      if (slot >= 2) column.grow(slot + 1);
      const fingerprint = FINGERPRINTS[slot % FINGERPRINTS.length];
      column.set(slot, fingerprint);
      expected[slot] = fingerprint;
    }
    // Replace some: a local one by another kind and back.
    for (const slot of [0, 8, 11, 13]) {
      const fingerprint = FINGERPRINTS[(slot + 5) % FINGERPRINTS.length];
      column.set(slot, fingerprint);
      expected[slot] = fingerprint;
    }
    for (let slot = 0; slot < 40; slot++) assert.equal(column.get(slot), expected[slot], `slot ${slot}`);
  });

  it('keeps the records of a RecordStore equal field by field', () => {
    const paths = Array.from({ length: 3000 }, (_, i) => `f/${String(i).padStart(5, '0')}`);
    const store = new RecordStore(paths.slice(0, 2000)); // the rest through the map, and growth past the initial capacity
    const files = paths.map((path, i) => ({
      path, size: i, hash: `xxh64:${i.toString(16).padStart(16, '0')}`, chunks: [`xxh64:${i.toString(16).padStart(16, '0')}`],
      ...(FINGERPRINTS[i % FINGERPRINTS.length] !== undefined ? { sourceFingerprint: FINGERPRINTS[i % FINGERPRINTS.length] as string } : {}),
      ...(FINGERPRINTS[(i + 3) % FINGERPRINTS.length] !== undefined ? { destinationFingerprint: FINGERPRINTS[(i + 3) % FINGERPRINTS.length] as string } : {}),
    }));
    for (const file of files) store.set(file);
    for (const file of files) assert.deepEqual(store.get(file.path), file);
  });
});
