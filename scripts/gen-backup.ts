/**
 * Deterministic synthetic milvus-backup backups, shaped like the real thing (see
 * ../shared/MILVUS-BACKUP.md §1 and §7), so that every test and benchmark runs on realistic
 * data without a Milvus server.
 *
 * What it writes under `ROOT/NAME/`:
 * - binlogs at the backup paths of the chosen milvus-backup version (group directory = segment
 *   ID for 0.4.4+, none for <=0.4.3 unless a partition exceeds `maxSegmentGroupBytes`), for one
 *   or two collections with partitions, segments of fields 0, 1, 100, 101, 102 (storage v2:
 *   column groups 0 and 101), delta logs, and L0 segments on partition -1 where the version has
 *   them (0.5.9, head, storage-v2);
 * - meta JSON with the field names milvus-backup uses, int64 values written as bare 18-digit
 *   JSON numbers (the JSON text is built here, never through JS numbers), every `log_size`
 *   equal to the real file size, `log_path` pointing at the Milvus-side key (`files/...`), in
 *   the version's write order (`full_meta.json` last, or `channel_cp_meta.json` after it for
 *   0.4.13);
 * - for the snapshot format: only backup/collection/full meta with `"format":"snapshot"`, and
 *   an opaque `bundle/` tree with one snapshot metadata file per collection.
 *
 * File contents: the format magic (`BC FA FF 00` for the Milvus binlog envelope, `PAR1` at both
 * ends for Parquet) followed by AES-128-CTR keystream bytes keyed by the seed: incompressible
 * like real zstd-compressed binlogs, and generated at GB/s. Everything (IDs, sizes, names,
 * bytes) follows from the seed; no Math.random, no clock (except the default file mtime).
 * Files are written one by one from a fixed-size buffer (bounded memory; only the plan and the
 * meta text, which are proportional to the number of files, are held in memory).
 *
 * CLI: `node dist/scripts/gen-backup.js --root DIR --name NAME [--variant v] [--breakage b]
 * [--seed n] [--size 4MiB] [--files N] [--largest 64MiB] [--noise] [--mtime now|ISO|ms]`.
 * The next night of a nightly chain (same collections, most files kept byte for byte; see
 * scripts/gen-nightly.ts): `--root DIR --name NAME2 --from DIR/NAME --changed 10% [--seed n]`.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';

export const VARIANTS = ['v0.4.3', 'v0.4.13', 'v0.5.9', 'head', 'storage-v2', 'snapshot'] as const;
export type Variant = typeof VARIANTS[number];

export const BREAKAGES = ['none', 'no-meta', 'no-full-meta', 'missing-binlog', 'short-binlog', 'malformed-meta', 'l0-missing'] as const;
export type Breakage = typeof BREAKAGES[number];

export interface GenerateOptions {
  /** Backup root (created when missing); the backup goes to `root/name/`. */
  root: string;
  name: string;
  /** @default 'head' */
  variant?: Variant;
  /** @default 'none' */
  breakage?: Breakage;
  /** @default 1 */
  seed?: number;
  /** Approximate total bytes of data files. @default 4 MiB */
  totalBytes?: number;
  /** Approximate number of data files (for many-small-files benchmarks); derived from totalBytes when omitted. */
  files?: number;
  /** No data file is larger than this. */
  largestFileBytes?: number;
  /** Add a `milvus_backup_check_dst_<uuid>` probe object at the root. */
  noise?: boolean;
  /** mtime of every file written. @default now - 1 hour */
  mtimeMs?: number;
  /** 1 or 2 collections. @default chosen by the seed (2 only when there are enough segments) */
  collections?: 1 | 2;
  /** v0.4.3 only: partitions bigger than this are split into groups 1, 2, ... @default 2 GiB */
  maxSegmentGroupBytes?: number;
  /** Remove an existing `root/name/` first instead of refusing. @default false */
  overwrite?: boolean;
  /** Files written concurrently. @default 16 */
  concurrency?: number;
}

export interface GenerateResult {
  /** `root/name`, absolute. */
  dir: string;
  name: string;
  variant: Variant;
  breakage: Breakage;
  /** Objects written under `name/` (data + meta). */
  files: number;
  /** Bytes written under `name/`. */
  bytes: number;
  /** Distinct binlogs listed in full_meta.json (insert + delta + L0); 0 for snapshot. */
  binlogs: number;
  /** Data files written (binlogs or bundle files). */
  dataFiles: number;
  /** The file (relative to `name/`) that the breakage removed, truncated or corrupted. */
  brokenKey?: string;
  /** What the probe noise wrote, relative to root. */
  noiseKeys: string[];
  ids: {
    /** The first collection's ID (18 digits). */
    collection: string;
    collections: string[];
    partitions: string[];
    /** Segments that have insert logs. */
    segments: string[];
    /** L0 segments (partition -1 and, for head, one on a real partition). */
    l0Segments: string[];
    /** Log ID of the first insert binlog of the first segment, e.g. to find it in meta. */
    firstLogId: string;
    /** The backup task UUID (`id` in backup_meta.json). */
    backup: string;
  };
}

const MiB = 1024 * 1024;
export const MIN_FILE_BYTES = 32;
const WRITE_BUFFER = 4 * MiB;
export const MAGIC_V1 = Buffer.from([0xbc, 0xfa, 0xff, 0x00]);
export const MAGIC_PARQUET = Buffer.from('PAR1', 'latin1');
const MAGIC_AVRO = Buffer.from([0x4f, 0x62, 0x6a, 0x01]);

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/** A seeded PRNG: a Weyl sequence through a 32-bit avalanche mix. Returns floats in [0, 1). */
export function createPrng(seed: number): () => number {
  let state = (Math.trunc(seed) ^ 0x5bd1e995) >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;
  };
}

export class Rand {
  private readonly next: () => number;
  constructor(seed: number) { this.next = createPrng(seed); }
  float(): number { return this.next(); }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number { return lo + Math.floor(this.next() * (hi - lo + 1)); }
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = Math.floor(this.next() * 256);
    return out;
  }
  uuid(): string {
    const b = this.bytes(16);
    b[6] = ((b[6] as number) & 0x0f) | 0x40;
    b[8] = ((b[8] as number) & 0x3f) | 0x80;
    const h = b.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
}

