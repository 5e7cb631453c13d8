/**
 * The next night of a chain of nightly milvus-backup backups of the same collections (issue 12):
 * milvus-backup only makes full backups, but two consecutive ones share most of their binlogs
 * byte for byte, at the same paths, because sealed segments never change and backup paths are
 * built from IDs. From the previous night's folder this writes the next one, where
 *
 * - most sealed segments are kept: their files are copied byte for byte to the same paths;
 * - some segments were compacted: they are gone, and one new segment per partition (new ID,
 *   new log IDs, about 97% of their bytes: deleted rows dropped) holds their rows; their delta
 *   logs are gone with them (applied);
 * - new segments were flushed (new IDs above every ID of the previous night);
 * - deletes since: a new delta log on some kept segments (new file, the segment's other files
 *   kept), and the previous night's L0 segments are gone (L0 compaction applied them) while new
 *   L0 segments hold the recent deletes;
 * - the meta files are all new (new backup ID, timestamps a day later, every `log_size` true).
 *
 * `changed` sets the share of the new backup's bytes (meta included) that are not in the
 * previous night byte for byte at the same path; the sizes of the new files are chosen so that
 * the share comes out as asked (to a few per mille; within a file's size for tiny backups). The
 * result says exactly what was kept, added and removed. Everything follows from the previous
 * night and the seed (same inputs, same bytes); the new files' contents use a keystream of
 * their own, so no new file repeats an old one.
 *
 * CLI: `node dist/scripts/gen-backup.js --root DIR --name NIGHT2 --from DIR/NIGHT1 --changed 10%`.
 * The previous night's shape (variant, collections, partitions) is read from its
 * `meta/full_meta.json`; the snapshot format (an opaque bundle, not segments) is not supported.
 */
import { constants, realpathSync } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rm, stat, utimes } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { parseMetaText } from '../src/backup/json.js';
import {
  ContentSource, FIELD_SHARE, GROUP_SHARE, IdAllocator, MAGIC_PARQUET, MAGIC_V1, MIN_FILE_BYTES, Rand, VARIANTS,
  allSegments, binlogRel, generateBackup, metaTexts, pool, segmentLogs, traitsOf, writeFilePlan,
  type BinlogPlan, type CollectionPlan, type FilePlan, type GenerateOptions, type GenerateResult, type MetaContext,
  type PartitionPlan, type SegmentPlan, type Traits, type Variant,
} from './gen-backup.js';

export interface NextNightOptions {
  /** The previous night's backup folder (`ROOT/NAME`), as generateBackup or generateNextNight made it. */
  from: string;
  /** Backup root of the new night (created when missing); it goes to `root/name/`. */
  root: string;
  name: string;
  /** Share of the new backup's bytes that are new (not in `from` at the same path), 0 to 0.9. @default 0.1 */
  changed?: number;
  /** @default 1 */
  seed?: number;
  /** No new data file is larger than this (pass the previous night's cap, if it had one). */
  largestFileBytes?: number;
  /** mtime of every file written, kept ones included (milvus-backup writes every file anew). @default now - 1 hour */
  mtimeMs?: number;
  /** Remove an existing `root/name/` first instead of refusing. @default false */
  overwrite?: boolean;
  /** Files written concurrently. @default 16 */
  concurrency?: number;
}

/** What changed from the previous night. Bytes and files count everything under `NAME/`. */
export interface ChainStats {
  /** The previous night's folder, absolute. */
  readonly from: string;
  /** Files copied byte for byte from the previous night, at the same paths. */
  readonly keptFiles: number;
  readonly keptBytes: number;
  /** Files that are new (data and meta): what a destination holding the previous night lacks. */
  readonly changedFiles: number;
  readonly changedBytes: number;
  /** `changedBytes / (keptBytes + changedBytes)`. */
  readonly changedShare: number;
  /** Data files of the previous night that are gone (compacted segments, applied L0 segments). */
  readonly removedFiles: number;
  readonly removedBytes: number;
  readonly newSegments: string[];
  /** Segments of the previous night replaced by compaction... */
  readonly compactedSegments: string[];
  /** ...and the segments that replaced them. */
  readonly compactedInto: string[];
  readonly newL0Segments: string[];
  readonly removedL0Segments: string[];
  /** New delta logs on kept segments. */
  readonly deltaLogsAdded: number;
}

