/**
 * The fan-out engine: copies one complete backup from a source to N destinations at once.
 *
 * Each file is read from the source once, cut into `chunkBytes` chunks, hashed once (XXH64 per
 * chunk and per file), and each chunk is handed to every destination that still needs the file.
 * Every destination writes through its own bounded queue (at most `partConcurrency` parts in
 * flight plus one waiting), so memory is bounded by
 * `fileConcurrency x destinations x (partConcurrency + 1) x partBytes`, whatever the backup's size.
 * A destination that fails is dropped from the fan-out and the others carry on; it gets no
 * manifest, and the next run copies only what it lacks. A destination gets
 * `NAME/.offsite/manifest.json` only after every file is committed there.
 *
 * Resume comes from the destinations themselves: files recorded in their manifest or progress
 * checkpoint are skipped; files present but unrecorded are hashed in place ("adopted"); partial
 * writes (temp files, open multipart uploads) are found by the driver and only the parts that
 * do not already match are sent.
 *
 * The progress checkpoint (see src/manifest/manifest.ts) is `progress.json` plus a journal of
 * the files committed since: each checkpoint syncs the destination, then appends one small
 * journal entry with the files that sync made durable; `progress.json` is rewritten with every
 * record only when the journal has grown as large as it, or to 256 entries, so the cost of
 * checkpoints stays proportional to the files copied, whatever the backup's size.
 */
import PQueue from 'p-queue';
import { assertComplete, backupTimeFromName, inspectBackup } from '../backup/index.js';
import type { Driver, WriteSession } from '../drivers/types.js';
import { errorKind, errorMessage, OffsiteError, type ErrorKind, UsageError } from '../errors.js';
import { getHasher } from '../hash/xxh64.js';
import {
  buildManifestBody, manifestKey, OFFSITE_DIR, progressJournalKey, progressJournalSequence, progressKey, readManifestAt, writeManifestAt,
  type Manifest, type ManifestFile,
} from '../manifest/manifest.js';
import { ChunkPool } from './buffers.js';
import { acquireLock, type HeldLock, type LockOptions } from './lock.js';
import { hashObject, readChunks, type ObjectHashes } from './chunks.js';
import { planReplication, type DestinationPlan, type DestinationState, type FileAction, type ReplicationPlan, type SourceFile } from './plan.js';

export const DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024;

const EMPTY = new Uint8Array(0);

export interface ReplicateOptions {
  readonly source: Driver;
  readonly backup: string;
  readonly destinations: readonly Driver[];
  /** @default 8 MiB */
  readonly chunkBytes?: number;
  /** Files transferred at once. @default 8 */
  readonly fileConcurrency?: number;
  /** Parts of one file in flight per destination (when the driver allows parallel parts). @default 2 */
  readonly partConcurrency?: number;
  /** Bytes of chunk buffers in flight, all files and destinations together. @default 64 MiB */
  readonly memoryBudgetBytes?: number;
  /** Quiet period of the completion rule. @default 60 s */
  readonly quietPeriodMs?: number;
  /** Plan only: read the source and destinations, write nothing. */
  readonly dryRun?: boolean;
  /** How often the in-progress checkpoint is written. @default 1000 ms */
  readonly checkpointIntervalMs?: number;
  /**
   * Copy exactly the files of a verified copy instead of inspecting the source as a milvus-backup
   * backup: `source` is then a destination holding a copy (repair from another destination, pull
   * back for restore) or the source checked against a manifest (repair). Every file must read back
   * to its recorded hash or it is not committed (E_ORIGIN_DAMAGED); the run uses the origin's
   * chunk size, and the manifest it writes keeps the origin's `source` and `backupTime`.
   */
  readonly origin?: ReplicateOrigin;
  /** The per-destination lock (see ./lock.ts). */
  readonly lock?: Omit<LockOptions, 'signal'>;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: ReplicateEvent) => void;
}

export interface ReplicateOrigin {
  readonly files: readonly ManifestFile[];
  readonly chunkBytes: number;
  /** The `source` recorded in the origin manifest. */
  readonly source: string;
  readonly backupTime?: string;
}

