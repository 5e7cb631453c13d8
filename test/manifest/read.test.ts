/**
 * The streamed manifest reader (src/manifest/read.ts): it accepts exactly what `decodeManifest`
 * accepts, hands out the same records in order, finds every damage `decodeManifest` finds (a
 * changed byte, truncation, a missing digest) only after reading to the end, reads manifests
 * whose fields come in another order (a second pass), and cuts values correctly wherever the
 * input is split (pieces of one byte).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLocalDriver } from '../../src/drivers/local/index.js';
import type { Driver } from '../../src/drivers/types.js';
import { getHasher } from '../../src/hash/xxh64.js';
import { StreamedObjectReader, type JsonStreamEvent } from '../../src/manifest/json-stream.js';
import {
  buildManifestBody, canonicalJson, decodeManifest, encodeManifest, ManifestError, type ManifestBody, type ManifestFile,
} from '../../src/manifest/manifest.js';
import { readManifestStreamed, streamManifestAt } from '../../src/manifest/read.js';

function record(i: number, chunks = 1): ManifestFile {
  const hex = (n: number) => `xxh64:${n.toString(16).padStart(16, '0')}`;
  return { path: `binlogs/insert_log/1/2/${i}/0/${1000 + i}`, size: i * 7, hash: hex(i), chunks: Array.from({ length: chunks }, (_, c) => hex(i * 31 + c)), destinationFingerprint: `${i}:${i * 3}` };
}

const odd: ManifestFile[] = [
  { path: 'meta/"quoted"\\ and \u00e9\u4e2d \ud83d\ude00 ]}{[.json', size: 0, hash: 'xxh64:0000000000000000', chunks: [] },
  { path: 'a/files":[]', size: 5, hash: 'xxh64:00000000000000ff', chunks: ['xxh64:00000000000000ff'] },
  { path: 'b/extra', size: 1, hash: 'xxh64:0000000000000001', chunks: ['xxh64:0000000000000001'], note: { nested: ['x', 1, null, true] } } as unknown as ManifestFile,
  { chunks: ['xxh64:0000000000000002'], size: 2, path: 'c/reordered', hash: 'xxh64:0000000000000002' } as ManifestFile,
];

let dir: string;
let driver: Driver;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'offsite-manifest-read-'));
  driver = await createLocalDriver('disk', { type: 'local', root: dir });
});
after(async () => {
  await driver.close();
  rmSync(dir, { recursive: true, force: true });
});

let serial = 0;
function put(bytes: Buffer | string): string {
  const key = `b${serial++}/.offsite/manifest.json`;
  mkdirSync(dirname(join(dir, key)), { recursive: true });
  writeFileSync(join(dir, key), bytes);
  return key;
}

/** Streams `key`, collecting the records handed out. */
async function stream(key: string): Promise<{ files: ManifestFile[]; result: Promise<unknown> }> {
  const files: ManifestFile[] = [];
  const result = streamManifestAt(driver, key, { onFile: (f, i) => { assert.equal(i, files.length); files.push(f); } });
  await result.catch(() => undefined);
  return { files, result };
}

function body(files: readonly ManifestFile[], extra: Partial<ManifestBody> = {}): ManifestBody {
  return { ...buildManifestBody({ kind: 'complete', backup: 'b1', source: 'local:/src "x"', chunkBytes: 8 << 20, files, createdAt: new Date(0), backupTime: '2024-01-01T00:00:00.000Z' }), ...extra };
}