export interface NextNightResult extends GenerateResult {
  readonly chain: ChainStats;
}

type Json = Record<string, unknown>;

const DAY_MS = 86_400_000;
/**
 * Share of the added bytes that goes to compaction output (aimed at, and at most), delta logs on
 * kept segments, and L0 segments; new segments take the rest.
 */
const COMPACTION_SHARE = 0.35;
const MAX_COMPACTION_SHARE = 0.6;
const DELTA_SHARE = 0.08;
const L0_SHARE = 0.04;
/** A compacted segment keeps this much of its insert bytes (deleted rows dropped). */
const COMPACTION_KEEPS = 0.97;

function obj(value: unknown, what: string): Json {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`previous night's full_meta.json: ${what} is not an object`);
  return value as Json;
}

function arr(value: unknown): Json[] {
  return Array.isArray(value) ? value.map((v, i) => obj(v, `entry ${i}`)) : [];
}

function text(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new Error(`previous night's full_meta.json: ${what} is missing`);
  return value;
}

function binlogFrom(entry: Json, kind: BinlogPlan['kind'], fieldId: string): BinlogPlan {
  const logPath = typeof entry['log_path'] === 'string' ? entry['log_path'] : '';
  const logId = typeof entry['log_id'] === 'string' && entry['log_id'] !== '0' ? entry['log_id'] : logPath.slice(logPath.lastIndexOf('/') + 1);
  if (!/^\d+$/.test(logId)) throw new Error(`previous night's full_meta.json: a binlog has neither log_id nor a log_path ending in one (${logPath})`);
  return { kind, fieldId, logId, size: Number(text(entry['log_size'], `log_size of ${logId}`)), rows: Number(entry['entries_num'] ?? 1) };
}

function segmentFrom(entry: Json, vchannel: string): SegmentPlan {
  const id = text(entry['segment_id'], 'a segment_id');
  const group = entry['group_id'];
  const insert = new Map<string, BinlogPlan[]>();
  for (const field of arr(entry['binlogs'])) {
    const fieldId = typeof field['fieldID'] === 'string' ? field['fieldID'] : '0';
    insert.set(fieldId, arr(field['binlogs']).map((b) => binlogFrom(b, 'insert', fieldId)));
  }
  return {
    id, collectionId: text(entry['collection_id'], `collection_id of segment ${id}`), partitionId: text(entry['partition_id'], `partition_id of segment ${id}`),
    ...(typeof group === 'string' && group !== '0' ? { groupId: group } : {}),
    isL0: entry['is_l0'] === true, rows: Number(entry['num_of_rows'] ?? 0), insert,
    delta: arr(entry['deltalogs']).flatMap((field) => arr(field['binlogs']).map((b) => binlogFrom(b, 'delta', '0'))),
    vchannel: typeof entry['v_channel'] === 'string' ? entry['v_channel'] : vchannel,
  };
}

interface Previous {
  dir: string;
  variant: Variant;
  traits: Traits;
  collections: CollectionPlan[];
  backupId: string;
  startMs: number;
  metaBytes: number;
}