export type ReplicateEvent =
  | { readonly type: 'plan'; readonly plan: ReplicationPlan }
  | { readonly type: 'bytes'; readonly destination: string; readonly bytes: number }
  | { readonly type: 'file-done'; readonly destination: string; readonly path: string; readonly how: 'copied' | 'adopted' }
  | { readonly type: 'destination-failed'; readonly destination: string; readonly message: string };

export interface ProblemReport {
  readonly path?: string;
  readonly kind: ErrorKind;
  readonly code: string;
  readonly message: string;
}

export type DestinationStatus = 'complete' | 'up-to-date' | 'failed' | 'planned';

export interface DestinationResult {
  readonly name: string;
  readonly description: string;
  readonly status: DestinationStatus;
  readonly filesCopied: number;
  readonly filesAdopted: number;
  readonly filesSkipped: number;
  /** Bytes actually sent to the destination. */
  readonly bytesWritten: number;
  /** Bytes of interrupted writes found intact at the destination and not sent again. */
  readonly bytesResumed: number;
  /** Bytes of files that were already whole there. */
  readonly bytesSkipped: number;
  readonly manifestKey?: string;
  readonly errors: readonly ProblemReport[];
  readonly plan?: DestinationPlan;
}

export interface ReplicateResult {
  readonly backup: string;
  readonly source: string;
  readonly dryRun: boolean;
  readonly files: number;
  readonly bytes: number;
  /** Bytes read from the source (each file once per pass, not once per destination). */
  readonly bytesRead: number;
  readonly durationMs: number;
  readonly destinations: readonly DestinationResult[];
}

function problem(err: unknown, path?: string): ProblemReport {
  return { path, kind: errorKind(err), code: err instanceof OffsiteError ? err.code : 'E_INTERNAL', message: errorMessage(err) };
}

/** What a destination holds for a backup, with the journal of its progress checkpoint. */
export interface DestinationHoldings extends DestinationState {
  readonly progressJournal: ProgressJournal;
}

export interface ProgressJournal {
  /** Files in `progress.json` when it is there and valid. */
  readonly baseFiles?: number;
  /** The journal entries there, oldest first; `included` when `progress.json` already has their files. */
  readonly entries: readonly { readonly key: string; readonly sequence: number; readonly included: boolean; readonly files: number }[];
}

/**
 * Reads what a destination holds for `backup`. `progress` is `progress.json` with the journal
 * entries it does not include applied on top, in order (entries with another chunk size than the
 * newest one are left out: their hashes would not be usable).
 */
export async function readDestinationState(driver: Driver, backup: string, signal?: AbortSignal): Promise<DestinationHoldings> {
  const present = new Map<string, number>();
  const prefix = `${backup}/`;
  const journal: { key: string; sequence: number }[] = [];
  for await (const entry of driver.list(prefix, { signal })) {
    const path = entry.key.slice(prefix.length);
    if (path.startsWith(`${OFFSITE_DIR}/`)) {
      const sequence = progressJournalSequence(backup, entry.key);
      if (sequence !== undefined) journal.push({ key: entry.key, sequence });
      continue;
    }
    present.set(path, entry.size);
  }
  journal.sort((a, b) => a.sequence - b.sequence);
  let manifest: Manifest | undefined;
  let manifestProblem: string | undefined;
  try {
    manifest = await readManifestAt(driver, manifestKey(backup), { signal });
  } catch (err) {
    if (errorKind(err) !== 'integrity') throw err;
    manifestProblem = errorMessage(err);
  }
  // A damaged checkpoint or journal entry only costs re-reading the files it recorded.
  const readQuietly = async (key: string): Promise<Manifest | undefined> => {
    try {
      return await readManifestAt(driver, key, { signal });
    } catch (err) {
      if (errorKind(err) !== 'integrity') throw err;
      return undefined;
    }
  };
  const base = await readQuietly(progressKey(backup));
  const through = base?.includesThrough ?? 0;
  const toRead = journal.filter((j) => j.sequence > through);
  const read = new Array<Manifest | undefined>(toRead.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(8, toRead.length) }, async () => {
    while (next < toRead.length) {
      const i = next++;
      read[i] = await readQuietly((toRead[i] as { key: string }).key);
    }
  }));
  const layers = [base, ...read].filter((m): m is Manifest => m !== undefined);
  const newest = layers[layers.length - 1];
  let progress: Manifest | undefined = base;
  if (newest !== undefined && newest !== base) {
    const files = new Map<string, ManifestFile>();
    for (const layer of layers) {
      if (layer.chunkBytes !== newest.chunkBytes) continue;
      for (const f of layer.files) files.set(f.path, f);
    }
    let totalBytes = 0;
    for (const f of files.values()) totalBytes += f.size;
    progress = { ...newest, kind: 'progress', files: [...files.values()], fileCount: files.size, totalBytes };
  }
  const entries = journal.map((j) => {
    const i = toRead.indexOf(j);
    return { ...j, included: j.sequence <= through, files: i < 0 ? 0 : read[i]?.fileCount ?? 0 };
  });
  return { name: driver.name, manifest, manifestProblem, progress, present, progressJournal: { baseFiles: base?.fileCount, entries } };
}

