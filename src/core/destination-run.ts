/**
 * One destination during a replicate run (src/core/replicate.ts): its records, progress
 * checkpoints (`progress.json` plus a journal, see the file comment there), its share of the chunk
 * budget and its place in the shared source reads (src/core/fanout.ts), and the writer that feeds
 * one file's write session with chunks.
 */
import type { Committed, Driver, WriteSession } from '../drivers/types.js';
import { errorKind, errorMessage, OffsiteError } from '../errors.js';
import {
  buildManifestBody, progressJournalKey, progressJournalSequence, progressKey, writeManifestAt,
  type ManifestFile,
} from '../manifest/manifest.js';
import { writeManifestStreamed } from '../manifest/write-stream.js';
import type { ChunkPool } from './buffers.js';
import type { Fanout, FeedMember } from './fanout.js';
import { Ledger } from './ledger.js';
import { RecordStore } from './records.js';
import { asSortedPaths, type SortedPaths } from './sorted-paths.js';
import { ACTION_KINDS, type DestinationPlan, type FileActionKind } from './plan.js';
import type { ProgressJournal } from './destination-state.js';
import type { ProblemReport, ReplicateEvent } from './replicate.js';
import type { ReuseIndex } from './reuse-index.js';

/** What a destination may reuse from: the index of its other complete copies, and whether to hard-link (`reuse: link`). */
export interface RunReuse {
  readonly index: ReuseIndex;
  readonly link: boolean;
}

export function problem(err: unknown, path?: string): ProblemReport {
  return { path, kind: errorKind(err), code: err instanceof OffsiteError ? err.code : 'E_INTERNAL', message: errorMessage(err) };
}

/** Where a run keeps its progress checkpoint: next to the copy's manifest, or in a shard's folder (./shard.ts). */
export interface CheckpointKeys {
  readonly progress: string;
  journal(sequence: number): string;
  /** The sequence number of a journal entry's key, `undefined` for any other key. */
  sequenceOf(key: string): number | undefined;
}

/** The copy's own checkpoint: `NAME/.offsite/progress.json` and its journal. */
export function copyCheckpointKeys(backup: string): CheckpointKeys {
  return { progress: progressKey(backup), journal: (sequence) => progressJournalKey(backup, sequence), sequenceOf: (key) => progressJournalSequence(backup, key) };
}

/** Journal entries (files) before `progress.json` is rewritten with every record (see the file comment). */
const MAX_JOURNAL_ENTRIES = 256;

/** One destination during a run. */
export class DestinationRun implements FeedMember {
  readonly records: RecordStore;
  readonly errors: ProblemReport[] = [];
  /**
   * The plan, without its actions unless `keepActions` (a dry run reports them): one object per
   * file, of which the run needs only the kind, kept in `kinds`.
   */
  readonly plan: DestinationPlan;
  /** The kind of the plan's action for `context.paths.at(i)` (an index into `ACTION_KINDS`), when the actions are in that order. */
  private readonly kinds: Uint8Array | undefined;
  /** The run's paths, when the plan's actions are in their order. */
  private readonly paths: SortedPaths | undefined;
  /** The kinds by path otherwise. */
  private readonly kindMap: Map<string, FileActionKind> | undefined;
  /** Files planned as `reuse` that are there already, unrecorded (a run killed after reusing them; few). */
  private readonly presentForReuse: ReadonlySet<string>;
  dead = false;
  filesCopied = 0;
  filesAdopted = 0;
  /** Files created by a server-side copy of another complete copy's file (issue 12), and their bytes (not sent). */
  filesReused = 0;
  bytesReused = 0;
  /** Where this destination may reuse files from (./reuse-file.ts); none: every file is sent. */
  reuse: RunReuse | undefined;
  bytesWritten = 0;
  bytesResumed = 0;
  /** This destination's share of the chunk budget. */
  readonly ledger: Ledger;
  attached = true;
  detachments = 0;
  bytesReadAlone = 0;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private checkpointChain: Promise<void> = Promise.resolve();
  private dirty = false;
  private checkpointIntervalMs: number;
  /**
   * The paths of the records made since the last checkpoint written, in order. Paths, not records:
   * a checkpoint's cost sets the time to the next one (up to tens of seconds under load), and
   * thousands of records held that long (~200 bytes each) all outlived the young generation.
   * A known path (the run's, ./records.ts) by its slot: the engine may keep them packed, and the
   * string it gave `record` would be one of its own, held as long.
   */
  private pending: Array<string | number> = [];
  /** Files in `progress.json` at the destination, `undefined` while there is none. */
  private baseFiles: number | undefined;
  /** Journal entries at the destination: `live` ones are not in `progress.json` yet. */
  private journal: { key: string; live: boolean; files: number }[];
  private nextSequence: number;
  /**
   * The number this run's first journal entry takes: after every entry there and every entry
   * `progress.json` includes (their files may be gone), so that no later reader takes a new entry
   * for an included one. A run killed while writing its next entry left that write's temp name
   * under this number (entries are written one at a time; the first checkpoint of a run is
   * always `progress.json`, so only a run that found one can be in that case): see `deleteProgress`.
   */
  private readonly firstSequence: number;
  private readonly resumed: boolean;
  private readonly keys: CheckpointKeys;