/** Increasing int64 IDs above 2^53, as decimal strings (BigInt, never a JS number). */
export class IdAllocator {
  private current: bigint;
  constructor(base: bigint) { this.current = base; }
  next(gap = 1): string { this.current += BigInt(gap); return this.current.toString(); }
}

// ---------------------------------------------------------------------------------------------
// JSON text written by hand, so that 18-digit int64 values appear exactly as bare numbers.

class Raw { constructor(readonly text: string) {} }
type JsonValue = string | boolean | null | Raw | readonly JsonValue[] | { readonly [key: string]: JsonValue | undefined };

/** A bare JSON number from its decimal text. */
function num(value: string | number | bigint): Raw {
  const text = String(value);
  if (!/^-?\d+$/.test(text)) throw new Error(`not an integer: ${text}`);
  return new Raw(text);
}

function writeJson(value: JsonValue, out: string[]): void {
  if (value instanceof Raw) { out.push(value.text); return; }
  if (value === null || typeof value === 'boolean') { out.push(String(value)); return; }
  if (typeof value === 'string') { out.push(JSON.stringify(value)); return; }
  if (Array.isArray(value)) {
    out.push('[');
    value.forEach((item: JsonValue, i: number) => { if (i > 0) out.push(','); writeJson(item, out); });
    out.push(']');
    return;
  }
  out.push('{');
  let first = true;
  for (const [key, item] of Object.entries(value as Record<string, JsonValue | undefined>)) {
    if (item === undefined) continue;
    if (!first) out.push(',');
    first = false;
    out.push(JSON.stringify(key), ':');
    writeJson(item, out);
  }
  out.push('}');
}

/** Compact JSON text, like Go's json.Marshal. */
function jsonText(value: JsonValue): string {
  const out: string[] = [];
  writeJson(value, out);
  return out.join('');
}

// ---------------------------------------------------------------------------------------------
// What each milvus-backup version writes

export interface Traits {
  /** Insert field IDs (storage v1) or column groups (storage v2) per flush chunk. */
  fields: string[];
  parquet: boolean;
  /** 0.4.4+: group directory = segment ID. */
  groupPerSegment: boolean;
  /** 0.5.4+: `log_id` in binlog entries. */
  logId: boolean;
  /** L0 segments on partition -1. */
  l0: boolean;
  /** channel_cp_meta.json, keyed by pchannel (0.4.x) or vchannel (0.5.x). */
  channelCp?: 'pchannel' | 'vchannel';
  stateCode: number;
  /** start_time, end_time, progress in backup/full meta (<= 0.5.9). */
  legacyTimes: boolean;
  /** entries_num / timestamp_from / timestamp_to in binlog entries (0.4.x). */
  legacyBinlogFields: boolean;
  /** collection_meta.json keeps segments (<= 0.5.9). */
  collectionMetaWithSegments: boolean;
  /** segment_meta.json also lists L0 segments of partition -1 (<= 0.5.9). */
  segmentMetaWithL0: boolean;
  /** Also an L0 segment on a real partition (head). */
  l0OnPartition: boolean;
  storageVersion?: number;
  snapshot: boolean;
  milvusVersion: string;
  /** Meta file names in write order. */
  writeOrder: string[];
}

const V1_FIELDS = ['0', '1', '100', '101', '102'];
const V2_GROUPS = ['0', '101'];
const ORDER_BASE = ['backup_meta.json', 'collection_meta.json', 'partition_meta.json', 'segment_meta.json'];

export function traitsOf(variant: Variant): Traits {
  const common = {
    fields: V1_FIELDS, parquet: false, groupPerSegment: true, logId: true, l0: true, stateCode: 0,
    legacyTimes: false, legacyBinlogFields: false, collectionMetaWithSegments: false, segmentMetaWithL0: false, l0OnPartition: false,
    snapshot: false, milvusVersion: 'v2.5.18', writeOrder: [...ORDER_BASE, 'full_meta.json'],
  };
  switch (variant) {
    case 'v0.4.3':
      return { ...common, groupPerSegment: false, logId: false, l0: false, stateCode: 2, legacyTimes: true,
        legacyBinlogFields: true, collectionMetaWithSegments: true, milvusVersion: 'v2.3.3' };
    case 'v0.4.13':
      return { ...common, logId: false, l0: false, stateCode: 2, legacyTimes: true, legacyBinlogFields: true,
        collectionMetaWithSegments: true, channelCp: 'pchannel', milvusVersion: 'v2.4.1',
        writeOrder: [...ORDER_BASE, 'full_meta.json', 'channel_cp_meta.json'] };
    case 'v0.5.9':
      return { ...common, stateCode: 1, legacyTimes: true, collectionMetaWithSegments: true, segmentMetaWithL0: true,
        channelCp: 'vchannel', milvusVersion: 'v2.5.16',
        writeOrder: [...ORDER_BASE, 'channel_cp_meta.json', 'full_meta.json'] };
    case 'head':
      return { ...common, l0OnPartition: true };
    case 'storage-v2':
      return { ...common, fields: V2_GROUPS, parquet: true, storageVersion: 2, milvusVersion: 'v2.6.3' };
    case 'snapshot':
      return { ...common, fields: V2_GROUPS, parquet: true, l0: false, storageVersion: 2, snapshot: true,
        milvusVersion: 'v3.0.0', writeOrder: ['backup_meta.json', 'collection_meta.json', 'full_meta.json'] };
  }
}

/** Share of a flush chunk's bytes per field: the vector field dominates. */
export const FIELD_SHARE: Record<string, number> = { '0': 0.04, '1': 0.04, '100': 0.05, '101': 0.72, '102': 0.15 };
export const GROUP_SHARE: Record<string, number> = { '0': 0.25, '101': 0.75 };

// ---------------------------------------------------------------------------------------------
// The plan: every file with its size, before anything is written

export interface BinlogPlan {
  kind: 'insert' | 'delta';
  fieldId: string;
  logId: string;
  size: number;
  rows: number;
}

