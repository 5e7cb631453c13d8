import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  binlogBackupPath, inspectBackup, isValidBackupName, parseMetaText, readMetaJson, summarizeFullMeta,
} from '../../src/backup/index.js';
import { BackupError } from '../../src/errors.js';
import { createFsSource } from './fs-source.js';
import { NOW, OLD, tempRoot } from './helpers.js';

function metaError(code: string, message: RegExp | string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof BackupError, String(err));
    assert.equal(err.code, code);
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  };
}

describe('isValidBackupName', () => {
  it('follows milvus-backup: letters, digits, _, not starting with a digit, <= 128', () => {
    for (const ok of ['a', '_', 'nightly_2025_06_01', 'backup_2024_01_15_02_00_00_123456789', 'A1', `a${'b'.repeat(127)}`]) {
      assert.equal(isValidBackupName(ok), true, ok);
    }
    for (const bad of ['', '1abc', 'a-b', 'a b', 'a/b', 'a.b', '..', 'é', `a${'b'.repeat(128)}`, 'milvus backup']) {
      assert.equal(isValidBackupName(bad), false, bad);
    }
  });
});

describe('parseMetaText / readMetaJson', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('meta')));
  after(() => cleanup());

  it('keeps int64 IDs above 2^53 exactly, as strings', () => {
    const text = '{"collection_id":458930418862440449,"neg":-1,"zero":0,"ratio":0.5,"s":"458930418862440449","big":9223372036854775807}';
    const value = parseMetaText(text, 'x.json') as Record<string, unknown>;
    assert.equal(value['collection_id'], '458930418862440449');
    assert.notEqual(String(JSON.parse(text).collection_id), '458930418862440449', 'JSON.parse would have lost it');
    assert.equal(value['neg'], '-1');
    assert.equal(value['zero'], '0');
    assert.equal(value['ratio'], 0.5);
    assert.equal(value['big'], '9223372036854775807');
  });

  it('names the file, line, column and position of malformed JSON', () => {
    assert.throws(() => parseMetaText('{\n  "a": 1,\n  "b": }', 'meta/full_meta.json'),
      metaError('E_META_MALFORMED', /^meta\/full_meta\.json is malformed JSON at line 3, column 8 \(position 19\): .+/));
    assert.throws(() => parseMetaText('', 'f.json'), metaError('E_META_MALFORMED', /^f\.json is malformed JSON at line 1, column 1 \(position 0\)/));
    assert.throws(() => parseMetaText('{"a":1,"a":2}', 'dup.json'), metaError('E_META_MALFORMED', /^dup\.json is malformed JSON .*Duplicate key/));
  });

  it('reads through the driver; missing, non-UTF-8 and malformed files are BackupErrors naming the key', async () => {
    await mkdir(join(root, 'b', 'meta'), { recursive: true });
    await writeFile(join(root, 'b', 'meta', 'ok.json'), '\ufeff{"id":458930418862440448}');
    await writeFile(join(root, 'b', 'meta', 'bad.json'), '{"id":458930418862440448');
    // Only the lossless parser reads this one (a key twice): the file is read again for it.
    await writeFile(join(root, 'b', 'meta', 'twice.json'), '{"id":458930418862440448,"id":458930418862440448,"s":"x"}');
    await writeFile(join(root, 'b', 'meta', 'latin1.json'), Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x3a, 0x31, 0x7d]));
    const source = createFsSource(root);
    assert.deepEqual(await readMetaJson(source, 'b/meta/ok.json'), { id: '458930418862440448' });
    assert.deepEqual(await readMetaJson(source, 'b/meta/twice.json'), { id: '458930418862440448', s: 'x' });
    await assert.rejects(readMetaJson(source, 'b/meta/bad.json'),
      metaError('E_META_MALFORMED', /^b\/meta\/bad\.json is malformed JSON at line 1, column 25 \(position 24\)/));
    await assert.rejects(readMetaJson(source, 'b/meta/latin1.json'), metaError('E_META_MALFORMED', 'b/meta/latin1.json is malformed: not valid UTF-8'));
    await assert.rejects(readMetaJson(source, 'b/meta/none.json'), (err: unknown) =>
      err instanceof BackupError && err.code === 'E_META_MISSING' && err.kind === 'not-found' && err.message === 'b/meta/none.json missing');
  });
});