/** The previous night's shape, from its meta/full_meta.json (read losslessly: IDs stay exact). */
async function readPrevious(from: string): Promise<Previous> {
  const dir = resolve(from);
  const file = join(dir, 'meta', 'full_meta.json');
  const full = obj(parseMetaText(await readFile(file, 'utf8').catch((err: unknown) => {
    throw new Error(`${file}: cannot read the previous night's meta (${(err as Error).message}); --from must name a generated backup folder (ROOT/NAME)`);
  }), file), 'the top level');
  if (full['format'] === 'snapshot') throw new Error(`${dir} is a snapshot-format backup (an opaque bundle, no segments): nightly chains need a binlog-format backup`);
  const milvusVersion = full['milvus_version'];
  const variant = VARIANTS.find((v) => v !== 'snapshot' && traitsOf(v).milvusVersion === milvusVersion);
  if (variant === undefined) throw new Error(`${file}: milvus_version ${JSON.stringify(milvusVersion)} is none that gen-backup writes; cannot tell its variant`);
  const collections: CollectionPlan[] = arr(full['collection_backups']).map((c) => {
    const id = text(c['collection_id'], 'a collection_id');
    const vchannel = (Array.isArray(c['virtual_channel_names']) ? c['virtual_channel_names'][0] : undefined) as string | undefined ?? `by-dev-rootcoord-dml_0_${id}v0`;
    const coll: CollectionPlan = {
      id, uuid: text(c['id'], `id of collection ${id}`), name: text(c['collection_name'], `collection_name of ${id}`), partitions: [], l0: [],
      vchannel, pchannel: (Array.isArray(c['physical_channel_names']) ? c['physical_channel_names'][0] : undefined) as string | undefined ?? 'by-dev-rootcoord-dml_0',
      checkpoint: '',
    };
    coll.partitions = arr(c['partition_backups']).map((p): PartitionPlan => ({
      id: text(p['partition_id'], 'a partition_id'), name: text(p['partition_name'], 'a partition_name'), collectionId: id,
      segments: arr(p['segment_backups']).map((s) => segmentFrom(s, vchannel)),
    }));
    coll.l0 = arr(c['l0_segments']).map((s) => segmentFrom(s, vchannel));
    return coll;
  });
  const first = arr(full['collection_backups'])[0];
  if (first === undefined) throw new Error(`${file}: no collection_backups`);
  const tso = BigInt(text(first['backup_timestamp'], 'backup_timestamp'));
  let metaBytes = 0;
  for (const name of await readdir(join(dir, 'meta'))) metaBytes += (await stat(join(dir, 'meta', name))).size;
  return { dir, variant, traits: traitsOf(variant), collections, backupId: text(full['id'], 'the backup id'), startMs: Number(tso >> 18n), metaBytes };
}

function insertBytes(seg: SegmentPlan): number {
  return [...seg.insert.values()].flat().reduce((a, b) => a + b.size, 0);
}

function logBytes(seg: SegmentPlan): number {
  return segmentLogs(seg).reduce((a, b) => a + b.size, 0);
}

/** Deterministic shuffle. */
function shuffled<T>(items: readonly T[], rand: Rand): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rand.int(0, i);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** Bytes to add so that (added + meta) / (kept + added + meta) = share. */
function addedFor(share: number, keptBytes: number, metaBytes: number): number {
  return Math.max(0, share * keptBytes / (1 - share) - metaBytes);
}

/**
 * Writes the next night of `options.from` under `root/name/` (see the module comment). Refuses an
 * existing non-empty `root/name/` unless `overwrite`, and `from` itself.
 */
