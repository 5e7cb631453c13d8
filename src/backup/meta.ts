/**
 * The shape of milvus-backup's `full_meta.json`, and where each binlog it lists lives inside the
 * backup.
 *
 * Input is the lossless parse of ./json.ts: every JSON integer is a decimal string. Fields that
 * Go's `encoding/json` leaves out when zero/empty (`omitempty` on the generated proto structs)
 * are treated as their zero value: a missing `fieldID` is field 0, a missing `group_id` means
 * "no group directory", a missing array is empty.
 *
 * Why paths are rebuilt from IDs: `log_path` is the key inside *Milvus's* bucket
 * (`files/insert_log/<coll>/<part>/<seg>/<field>/<log>`), not inside the backup, and restore
 * finds files by rebuilding the path from the IDs. So do we:
 *
 *     binlogs/insert_log/<coll>/<part>/[<group>/]<seg>/<fieldID>/<logID>
 *     binlogs/delta_log/<coll>/<part>/[<group>/]<seg>/<logID>
 *
 * - the group directory is there when `group_id` is set and non-zero: milvus-backup 0.4.4+
 *   writes `group_id == segment_id` (the segment ID appears twice); up to 0.4.3 it is absent,
 *   except in partitions over 2 GiB that were split into groups 1, 2, ...;
 * - L0 segments on partition `-1` (the `l0_segments` of a collection) never have one;
 * - the log ID is `log_id` when present and non-zero (0.5.4+), else the last segment of
 *   `log_path`;
 * - under storage v2 the `fieldID` slot holds the column-group ID, which changes nothing here.
 *
 * Every path segment must be a canonical decimal int64: this is checked, so that a hostile or
 * damaged meta file can never make us look at (or copy) a key outside the backup.
 */
import { BackupError } from '../errors.js';
import { flatString } from '../strings.js';
import { checkKey } from '../drivers/keys.js';
import { ListingIndex } from '../listing-index.js';
import { LazyArray } from './meta-scan.js';

export type BinlogKind = 'insert' | 'delta';

/** One object that `full_meta.json` promises, relative to `NAME/`. */
export interface ExpectedObject {
  /** Path relative to `NAME/`, e.g. `binlogs/insert_log/1/2/3/3/101/4`. */
  readonly rel: string;
  /** Exact size from `log_size`; `undefined` when the meta does not say (existence only). */
  readonly size: number | undefined;
  readonly kind: BinlogKind | 'snapshot-metadata';
}

/** Group-directory style seen in the segments, for the layout guess. */
export type GroupStyle = 'segment-id' | 'numbered' | 'none' | 'unknown';

/** What full_meta.json says, reduced to what inspection needs. */
export interface FullMetaSummary {
  readonly format: 'binlog' | 'snapshot';
  readonly collections: number;
  /** Segments including L0 segments. */
  readonly segments: number;
  /** Distinct binlogs (binlog format) or snapshot metadata files (snapshot format), in meta order. */
  readonly expected: ExpectedObject[];
  /** Distinct objects listed (`expected.length`, unless they went to `SummarizeOptions.onObject`). */
  readonly objectCount: number;
  readonly groupStyle: GroupStyle;
  /** Some binlog entry carries a non-zero `log_id` (milvus-backup 0.5.4+). */
  readonly hasLogId: boolean;
  /** Some segment says `storage_version` >= 2 (Milvus 2.6 Parquet column groups). */
  readonly storageV2: boolean;
}

type Json = Record<string, unknown>;

/** A canonical decimal int64 (no leading zeros, no `+`, no `-0`). */
const CANONICAL_INT = /^(?:0|-?[1-9]\d{0,18})$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function isInt64(text: string): boolean {
  if (!CANONICAL_INT.test(text)) return false;
  const value = BigInt(text);
  return value >= INT64_MIN && value <= INT64_MAX;
}

class Shape {
  constructor(readonly file: string) {}

  fail(path: string, problem: string): never {
    throw new BackupError('E_META_MALFORMED', `${this.file} is malformed: ${path} ${problem}`);
  }

  object(value: unknown, path: string): Json {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.fail(path, `should be an object, found ${describe(value)}`);
    }
    return value as Json;
  }

  /** An optional array (missing/null = empty, as Go omits empty slices); lazy as ./meta-scan.ts reads the big ones. */
  array(parent: Json, key: string, path: string): readonly unknown[] | LazyArray {
    const value = parent[key];
    if (value === undefined || value === null) return [];
    if (value instanceof LazyArray) return value;
    if (!Array.isArray(value)) this.fail(`${path}.${key}`, `should be an array, found ${describe(value)}`);
    return value;
  }

  /** An int64 field as its decimal text; `undefined` when omitted (Go omitempty = zero). */
  optionalId(parent: Json, key: string, path: string): string | undefined {
    const value = parent[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string' || !isInt64(value)) {
      this.fail(`${path}.${key}`, `should be an int64, found ${describe(value)}`);
    }
    return value;
  }

  /** A non-zero int64 ID that must be there. */
  requiredId(parent: Json, key: string, path: string, fallback?: string): string {
    const own = this.optionalId(parent, key, path);
    const value = own === undefined || own === '0' ? fallback : own;
    if (value === undefined || value === '0') this.fail(`${path}.${key}`, 'missing');
    return value;
  }

  /** A non-negative size that fits a JS number; `undefined` when omitted. */
  optionalSize(parent: Json, key: string, path: string): number | undefined {
    const text = this.optionalId(parent, key, path);
    if (text === undefined) return undefined;
    const value = Number(text);
    if (value < 0 || !Number.isSafeInteger(value)) this.fail(`${path}.${key}`, `is not a valid size: ${text}`);
    return value;
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  return typeof value;
}