/** Journal entries (files) before `progress.json` is rewritten with every record (see the file comment). */
const MAX_JOURNAL_ENTRIES = 256;

/** One destination during a run. */
class DestinationRun {
  readonly records = new Map<string, ManifestFile>();
  readonly errors: ProblemReport[] = [];
  readonly actions: Map<string, FileAction>;
  dead = false;
  filesCopied = 0;
  filesAdopted = 0;
  bytesWritten = 0;
  bytesResumed = 0;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private checkpointChain: Promise<void> = Promise.resolve();
  private dirty = false;
  private checkpointIntervalMs: number;
  /** Records since the last checkpoint written, in the order they were made. */
  private pending: ManifestFile[] = [];
  /** Files in `progress.json` at the destination, `undefined` while there is none. */
  private baseFiles: number | undefined;
  /** Journal entries at the destination: `live` ones are not in `progress.json` yet. */
  private journal: { key: string; live: boolean; files: number }[];
  private nextSequence: number;

  constructor(
    readonly driver: Driver,
    readonly plan: DestinationPlan,
    private readonly context: { backup: string; source: string; chunkBytes: number; checkpointIntervalMs: number; emit: (e: ReplicateEvent) => void },
    progressJournal?: ProgressJournal,
  ) {
    this.checkpointIntervalMs = context.checkpointIntervalMs;
    this.actions = new Map(plan.actions.map((a) => [a.path, a]));
    for (const action of plan.actions) if (action.record) this.records.set(action.path, action.record);
    this.baseFiles = progressJournal?.baseFiles;
    this.journal = (progressJournal?.entries ?? []).map((e) => ({ key: e.key, live: !e.included, files: e.files }));
    this.nextSequence = 1 + Math.max(0, ...(progressJournal?.entries ?? []).map((e) => e.sequence));
  }

  get name(): string { return this.driver.name; }

  needs(path: string): FileAction | undefined {
    const action = this.actions.get(path);
    return !this.dead && action && action.action !== 'skip' ? action : undefined;
  }

  /** Records a failure; errors other than a file's own integrity problem end this destination's run. */
  fail(err: unknown, path?: string): void {
    this.errors.push(problem(err, path));
    if (errorKind(err) !== 'integrity' && !this.dead) {
      this.dead = true;
      this.context.emit({ type: 'destination-failed', destination: this.name, message: errorMessage(err) });
    }
  }

  countBytes(bytes: number, written: boolean): void {
    if (written) this.bytesWritten += bytes; else this.bytesResumed += bytes;
    this.context.emit({ type: 'bytes', destination: this.name, bytes });
  }

  record(file: ManifestFile, how: 'copied' | 'adopted'): void {
    this.records.set(file.path, file);
    this.pending.push(file);
    if (how === 'copied') this.filesCopied++; else this.filesAdopted++;
    this.context.emit({ type: 'file-done', destination: this.name, path: file.path, how });
    this.scheduleCheckpoint();
  }