export async function generateNextNight(options: NextNightOptions): Promise<NextNightResult> {
  const share = options.changed ?? 0.1;
  const seed = options.seed ?? 1;
  if (!(share >= 0 && share <= 0.9)) throw new Error(`changed must be a share from 0 to 0.9 (90%), got ${share}`);
  if (!Number.isSafeInteger(seed)) throw new Error(`seed must be an integer, got ${seed}`);
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(options.name)) throw new Error(`invalid backup name ${JSON.stringify(options.name)}: letters, digits and _, not starting with a digit`);
  const prev = await readPrevious(options.from);
  const { traits } = prev;
  const root = resolve(options.root);
  const dir = join(root, options.name);
  await mkdir(root, { recursive: true });
  if (join(realpathSync(root), options.name) === realpathSync(prev.dir)) {
    throw new Error(`${dir} is the previous night itself: give the new night another name or root`);
  }
  const existing = await readdir(dir).catch(() => [] as string[]);
  if (existing.length > 0) {
    if (!options.overwrite) throw new Error(`${dir} already exists and is not empty (pass overwrite to replace it)`);
    await rm(dir, { recursive: true, force: true });
  }

  const mixed = createHash('sha256').update(`offsite-gen-nightly:${seed}:${prev.backupId}`).digest().readUInt32BE(0);
  const rand = new Rand(mixed);
  const cap = options.largestFileBytes ?? Number.POSITIVE_INFINITY;
  if (!(cap >= MIN_FILE_BYTES)) throw new Error(`largestFileBytes must be at least ${MIN_FILE_BYTES}`);
  const clampSize = (n: number): number => Math.max(MIN_FILE_BYTES, Math.min(cap, Math.round(n)));
  const fieldShare = traits.parquet ? GROUP_SHARE : FIELD_SHARE;
  const collections = prev.collections;
  const prevLogs = new Set(collections.flatMap((c) => allSegments(c).flatMap(segmentLogs)));
  const prevBytes = [...prevLogs].reduce((a, b) => a + b.size, 0);
  let maxId = 0n;
  for (const coll of collections) {
    for (const id of [coll.id, ...coll.partitions.map((p) => p.id)]) if (BigInt(id) > maxId) maxId = BigInt(id);
    for (const seg of allSegments(coll)) {
      for (const id of [seg.id, ...segmentLogs(seg).map((l) => l.logId)]) if (BigInt(id) > maxId) maxId = BigInt(id);
    }
  }
  const ids = new IdAllocator(maxId + BigInt(rand.int(1000, 100_000)));

  // What goes: the L0 segments (applied by L0 compaction), then compaction victims.
  const oldL0 = share > 0 ? collections.flatMap((c) => allSegments(c).filter((s) => s.isL0)) : [];
  const ordinary = collections.flatMap((c) => c.partitions.flatMap((p) => p.segments)).filter((s) => !s.isL0);
  let removed = oldL0.reduce((a, s) => a + logBytes(s), 0);
  const addedBefore = addedFor(share, prevBytes - removed, prev.metaBytes);
  const victims: SegmentPlan[] = [];
  let compactionBytes = 0;
  for (const seg of shuffled(ordinary, rand)) {
    if (compactionBytes >= COMPACTION_SHARE * addedBefore || victims.length >= ordinary.length - 1) break;
    const output = insertBytes(seg) * COMPACTION_KEEPS;
    if (compactionBytes + output > MAX_COMPACTION_SHARE * addedBefore) continue;
    victims.push(seg);
    compactionBytes += output;
  }
  // More removed means less to add: drop victims while their output would crowd out the rest.
  for (;;) {
    const added = addedFor(share, prevBytes - removed - victims.reduce((a, s) => a + logBytes(s), 0), prev.metaBytes);
    if (victims.length === 0 || compactionBytes <= MAX_COMPACTION_SHARE * added) break;
    compactionBytes -= insertBytes(victims.pop() as SegmentPlan) * COMPACTION_KEEPS;
  }
  removed += victims.reduce((a, s) => a + logBytes(s), 0);
  const added = addedFor(share, prevBytes - removed, prev.metaBytes);
  const gone = new Set<SegmentPlan>([...oldL0, ...victims]);

  const newLogs: BinlogPlan[] = [];
  const newLog = (kind: BinlogPlan['kind'], fieldId: string, size: number, rows: number, gap = 1): BinlogPlan => {
    const log: BinlogPlan = { kind, fieldId, logId: ids.next(gap), size: clampSize(size), rows };
    newLogs.push(log);
    return log;
  };
  const groupFor = (part: PartitionPlan, segId: string): string | undefined => {
    if (traits.groupPerSegment) return segId;
    const groups = part.segments.flatMap((s) => (s.groupId !== undefined ? [Number(s.groupId)] : []));
    return groups.length > 0 ? String(Math.max(...groups)) : undefined;
  };
  const newSegment = (coll: CollectionPlan, part: PartitionPlan): SegmentPlan => {
    const id = ids.next(rand.int(1, 40));
    const group = groupFor(part, id);
    return {
      id, collectionId: coll.id, partitionId: part.id, ...(group !== undefined ? { groupId: group } : {}), isL0: false, rows: 0,
      insert: new Map(traits.fields.map((f) => [f, []])), delta: [], vchannel: coll.vchannel,
    };
  };
  const partitionOf = new Map<SegmentPlan, [CollectionPlan, PartitionPlan]>();
  for (const coll of collections) for (const part of coll.partitions) for (const seg of part.segments) partitionOf.set(seg, [coll, part]);
  const appended = new Map<PartitionPlan, SegmentPlan[]>();
  const append = (part: PartitionPlan, seg: SegmentPlan): void => { appended.set(part, [...(appended.get(part) ?? []), seg]); };

  // Compaction: one new segment per partition holds its victims' chunks, a little smaller.
  const compactedInto: string[] = [];
  const byPartition = new Map<PartitionPlan, SegmentPlan[]>();
  for (const seg of victims) {
    const [, part] = partitionOf.get(seg) as [CollectionPlan, PartitionPlan];
    byPartition.set(part, [...(byPartition.get(part) ?? []), seg]);
  }
  for (const [part, segs] of byPartition) {
    const coll = collections.find((c) => c.id === part.collectionId) as CollectionPlan;
    const out = newSegment(coll, part);
    for (const victim of segs) {
      const chunks = Math.max(0, ...[...victim.insert.values()].map((logs) => logs.length));
      for (let chunk = 0; chunk < chunks; chunk++) {
        for (const field of traits.fields) {
          const old = victim.insert.get(field)?.[chunk];
          if (old === undefined) continue;
          (out.insert.get(field) as BinlogPlan[]).push(newLog('insert', field, old.size * COMPACTION_KEEPS, Math.max(1, Math.floor(old.rows * COMPACTION_KEEPS))));
        }
      }
      out.rows += Math.floor(victim.rows * COMPACTION_KEEPS);
    }
    append(part, out);
    compactedInto.push(out.id);
  }

  // Deletes since: delta logs on some kept segments, and new L0 segments.
  const keptOrdinary = ordinary.filter((s) => !gone.has(s));
  const remaining = Math.max(0, added - newLogs.reduce((a, b) => a + b.size, 0));
  const l0Budget = traits.l0 ? Math.min(remaining, L0_SHARE * added) : 0;
  const deltaBudget = Math.min(remaining - l0Budget, DELTA_SHARE * added);
  let deltaLogsAdded = 0;
  if (deltaBudget >= MIN_FILE_BYTES && keptOrdinary.length > 0) {
    const owners = shuffled(keptOrdinary, rand).slice(0, Math.max(1, Math.round(keptOrdinary.length / 4)));
    const each = deltaBudget / owners.length;
    for (const seg of owners) {
      seg.delta.push(newLog('delta', '0', each * (0.5 + rand.float()), rand.int(1, 500), rand.int(1, 5)));
      deltaLogsAdded++;
    }
  }
  const newL0: SegmentPlan[] = [];
  const l0Parts: Array<[CollectionPlan, PartitionPlan | undefined]> = collections.map((c) => [c, undefined]);
  const partitioned = collections[0]?.partitions[1];
  if (traits.l0OnPartition && partitioned !== undefined) l0Parts.push([collections[0] as CollectionPlan, partitioned]);
  if (l0Budget >= MIN_FILE_BYTES * l0Parts.length) {
    for (const [coll, part] of l0Parts) {
      const id = ids.next(rand.int(1, 40));
      const group = part !== undefined ? groupFor(part, id) : undefined;
      const seg: SegmentPlan = {
        id, collectionId: coll.id, partitionId: part?.id ?? '-1', ...(group !== undefined ? { groupId: group } : {}), isL0: true, rows: 0,
        insert: new Map(), delta: [], vchannel: coll.vchannel,
      };
      const logs = rand.float() < 0.5 ? 2 : 1;
      for (let i = 0; i < logs; i++) seg.delta.push(newLog('delta', '0', l0Budget / l0Parts.length / logs * (0.5 + rand.float()), rand.int(1, 500), rand.int(1, 5)));
      if (part !== undefined) append(part, seg); else coll.l0.push(seg);
      newL0.push(seg);
    }
  }

  // New segments: flush chunks about as big as the previous night's, in segments of 1..3 chunks.
  const prevChunks = ordinary.reduce((a, s) => a + Math.max(0, ...[...s.insert.values()].map((l) => l.length)), 0);
  const chunkBytes = Math.min(cap / (fieldShare['101'] as number),
    Math.max(traits.fields.length * MIN_FILE_BYTES, ordinary.reduce((a, s) => a + insertBytes(s), 0) / Math.max(1, prevChunks)));
  const newBytes = Math.max(0, added - newLogs.reduce((a, b) => a + b.size, 0));
  const newSegments: string[] = [];
  const slots = collections.flatMap((c) => c.partitions.map((p): [CollectionPlan, PartitionPlan] => [c, p]));
  const chunkCount = newBytes >= traits.fields.length * MIN_FILE_BYTES ? Math.max(1, Math.round(newBytes / chunkBytes)) : 0;
  const weights = Array.from({ length: chunkCount }, () => 0.8 + 0.4 * rand.float());
  const weightSum = weights.reduce((a, b) => a + b, 0);
  for (let chunk = 0; chunk < chunkCount;) {
    const slot = rand.float() < 0.5 || slots.length === 1 ? slots[0] : slots[rand.int(1, slots.length - 1)];
    const [coll, part] = slot as [CollectionPlan, PartitionPlan];
    const seg = newSegment(coll, part);
    for (let k = Math.min(chunkCount - chunk, rand.int(1, 3)); k > 0; k--, chunk++) {
      const bytes = newBytes * (weights[chunk] as number) / weightSum;
      const vectorBytes = clampSize(bytes * (fieldShare['101'] as number));
      const rows = Math.max(1, Math.floor(vectorBytes / 3072));
      for (const field of traits.fields) {
        const size = field === '101' ? vectorBytes : bytes * (fieldShare[field] as number) * (0.85 + 0.3 * rand.float());
        (seg.insert.get(field) as BinlogPlan[]).push(newLog('insert', field, size, rows));
      }
      seg.rows += rows;
    }
    append(part, seg);
    newSegments.push(seg.id);
  }

  // The new night's plan: kept segments in their order, then the new ones.
  for (const coll of collections) {
    coll.l0 = coll.l0.filter((s) => !gone.has(s));
    coll.checkpoint = rand.bytes(24).toString('base64');
    for (const part of coll.partitions) part.segments = part.segments.filter((s) => !gone.has(s)).concat(appended.get(part) ?? []);
  }
  const startMs = prev.startMs + DAY_MS + rand.int(0, 600_000);
  const ctx: MetaContext = {
    name: options.name, traits, backupId: rand.uuid(), tso: BigInt(startMs) << 18n, startMs, endMs: startMs + rand.int(5_000, 900_000), rand,
  };
  // Hit the share exactly: the largest new files take the difference left by rounding and jitter.
  const metaBytesOf = (): number => [...metaTexts({ ...ctx, rand: new Rand(mixed ^ 0x2545f491) }, collections).values()].reduce((a, t) => a + Buffer.byteLength(t), 0);
  const keptBytes = prevBytes - removed;
  let difference = addedFor(share, keptBytes, metaBytesOf()) - newLogs.reduce((a, b) => a + b.size, 0);
  for (const log of [...newLogs].sort((x, y) => y.size - x.size)) {
    if (Math.abs(difference) < 1) break;
    const size = clampSize(log.size + difference);
    difference -= size - log.size;
    log.size = size;
  }

  const magic = traits.parquet ? MAGIC_PARQUET : MAGIC_V1;
  const trailer = traits.parquet ? MAGIC_PARQUET : undefined;
  const files: Array<FilePlan & { copyFrom?: string }> = [];
  let stream = 0;
  for (const coll of collections) {
    for (const seg of allSegments(coll)) {
      for (const log of segmentLogs(seg)) {
        const rel = binlogRel(seg, log);
        files.push(prevLogs.has(log)
          ? { rel, size: log.size, copyFrom: join(prev.dir, ...rel.split('/')) }
          : { rel, size: log.size, magic, stream: stream++, ...(trailer ? { trailer } : {}) });
      }
    }
  }

  const mtime = new Date(options.mtimeMs ?? Date.now() - 3_600_000);
  const source = new ContentSource(seed, `night:${prev.backupId}:${options.name}`);
  const dirs = new Set<string>();
  await pool(files, options.concurrency ?? 16, async (file) => {
    if (file.copyFrom === undefined) {
      await writeFilePlan(dir, file, source, mtime, dirs);
      return;
    }
    const path = join(dir, ...file.rel.split('/'));
    if (!dirs.has(dirname(path))) { await mkdir(dirname(path), { recursive: true }); dirs.add(dirname(path)); }
    await copyFile(file.copyFrom, path, constants.COPYFILE_FICLONE);
    if ((await stat(path)).size !== file.size) throw new Error(`${file.copyFrom}: not ${file.size} bytes as its meta says; the previous night is damaged`);
    await utimes(path, mtime, mtime);
  });
  const texts = metaTexts({ ...ctx, rand: new Rand(mixed ^ 0x2545f491) }, collections);
  let metaBytes = 0;
  for (const metaFile of traits.writeOrder) {
    const content = texts.get(metaFile);
    if (content === undefined) continue;
    const bytes = Buffer.from(content, 'utf8');
    await writeFilePlan(dir, { rel: `meta/${metaFile}`, size: bytes.length, content: bytes }, source, mtime, dirs);
    metaBytes += bytes.length;
  }

  const kept = files.filter((f) => f.copyFrom !== undefined);
  const fresh = files.filter((f) => f.copyFrom === undefined);
  const changedBytes = fresh.reduce((a, f) => a + f.size, 0) + metaBytes;
  const segs = collections.flatMap((c) => c.partitions.flatMap((p) => p.segments));
  const firstLog = segs.find((s) => !s.isL0)?.insert.values().next().value?.[0];
  const goneLogs = [...gone].flatMap(segmentLogs);
  return {
    dir, name: options.name, variant: prev.variant, breakage: 'none',
    files: files.length + texts.size, bytes: keptBytes + changedBytes,
    binlogs: files.length, dataFiles: files.length, noiseKeys: [],
    ids: {
      collection: (collections[0] as CollectionPlan).id,
      collections: collections.map((c) => c.id),
      partitions: collections.flatMap((c) => c.partitions.map((p) => p.id)),
      segments: segs.filter((s) => !s.isL0).map((s) => s.id),
      l0Segments: collections.flatMap((c) => c.l0.map((s) => s.id)).concat(segs.filter((s) => s.isL0).map((s) => s.id)),
      firstLogId: firstLog?.logId ?? '',
      backup: ctx.backupId,
    },
    chain: {
      from: prev.dir,
      keptFiles: kept.length, keptBytes,
      changedFiles: fresh.length + texts.size, changedBytes,
      changedShare: changedBytes / (keptBytes + changedBytes),
      removedFiles: goneLogs.length, removedBytes: removed,
      newSegments, compactedSegments: victims.map((s) => s.id), compactedInto,
      newL0Segments: newL0.map((s) => s.id), removedL0Segments: oldL0.map((s) => s.id), deltaLogsAdded,
    },
  };
}