  constructor(
    readonly driver: Driver,
    plan: DestinationPlan,
    private readonly context: {
      backup: string; source: string; chunkBytes: number; checkpointIntervalMs: number; emit: (e: ReplicateEvent) => void; checkpointKeys?: CheckpointKeys;
      /** The run's paths, sorted by code units: the plan's actions are in this order (one per path). */
      paths?: readonly string[] | SortedPaths;
      /** The run's `i`-th file is at `paths.at(i)` (see `needsAt`). */
      filesInPathOrder?: boolean;
    },
    fanout: Fanout,
    progressJournal?: ProgressJournal,
    keepActions = true,
  ) {
    this.ledger = new Ledger(fanout);
    this.checkpointIntervalMs = context.checkpointIntervalMs;
    this.keys = context.checkpointKeys ?? copyCheckpointKeys(context.backup);
    const paths = asSortedPaths(context.paths);
    const compact = plan.compact;
    if (compact !== undefined) {
      // A compact plan (not a dry run) of the run's files: in the order of `paths` when the files are.
      if (!(paths !== undefined && compact.inGivenOrder && context.filesInPathOrder === true && paths.length === compact.kinds.length)) {
        throw new Error(`${driver.name}: a compact plan whose files are not in the order of the run's paths`);
      }
      this.paths = paths;
      this.kinds = compact.kinds;
      this.kindMap = undefined;
      this.presentForReuse = new Set(compact.present);
      this.records = new RecordStore(paths);
      for (const record of compact.records) this.records.set(record);
    } else {
      // 100,000 files: a map from path to action, and one to each record's slot, would cost ~100 bytes
      // per file, the actions themselves ~60 more; a byte per file says what to do, found like the
      // records by binary search in `paths`.
      const aligned = paths !== undefined && paths.length === plan.actions.length && plan.actions.every((a, i) => a.path === paths.at(i));
      this.paths = aligned ? paths : undefined;
      this.kinds = aligned ? Uint8Array.from(plan.actions, (a) => ACTION_KINDS.indexOf(a.action)) : undefined;
      this.kindMap = aligned ? undefined : new Map(plan.actions.map((a) => [a.path, a.action]));
      this.presentForReuse = new Set(plan.actions.filter((a) => a.present === true).map((a) => a.path));
      this.records = new RecordStore(aligned ? paths : []);
      for (const action of plan.actions) if (action.record) this.records.set(action.record);
    }
    const { compact: _compact, ...rest } = plan;
    this.plan = keepActions ? rest : { ...rest, actions: [] };
    this.baseFiles = progressJournal?.baseFiles;
    this.journal = (progressJournal?.entries ?? []).map((e) => ({ key: e.key, live: !e.included, files: e.files }));
    this.firstSequence = 1 + Math.max(progressJournal?.includesThrough ?? 0, ...(progressJournal?.entries ?? []).map((e) => e.sequence));
    this.nextSequence = this.firstSequence;
    this.resumed = this.baseFiles !== undefined || this.journal.length > 0;
  }