export interface SegmentPlan {
  id: string;
  collectionId: string;
  partitionId: string;
  groupId?: string;
  isL0: boolean;
  rows: number;
  /** fieldId -> binlogs (one per flush chunk). */
  insert: Map<string, BinlogPlan[]>;
  delta: BinlogPlan[];
  vchannel: string;
}

export interface PartitionPlan { id: string; name: string; collectionId: string; segments: SegmentPlan[] }

export interface CollectionPlan {
  id: string;
  uuid: string;
  name: string;
  partitions: PartitionPlan[];
  /** L0 segments on partition -1. */
  l0: SegmentPlan[];
  vchannel: string;
  pchannel: string;
  /** Base64 channel checkpoint (an opaque MsgPosition). */
  checkpoint: string;
  snapshotId?: string;
  snapshot?: { metadataPath: string; totalFiles: number; totalBytes: number };
}

/** A file to write: random bytes behind a magic, or fixed content. */
export interface FilePlan {
  rel: string;
  size: number;
  /** Keystream number (the AES-CTR IV), so contents do not depend on write order. */
  stream?: number;
  magic?: Buffer;
  trailer?: Buffer;
  content?: Buffer;
}

interface Plan {
  collections: CollectionPlan[];
  files: FilePlan[];
  binlogCount: number;
  brokenKey?: string;
}

function segmentDir(seg: SegmentPlan): string {
  const group = seg.groupId !== undefined && seg.partitionId !== '-1' ? `${seg.groupId}/` : '';
  return `${seg.collectionId}/${seg.partitionId}/${group}${seg.id}`;
}

export function binlogRel(seg: SegmentPlan, log: BinlogPlan): string {
  return log.kind === 'insert'
    ? `binlogs/insert_log/${segmentDir(seg)}/${log.fieldId}/${log.logId}`
    : `binlogs/delta_log/${segmentDir(seg)}/${log.logId}`;
}

/** The key inside Milvus's own bucket (root `files`): never contains a group directory. */
function milvusPath(seg: SegmentPlan, log: BinlogPlan): string {
  const base = `${seg.collectionId}/${seg.partitionId}/${seg.id}`;
  return log.kind === 'insert' ? `files/insert_log/${base}/${log.fieldId}/${log.logId}` : `files/delta_log/${base}/${log.logId}`;
}

function buildPlan(options: Required<Pick<GenerateOptions, 'name' | 'seed' | 'totalBytes'>> & GenerateOptions, traits: Traits, rand: Rand): Plan {
  const totalBytes = options.totalBytes;
  const cap = options.largestFileBytes ?? Number.POSITIVE_INFINITY;
  if (!(cap >= MIN_FILE_BYTES)) throw new Error(`largestFileBytes must be at least ${MIN_FILE_BYTES}`);
  const clampSize = (n: number): number => Math.max(MIN_FILE_BYTES, Math.min(cap, Math.round(n)));
  const fields = traits.fields;
  const share = traits.parquet ? GROUP_SHARE : FIELD_SHARE;

  const chunkCount = options.files !== undefined
    ? Math.max(2, Math.round(options.files / (fields.length + 0.25)))
    : Math.max(2, Math.min(200_000, Math.round(Math.sqrt(totalBytes / 16384))));
  const weights = Array.from({ length: chunkCount }, () => (rand.float() < 0.1 ? 4 + rand.float() * 12 : 0.5 + rand.float()));
  const weightSum = weights.reduce((a, b) => a + b, 0);
  const insertBudget = totalBytes * 0.93;
  const deltaBudget = totalBytes * 0.05;

  const ids = new IdAllocator(458930418862000000n + BigInt(Math.floor(createPrng(options.seed ^ 0x3c6ef372)() * 1e11)));

  // Collections and partitions.
  const wantTwo = options.collections !== undefined ? options.collections === 2 : rand.float() < 0.5;
  const collectionCount = wantTwo && chunkCount >= 6 ? 2 : 1;
  const names = ['docs', 'images'];
  const collections: CollectionPlan[] = [];
  for (let c = 0; c < collectionCount; c++) {
    const id = ids.next(c === 0 ? 0 : rand.int(100, 999));
    const coll: CollectionPlan = {
      id, uuid: rand.uuid(), name: names[c] as string, partitions: [], l0: [],
      vchannel: `by-dev-rootcoord-dml_${c}_${id}v0`, pchannel: `by-dev-rootcoord-dml_${c}`,
      checkpoint: rand.bytes(24).toString('base64'),
    };
    const partNames = c === 0 ? ['_default', 'p2025'] : ['_default'];
    for (const partName of partNames) coll.partitions.push({ id: ids.next(), name: partName, collectionId: id, segments: [] });
    collections.push(coll);
  }
  const slots = collections.flatMap((coll) => coll.partitions);
  const slotWeights = slots.map((p, i) => (i === 0 ? 0.5 : 0.5 / (slots.length - 1 || 1)));

  // Segments of 1..3 flush chunks; log IDs of one chunk are consecutive.
  const segments: SegmentPlan[] = [];
  let chunk = 0;
  while (chunk < chunkCount) {
    const k = Math.min(chunkCount - chunk, rand.int(1, 3));
    let slot: PartitionPlan;
    if (segments.length < slots.length) {
      slot = slots[segments.length] as PartitionPlan;
    } else {
      let r = rand.float();
      let index = 0;
      while (index < slots.length - 1 && r >= (slotWeights[index] as number)) { r -= slotWeights[index] as number; index++; }
      slot = slots[index] as PartitionPlan;
    }
    const coll = collections.find((cp) => cp.id === slot.collectionId) as CollectionPlan;
    const seg: SegmentPlan = {
      id: ids.next(rand.int(1, 40)), collectionId: slot.collectionId, partitionId: slot.id, isL0: false, rows: 0,
      insert: new Map(fields.map((f) => [f, []])), delta: [], vchannel: coll.vchannel,
    };
    for (let j = 0; j < k; j++, chunk++) {
      const chunkBytes = insertBudget * (weights[chunk] as number) / weightSum;
      const vectorBytes = clampSize(chunkBytes * (share['101'] as number) * (0.85 + 0.3 * rand.float()));
      const rows = Math.max(1, Math.floor(vectorBytes / 3072));
      for (const field of fields) {
        const size = field === '101' ? vectorBytes : clampSize(chunkBytes * (share[field] as number) * (0.85 + 0.3 * rand.float()));
        (seg.insert.get(field) as BinlogPlan[]).push({ kind: 'insert', fieldId: field, logId: ids.next(), size, rows });
      }
      seg.rows += rows;
    }
    slot.segments.push(seg);
    segments.push(seg);
  }

  // Delta logs: some segments, always the first; L0 segments where the version has them.
  const deltaOwners: SegmentPlan[] = [];
  segments.forEach((seg, i) => { if (i === 0 || rand.float() < 0.35) deltaOwners.push(seg); });
  const l0Segments: SegmentPlan[] = [];
  if (traits.l0) {
    for (const coll of collections) {
      const seg: SegmentPlan = {
        id: ids.next(rand.int(1, 40)), collectionId: coll.id, partitionId: '-1', isL0: true, rows: 0,
        insert: new Map(), delta: [], vchannel: coll.vchannel,
      };
      coll.l0.push(seg);
      l0Segments.push(seg);
      deltaOwners.push(seg);
      if (rand.float() < 0.5) deltaOwners.push(seg);
    }
    const partitioned = collections[0]?.partitions[1];
    if (traits.l0OnPartition && partitioned !== undefined) {
      // An L0 segment on a real partition: it gets a group directory like any other segment.
      const seg: SegmentPlan = {
        id: ids.next(rand.int(1, 40)), collectionId: partitioned.collectionId, partitionId: partitioned.id, isL0: true,
        rows: 0, insert: new Map(), delta: [], vchannel: (collections[0] as CollectionPlan).vchannel,
      };
      partitioned.segments.push(seg);
      l0Segments.push(seg);
      deltaOwners.push(seg);
    }
  }
  const deltaEach = deltaBudget / Math.max(1, deltaOwners.length);
  for (const seg of deltaOwners) {
    const rows = rand.int(1, 500);
    seg.delta.push({ kind: 'delta', fieldId: '0', logId: ids.next(rand.int(1, 5)), size: clampSize(deltaEach * (0.5 + rand.float())), rows });
  }

  // Groups: segment ID (0.4.4+) or, for <=0.4.3, 1, 2, ... only in partitions over the limit.
  const groupLimit = options.maxSegmentGroupBytes ?? 2 * 1024 * MiB;
  for (const part of slots) {
    if (traits.groupPerSegment) {
      for (const seg of part.segments) seg.groupId = seg.id;
      continue;
    }
    const sizeOf = (seg: SegmentPlan): number => [...seg.insert.values()].flat().concat(seg.delta).reduce((a, b) => a + b.size, 0);
    const partBytes = part.segments.reduce((a, seg) => a + sizeOf(seg), 0);
    if (partBytes <= groupLimit) continue;
    let group = 1;
    let groupBytes = 0;
    for (const seg of part.segments) {
      const bytes = sizeOf(seg);
      if (groupBytes > 0 && groupBytes + bytes > groupLimit) { group++; groupBytes = 0; }
      seg.groupId = String(group);
      groupBytes += bytes;
    }
  }

  return traits.snapshot
    ? planSnapshotFiles(options, collections, ids, rand)
    : planBinlogFiles(options, traits, collections);
}