  private scheduleCheckpoint(): void {
    this.dirty = true;
    if (this.checkpointTimer) return;
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = undefined;
      void this.writeCheckpoint();
    }, this.checkpointIntervalMs);
  }

  /**
   * Writes the progress checkpoint (serialized; a failure only costs re-hashing later): syncs
   * the destination, then records the files committed before that sync, as a journal entry or,
   * when the journal has grown large, by rewriting `progress.json` with every record.
   */
  writeCheckpoint(): Promise<void> {
    this.checkpointChain = this.checkpointChain.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      const started = Date.now();
      // Only files made durable by this sync may be recorded as done: take them before it.
      const batch = this.pending;
      this.pending = [];
      const live = this.journal.filter((e) => e.live);
      const journalFiles = live.reduce((sum, e) => sum + e.files, 0) + batch.length;
      const rewrite = this.baseFiles === undefined || live.length >= MAX_JOURNAL_ENTRIES || journalFiles > Math.max(this.baseFiles, 1000);
      const all = rewrite ? [...this.records.values()] : [];
      try {
        await this.driver.sync();
        const { backup, source, chunkBytes } = this.context;
        if (rewrite) {
          const includesThrough = this.nextSequence - 1;
          const body = buildManifestBody({ kind: 'progress', backup, source, chunkBytes, files: all, includesThrough });
          await writeManifestAt(this.driver, progressKey(backup), body, { pretty: false });
          this.baseFiles = all.length;
          for (const e of this.journal) e.live = false;
          await this.deleteJournal(); // best effort: progress.json says they are included
        } else {
          // The number is used even if the write fails (it may have landed): the next
          // rewrite of progress.json includes it, and deletes it.
          const sequence = this.nextSequence++;
          const key = progressJournalKey(backup, sequence);
          this.journal.push({ key, live: true, files: batch.length });
          const body = buildManifestBody({ kind: 'progress', backup, source, chunkBytes, files: batch, sequence });
          await writeManifestAt(this.driver, key, body, { pretty: false });
        }
      } catch {
        this.pending = batch.concat(this.pending);
        this.dirty = true;
      }
      // Keep the checkpoints' cost under ~10% of the run.
      this.checkpointIntervalMs = Math.max(this.context.checkpointIntervalMs, 10 * (Date.now() - started));
    });
    return this.checkpointChain;
  }

  /** Deletes the journal entries that `progress.json` includes (all of them once it is gone). */
  private async deleteJournal(all = false): Promise<void> {
    const doomed = this.journal.filter((e) => all || !e.live);
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(4, doomed.length) }, async () => {
      while (next < doomed.length) {
        const entry = doomed[next++] as { key: string };
        try {
          await this.driver.delete(entry.key);
          this.journal = this.journal.filter((e) => e !== entry);
        } catch {
          // Left for the next rewrite (a later run skips entries that progress.json includes).
        }
      }
    }));
  }

  /** Removes the checkpoint once the manifest is written: `progress.json`, then its journal. */
  async deleteProgress(signal?: AbortSignal): Promise<void> {
    await this.driver.delete(progressKey(this.context.backup), { signal }).catch(() => undefined);
    await this.deleteJournal(true);
  }

  stopCheckpoints(): Promise<void> {
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    return this.checkpointChain;
  }
}

/** Part size for a file at a destination: a whole number of chunks that the driver accepts. */
export function partBytesFor(size: number, chunkBytes: number, driver: Driver): number {
  const caps = driver.capabilities;
  let chunksPerPart = Math.max(1, Math.ceil(caps.minPartBytes / chunkBytes));
  if (Number.isFinite(caps.maxParts)) chunksPerPart = Math.max(chunksPerPart, Math.ceil(size / (chunkBytes * caps.maxParts)));
  const partBytes = chunksPerPart * chunkBytes;
  if (partBytes > caps.maxPartBytes) {
    throw new OffsiteError('E_TOO_LARGE', `${driver.name}: a ${size}-byte file needs ${partBytes}-byte parts, more than the ${caps.maxPartBytes} this destination accepts`, { kind: 'permanent' });
  }
  return partBytes;
}

/** Feeds one destination's write session with chunks, a bounded number of parts at a time. */
class FileSink {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private nextPart = 0;
  /** Parts being written, at most `parallel`. (A counter, not a PQueue: one is made per file and destination.) */
  private writing = 0;
  private readonly parallel: number;
  private wakers: (() => void)[] = [];
  error: unknown;