describe('binlogBackupPath', () => {
  const c = '458930418862440448';
  const p = '458930418862440449';
  const s = '458930418862641001';
  const l = '458930418862641101';
  it('0.4.4+: the group directory is the segment ID', () => {
    assert.equal(binlogBackupPath({ kind: 'insert', collectionId: c, partitionId: p, groupId: s, segmentId: s, fieldId: '101', logId: l }),
      `binlogs/insert_log/${c}/${p}/${s}/${s}/101/${l}`);
    assert.equal(binlogBackupPath({ kind: 'delta', collectionId: c, partitionId: p, groupId: s, segmentId: s, logId: l }),
      `binlogs/delta_log/${c}/${p}/${s}/${s}/${l}`);
  });
  it('<=0.4.3: no group directory unless group_id is set and non-zero', () => {
    assert.equal(binlogBackupPath({ kind: 'insert', collectionId: c, partitionId: p, segmentId: s, fieldId: '0', logId: l }),
      `binlogs/insert_log/${c}/${p}/${s}/0/${l}`);
    assert.equal(binlogBackupPath({ kind: 'insert', collectionId: c, partitionId: p, groupId: '0', segmentId: s, logId: l }),
      `binlogs/insert_log/${c}/${p}/${s}/0/${l}`, 'fieldID defaults to 0');
    assert.equal(binlogBackupPath({ kind: 'delta', collectionId: c, partitionId: p, groupId: '2', segmentId: s, logId: l }),
      `binlogs/delta_log/${c}/${p}/2/${s}/${l}`);
  });
  it('L0 on partition -1 never has a group directory', () => {
    assert.equal(binlogBackupPath({ kind: 'delta', collectionId: c, partitionId: '-1', groupId: s, segmentId: s, logId: l }),
      `binlogs/delta_log/${c}/-1/${s}/${l}`);
  });
});

describe('summarizeFullMeta', () => {
  const file = 'meta/full_meta.json';
  const meta = (segment: string, extra = ''): unknown => parseMetaText(
    `{"state_code":1,"collection_backups":[{"collection_id":458930418862440448,"partition_backups":[{"partition_id":458930418862440449,"segment_backups":[${segment}]}]${extra}}]}`,
    file);

  it('takes log_id when present and non-zero, else the end of log_path; fieldID defaults to 0', () => {
    const summary = summarizeFullMeta(meta(`{"segment_id":458930418862641001,"group_id":458930418862641001,
      "binlogs":[{"binlogs":[{"log_path":"files/insert_log/458930418862440448/458930418862440449/458930418862641001/0/458930418862641101","log_size":10,"log_id":0}]},
                 {"fieldID":101,"binlogs":[{"log_path":"files/whatever/999","log_size":20,"log_id":458930418862641104}]}],
      "deltalogs":[{"binlogs":[{"log_path":"files/delta_log/458930418862440448/458930418862440449/458930418862641001/458930418862641120","log_size":30}]}]}`,
    `,"l0_segments":[{"segment_id":458930418862641050,"partition_id":-1,"is_l0":true,"deltalogs":[{"binlogs":[{"log_path":"x/458930418862641150","log_size":40}]}]}]`), file);
    const base = 'binlogs/insert_log/458930418862440448/458930418862440449/458930418862641001/458930418862641001';
    assert.deepEqual(summary.expected.map((e) => [e.rel, e.size]), [
      [`${base}/0/458930418862641101`, 10],
      [`${base}/101/458930418862641104`, 20],
      ['binlogs/delta_log/458930418862440448/458930418862440449/458930418862641001/458930418862641001/458930418862641120', 30],
      ['binlogs/delta_log/458930418862440448/-1/458930418862641050/458930418862641150', 40],
    ]);
    assert.equal(summary.segments, 2);
    assert.equal(summary.groupStyle, 'segment-id');
    assert.equal(summary.hasLogId, true);
    assert.equal(summary.format, 'binlog');
  });

  it('a missing log_size means existence only', () => {
    const summary = summarizeFullMeta(meta('{"segment_id":5,"binlogs":[{"binlogs":[{"log_path":"a/7"}]}]}'), file);
    assert.deepEqual(summary.expected, [{ rel: 'binlogs/insert_log/458930418862440448/458930418862440449/5/0/7', size: undefined, kind: 'insert' }]);
    assert.equal(summary.groupStyle, 'none');
  });

  it('refuses structure that could not be a backup, naming the JSON path', () => {
    const cases: Array<[string, RegExp]> = [
      ['{"binlogs":[]}', /segment_backups\[0\]\.segment_id missing$/],
      ['{"segment_id":5,"binlogs":[{"binlogs":[{"log_path":"files/insert_log/../../etc/passwd"}]}]}', /\.log_path does not end in a log ID: "files\/insert_log\/\.\.\/\.\.\/etc\/passwd"$/],
      ['{"segment_id":5,"binlogs":[{"binlogs":[{"log_size":3}]}]}', /binlogs\[0\]\.binlogs\[0\] has neither log_id nor log_path$/],
      ['{"segment_id":5,"binlogs":[{"fieldID":"x","binlogs":[]}]}', /binlogs\[0\]\.fieldID should be an int64, found "x"$/],
      ['{"segment_id":5,"binlogs":{}}', /segment_backups\[0\]\.binlogs should be an array, found object$/],
      ['{"segment_id":5,"binlogs":[{"binlogs":[{"log_id":7,"log_size":-4}]}]}', /log_size is not a valid size: -4$/],
      ['{"segment_id":5,"binlogs":[{"binlogs":[{"log_id":7,"log_size":3},{"log_id":7,"log_size":4}]}]}', /lists .*\/7 again with log_size 4 \(earlier 3\)$/],
      ['{"segment_id":99999999999999999999}', /segment_id should be an int64/],
    ];
    for (const [segment, message] of cases) {
      assert.throws(() => summarizeFullMeta(meta(segment), file), metaError('E_META_MALFORMED', message), segment);
    }
    assert.throws(() => summarizeFullMeta(parseMetaText('[]', file), file), metaError('E_META_MALFORMED', 'meta/full_meta.json is malformed: (top level) should be an object, found an array'));
    assert.throws(() => summarizeFullMeta(parseMetaText('{"collection_backups":[{}]}', file), file), metaError('E_META_MALFORMED', /collection_backups\[0\]\.collection_id missing$/));
  });

  it('snapshot format: metadata_path must stay inside the backup', () => {
    const snap = (path: string): unknown => parseMetaText(`{"format":"snapshot","collection_backups":[{"collection_id":1,"snapshot_backup":{"metadata_path":${JSON.stringify(path)}}}]}`, file);
    assert.deepEqual(summarizeFullMeta(snap('bundle/snapshots/1/metadata/2.json'), file).expected,
      [{ rel: 'bundle/snapshots/1/metadata/2.json', size: undefined, kind: 'snapshot-metadata' }]);
    assert.throws(() => summarizeFullMeta(snap('../other/x.json'), file), metaError('E_META_MALFORMED', /metadata_path is not a relative path inside the backup/));
    assert.throws(() => summarizeFullMeta(snap('/etc/passwd'), file), metaError('E_META_MALFORMED', /metadata_path is not a relative path inside the backup/));
  });
});