export function allSegments(coll: CollectionPlan): SegmentPlan[] {
  return coll.partitions.flatMap((p) => p.segments).concat(coll.l0);
}

export function segmentLogs(seg: SegmentPlan): BinlogPlan[] {
  return [...seg.insert.values()].flat().concat(seg.delta);
}

function planBinlogFiles(options: GenerateOptions, traits: Traits, collections: CollectionPlan[]): Plan {
  const magic = traits.parquet ? MAGIC_PARQUET : MAGIC_V1;
  const trailer = traits.parquet ? MAGIC_PARQUET : undefined;
  const files: FilePlan[] = [];
  const ordinary = collections.flatMap((c) => c.partitions.flatMap((p) => p.segments)).filter((s) => !s.isL0);
  const victimSeg = ordinary[Math.floor(ordinary.length / 2)] as SegmentPlan;
  const victimLog = (victimSeg.insert.get('101') as BinlogPlan[])[0] as BinlogPlan;
  const l0Victim = collections[0]?.l0[0];
  const breakage = options.breakage ?? 'none';
  let brokenKey: string | undefined;
  let stream = 0;
  for (const coll of collections) {
    for (const seg of allSegments(coll)) {
      for (const log of segmentLogs(seg)) {
        const rel = binlogRel(seg, log);
        const file: FilePlan = { rel, size: log.size, magic, stream: stream++, ...(trailer ? { trailer } : {}) };
        if (log === victimLog && breakage === 'missing-binlog') { brokenKey = rel; continue; }
        if (log === victimLog && breakage === 'short-binlog') { brokenKey = rel; file.size = Math.max(8, Math.floor(log.size * 2 / 3)); }
        if (seg === l0Victim && log === seg.delta[0] && breakage === 'l0-missing') { brokenKey = rel; continue; }
        files.push(file);
      }
    }
  }
  const binlogCount = collections.reduce((a, coll) => a + allSegments(coll).reduce((b, seg) => b + segmentLogs(seg).length, 0), 0);
  return { collections, files, binlogCount, ...(brokenKey ? { brokenKey } : {}) };
}

/**
 * Snapshot format: Milvus exports a self-contained bundle; its layout is Milvus's business and
 * opaque to milvus-backup, so this one is only plausible: per collection a snapshot metadata
 * JSON (what `snapshot_backup.metadata_path` points to), Avro manifests, Parquet data files and
 * index files.
 */