  constructor(readonly run: DestinationRun, readonly session: WriteSession, partConcurrency: number, private readonly pool: ChunkPool, private readonly signal?: AbortSignal) {
    this.parallel = run.driver.capabilities.parallelPartWrites ? partConcurrency : 1;
  }

  get alive(): boolean { return this.error === undefined && !this.run.dead; }

  /**
   * Takes the next chunk, and one reference to it, which this sink releases once the chunk is
   * written (or dropped). Resolves when there is room for more.
   */
  async push(chunk: Buffer, last: boolean): Promise<void> {
    if (!this.alive) { this.pool.release(chunk); return; }
    if (this.session.partBytes === chunk.length || (last && this.pending.length === 0)) {
      return this.enqueue(chunk);
    }
    // Parts of several chunks (files too big for 10,000 parts of one chunk): copy into a part
    // buffer so the pooled chunk goes back at once and cannot hold up the readers.
    this.pending.push(Buffer.from(chunk));
    this.pendingBytes += chunk.length;
    this.pool.release(chunk);
    if (this.pendingBytes < this.session.partBytes && !last) return;
    const bytes = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    return this.enqueue(bytes);
  }

  /** Starts writing a part once fewer than `parallel` are in flight; resolves when it has started. */
  private async enqueue(bytes: Buffer): Promise<void> {
    const index = this.nextPart++;
    while (this.writing >= this.parallel) await this.partDone();
    this.writing++;
    void this.writePart(index, bytes).finally(() => {
      this.pool.release(bytes);
      this.writing--;
      const wakers = this.wakers;
      this.wakers = [];
      for (const wake of wakers) wake();
    });
  }

  private partDone(): Promise<void> {
    return new Promise((resolve) => this.wakers.push(resolve));
  }

  private async idle(): Promise<void> {
    while (this.writing > 0) await this.partDone();
  }

  private async writePart(index: number, bytes: Buffer): Promise<void> {
    if (!this.alive) return;
    try {
      if (this.session.resumableParts.has(index) && await this.session.matches(index, bytes, { signal: this.signal })) {
        this.run.countBytes(bytes.length, false);
        return;
      }
      await this.session.write(index, bytes, { signal: this.signal });
      this.run.countBytes(bytes.length, true);
    } catch (err) {
      this.error ??= err;
    }
  }

  /** Waits for the parts in flight and commits; throws the first error. */
  async finish(hash: string): Promise<void> {
    await this.idle();
    if (this.error !== undefined) throw this.error;
    if (this.run.dead) throw new OffsiteError('E_DESTINATION_FAILED', `${this.run.name}: destination failed earlier in this run`, { kind: 'permanent' });
    await this.session.commit({ hash, signal: this.signal });
  }

  /** Releases the session after a failure: keep resumable state unless the data was wrong. */
  async release(err: unknown): Promise<void> {
    await this.idle();
    if (errorKind(err) === 'integrity') await this.session.abort();
    else await this.session.suspend();
  }
}

interface EngineContext {
  readonly source: Driver;
  readonly backup: string;
  readonly chunkBytes: number;
  readonly partConcurrency: number;
  readonly pool: ChunkPool;
  readonly signal?: AbortSignal;
  bytesRead: number;
}

/** A file to copy: its size and mtime at the source, and in origin mode the hash it must have. */
interface EngineFile extends SourceFile {
  readonly mtimeMs: number;
  readonly expected?: string;
}

function originDamaged(ctx: EngineContext, file: EngineFile, found: string): OffsiteError {
  return new OffsiteError('E_ORIGIN_DAMAGED', `${ctx.source.name}: ${ctx.backup}/${file.path} reads back as ${found}, its manifest says ${file.expected}: that copy is damaged; take the file from elsewhere`, { kind: 'integrity' });
}

/**
 * Checks a present-but-unrecorded file against the source hashes without rewriting it: its bytes
 * at the destination are read and hashed, always. A hash the driver keeps with the object
 * (`storedHash`, S3 metadata) is only a fingerprint: the bytes can be replaced while it stays.
 */