export interface ChainOptions extends Omit<GenerateOptions, 'name' | 'breakage' | 'noise'> {
  /** Backup names, oldest first: the first is made by generateBackup, each next one from the one before. */
  names: readonly string[];
  /** @default 0.1 */
  changed?: number;
  /** Time between two nights' file mtimes; the last night's is `mtimeMs`. @default 1 day */
  nightMs?: number;
}

/** A whole chain under one root: night 1 as generateBackup makes it, each next night from the one before. */
export async function generateChain(options: ChainOptions): Promise<[GenerateResult, ...NextNightResult[]]> {
  const { names, changed, nightMs, ...shape } = options;
  const [firstName, ...rest] = names;
  if (firstName === undefined) throw new Error('a chain needs at least one name');
  const last = options.mtimeMs ?? Date.now() - 3_600_000;
  const mtimeOf = (i: number): number => last - (names.length - 1 - i) * (nightMs ?? DAY_MS);
  const first = await generateBackup({ ...shape, name: firstName, mtimeMs: mtimeOf(0) });
  const nights: NextNightResult[] = [];
  let previous = first.dir;
  for (const [i, name] of rest.entries()) {
    const night = await generateNextNight({
      from: previous, root: options.root, name, mtimeMs: mtimeOf(i + 1),
      ...(changed !== undefined ? { changed } : {}), ...(options.seed !== undefined ? { seed: options.seed + i + 1 } : {}),
      ...(options.largestFileBytes !== undefined ? { largestFileBytes: options.largestFileBytes } : {}),
      ...(options.overwrite !== undefined ? { overwrite: options.overwrite } : {}),
      ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
    });
    nights.push(night);
    previous = night.dir;
  }
  return [first, ...nights];
}