function planSnapshotFiles(options: GenerateOptions, collections: CollectionPlan[], ids: IdAllocator, rand: Rand): Plan {
  const files: FilePlan[] = [];
  const breakage = options.breakage ?? 'none';
  let brokenKey: string | undefined;
  let stream = 0;
  for (const coll of collections) {
    const snapshotId = ids.next(rand.int(1, 40));
    coll.snapshotId = snapshotId;
    const collFiles: FilePlan[] = [];
    const manifests: string[] = [];
    for (const part of coll.partitions) {
      const manifest = `bundle/snapshots/${coll.id}/manifests/${rand.uuid()}.avro`;
      manifests.push(manifest);
      collFiles.push({ rel: manifest, size: rand.int(1024, 4096), magic: MAGIC_AVRO, stream: stream++ });
      for (const seg of part.segments) {
        for (const log of segmentLogs(seg)) {
          collFiles.push({ rel: `bundle/data/${coll.id}/${seg.partitionId}/${seg.id}/${log.kind === 'insert' ? log.fieldId : 'delta'}/${log.logId}`, size: log.size, magic: MAGIC_PARQUET, trailer: MAGIC_PARQUET, stream: stream++ });
        }
        const vector = (seg.insert.get('101') ?? []).reduce((a, b) => a + b.size, 0);
        if (vector > 0) {
          collFiles.push({ rel: `bundle/index_files/${ids.next()}/1/${seg.partitionId}/${seg.id}/HNSW_0`, size: Math.max(MIN_FILE_BYTES, Math.round(vector * 0.3)), stream: stream++ });
        }
      }
    }
    const metadataPath = `bundle/snapshots/${coll.id}/metadata/${snapshotId}.json`;
    const metadata = Buffer.from(jsonText({
      snapshot_id: num(snapshotId), collection_id: num(coll.id), format_version: num(1),
      partitions: coll.partitions.map((p) => ({ partition_id: num(p.id), partition_name: p.name })),
      manifest_list: manifests.map((m) => m.slice('bundle/'.length)),
    }));
    const totalBytes = collFiles.reduce((a, f) => a + f.size, 0) + metadata.length;
    coll.snapshot = { metadataPath, totalFiles: collFiles.length + 1, totalBytes };
    if (breakage === 'missing-binlog' && coll === collections[0]) brokenKey = metadataPath;
    else collFiles.push({ rel: metadataPath, size: metadata.length, content: metadata });
    files.push(...collFiles);
  }
  return { collections, files, binlogCount: 0, ...(brokenKey ? { brokenKey } : {}) };
}

// ---------------------------------------------------------------------------------------------
// Meta JSON

export interface MetaContext {
  name: string;
  traits: Traits;
  backupId: string;
  tso: bigint;
  startMs: number;
  endMs: number;
  rand: Rand;
}

function binlogJson(ctx: MetaContext, seg: SegmentPlan, log: BinlogPlan): JsonValue {
  const { traits, tso } = ctx;
  return {
    entries_num: traits.legacyBinlogFields ? num(log.rows) : undefined,
    timestamp_from: traits.legacyBinlogFields ? num(tso - 1000000n) : undefined,
    timestamp_to: traits.legacyBinlogFields ? num(tso - 1000n) : undefined,
    log_path: milvusPath(seg, log),
    log_size: num(log.size),
    log_id: traits.logId ? num(log.logId) : undefined,
  };
}

function segmentJson(ctx: MetaContext, seg: SegmentPlan): JsonValue {
  const insert = [...seg.insert.entries()].filter(([, logs]) => logs.length > 0).map(([fieldId, logs]) => ({
    fieldID: fieldId === '0' ? undefined : num(fieldId), // Go omitempty: field 0 has no fieldID
    binlogs: logs.map((log) => binlogJson(ctx, seg, log)),
  }));
  const size = segmentLogs(seg).reduce((a, b) => a + b.size, 0);
  return {
    segment_id: num(seg.id),
    collection_id: num(seg.collectionId),
    partition_id: num(seg.partitionId),
    num_of_rows: num(seg.rows),
    binlogs: insert.length > 0 ? insert : undefined,
    deltalogs: seg.delta.length > 0 ? [{ binlogs: seg.delta.map((log) => binlogJson(ctx, seg, log)) }] : undefined,
    size: num(size),
    group_id: seg.groupId !== undefined && seg.partitionId !== '-1' ? num(seg.groupId) : undefined,
    is_l0: seg.isL0 ? true : undefined,
    v_channel: seg.vchannel,
    storage_version: ctx.traits.storageVersion !== undefined && !seg.isL0 ? num(ctx.traits.storageVersion) : undefined,
  };
}

function schemaJson(coll: CollectionPlan, traits: Traits): JsonValue {
  const fields: JsonValue[] = [
    { fieldID: num(100), name: 'id', is_primary_key: true, data_type: num(5) },
    { fieldID: num(101), name: 'embedding', data_type: num(101), type_params: [{ key: 'dim', value: '768' }] },
  ];
  if (!traits.parquet) fields.push({ fieldID: num(102), name: 'title', data_type: num(21), type_params: [{ key: 'max_length', value: '512' }] });
  return { name: coll.name, description: '', fields };
}

function partitionSize(part: PartitionPlan): number {
  return part.segments.reduce((a, seg) => a + segmentLogs(seg).reduce((b, l) => b + l.size, 0), 0);
}

function collectionSize(coll: CollectionPlan): number {
  if (coll.snapshot) return coll.snapshot.totalBytes;
  return allSegments(coll).reduce((a, seg) => a + segmentLogs(seg).reduce((b, l) => b + l.size, 0), 0);
}