async function adopt(ctx: EngineContext, run: DestinationRun, file: SourceFile, hashes: ObjectHashes): Promise<boolean> {
  const key = `${ctx.backup}/${file.path}`;
  try {
    const there = await hashObject(run.driver, key, file.size, ctx.pool, ctx.signal);
    const same = there.hash === hashes.hash && there.chunks.length === hashes.chunks.length && there.chunks.every((c, i) => c === hashes.chunks[i]);
    if (same) run.record({ path: file.path, size: file.size, hash: hashes.hash, chunks: hashes.chunks }, 'adopted');
    return same;
  } catch (err) {
    if (errorKind(err) === 'integrity' || errorKind(err) === 'not-found') return false;
    run.fail(err, file.path);
    return true; // handled: do not also try to copy to a failed destination
  }
}

/** Transfers one file to every destination that needs it. Never throws: failures are recorded per destination. */
async function transferFile(ctx: EngineContext, runs: readonly DestinationRun[], file: EngineFile): Promise<void> {
  let targets = runs.filter((r) => r.needs(file.path));
  if (targets.length === 0) return;
  const sourceKey = `${ctx.backup}/${file.path}`;
  let firstPass: ObjectHashes | undefined;
  try {
    const adopters = targets.filter((r) => r.needs(file.path)?.action === 'adopt');
    if (adopters.length > 0) {
      firstPass = await hashObject(ctx.source, sourceKey, file.size, ctx.pool, ctx.signal);
      ctx.bytesRead += file.size;
      if (file.expected !== undefined && firstPass.hash !== file.expected) throw originDamaged(ctx, file, firstPass.hash);
      const adopted = await Promise.all(adopters.map((r) => adopt(ctx, r, file, firstPass as ObjectHashes)));
      targets = targets.filter((r) => !adopters.includes(r) || !adopted[adopters.indexOf(r)]);
      if (targets.length === 0) return;
    }
  } catch (err) {
    for (const r of targets) r.fail(err, file.path);
    return;
  }

  const sinks: FileSink[] = [];
  await Promise.all(targets.map(async (run) => {
    try {
      const partBytes = partBytesFor(file.size, ctx.chunkBytes, run.driver);
      const session = await run.driver.openWrite(`${ctx.backup}/${file.path}`, { size: file.size, partBytes, signal: ctx.signal });
      sinks.push(new FileSink(run, session, ctx.partConcurrency, ctx.pool, ctx.signal));
    } catch (err) {
      run.fail(err, file.path);
    }
  }));
  if (sinks.length === 0) return;

  const hasher = await getHasher();
  // A file of one chunk (most small files) has the hash of that chunk: hashed once, not twice.
  const fileHash = file.size > ctx.chunkBytes ? hasher.create() : undefined;
  const chunkHashes: string[] = [];
  try {
    let offset = 0;
    for await (const chunk of readChunks(ctx.source, sourceKey, file.size, ctx.pool, `source: ${sourceKey}`, ctx.signal)) {
      fileHash?.update(chunk);
      chunkHashes.push(hasher.hash(chunk));
      offset += chunk.length;
      ctx.bytesRead += chunk.length;
      const live = sinks.filter((s) => s.alive);
      if (live.length === 0) { ctx.pool.release(chunk); break; }
      ctx.pool.retain(chunk, live.length - 1); // the reader's reference goes to the first sink
      await Promise.all(live.map((s) => s.push(chunk, offset === file.size)));
    }
    if (sinks.some((s) => s.alive)) {
      const after = await ctx.source.stat(sourceKey, { signal: ctx.signal });
      const hash = fileHash ? fileHash.digest() : chunkHashes[0] ?? hasher.hash(EMPTY);
      if (!after || after.size !== file.size || after.mtimeMs !== file.mtimeMs || (firstPass && firstPass.hash !== hash)) {
        throw new OffsiteError('E_SOURCE_CHANGED', `source: ${sourceKey} changed while it was being copied; it is not recorded anywhere: run replicate again once the backup is stable`, { kind: 'integrity' });
      }
      if (file.expected !== undefined && hash !== file.expected) throw originDamaged(ctx, file, hash);
      await Promise.all(sinks.map(async (sink) => {
        if (!sink.alive) return;
        try {
          await sink.finish(hash);
          sink.run.record({ path: file.path, size: file.size, hash, chunks: chunkHashes }, 'copied');
        } catch (err) {
          sink.error ??= err;
        }
      }));
    }
  } catch (err) {
    for (const sink of sinks) sink.error ??= err;
  }
  await Promise.all(sinks.map(async (sink) => {
    if (sink.error === undefined) return;
    sink.run.fail(sink.error, file.path);
    await sink.release(sink.error).catch(() => undefined);
  }));
}