describe('streamed manifest reading', () => {
  for (const [name, files] of [['no files', []], ['many files, several chunks', Array.from({ length: 3000 }, (_, i) => record(i, i % 4))], ['odd records', odd]] as const) {
    for (const pretty of [true, false]) {
      it(`reads what decodeManifest reads: ${name}${pretty ? '' : ', compact'}`, async () => {
        const { bytes, digest } = await encodeManifest(body(files), { pretty });
        const key = put(bytes);
        const decoded = await decodeManifest(bytes, 'test');
        const seen: ManifestFile[] = [];
        const summary = await streamManifestAt(driver, key, { onFile: (f) => { seen.push(f); } });
        assert.equal(summary?.digest, digest);
        assert.equal(summary?.fileCount, files.length);
        assert.equal((summary as Record<string, unknown> | undefined)?.['files'], undefined, 'the summary holds no file list');
        assert.deepEqual(seen, decoded.files);
        const whole = await readManifestStreamed(driver, key);
        assert.deepEqual(whole, decoded);
        assert.deepEqual(Object.keys(whole ?? {}), Object.keys(decoded), 'fields in the order offsite writes them');
      });
    }
  }

  it('a missing manifest is undefined, not an error', async () => {
    assert.equal(await streamManifestAt(driver, 'nothing/.offsite/manifest.json'), undefined);
    assert.equal(await readManifestStreamed(driver, 'nothing/.offsite/manifest.json'), undefined);
  });

  it('a changed byte is found at the end, after the records were handed out', async () => {
    const { bytes } = await encodeManifest(body([record(1), record(2), record(3)]));
    const changed = Buffer.from(bytes.toString().replace('"size": 14', '"size": 15'));
    const { files, result } = await stream(put(changed));
    assert.equal(files.length, 3, 'records are handed out as they come');
    await assert.rejects(result, (err: unknown) => err instanceof ManifestError && /digest mismatch/.test(err.message) && err.kind === 'integrity');
    await assert.rejects(decodeManifest(changed, 'test'), /digest mismatch/);
  });

  it('truncation, a missing digest, a duplicated field, another format and malformed entries are refused', async () => {
    const { bytes } = await encodeManifest(body([record(1), record(2)]));
    const text = bytes.toString();
    const parsed = JSON.parse(text) as Record<string, unknown>;
    const { digest: _digest, ...noDigest } = parsed;
    const cases: [string, string, RegExp][] = [
      ['truncated', text.slice(0, text.length - 10), /not valid JSON.*truncated/],
      ['trailing garbage', `${text}x`, /not valid JSON/],
      ['no digest', JSON.stringify(noDigest), /no digest field/],
      ['duplicate field', text.replace('"backup": "b1",', '"backup": "b1", "backup": "b2",'), /field "backup" twice/],
      ['another format', text.replace('"offsite-manifest"', '"something-else"'), /not an offsite manifest/],
      ['newer version', text.replace('"version": 1', '"version": 2'), /version 2 is not supported/],
      ['malformed entry', text.replace('"hash": "xxh64:0000000000000001"', '"hash": 12'), /entry .* is malformed/],
      ['not JSON at all', 'hello', /not valid JSON/],
      ['an array', '[]', /not valid JSON/],
    ];
    for (const [name, bad, pattern] of cases) {
      const { result } = await stream(put(bad));
      await assert.rejects(result, (err: unknown) => err instanceof ManifestError && pattern.test(err.message), name);
      await assert.rejects(decodeManifest(Buffer.from(bad), 'test'), ManifestError, `decodeManifest refuses it too: ${name}`);
    }
  });

  it('fields in another order (a field sorting before "files" after the list): read in a second pass', async () => {
    const files = [record(1), record(2, 3)];
    const b = body(files);
    const hasher = await getHasher();
    const digest = hasher.hash(Buffer.from(canonicalJson(b)));
    // files first, then everything else: fileCount, backup... come after the list.
    const { files: list, ...rest } = b;
    const reordered = JSON.stringify({ files: list, ...rest, digest });
    assert.ok(reordered.startsWith('{"files":'));
    const { files: seen, result } = await stream(put(reordered));
    const summary = await result as { digest: string; fileCount: number };
    assert.equal(summary.digest, digest);
    assert.equal(summary.fileCount, 2);
    assert.deepEqual(seen, files);
    // ...and a changed byte in such a manifest is still found.
    const { result: bad } = await stream(put(reordered.replace('"size":14', '"size":15')));
    await assert.rejects(bad, /digest mismatch/);
  });

  it('a file list that is not a list is refused after the digest check, as decodeManifest does', async () => {
    const b = { ...body([]), files: 'none' } as unknown as ManifestBody;
    const hasher = await getHasher();
    const text = JSON.stringify({ ...b, digest: hasher.hash(Buffer.from(canonicalJson(b))) });
    const { result } = await stream(put(text));
    await assert.rejects(result, /no file list/);
  });
});

describe('the JSON scanner', () => {
  /** Every event of `text` fed in pieces of `size` bytes. */
  function events(text: string, size: number): JsonStreamEvent[] {
    const reader = new StreamedObjectReader('files');
    const bytes = Buffer.from(text);
    const out: JsonStreamEvent[] = [];
    for (let at = 0; at < bytes.length; at += size) {
      reader.push(bytes.subarray(at, at + size));
      for (let e = reader.next(); e !== undefined; e = reader.next()) out.push(e);
    }
    reader.finish();
    return out;
  }

  it('gives the same events whatever the piece size (values split anywhere, multi-byte characters included)', () => {
    const text = ` { "a" : -1.5e3 , "s":"x\\"]}\\\\", "files" : [ {"p":"\u00e9\ud83d\ude00"} ,[1,[2]], "t", 7 , null,{} ] ,"z":[true,false] , "e":{} }  `;
    const whole = events(text, text.length * 4);
    assert.deepEqual(whole, [
      { type: 'member', key: 'a', value: -1500 },
      { type: 'member', key: 's', value: 'x"]}\\' },
      { type: 'array-start', key: 'files' },
      { type: 'element', value: { p: '\u00e9\ud83d\ude00' } },
      { type: 'element', value: [1, [2]] },
      { type: 'element', value: 't' },
      { type: 'element', value: 7 },
      { type: 'element', value: null },
      { type: 'element', value: {} },
      { type: 'member', key: 'z', value: [true, false] },
      { type: 'member', key: 'e', value: {} },
      { type: 'end' },
    ]);
    for (const size of [1, 2, 3, 5, 7]) assert.deepEqual(events(text, size), whole, `pieces of ${size}`);
    assert.deepEqual(events('{"files":[]}', 1), [{ type: 'array-start', key: 'files' }, { type: 'end' }]);
    assert.deepEqual(events('{}', 1), [{ type: 'end' }]);
    assert.deepEqual(events('{"files":3}', 1), [{ type: 'member', key: 'files', value: 3 }, { type: 'end' }]);
  });

  it('refuses bad structure', () => {
    for (const bad of ['{"a":1,}', '{"a" 1}', '{"files":[1,]}', '{"files":[1 2]}', '{"a":}', '{a:1}', '{"a":1}}', '{"a":[1}']) {
      assert.throws(() => events(bad, 1), Error, bad);
    }
  });
});