function collectionJson(ctx: MetaContext, coll: CollectionPlan, mode: 'full' | 'collection-meta'): JsonValue {
  const { traits } = ctx;
  const withSegments = mode === 'full' || traits.collectionMetaWithSegments;
  return {
    id: coll.uuid,
    collection_id: num(coll.id),
    db_name: 'default',
    collection_name: coll.name,
    schema: schemaJson(coll, traits),
    shards_num: num(1),
    consistency_level: num(2),
    partition_backups: coll.partitions.map((part) => ({
      partition_id: num(part.id),
      partition_name: part.name,
      collection_id: num(coll.id),
      segment_backups: withSegments && !traits.snapshot && part.segments.length > 0 ? part.segments.map((seg) => segmentJson(ctx, seg)) : undefined,
      size: num(traits.snapshot ? 0 : partitionSize(part)),
      load_state: 'Loaded',
    })),
    backup_timestamp: num(ctx.tso),
    size: num(collectionSize(coll)),
    has_index: true,
    index_infos: [{ field_name: 'embedding', index_name: 'embedding_idx', index_type: 'HNSW',
      params: { M: '16', efConstruction: '200', metric_type: 'L2', index_type: 'HNSW' } }],
    load_state: 'Loaded',
    backup_physical_timestamp: num(Math.floor(ctx.startMs / 1000)),
    channel_checkpoints: { [coll.vchannel]: coll.checkpoint },
    l0_segments: withSegments && coll.l0.length > 0 ? coll.l0.map((seg) => segmentJson(ctx, seg)) : undefined,
    db_id: traits.stateCode === 0 ? num(1) : undefined,
    virtual_channel_names: [coll.vchannel],
    physical_channel_names: [coll.pchannel],
    snapshot_backup: coll.snapshot ? {
      metadata_path: coll.snapshot.metadataPath,
      total_files: num(coll.snapshot.totalFiles),
      total_bytes: num(coll.snapshot.totalBytes),
    } : undefined,
  };
}

function backupInfoJson(ctx: MetaContext, collections: CollectionPlan[], withCollections: boolean): JsonValue {
  const { traits } = ctx;
  const size = collections.reduce((a, coll) => a + collectionSize(coll), 0);
  return {
    id: ctx.backupId,
    state_code: num(traits.stateCode),
    errorMessage: undefined,
    start_time: traits.legacyTimes ? num(ctx.startMs) : undefined,
    end_time: traits.legacyTimes ? num(ctx.endMs) : undefined,
    progress: traits.legacyTimes ? num(100) : undefined,
    name: ctx.name,
    backup_timestamp: traits.legacyTimes ? num(ctx.tso) : undefined,
    collection_backups: withCollections ? collections.map((coll) => collectionJson(ctx, coll, 'full')) : undefined,
    size: num(size),
    milvus_version: traits.milvusVersion,
    database_backups: traits.stateCode === 0 ? [{ db_name: 'default', db_id: num(1) }] : undefined,
    format: traits.snapshot ? 'snapshot' : undefined,
  };
}

/** Meta file name -> text, for every meta file this version writes. */
export function metaTexts(ctx: MetaContext, collections: CollectionPlan[]): Map<string, string> {
  const { traits } = ctx;
  const texts = new Map<string, string>();
  texts.set('backup_meta.json', jsonText(backupInfoJson(ctx, collections, false)));
  texts.set('collection_meta.json', jsonText({ infos: collections.map((coll) => collectionJson(ctx, coll, 'collection-meta')) }));
  if (!traits.snapshot) {
    texts.set('partition_meta.json', jsonText({
      infos: collections.flatMap((coll) => coll.partitions.map((part) => ({
        partition_id: num(part.id), partition_name: part.name, collection_id: num(coll.id),
        size: num(partitionSize(part)), load_state: 'Loaded',
      }))),
    }));
    texts.set('segment_meta.json', jsonText({
      infos: collections.flatMap((coll) => coll.partitions.flatMap((p) => p.segments)
        .concat(traits.segmentMetaWithL0 ? coll.l0 : [])
        .map((seg) => segmentJson(ctx, seg))),
    }));
  }
  texts.set('full_meta.json', jsonText(backupInfoJson(ctx, collections, true)));
  if (traits.channelCp) {
    const cp: Record<string, JsonValue> = {};
    for (const coll of collections) {
      cp[coll.name] = [{ name: traits.channelCp === 'pchannel' ? coll.pchannel : coll.vchannel, position: ctx.rand.bytes(40).toString('base64') }];
    }
    texts.set('channel_cp_meta.json', jsonText(cp));
  }
  return texts;
}

// ---------------------------------------------------------------------------------------------
// Writing

export class ContentSource {
  private readonly key: Buffer;
  private readonly zeros = Buffer.alloc(WRITE_BUFFER);
  /** `salt` gives another keystream for the same seed (a later night of a chain, scripts/gen-nightly.ts). */
  constructor(seed: number, salt?: string) {
    this.key = createHash('sha256').update(`offsite-gen-backup:${seed}${salt === undefined ? '' : `:${salt}`}`).digest().subarray(0, 16);
  }
  /** Keystream number `index` (each gets its own 2^64-block counter space). */
  stream(index: number): (n: number) => Buffer {
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64BE(BigInt(index), 0);
    const cipher = createCipheriv('aes-128-ctr', this.key, iv);
    return (n: number) => cipher.update(this.zeros.subarray(0, n));
  }
}

/** Writes one planned file (streamed in WRITE_BUFFER pieces) and sets its mtime. */
export async function writeFilePlan(dir: string, file: FilePlan, source: ContentSource, mtime: Date, dirs: Set<string>): Promise<void> {
  const path = join(dir, ...file.rel.split('/'));
  const parent = dirname(path);
  if (!dirs.has(parent)) { await mkdir(parent, { recursive: true }); dirs.add(parent); }
  const handle = await open(path, 'w');
  try {
    if (file.content) {
      await handle.write(file.content, 0, file.content.length, 0);
    } else {
      const next = source.stream(file.stream ?? 0);
      let written = 0;
      while (written < file.size) {
        const n = Math.min(WRITE_BUFFER, file.size - written);
        const buf = next(n);
        if (written === 0 && file.magic) file.magic.copy(buf, 0, 0, Math.min(file.magic.length, n));
        if (written + n === file.size && file.trailer && file.size >= 2 * file.trailer.length) {
          file.trailer.copy(buf, n - file.trailer.length);
        }
        await handle.write(buf, 0, n, written);
        written += n;
      }
    }
    await handle.utimes(mtime, mtime);
  } finally {
    await handle.close();
  }
}

export async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
}