interface RunFiles {
  readonly files: readonly EngineFile[];
  readonly backupTime: string;
  /** Recorded as the manifest's `source`. */
  readonly sourceDescription: string;
  /** Origin files the source does not have (or has with another size): they fail, the rest is copied. */
  readonly missing: readonly { readonly path: string; readonly error: OffsiteError }[];
}

/** The files of a complete backup at the source (the completion rule must hold). */
async function backupFiles(source: Driver, backup: string, quietPeriodMs: number | undefined, signal?: AbortSignal): Promise<RunFiles> {
  const inspection = await inspectBackup(source, backup, { quietPeriodMs, signal });
  assertComplete(inspection);
  const prefixLength = backup.length + 1;
  return {
    files: inspection.files.map((f) => ({ path: f.key.slice(prefixLength), size: f.size, mtimeMs: f.mtimeMs })),
    backupTime: (backupTimeFromName(backup) ?? new Date(inspection.lastChangeMs)).toISOString(),
    sourceDescription: source.description,
    missing: [],
  };
}

/** The files an origin manifest lists, matched against what `source` holds. */
async function originFiles(source: Driver, backup: string, origin: ReplicateOrigin, signal?: AbortSignal): Promise<RunFiles> {
  const present = new Map<string, { size: number; mtimeMs: number }>();
  for await (const entry of source.list(`${backup}/`, { signal })) present.set(entry.key.slice(backup.length + 1), entry);
  const missing: { path: string; error: OffsiteError }[] = [];
  const files = origin.files.map((f) => {
    const there = present.get(f.path);
    if (!there || there.size !== f.size) {
      missing.push({ path: f.path, error: new OffsiteError('E_ORIGIN_DAMAGED', `${source.name}: ${backup}/${f.path} is ${there ? `${there.size} bytes, its manifest says ${f.size}` : 'missing'}; take the file from elsewhere`, { kind: 'integrity' }) });
    }
    return { path: f.path, size: f.size, mtimeMs: there?.mtimeMs ?? 0, expected: f.hash };
  });
  return { files, backupTime: origin.backupTime ?? new Date().toISOString(), sourceDescription: origin.source, missing };
}