/** Where one binlog lives inside the backup, relative to `NAME/`. */
export interface BinlogLocation {
  readonly kind: BinlogKind;
  readonly collectionId: string;
  readonly partitionId: string;
  /** `undefined`, `'0'` or partition `-1`: no group directory. */
  readonly groupId?: string | undefined;
  readonly segmentId: string;
  /** Insert logs only: the field (storage v1) or column-group (storage v2) ID; default 0. */
  readonly fieldId?: string | undefined;
  readonly logId: string;
}

/** The path of a binlog relative to `NAME/`, rebuilt from its IDs (see the module comment). */
export function binlogBackupPath(loc: BinlogLocation): string {
  const group = loc.groupId !== undefined && loc.groupId !== '0' && loc.partitionId !== '-1' ? `${loc.groupId}/` : '';
  const base = `${loc.collectionId}/${loc.partitionId}/${group}${loc.segmentId}`;
  // Flat (src/strings.ts): inspection keeps one per binlog, and a rope of IDs would keep the parsed meta's strings alive.
  return flatString(loc.kind === 'insert'
    ? `binlogs/insert_log/${base}/${loc.fieldId ?? '0'}/${loc.logId}`
    : `binlogs/delta_log/${base}/${loc.logId}`);
}

/** The format a parsed meta object declares (`"format":"snapshot"`), or `undefined`. */
export function declaredFormat(meta: unknown): 'snapshot' | 'binlog' | undefined {
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) return undefined;
  const format = (meta as Json)['format'];
  if (format === 'snapshot') return 'snapshot';
  if (typeof format === 'string' && format !== '') return 'binlog';
  return undefined;
}

export interface SummarizeOptions {
  /**
   * Drop each segment's binlog lists from `meta` once they are summarized, so that the parsed
   * tree is freed while the summary grows (the caller has no further use for it): at 100,000
   * binlogs, tree and summary together were the largest thing inspection held. @default false
   */
  readonly release?: boolean;
  /**
   * Hands each distinct object to this callback, in meta order, instead of keeping them in
   * `expected` (which is then empty; `objectCount` counts them): what is kept per object is then
   * its path and size in a compact index for the duplicate check (src/listing-index.ts), not
   * an object in an array (issue 13: 100,000 binlogs).
   */
  readonly onObject?: (object: ExpectedObject) => void;
  /** Objects full_meta likely lists (the backup's listed file count): the duplicate check's index is sized for them at once. */
  readonly expectedObjects?: number;
}

/**
 * Walks a parsed `full_meta.json` (`file` names it in errors) and lists every object it
 * promises. `formatHint` is the format from `backup_meta.json` when full_meta has none.
 * Throws `BackupError` `E_META_MALFORMED` naming the file and the JSON path of the first
 * structural problem (wrong type, missing ID, a log ID that is not a number...).
 */
