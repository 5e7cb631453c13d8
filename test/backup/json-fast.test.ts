/**
 * The fast way to a lossless parse of meta JSON (src/backup/json.ts `quoteIntegers` + the native
 * JSON.parse) gives exactly what lossless-json gives, for every meta file of every generated
 * variant and for odd inputs; whatever it cannot decide exactly (duplicate keys, escaped keys,
 * leading zeros, malformed text) goes to lossless-json, so results and errors stay the same.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'lossless-json';
import { parseMetaText, quoteIntegers } from '../../src/backup/json.js';
import { VARIANTS } from '../../scripts/gen-backup.js';
import { gen, tempRoot } from './helpers.js';

/** lossless-json alone, as parseMetaText always did it. */
function reference(text: string): unknown {
  return parse(text, null, (n: string) => (/^-?\d+$/.test(n) ? n : Number(n)));
}

describe('quoteIntegers: the fast lossless parse', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('json-fast')));
  after(() => cleanup());

  it('gives what lossless-json gives for every meta file of every variant, by the fast way', async () => {
    for (const variant of VARIANTS) {
      const name = `b_${variant.replace(/[.-]/g, '_')}`;
      await gen(root, name, { variant, seed: 11 });
      for (const file of await readdir(join(root, name, 'meta'))) {
        const text = await readFile(join(root, name, 'meta', file), 'utf8');
        assert.notEqual(quoteIntegers(text), undefined, `${variant} ${file} takes the fast way`);
        assert.deepEqual(parseMetaText(text, file), reference(text), `${variant} ${file}`);
      }
    }
  });

  it('gives what lossless-json gives for odd but valid JSON', () => {
    const texts = [
      '{"a":458930418862440449,"b":-0,"c":0,"d":-12,"e":1.5,"f":1e3,"g":-2.5E-3,"h":[1,[2,{"i":3}]],"j":"4 5 \\" 6","k":true,"l":null,"m":false}',
      '[0, -1, 9223372036854775807, -9223372036854775808, 123456789012345678901234567890]',
      '  {"x" :  {"y":1} , "z" : [ ] , "w":{} }  ',
      '"just a string with 123 and \\\\"',
      '42',
      '{"a":{"b":1},"c":{"b":2}}',
      '{"e\\u0301":1,"e":2}', // an escaped key: the lossless parser decides
      '{"a":1,"a":1}', // a duplicate with the same value: accepted by both
      '{"__proto__":{"x":1}}',
    ];
    for (const text of texts) assert.deepEqual(parseMetaText(text, 't.json'), reference(text), text);
  });

  it('leaves to lossless-json what only it decides, so its errors stay', () => {
    for (const text of ['{"a":1,"a":2}', '{"a":01}', '{"a":-}', '{"a":1,}', '{"a":"\u0001"}', '[1 2]', '{"a":+1}', '{"a":1.}']) {
      assert.throws(() => parseMetaText(text, 'bad.json'), /bad\.json is malformed JSON/, text);
      assert.throws(() => reference(text), Error, `lossless-json refuses ${text} too`);
    }
    assert.equal(quoteIntegers('{"a":1,"a":2}'), undefined, 'a duplicate key goes to lossless-json');
    assert.equal(quoteIntegers('{"a":01}'), undefined, 'a leading zero goes to lossless-json');
    assert.equal(quoteIntegers('{"a\\"b":1}'), undefined, 'an escaped key goes to lossless-json');
  });
});
