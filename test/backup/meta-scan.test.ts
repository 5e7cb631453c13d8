/**
 * The lazy reading of big meta files (src/backup/meta-scan.ts) gives the same full_meta summary
 * and the same level-file verdicts as the whole parse, for every generated variant; inputs its
 * check refuses (malformed, duplicate keys, a byte order mark) are read by the whole parse, so
 * their values and errors are the same as ever.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseMetaText, type ReusableBuffer } from '../../src/backup/json.js';
import { checkMetaShape, summarizeFullMeta } from '../../src/backup/meta.js';
import { LazyArray, readMetaLazily, type LazySpec } from '../../src/backup/meta-scan.js';
import { VARIANTS } from '../../scripts/gen-backup.js';
import { createFsSource } from './fs-source.js';
import { gen, tempRoot } from './helpers.js';

const FULL: LazySpec = { collection_backups: { partition_backups: { segment_backups: 'parse' }, l0_segments: 'parse' } };
const LEVEL: LazySpec = { infos: 'opaque' };

describe('readMetaLazily', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('meta-scan')));
  after(() => cleanup());

  it('summarizes full_meta.json as the whole parse does, for every variant, reading segments lazily', async () => {
    const source = createFsSource(root);
    for (const variant of VARIANTS) {
      const name = `b_${variant.replace(/[.-]/g, '_')}`;
      await gen(root, name, { variant, seed: 5 });
      for (const file of await readdir(join(root, name, 'meta'))) {
        const text = await readFile(join(root, name, 'meta', file), 'utf8');
        const whole = parseMetaText(text, file);
        if (file === 'full_meta.json') {
          const lazy = await readMetaLazily(source, `${name}/meta/${file}`, FULL, { label: file }) as Record<string, unknown>;
          if (variant !== 'snapshot') assert.ok(lazy['collection_backups'] instanceof LazyArray, `${variant}: the collections are lazy`);
          assert.deepEqual(summarizeFullMeta(lazy, file), summarizeFullMeta(whole, file), variant);
        } else if (/^(collection|partition|segment)_meta\.json$/.test(file)) {
          const lazy = await readMetaLazily(source, `${name}/meta/${file}`, LEVEL, { label: file });
          assert.doesNotThrow(() => checkMetaShape(lazy, file, true), `${variant} ${file}`);
        }
      }
    }
  });

  it('names the same JSON path in a shape error as the whole parse', async () => {
    const source = createFsSource(root);
    const bad = '{"collection_backups":[{"collection_id":1,"partition_backups":[{"partition_id":2,"segment_backups":[{"segment_id":3,"partition_id":2,"binlogs":[{"fieldID":1,"binlogs":[{"log_size":5}]}]}]}]}]}';
    await writeFile(join(root, 'bad.json'), bad);
    const lazy = await readMetaLazily(source, 'bad.json', FULL, { label: 'f' });
    const expected = (() => { try { summarizeFullMeta(parseMetaText(bad, 'f'), 'f'); } catch (err) { return (err as Error).message; } return 'no error'; })();
    assert.throws(() => summarizeFullMeta(lazy, 'f'), (err: Error) => err.message === expected);
    assert.match(expected, /segment_backups\[0\]\.binlogs\[0\]\.binlogs\[0\] has neither log_id nor log_path/);
    await writeFile(join(root, 'level.json'), '{"infos":[{},5]}');
    assert.throws(() => checkMetaShape(parseMetaText('{"infos":[{},5]}', 'l'), 'l', true), /infos\[1\] should be an object/);
    const level = await readMetaLazily(source, 'level.json', LEVEL, { label: 'l' });
    assert.throws(() => checkMetaShape(level, 'l', true), /infos\[1\] should be an object/);
  });

  it('reads what its check refuses by the whole parse: same values, same errors', async () => {
    const source = createFsSource(root);
    const cases = [
      '{"a":1,"a":1}', // duplicate key (the lossless parser accepts equal values)
      '\ufeff{"infos":[]}', // byte order mark
      '{"infos":[{"x":"\\u00e9"}],"k\\u0041":2}', // escaped key
      '{"infos":[1,]}', // malformed
      '{"infos":[01]}', // leading zero
      '{"infos":[]} x', // trailing text
      '{"infos":[{"a":1,"a":2}]}', // duplicate key with another value: malformed
    ];
    for (const [i, text] of cases.entries()) {
      await writeFile(join(root, `odd-${i}.json`), text);
      let whole: unknown;
      try {
        whole = parseMetaText(text.replace(/^\ufeff/, ''), 'odd');
      } catch (err) {
        await assert.rejects(readMetaLazily(source, `odd-${i}.json`, LEVEL, { label: 'odd' }), { message: (err as Error).message }, text);
        continue;
      }
      assert.deepEqual(await readMetaLazily(source, `odd-${i}.json`, LEVEL, { label: 'odd' }), whole, text);
    }
  });
});

describe('readMetaLazily with the size a listing showed', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => { ({ root, cleanup } = await tempRoot('meta-expected')); });
  after(async () => { await cleanup(); });

  it('reads the same value when the file is that size, larger or smaller (it changed since the listing)', async () => {
    const source = createFsSource(root);
    const value = { a: Array.from({ length: 50_000 }, (_, i) => ({ name: `n${i}`, tag: 'é€' })) };
    const text = JSON.stringify(value);
    await writeFile(join(root, 'meta.json'), text);
    const size = Buffer.byteLength(text);
    for (const expectedBytes of [size, size - 1000, 10, size + 5000, undefined]) {
      const read = await readMetaLazily(source, 'meta.json', {}, { expectedBytes });
      assert.deepEqual(JSON.parse(JSON.stringify(read)), value, `expectedBytes ${expectedBytes}`);
    }
  });

  it('reads files one after another into one reused buffer when it is large enough, each to its own value', async () => {
    const source = createFsSource(root);
    const big = { a: Array.from({ length: 20_000 }, (_, i) => ({ name: `big${i}` })) };
    const small = { b: Array.from({ length: 5_000 }, (_, i) => ({ name: `small${i}` })) };
    await writeFile(join(root, 'big.json'), JSON.stringify(big));
    await writeFile(join(root, 'small.json'), JSON.stringify(small));
    const reuse: ReusableBuffer = {};
    assert.deepEqual(JSON.parse(JSON.stringify(await readMetaLazily(source, 'big.json', {}, { expectedBytes: Buffer.byteLength(JSON.stringify(big)), reuse }))), big);
    const first = reuse.buffer;
    assert.ok(first !== undefined, 'the buffer read into is kept for the next read');
    assert.deepEqual(JSON.parse(JSON.stringify(await readMetaLazily(source, 'small.json', {}, { expectedBytes: Buffer.byteLength(JSON.stringify(small)), reuse }))), small);
    assert.equal(reuse.buffer, first, 'a smaller file is read into the same buffer');
    assert.deepEqual(JSON.parse(JSON.stringify(await readMetaLazily(source, 'big.json', {}, { expectedBytes: Buffer.byteLength(JSON.stringify(big)) + 10, reuse }))), big);
    assert.notEqual(reuse.buffer, first, 'a larger one gets a buffer of its own, kept in turn');
    // Told the largest size first, the smaller file read first leaves room for the larger one.
    const bigBytes = Buffer.byteLength(JSON.stringify(big));
    const sized: ReusableBuffer = { largestBytes: bigBytes };
    assert.deepEqual(JSON.parse(JSON.stringify(await readMetaLazily(source, 'small.json', {}, { expectedBytes: Buffer.byteLength(JSON.stringify(small)), reuse: sized }))), small);
    const once = sized.buffer;
    assert.equal(once?.length, bigBytes);
    assert.deepEqual(JSON.parse(JSON.stringify(await readMetaLazily(source, 'big.json', {}, { expectedBytes: bigBytes, reuse: sized }))), big);
    assert.equal(sized.buffer, once, 'the larger file is read into the same buffer');
  });
});