describe('inspectBackup on hand-made meta', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  before(async () => ({ root, cleanup } = await tempRoot('handmade')));
  after(() => cleanup());

  async function put(rel: string, content: string | Buffer): Promise<void> {
    const path = join(root, ...rel.split('/'));
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, content);
    await utimes(path, new Date(OLD), new Date(OLD));
  }

  it('malformed JSON in another meta file fails the backup, naming that file', async () => {
    const full = '{"collection_backups":[]}';
    await put('hm/meta/backup_meta.json', '{"state_code":0}');
    await put('hm/meta/collection_meta.json', '{"infos":[]}');
    await put('hm/meta/partition_meta.json', '{"infos":[}');
    await put('hm/meta/segment_meta.json', '{"infos":"nope"}');
    await put('hm/meta/full_meta.json', full);
    const inspection = await inspectBackup(createFsSource(root), 'hm', { nowMs: NOW });
    assert.equal(inspection.state, 'failed');
    assert.equal(inspection.reason,
      'meta/partition_meta.json is malformed JSON at line 1, column 11 (position 10): Array item expected but got \'}\' (and 1 more problem)');
  });

  it('an empty backup with all meta is complete with zero binlogs; state_code is ignored', async () => {
    await put('empty/meta/backup_meta.json', '{"state_code":3}');
    await put('empty/meta/collection_meta.json', '{}');
    await put('empty/meta/partition_meta.json', '{}');
    await put('empty/meta/segment_meta.json', '{}');
    await put('empty/meta/full_meta.json', '{"state_code":3}');
    const inspection = await inspectBackup(createFsSource(root), 'empty', { nowMs: NOW });
    assert.equal(inspection.state, 'complete', inspection.reason);
    assert.equal(inspection.binlogCount, 0);
  });
});