  get name(): string { return this.driver.name; }

  /** The kind of the plan's action for `path`. */
  action(path: string): FileActionKind | undefined {
    if (this.kindMap) return this.kindMap.get(path);
    const at = (this.paths as SortedPaths).indexOf(path);
    return at < 0 ? undefined : ACTION_KINDS[(this.kinds as Uint8Array)[at] as number];
  }

  /** Whether `path`, planned as `reuse`, is there already: a reuse that misses compares it in place before sending it. */
  isPresent(path: string): boolean {
    return this.presentForReuse.has(path);
  }

  /** What the plan asks for `path`, unless that is nothing (`skip`) or this destination failed. */
  needs(path: string): FileActionKind | undefined {
    const action = this.action(path);
    return !this.dead && action !== 'skip' ? action : undefined;
  }

  /**
   * `needs` of the run's `index`-th file: found by its index when the run's files are in the order
   * of its paths, without a lookup of `path()` (the dispatch loops of ./replicate.ts ask for every
   * file, and a path kept packed is found by a binary search).
   */
  needsAt(index: number, path: () => string): FileActionKind | undefined {
    if (this.dead) return undefined;
    const action = this.kinds !== undefined && this.context.filesInPathOrder === true ? ACTION_KINDS[this.kinds[index] as number] : this.action(path());
    return action !== 'skip' ? action : undefined;
  }

  wants(path: string): boolean {
    const action = this.needs(path);
    return (action === 'copy' || action === 'reuse') && !this.records.has(path);
  }

  /** Records a failure; errors other than a file's own integrity problem end this destination's run. */
  fail(err: unknown, path?: string): void {
    this.errors.push(problem(err, path));
    if (errorKind(err) !== 'integrity' && !this.dead) {
      this.dead = true;
      this.ledger.uncharge(0); // reads waiting for its share look again
      this.context.emit({ type: 'destination-failed', destination: this.name, message: errorMessage(err) });
    }
  }

  countBytes(bytes: number, written: boolean): void {
    if (written) this.bytesWritten += bytes; else this.bytesResumed += bytes;
    this.context.emit({ type: 'bytes', destination: this.name, bytes });
  }