/**
 * Writes one synthetic backup under `root/name/` (see the module comment). Refuses an existing
 * non-empty `root/name/` unless `overwrite`. Breakages produce what a failed, interrupted or
 * damaged backup looks like:
 * - `no-meta`: binlogs only (a failed or still-running backup);
 * - `no-full-meta`: the meta write stopped before `full_meta.json`;
 * - `missing-binlog` / `short-binlog`: one listed vector binlog absent / shorter than its
 *   `log_size` (snapshot: `missing-binlog` removes the snapshot metadata file);
 * - `malformed-meta`: `full_meta.json` cut off part-way (invalid JSON);
 * - `l0-missing`: the delta log of an L0 segment (partition -1) absent.
 * A breakage that cannot apply to the variant (e.g. `l0-missing` for v0.4.3) throws.
 */
export async function generateBackup(options: GenerateOptions): Promise<GenerateResult> {
  const variant = options.variant ?? 'head';
  const breakage = options.breakage ?? 'none';
  const seed = options.seed ?? 1;
  const totalBytes = options.totalBytes ?? 4 * MiB;
  if (!VARIANTS.includes(variant)) throw new Error(`unknown variant ${JSON.stringify(variant)} (one of: ${VARIANTS.join(', ')})`);
  if (!BREAKAGES.includes(breakage)) throw new Error(`unknown breakage ${JSON.stringify(breakage)} (one of: ${BREAKAGES.join(', ')})`);
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(options.name)) throw new Error(`invalid backup name ${JSON.stringify(options.name)}: letters, digits and _, not starting with a digit`);
  if (!Number.isSafeInteger(seed)) throw new Error(`seed must be an integer, got ${seed}`);
  if (!(totalBytes >= 0)) throw new Error(`totalBytes must be >= 0, got ${totalBytes}`);
  if (options.files !== undefined && !(options.files >= 1)) throw new Error(`files must be >= 1, got ${options.files}`);
  const traits = traitsOf(variant);
  if (breakage === 'l0-missing' && !traits.l0) throw new Error(`breakage l0-missing needs L0 segments; variant ${variant} has none (use v0.5.9, head or storage-v2)`);
  if (breakage === 'short-binlog' && traits.snapshot) throw new Error('breakage short-binlog does not apply to the snapshot format (its bundle has no sizes in meta)');

  const root = resolve(options.root);
  const dir = join(root, options.name);
  await mkdir(root, { recursive: true });
  const existing = await readdir(dir).catch(() => [] as string[]);
  if (existing.length > 0) {
    if (!options.overwrite) throw new Error(`${dir} already exists and is not empty (pass overwrite to replace it)`);
    await rm(dir, { recursive: true, force: true });
  }

  const rand = new Rand(seed);
  const plan = buildPlan({ ...options, seed, totalBytes }, traits, rand);
  const startMs = Date.UTC(2025, 5, 1, 2, 0, 0) + rand.int(0, 364) * 86_400_000 + rand.int(0, 3_599_999);
  const ctx: MetaContext = {
    name: options.name, traits, backupId: rand.uuid(), tso: BigInt(startMs) << 18n,
    startMs, endMs: startMs + rand.int(5_000, 900_000), rand,
  };
  const mtime = new Date(options.mtimeMs ?? Date.now() - 3_600_000);
  const source = new ContentSource(seed);
  const dirs = new Set<string>();
  let files = 0;
  let bytes = 0;

  // Data first, meta last (in the version's write order), as milvus-backup does.
  await pool(plan.files, options.concurrency ?? 16, async (file) => {
    await writeFilePlan(dir, file, source, mtime, dirs);
    files++;
    bytes += file.size;
  });

  let brokenKey = plan.brokenKey;
  if (breakage !== 'no-meta') {
    const texts = metaTexts(ctx, plan.collections);
    for (const metaFile of traits.writeOrder) {
      if (breakage === 'no-full-meta' && metaFile === 'full_meta.json') { brokenKey = `meta/${metaFile}`; break; }
      let text = texts.get(metaFile);
      if (text === undefined) continue;
      if (breakage === 'malformed-meta' && metaFile === 'full_meta.json') {
        text = text.slice(0, Math.floor(text.length * 0.6));
        brokenKey = `meta/${metaFile}`;
      }
      const content = Buffer.from(text, 'utf8');
      await writeFilePlan(dir, { rel: `meta/${metaFile}`, size: content.length, content }, source, mtime, dirs);
      files++;
      bytes += content.length;
    }
  } else {
    brokenKey = 'meta/';
  }

  const noiseKeys: string[] = [];
  if (options.noise) {
    const probe = `milvus_backup_check_dst_${rand.uuid()}`;
    const handle = await open(join(root, probe), 'w');
    try { await handle.write(Buffer.from([0x31])); await handle.utimes(mtime, mtime); } finally { await handle.close(); }
    noiseKeys.push(probe);
  }

  const segs = plan.collections.flatMap((c) => c.partitions.flatMap((p) => p.segments));
  const first = segs[0]?.insert.values().next().value?.[0];
  return {
    dir, name: options.name, variant, breakage, files, bytes,
    binlogs: plan.binlogCount,
    dataFiles: plan.files.length,
    ...(brokenKey !== undefined ? { brokenKey } : {}),
    noiseKeys,
    ids: {
      collection: (plan.collections[0] as CollectionPlan).id,
      collections: plan.collections.map((c) => c.id),
      partitions: plan.collections.flatMap((c) => c.partitions.map((p) => p.id)),
      segments: segs.filter((s) => !s.isL0).map((s) => s.id),
      l0Segments: plan.collections.flatMap((c) => c.l0.map((s) => s.id)).concat(segs.filter((s) => s.isL0).map((s) => s.id)),
      firstLogId: first?.logId ?? '',
      backup: ctx.backupId,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// CLI

/** "4MB" (10^6), "4MiB"/"4M" (2^20), "1GiB", "512k", "1000" (bytes). */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$/i.exec(text);
  if (!match) throw new InvalidArgumentError(`not a size: ${JSON.stringify(text)} (e.g. 4MiB, 1GiB, 500MB)`);
  const value = Number(match[1]);
  const unit = (match[2] ?? '').toLowerCase();
  const binary = match[3] !== '' || match[4] === '';
  const power = ' kmgt'.indexOf(unit === '' ? ' ' : unit);
  const bytes = Math.round(value * (binary ? 1024 : 1000) ** power);
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`size too large: ${text}`);
  return bytes;
}