/** Replicates one complete backup to every destination. See the file comment. */
export async function replicate(options: ReplicateOptions): Promise<ReplicateResult> {
  const started = Date.now();
  const chunkBytes = options.origin?.chunkBytes ?? options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1024 || chunkBytes > 1024 ** 3) {
    throw new UsageError(`chunk size must be between 1 KiB and 1 GiB, got ${chunkBytes} bytes`);
  }
  const emit = options.onEvent ?? (() => undefined);
  const { source, backup, signal } = options;

  const { files, backupTime, sourceDescription, missing } = options.origin
    ? await originFiles(source, backup, options.origin, signal)
    : await backupFiles(source, backup, options.quietPeriodMs, signal);
  const totalBytes = files.reduce((sum, f) => sum + f.size, 0);

  const failedEarly = new Map<string, ProblemReport>();
  const locks: HeldLock[] = [];
  const order = (a: DestinationState, b: DestinationState) =>
    options.destinations.findIndex((d) => d.name === a.name) - options.destinations.findIndex((d) => d.name === b.name);
  const states = new Map<string, DestinationHoldings>();
  const readState = async (d: Driver, lock: boolean): Promise<void> => {
    try {
      if (lock) locks.push(await acquireLock(d, backup, { ...options.lock, signal }));
      states.set(d.name, await readDestinationState(d, backup, signal));
    } catch (err) {
      states.delete(d.name);
      failedEarly.set(d.name, problem(err));
      emit({ type: 'destination-failed', destination: d.name, message: errorMessage(err) });
    }
  };
  await Promise.all(options.destinations.map((d) => readState(d, false)));
  let plan = planReplication(backup, files, [...states.values()].sort(order), chunkBytes);
  if (!options.dryRun) {
    // Destinations with work to do are locked, then read again: what another run did meanwhile counts.
    const busy = plan.destinations.filter((p) => !p.upToDate).map((p) => options.destinations.find((d) => d.name === p.destination) as Driver);
    await Promise.all(busy.map((d) => readState(d, true)));
    plan = planReplication(backup, files, [...states.values()].sort(order), chunkBytes);
  }
  emit({ type: 'plan', plan });

  try {
    const context = { backup, source: sourceDescription, chunkBytes, checkpointIntervalMs: options.checkpointIntervalMs ?? 1000, emit };
    const runs = plan.destinations.map((p) => new DestinationRun(options.destinations.find((d) => d.name === p.destination) as Driver, p, context, states.get(p.destination)?.progressJournal));
    const pool = new ChunkPool(chunkBytes, Math.max(options.memoryBudgetBytes ?? 64 * 1024 * 1024, 2 * chunkBytes));
    const ctx: EngineContext = { source, backup, chunkBytes, partConcurrency: options.partConcurrency ?? 2, pool, signal, bytesRead: 0 };
    for (const run of runs) for (const m of missing) if (run.needs(m.path)) run.fail(m.error, m.path);

    if (!options.dryRun) {
      await Promise.all(runs.map(async (run) => {
        if (!run.plan.removeManifestFirst) return;
        try {
          await run.driver.delete(manifestKey(backup), { signal });
        } catch (err) {
          run.fail(err);
        }
      }));
      const queue = new PQueue({ concurrency: options.fileConcurrency ?? 8 });
      const unavailable = new Set(missing.map((m) => m.path));
      for (const file of files) {
        if (unavailable.has(file.path) || !runs.some((r) => r.needs(file.path))) continue;
        await queue.onSizeLessThan(queue.concurrency);
        void queue.add(() => transferFile(ctx, runs, file));
      }
      await queue.onIdle();
    }

    const results: DestinationResult[] = [];
    for (const d of options.destinations) {
      const early = failedEarly.get(d.name);
      const run = runs.find((r) => r.name === d.name);
      const base = { name: d.name, description: d.description, filesCopied: 0, filesAdopted: 0, filesSkipped: 0, bytesWritten: 0, bytesResumed: 0, bytesSkipped: 0 };
      if (early || !run) {
        results.push({ ...base, status: 'failed', errors: early ? [early] : [] });
        continue;
      }
      const counts = {
        ...base, plan: run.plan, filesCopied: run.filesCopied, filesAdopted: run.filesAdopted, filesSkipped: run.plan.skipFiles,
        bytesWritten: run.bytesWritten, bytesResumed: run.bytesResumed, bytesSkipped: run.plan.skipBytes,
      };
      if (options.dryRun) { results.push({ ...counts, status: 'planned', errors: [] }); continue; }
      if (run.plan.upToDate) { results.push({ ...counts, status: 'up-to-date', manifestKey: manifestKey(backup), errors: [] }); continue; }
      await run.stopCheckpoints();
      const whole = !run.dead && run.errors.length === 0 && files.every((f) => run.records.has(f.path));
      if (whole) {
        try {
          const body = buildManifestBody({ kind: 'complete', backup, source: sourceDescription, chunkBytes, backupTime, files: files.map((f) => run.records.get(f.path) as ManifestFile) });
          await run.driver.sync({ signal });
          await writeManifestAt(run.driver, manifestKey(backup), body, { signal });
          await run.driver.sync({ signal });
          await run.deleteProgress(signal);
          results.push({ ...counts, status: 'complete', manifestKey: manifestKey(backup), errors: [] });
          continue;
        } catch (err) {
          run.fail(err);
        }
      } else {
        await run.writeCheckpoint();
        if (run.errors.length === 0) run.fail(new OffsiteError('E_INCOMPLETE', `${run.name}: not every file was copied`, { kind: 'fatal' }));
      }
      results.push({ ...counts, status: 'failed', errors: run.errors });
    }
    return {
      backup, source: source.description, dryRun: options.dryRun ?? false, files: files.length, bytes: totalBytes,
      bytesRead: ctx.bytesRead, durationMs: Date.now() - started, destinations: results,
    };
  } finally {
    await Promise.all(locks.map((l) => l.release()));
  }
}