  /**
   * Records a file done. A reused file does not wait for a checkpoint (only a rewrite of
   * `progress.json` includes it): after a kill it is found present but unrecorded, and the plan
   * copies it there again server-side (src/core/plan.ts), which costs less than the journal
   * entries that would record it, hundreds of records a second on a reuse night.
   */
  record(file: ManifestFile, how: 'copied' | 'adopted' | 'reused'): void {
    this.records.set(file);
    if (how === 'copied') this.filesCopied++;
    else if (how === 'adopted') this.filesAdopted++;
    else { this.filesReused++; this.bytesReused += file.size; }
    this.context.emit({ type: 'file-done', destination: this.name, path: file.path, size: file.size, how });
    if (how === 'reused') return;
    const slot = this.records.knownSlotOf(file.path);
    this.pending.push(slot >= 0 ? slot : file.path);
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
      const paths = this.pending;
      this.pending = [];
      const live = this.journal.filter((e) => e.live);
      const journalFiles = live.reduce((sum, e) => sum + e.files, 0) + paths.length;
      const rewrite = this.baseFiles === undefined || live.length >= MAX_JOURNAL_ENTRIES || journalFiles > Math.max(this.baseFiles, 1000);
      const all = rewrite ? this.records.recorded() : undefined;
      const batch = rewrite ? [] : paths.map((path) => (typeof path === 'number' ? this.records.knownRecord(path) : this.records.get(path)) as ManifestFile);
      try {
        await this.driver.sync();
        const { backup, source, chunkBytes } = this.context;
        if (all !== undefined) {
          const includesThrough = this.nextSequence - 1;
          const head = { kind: 'progress' as const, backup, source, chunkBytes, createdAt: new Date().toISOString(), fileCount: all.length, totalBytes: this.records.bytesOf(all), includesThrough };
          await writeManifestStreamed(this.driver, this.keys.progress, head, () => this.records.inOrder(all), { pretty: false });
          this.baseFiles = all.length;
          for (const e of this.journal) e.live = false;
          await this.deleteJournal(); // best effort: progress.json says they are included
        } else {
          // The number is used even if the write fails (it may have landed): the next
          // rewrite of progress.json includes it, and deletes it.
          const sequence = this.nextSequence++;
          const key = this.keys.journal(sequence);
          this.journal.push({ key, live: true, files: paths.length });
          const body = buildManifestBody({ kind: 'progress', backup, source, chunkBytes, files: batch, sequence });
          await writeManifestAt(this.driver, key, body, { pretty: false });
        }
      } catch {
        this.pending = paths.concat(this.pending);
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
    await Promise.all(Array.from({ length: Math.min(all ? 16 : 4, doomed.length) }, async () => {
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

  /**
   * Removes the checkpoint once the manifest is written: `progress.json` and its journal at once
   * (with the manifest there, both are leftovers that nothing reads as progress any more). A
   * delete also removes a key's unfinished write, which no listing shows: the one an interrupted
   * earlier run may have left under `firstSequence` is removed here when this run resumed one and
   * wrote no entry of that number (had it written one, deleting that entry removes it).
   */
  async deleteProgress(signal?: AbortSignal): Promise<void> {
    const unfinished = this.resumed && this.nextSequence === this.firstSequence ? [this.driver.delete(this.keys.journal(this.firstSequence), { signal }).catch(() => undefined)] : [];
    await Promise.all([this.driver.delete(this.keys.progress, { signal }).catch(() => undefined), this.deleteJournal(true), ...unfinished]);
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
export class FileSink {
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
    if (!this.alive) { this.drop(chunk); return; }
    if (this.session.partBytes === chunk.length || (last && this.pending.length === 0)) {
      return this.enqueue(chunk, this.pool.chargeOf(chunk.length));
    }
    // Parts of several chunks (files too big for 10,000 parts of one chunk): copy into a part
    // buffer so the pooled chunk goes back at once and cannot hold up the readers.
    this.pending.push(Buffer.from(chunk));
    this.pendingBytes += chunk.length;
    this.drop(chunk);
    if (this.pendingBytes < this.session.partBytes && !last) return;
    const bytes = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    return this.enqueue(bytes, 0);
  }

  /** Gives back a chunk: to the pool, and to this destination's share of the budget. */
  private drop(chunk: Buffer, charged = this.pool.chargeOf(chunk.length)): void {
    this.pool.release(chunk);
    this.run.ledger.uncharge(charged);
  }

  /** Starts writing a part once fewer than `parallel` are in flight; resolves when it has started. */
  private async enqueue(bytes: Buffer, charged: number): Promise<void> {
    const index = this.nextPart++;
    while (this.writing >= this.parallel) await this.partDone();
    this.writing++;
    void this.writePart(index, bytes).finally(() => {
      this.drop(bytes, charged);
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
      await this.session.write(index, bytes, { signal: this.signal, hold: () => this.hold(bytes) });
      this.run.countBytes(bytes.length, true);
    } catch (err) {
      this.error ??= err;
    }
  }

  /**
   * Keeps `bytes` for a session past its `write` (see `PartWriteOptions.hold`): one more reference
   * to the pooled chunk, so that the pool does not reuse it until the session gives it back. (A
   * part this sink assembled from several chunks is its own buffer, reused by nobody.)
   */
  private hold(bytes: Buffer): () => void {
    this.pool.retain(bytes);
    let held = true;
    return () => {
      if (held) this.pool.release(bytes);
      held = false;
    };
  }

  /** Waits for the parts in flight and commits; throws the first error. */
  async finish(hash: string): Promise<Committed | void> {
    await this.idle();
    if (this.error !== undefined) throw this.error;
    if (this.run.dead) throw new OffsiteError('E_DESTINATION_FAILED', `${this.run.name}: destination failed earlier in this run`, { kind: 'permanent' });
    return await this.session.commit({ hash, signal: this.signal });
  }

  /** Releases the session after a failure: keep resumable state unless the data was wrong. */
  async release(err: unknown): Promise<void> {
    await this.idle();
    if (errorKind(err) === 'integrity') await this.session.abort();
    else await this.session.suspend();
  }
}