export function parseInteger(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new InvalidArgumentError(`not an integer: ${JSON.stringify(text)}`);
  return value;
}

/** "10%", "10" (percent) -> 0.1; 0 to 90 %. */
export function parsePercent(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*%?\s*$/.exec(text);
  const value = match ? Number(match[1]) : Number.NaN;
  if (!(value >= 0 && value <= 90)) throw new InvalidArgumentError(`not a share from 0% to 90%: ${JSON.stringify(text)} (e.g. 10%)`);
  return value / 100;
}

export function parseMtime(text: string): number {
  if (text === 'now') return Date.now();
  if (/^\d+$/.test(text)) return Number(text);
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new InvalidArgumentError(`not a time: ${JSON.stringify(text)} (now, an ISO date, or epoch ms)`);
  return ms;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit] as string}`;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  const program = new Command()
    .name('gen-backup')
    .description('Write a deterministic synthetic milvus-backup backup to a local folder')
    .requiredOption('--root <dir>', 'backup root folder (the backup goes to ROOT/NAME)')
    .requiredOption('--name <name>', 'backup name')
    .addOption(new Option('--variant <variant>', 'milvus-backup version / format').choices([...VARIANTS]).default('head'))
    .addOption(new Option('--breakage <breakage>', 'make it incomplete or damaged').choices([...BREAKAGES]).default('none'))
    .option('--seed <n>', 'PRNG seed', parseInteger, 1)
    .option('--size <size>', 'approximate data size, e.g. 4MiB, 1GiB', parseSize)
    .option('--files <n>', 'approximate number of data files', parseInteger)
    .option('--largest <size>', 'cap on any one data file', parseSize)
    .option('--collections <n>', '1 or 2 collections', parseInteger)
    .option('--noise', 'add a milvus_backup_check_dst_* probe at the root', false)
    .option('--mtime <time>', 'mtime of every file: now, an ISO date or epoch ms (default: 1 hour ago)', parseMtime)
    .option('--force', 'replace ROOT/NAME if it exists', false)
    .option('--from <dir>', 'make the next nightly backup of the backup in DIR (ROOT/NAME of the previous night; see scripts/gen-nightly.ts)')
    .option('--changed <percent>', 'with --from: share of the new backup\'s bytes that are new, e.g. 10%', parsePercent, 0.1)
    .option('--json', 'print the result as JSON', false);
  program.parse(argv);
  const o = program.opts<{
    root: string; name: string; variant: Variant; breakage: Breakage; seed: number; size?: number; files?: number;
    largest?: number; collections?: number; noise: boolean; mtime?: number; force: boolean; json: boolean;
    from?: string; changed: number;
  }>();
  if (o.collections !== undefined && o.collections !== 1 && o.collections !== 2) program.error('--collections must be 1 or 2');
  const started = Date.now();
  if (o.from !== undefined) {
    const shapeOptions = ['variant', 'breakage', 'size', 'files', 'collections', 'noise'].filter((key) => program.getOptionValueSource(key) === 'cli');
    if (shapeOptions.length > 0) program.error(`--from takes the shape of the previous backup: drop ${shapeOptions.map((k) => `--${k}`).join(', ')}`);
    const { generateNextNight } = await import('./gen-nightly.js');
    const night = await generateNextNight({
      from: o.from, root: o.root, name: o.name, changed: o.changed, seed: o.seed, overwrite: o.force,
      ...(o.largest !== undefined ? { largestFileBytes: o.largest } : {}),
      ...(o.mtime !== undefined ? { mtimeMs: o.mtime } : {}),
    });
    if (o.json) {
      process.stdout.write(`${JSON.stringify(night, null, 2)}\n`);
      return;
    }
    const c = night.chain;
    process.stdout.write([
      `made ${night.name} at ${night.dir} from ${c.from} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      `  ${night.files} files, ${formatBytes(night.bytes)}; changed ${(100 * c.changedShare).toFixed(1)}% of the bytes (asked ${(100 * o.changed).toFixed(1)}%)`,
      `  kept ${c.keptFiles} files (${formatBytes(c.keptBytes)}) byte for byte; new ${c.changedFiles} files (${formatBytes(c.changedBytes)}, meta included)`,
      `  ${c.newSegments.length} new segments, ${c.compactedSegments.length} compacted into ${c.compactedInto.length}, ` +
        `${c.deltaLogsAdded} delta logs on kept segments, ${c.newL0Segments.length} new L0 segments (${c.removedL0Segments.length} old ones gone)`,
      '',
    ].join('\n'));
    return;
  }
  const result = await generateBackup({
    root: o.root, name: o.name, variant: o.variant, breakage: o.breakage, seed: o.seed, noise: o.noise, overwrite: o.force,
    ...(o.size !== undefined ? { totalBytes: o.size } : {}),
    ...(o.files !== undefined ? { files: o.files } : {}),
    ...(o.largest !== undefined ? { largestFileBytes: o.largest } : {}),
    ...(o.collections !== undefined ? { collections: o.collections as 1 | 2 } : {}),
    ...(o.mtime !== undefined ? { mtimeMs: o.mtime } : {}),
  });
  if (o.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  const lines = [
    `made ${result.name} at ${result.dir} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    `  variant ${result.variant}, breakage ${result.breakage}, seed ${o.seed}`,
    `  ${result.files} files, ${formatBytes(result.bytes)} (${result.bytes} bytes), ${result.binlogs} binlogs listed in meta`,
    `  collections ${result.ids.collections.join(', ')}; ${result.ids.segments.length} segments, ${result.ids.l0Segments.length} L0`,
  ];
  if (result.brokenKey) lines.push(`  broken: ${result.brokenKey}`);
  if (result.noiseKeys.length > 0) lines.push(`  noise: ${result.noiseKeys.join(', ')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

function isMainModule(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(script)).href || import.meta.url === pathToFileURL(script).href;
  } catch {
    return false;
  }
}

if (isMainModule()) {
  main().catch((err: unknown) => {
    process.stderr.write(`gen-backup: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