export function summarizeFullMeta(meta: unknown, file: string, formatHint?: 'snapshot' | 'binlog', options: SummarizeOptions = {}): FullMetaSummary {
  const shape: Shape = new Shape(file);
  const root = shape.object(meta, '(top level)');
  const format = (declaredFormat(root) ?? formatHint) === 'snapshot' ? 'snapshot' : 'binlog';
  const expected: ExpectedObject[] = [];
  /** Path -> size (NaN: none given) of the objects seen so far, for the duplicate check. */
  const seen = new ListingIndex(options.expectedObjects);
  let segments = 0;
  let hasLogId = false;
  let storageV2 = false;
  const groupStyles = new Set<GroupStyle>();

  const add = (object: ExpectedObject, path: string): void => {
    const earlier = seen.sizeOf(object.rel);
    if (earlier === undefined) {
      seen.set(object.rel, object.size ?? NaN);
      if (options.onObject) options.onObject(object);
      else expected.push(object);
      return;
    }
    if (!Number.isNaN(earlier) && object.size !== undefined && earlier !== object.size) {
      shape.fail(path, `lists ${object.rel} again with log_size ${object.size} (earlier ${earlier})`);
    }
  };

  const collections = shape.array(root, 'collection_backups', '(top level)');
  collections.forEach((collValue, ci) => {
    const cpath = `collection_backups[${ci}]`;
    const coll = shape.object(collValue, cpath);
    const collectionId = shape.requiredId(coll, 'collection_id', cpath);

    if (format === 'snapshot') {
      const snap = shape.object(coll['snapshot_backup'], `${cpath}.snapshot_backup`);
      const metadataPath = snap['metadata_path'];
      if (typeof metadataPath !== 'string' || metadataPath === '') shape.fail(`${cpath}.snapshot_backup.metadata_path`, 'missing');
      try {
        checkKey(metadataPath);
      } catch {
        shape.fail(`${cpath}.snapshot_backup.metadata_path`, `is not a relative path inside the backup: ${JSON.stringify(metadataPath)}`);
      }
      add({ rel: metadataPath, size: undefined, kind: 'snapshot-metadata' }, `${cpath}.snapshot_backup`);
      return;
    }

    const segment = (segValue: unknown, spath: string, partitionFallback: string | undefined): void => {
      segments++;
      const seg = shape.object(segValue, spath);
      const segmentId = shape.requiredId(seg, 'segment_id', spath);
      const segCollectionId = shape.optionalId(seg, 'collection_id', spath);
      const cid = segCollectionId !== undefined && segCollectionId !== '0' ? segCollectionId : collectionId;
      const partitionId = shape.requiredId(seg, 'partition_id', spath, partitionFallback);
      const groupId = shape.optionalId(seg, 'group_id', spath);
      const storageVersion = shape.optionalId(seg, 'storage_version', spath);
      if (storageVersion !== undefined && BigInt(storageVersion) >= 2n) storageV2 = true;
      if (partitionId !== '-1') {
        groupStyles.add(groupId === undefined || groupId === '0' ? 'none' : groupId === segmentId ? 'segment-id' : 'numbered');
      }
      for (const kind of ['insert', 'delta'] as const) {
        const listKey = kind === 'insert' ? 'binlogs' : 'deltalogs';
        shape.array(seg, listKey, spath).forEach((fbValue, fi) => {
          const fpath = `${spath}.${listKey}[${fi}]`;
          const fieldBinlog = shape.object(fbValue, fpath);
          const fieldId = shape.optionalId(fieldBinlog, 'fieldID', fpath) ?? '0';
          shape.array(fieldBinlog, 'binlogs', fpath).forEach((blValue, bi) => {
            const bpath = `${fpath}.binlogs[${bi}]`;
            const binlog = shape.object(blValue, bpath);
            let logId = shape.optionalId(binlog, 'log_id', bpath);
            if (logId !== undefined && logId !== '0') {
              hasLogId = true;
            } else {
              const logPath = binlog['log_path'];
              if (typeof logPath !== 'string' || logPath === '') shape.fail(bpath, 'has neither log_id nor log_path');
              logId = logPath.slice(logPath.lastIndexOf('/') + 1);
              if (!isInt64(logId) || logId.startsWith('-')) {
                shape.fail(`${bpath}.log_path`, `does not end in a log ID: ${JSON.stringify(logPath)}`);
              }
            }
            const size = shape.optionalSize(binlog, 'log_size', bpath);
            const rel = binlogBackupPath({
              kind, collectionId: cid, partitionId, groupId, segmentId, logId,
              fieldId: kind === 'insert' ? fieldId : undefined,
            });
            add({ rel, size, kind }, bpath);
          });
        });
      }
      if (options.release) {
        seg['binlogs'] = null;
        seg['deltalogs'] = null;
      }
    };

    shape.array(coll, 'partition_backups', cpath).forEach((partValue, pi) => {
      const ppath = `${cpath}.partition_backups[${pi}]`;
      const part = shape.object(partValue, ppath);
      const partitionId = shape.requiredId(part, 'partition_id', ppath);
      shape.array(part, 'segment_backups', ppath).forEach((segValue, si) => {
        segment(segValue, `${ppath}.segment_backups[${si}]`, partitionId);
      });
    });
    shape.array(coll, 'l0_segments', cpath).forEach((segValue, si) => {
      segment(segValue, `${cpath}.l0_segments[${si}]`, undefined);
    });
  });

  let groupStyle: GroupStyle = 'unknown';
  if (groupStyles.has('segment-id')) groupStyle = 'segment-id';
  else if (groupStyles.has('numbered')) groupStyle = 'numbered';
  else if (groupStyles.has('none')) groupStyle = 'none';

  return {
    format, collections: collections.length, segments, expected, objectCount: seen.count,
    groupStyle, hasLogId, storageV2,
  };
}

/**
 * Checks the top-level shape of a meta file other than full_meta: an object, and for the level
 * files (`{"infos":[...]}`) an array of objects when `infos` is present.
 */
export function checkMetaShape(meta: unknown, file: string, level: boolean): void {
  const shape: Shape = new Shape(file);
  const root = shape.object(meta, '(top level)');
  if (level) shape.array(root, 'infos', '(top level)').forEach((info, i) => shape.object(info, `infos[${i}]`));
}
