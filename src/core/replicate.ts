/**
 * The fan-out engine: copies one complete backup from a source to N destinations at once.
 *
 * Every destination is prepared on its own (./destination-state.ts: what it holds is read, its lock
 * taken, its plan made) and starts copying as soon as it is ready: one slow to answer or unreachable
 * at the start delays only itself, and one that cannot be prepared fails alone. One that joins
 * after the others started reads alone the files they started (./fanout.ts).
 * Every destination runs at its own pace: its own queue of files (`fileConcurrency` at once), its
 * own parts in flight (`partConcurrency`, and the driver's own limits), its own manifest written
 * as soon as its last file is committed, while the others go on. Each file is cut into
 * `chunkBytes` chunks and hashed once (XXH64 per chunk and per file) per read. Destinations that
 * keep up share one read of each file; one that falls behind by more than its share of the chunk
 * budget (`memoryBudgetBytes`) for longer than `lagToleranceMs` is detached and reads the source on
 * its own, so a slow destination never holds back the fast ones and memory stays within the budget
 * whatever the backup's size (see ./fanout.ts). The source is read at most once plus once per
 * destination that reads alone.
 * A destination that fails is dropped and the others carry on; it gets no manifest, and the next
 * run copies only what it lacks. A destination gets `NAME/.offsite/manifest.json` only after every
 * file is committed there and synced.
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
import type { Driver } from '../drivers/types.js';
import { eitherSignal, errorMessage, OffsiteError, type ErrorKind, UsageError } from '../errors.js';
import { manifestKey, type ManifestFile } from '../manifest/manifest.js';
import { writeManifestStreamed } from '../manifest/write-stream.js';
import { ChunkPool } from './buffers.js';
import { copyFile, type EngineContext } from './copy-file.js';
import { DestinationRun, problem } from './destination-run.js';
import type { RecordStore } from './records.js';
import { ManifestCache } from './manifest-cache.js';
import { prepareDestination, type PrepareContext, type PreparedDestination, type ProgressJournal } from './destination-state.js';
import { DEFAULT_LAG_TOLERANCE_MS, Fanout } from './fanout.js';
import { HashAhead, type HashCursor } from './hash-ahead.js';
import type { HeldLock, LockOptions } from './lock.js';
import type { DestinationPlan, ReplicationPlan } from './plan.js';
import { backupFiles, originFiles, type EngineFile } from './run-files.js';
import type { OriginTable } from './origin-table.js';
import type { ReusePolicy } from '../config/config.js';
import { ShardRun, type FinishOptions, type ShardSetReport, type ShardSpec } from './shard.js';

export { partBytesFor } from './destination-run.js';
export { readDestinationState, type DestinationHoldings, type ProgressJournal } from './destination-state.js';

export const DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024;

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
  /**
   * Bytes of chunk buffers in flight, all files and destinations together; each destination still
   * working gets an equal share (at least two chunks). @default 64 MiB
   */
  readonly memoryBudgetBytes?: number;
  /**
   * How long destinations sharing a read wait for one that cannot take the next chunk (its share
   * is full) or has not reached the file yet, before it is detached and reads on its own; also the
   * most time, added up over all reads, that it may hold them up beyond half the time (./fanout.ts). @default 500 ms
   */
  readonly lagToleranceMs?: number;
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
   * to its recorded hash or it is not committed (E_ORIGIN_DAMAGED); a file found in place at a
   * destination is kept when its bytes hash to the record, without reading the origin (which may
   * lack it: that is why a repair runs). The run uses the origin's chunk size, and the manifest it
   * writes keeps the origin's `source` and `backupTime`.
   */
  readonly origin?: ReplicateOrigin;
  /**
   * Reuse (issue 12, ./reuse-file.ts): the `reuse` policy of each destination by name; one without
   * a policy (or `off`) sends every file. Ignored with `origin` (repair and pull send every file:
   * a repair must not copy from a copy that may share the damage). @default no reuse
   */
  readonly reuse?: Readonly<Record<string, ReusePolicy>>;
  /**
   * The source's ETags are the MD5 of the bytes (the source option `trustEtags`, README): a file
   * whose content-MD5 fingerprint, size and path equal the record in a destination's newest
   * earlier copy is reused there without reading it at the source. @default false
   */
  readonly trustSourceEtags?: boolean;
  /**
   * A local folder where the earlier copies' manifests read for reuse are kept, so a later night
   * reads only their last bytes from the destination (./manifest-cache.ts; the CLI's is
   * `cacheDirOf()`). @default none: every manifest is read whole from the destination
   */
  readonly manifestCacheDir?: string;
  /** The per-destination lock (see ./lock.ts). */
  readonly lock?: Omit<LockOptions, 'signal' | 'key'>;
  /**
   * Copy only this shard of the backup (./shard.ts): its files, its own checkpoint and lock; no
   * manifest unless this shard completes the set. Not with `origin`.
   */
  readonly shard?: ShardSpec & { readonly finish?: Omit<FinishOptions, 'signal' | 'lock'> };
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: ReplicateEvent) => void;
}

export interface ReplicateOrigin {
  /** The origin manifest's records: as read whole (a repair's reference), or already compact (a pull: ./origin-table.ts). */
  readonly files: readonly ManifestFile[] | OriginTable;
  readonly chunkBytes: number;
  /** The `source` recorded in the origin manifest. */
  readonly source: string;
  readonly backupTime?: string;
}

export type ReplicateEvent =
  /** One per destination, as soon as it is prepared (read, locked, planned): `plan.destinations` holds that destination's plan only. */
  | { readonly type: 'plan'; readonly plan: ReplicationPlan }
  | { readonly type: 'bytes'; readonly destination: string; readonly bytes: number }
  /** `reused`: created by a server-side copy of another complete copy's file there (`size` bytes not sent). */
  | { readonly type: 'file-done'; readonly destination: string; readonly path: string; readonly size: number; readonly how: 'copied' | 'adopted' | 'reused' }
  /** Something the run worked around (reuse not possible from a copy, say); the destination goes on. */
  | { readonly type: 'warning'; readonly destination: string; readonly message: string }
  | { readonly type: 'destination-failed'; readonly destination: string; readonly message: string }
  /** The destination fell behind the others and reads the source on its own from `path` on. */
  | { readonly type: 'detached'; readonly destination: string; readonly path: string }
  /** The destination has nothing more to do in this run: its manifest is written (`complete`), or it failed. */
  | { readonly type: 'destination-done'; readonly destination: string; readonly status: 'complete' | 'shard-done' | 'failed' };

export interface ProblemReport {
  readonly path?: string;
  readonly kind: ErrorKind;
  readonly code: string;
  readonly message: string;
}

/** `shard-done`: this shard's files are there and recorded; other shards have yet to finish (see `shardSet`). */
export type DestinationStatus = 'complete' | 'up-to-date' | 'shard-done' | 'failed' | 'planned';

export interface DestinationResult {
  readonly name: string;
  readonly description: string;
  readonly status: DestinationStatus;
  readonly filesCopied: number;
  readonly filesAdopted: number;
  readonly filesSkipped: number;
  /** Files created by a server-side copy of another complete copy's file there, and their bytes (not sent). */
  readonly filesReused: number;
  readonly bytesReused: number;
  /** Every file of this copy that was created by reuse (this run or an interrupted earlier one), and from where. */
  readonly reused?: readonly { readonly path: string; readonly from: string }[];
  /** Bytes actually sent to the destination. */
  readonly bytesWritten: number;
  /** Bytes of interrupted writes found intact at the destination and not sent again. */
  readonly bytesResumed: number;
  /** Bytes of files that were already whole there. */
  readonly bytesSkipped: number;
  /** Times it fell behind the destinations it shared source reads with and went on alone. */
  readonly detachments: number;
  /** Source bytes read for this destination alone (after it was detached), not shared. */
  readonly bytesReadAlone: number;
  readonly manifestKey?: string;
  readonly errors: readonly ProblemReport[];
  /** The plan of this destination; its `actions` (one per file) only in a dry run. */
  readonly plan?: DestinationPlan;
  /** With a shard: the set of shards there after this one finished. */
  readonly shardSet?: ShardSetReport;
}

export interface ReplicateResult {
  readonly backup: string;
  readonly source: string;
  readonly dryRun: boolean;
  readonly files: number;
  readonly bytes: number;
  /**
   * Bytes read from the source: each file once for the destinations that share reads, once more
   * for each destination reading it alone, once more to check files present but unrecorded.
   */
  readonly bytesRead: number;
  /** Detachments of all destinations together (see `DestinationResult.detachments`). */
  readonly detachments: number;
  /** Destinations that read some of the source on their own: `bytesRead` <= (1 + this) x `bytes` (plus checks). */
  readonly destinationsReadAlone: number;
  /** The most chunk-buffer bytes held at once (within `memoryBudgetBytes` for a local source). */
  readonly peakBufferBytes: number;
  readonly durationMs: number;
  readonly destinations: readonly DestinationResult[];
  /** The shard this run copied (`files` and `bytes` are its share). */
  readonly shard?: ShardSpec;
}


/** Longest stretch of files started without letting the event loop turn (see `EventLoopTurns`). */
const MAX_TURN_MS = 20;

/**
 * Lets the event loop turn now and then. Where every call of a file is answered at once (small
 * files on a local disk make their calls synchronously: src/drivers/local/fsops.ts), one file
 * follows another in microtasks and the loop never turns: timers (checkpoints, progress) and
 * signals would wait until the last file.
 */
class EventLoopTurns {
  private last = performance.now();

  async maybeTurn(): Promise<void> {
    if (performance.now() - this.last < MAX_TURN_MS) return;
    await new Promise((resolve) => setImmediate(resolve));
    this.last = performance.now();
  }
}

/** The records made by reuse, sorted by path. */
function reusedFiles(records: RecordStore): { path: string; from: string }[] {
  return [...records.reused()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
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
  if (options.shard && options.origin) throw new UsageError('a shard copies a share of a backup at the source, not a verified copy (origin)');
  const shard = options.shard ? await ShardRun.open(backup, options.shard, { ...options.shard.finish, lock: options.lock }) : undefined;

  const listing = (async () => {
    const found = options.origin ? await originFiles(source, backup, options.origin, signal) : await backupFiles(source, backup, options.quietPeriodMs, signal);
    return shard ? { ...found, files: await shard.select(found.files), paths: undefined, filesInPathOrder: false } : found;
  })();
  const dryRun = options.dryRun ?? false;
  // Every destination is read (and, with work to do, indexed for reuse and locked) while the source
  // is listed (./destination-state.ts): its round trips need not wait for the listing.
  const filesLater = listing.then((l) => l.files);
  filesLater.catch(() => undefined); // awaited by the preparations; a failed listing is thrown below
  const stopPreparing = new AbortController();
  const hashAhead = dryRun ? undefined : new HashAhead({ source, backup, chunkBytes, signal });
  const compactPlans = listing.then((l) => l.paths !== undefined && l.filesInPathOrder === true, () => false);
  const prepareContext: PrepareContext = {
    backup, files: filesLater, compactPlans, chunkBytes, shard, dryRun, lock: options.lock, emit, trustSourceEtags: options.trustSourceEtags === true,
    ...(options.manifestCacheDir !== undefined ? { manifestCache: new ManifestCache(options.manifestCacheDir) } : {}),
    ...(hashAhead ? { hashAhead } : {}),
    signal: eitherSignal(stopPreparing.signal, signal),
  };
  /**
   * A destination prepared (./destination-state.ts), without what it holds: its listing as maps,
   * its manifest and checkpoint parsed whole (several objects per file) are not kept during the
   * copy; the plan and the records carry what the run needs of them.
   */
  const prepareSlim = async (driver: Driver): Promise<Omit<PreparedDestination, 'holdings'> & { readonly journal: ProgressJournal }> => {
    const { plan, reuse, lock, holdings, hashAhead: ahead } = await prepareDestination(driver, options.origin ? undefined : options.reuse?.[driver.name], prepareContext);
    return { plan, journal: holdings.progressJournal, ...(reuse ? { reuse } : {}), ...(lock ? { lock } : {}), ...(ahead ? { hashAhead: ahead } : {}) };
  };
  /** Each destination's preparation, taken out (`startRun`) when its run starts, so that no array holds its plan during the copy. */
  const preparing: Array<ReturnType<typeof prepareSlim> | undefined> = options.destinations.map((driver) => {
    const prepared = prepareSlim(driver);
    prepared.catch(() => undefined); // a destination that cannot be prepared fails alone (`runDestination`)
    return prepared;
  });
  let listed: Awaited<typeof listing>;
  try {
    listed = await listing;
  } catch (err) {
    // No run: the destinations' preparations end, and the locks they took are released.
    stopPreparing.abort();
    hashAhead?.close();
    await Promise.all(preparing.map(async (prepared) => (await prepared?.catch(() => undefined))?.lock?.release()));
    throw err;
  }
  const { files, backupTime, sourceDescription, missing } = listed;
  const totalBytes = files.reduce((sum, f) => sum + f.size, 0);
  /** The files' paths in manifest order: the origin's table holds them packed (./sorted-paths.ts), or the files' own strings. */
  const paths = listed.paths ?? files.map((f) => f.path).sort();

  const pool = new ChunkPool(chunkBytes, Math.max(options.memoryBudgetBytes ?? 64 * 1024 * 1024, 2 * chunkBytes));
  const fanout = new Fanout({
    source, backup, chunkBytes, pool, signal, paths, lagToleranceMs: options.lagToleranceMs ?? DEFAULT_LAG_TOLERANCE_MS,
    onDetach: (member, path) => emit({ type: 'detached', destination: member.name, path }),
  });
  // Every destination still preparing keeps its share of the chunk budget for when it joins.
  if (!dryRun) fanout.expect(options.destinations.length);
  const context = {
    backup, source: sourceDescription, chunkBytes, checkpointIntervalMs: options.checkpointIntervalMs ?? 1000, emit, checkpointKeys: shard?.checkpointKeys, paths,
    filesInPathOrder: listed.paths !== undefined && listed.filesInPathOrder === true,
  };
  const unavailable = new Map(missing.map((m) => [m.path, m.error]));
  const ctx: EngineContext = { source, backup, chunkBytes, partConcurrency: options.partConcurrency ?? 2, pool, fanout, signal, emit, unavailable };
  const runs: DestinationRun[] = [];

  /** One destination's files, then its manifest (or checkpoint), at its own pace. */
  const copyTo = async (run: DestinationRun, lock: Pick<HeldLock, 'release' | 'releaseAfter'>, ahead: HashCursor | undefined): Promise<DestinationResult> => {
    const counts = (): Omit<DestinationResult, 'status' | 'errors'> => ({
      name: run.name, description: run.driver.description, plan: run.plan, filesCopied: run.filesCopied, filesAdopted: run.filesAdopted, filesSkipped: run.plan.skipFiles,
      filesReused: run.filesReused, bytesReused: run.bytesReused, reused: reusedFiles(run.records),
      bytesWritten: run.bytesWritten, bytesResumed: run.bytesResumed, bytesSkipped: run.plan.skipBytes, detachments: run.detachments, bytesReadAlone: run.bytesReadAlone,
    });
    if (dryRun) return { ...counts(), status: 'planned', errors: [] };
    if (run.plan.upToDate) {
      ahead?.close();
      fanout.withdraw();
      return { ...counts(), status: 'up-to-date', manifestKey: manifestKey(backup), errors: [] };
    }
    // Joins the shared reads: files the others have started already it reads alone (./fanout.ts).
    fanout.add(run);
    try {
      if (run.plan.removeManifestFirst) {
        try {
          await run.driver.delete(manifestKey(backup), { signal });
        } catch (err) {
          run.fail(err);
        }
      }
      const fileConcurrency = options.fileConcurrency ?? 8;
      const turns = new EventLoopTurns();
      const queue = new PQueue({ concurrency: fileConcurrency });
      // Reuse waits on the server, not on bytes (a hash of the source, then a copy there): as
      // many at once as the destination takes server-side copies, beside the files being sent.
      const caps = run.driver.capabilities;
      const reuseQueue = new PQueue({ concurrency: Math.max(fileConcurrency, caps.copyConcurrency ?? caps.maxConcurrency) });
      // One loop per lane, each in the files' order: a lane that is full never holds back the
      // other (the changed files go over the link while the kept ones are copied there).
      const dispatch = async (reuseLane: boolean): Promise<void> => {
        for (let i = 0; i < files.length; i++) {
          if (run.dead) break;
          const file = files[i] as EngineFile;
          const action = run.needsAt(i, () => file.path);
          // A file the origin lacks can still be found intact in place (adopt); copies of it failed already.
          const other = action === undefined || (unavailable.size > 0 && unavailable.has(file.path) && action !== 'adopt') || (action === 'reuse') !== reuseLane;
          // The reuse lane reaches every file in order: the hashes read ahead for the ones it copies,
          // and the ones it passes are no longer wanted.
          const hashed = reuseLane ? ahead?.reach(i, !other) : undefined;
          if (other) continue;
          // A destination that stopped reusing (no server-side copy after all) sends the rest in the other lane.
          const lane = reuseLane && run.reuse ? reuseQueue : queue;
          await lane.onSizeLessThan(lane.concurrency);
          await turns.maybeTurn();
          void lane.add(() => copyFile(ctx, run, file, hashed));
        }
        if (reuseLane) ahead?.close();
      };
      await Promise.all([dispatch(false), dispatch(true)]);
      await Promise.all([queue.onIdle(), reuseQueue.onIdle()]);
    } finally {
      ahead?.close();
      fanout.done(run);
    }
    await run.stopCheckpoints();
    const whole = !run.dead && run.errors.length === 0 && files.every((f) => run.records.has(f.path));
    if (whole) {
      try {
        if (shard) {
          // A shard writes its record; the manifest only if it completes the set (./shard.ts).
          const shardSet = await shard.complete(run.driver, files.map((f) => run.records.get(f.path) as ManifestFile), {
            source: sourceDescription, chunkBytes, backupTime, signal, dropCheckpoint: () => run.deleteProgress(signal),
          });
          const status = shardSet.status === 'complete' ? 'complete' : 'shard-done';
          emit({ type: 'destination-done', destination: run.name, status });
          return { ...counts(), status, manifestKey: shardSet.manifestKey, errors: [], shardSet };
        }
        await run.driver.sync({ signal });
        const head = { kind: 'complete' as const, backup, source: sourceDescription, createdAt: new Date().toISOString(), backupTime, chunkBytes, fileCount: files.length, totalBytes };
        const written = (async () => {
          await writeManifestStreamed(prepareContext.manifestCache?.recording(run.driver, manifestKey(backup)) ?? run.driver, manifestKey(backup), head, () => run.records.inOrder(paths), { signal });
          await run.driver.sync({ signal });
        })();
        // The lock stays until the manifest is written and synced; its read-back (is it still this
        // run's?) goes out meanwhile (./lock.ts `releaseAfter`). Once the manifest is there, the
        // checkpoint is a leftover and the lock guards nothing more, so both go at once (on a
        // distant store each is a round trip or two, at the end of every run).
        const released = lock.releaseAfter(written);
        try {
          await written;
        } catch (err) {
          await released;
          throw err;
        }
        await Promise.all([run.deleteProgress(signal), released]);
        emit({ type: 'destination-done', destination: run.name, status: 'complete' });
        return { ...counts(), status: 'complete', manifestKey: manifestKey(backup), errors: [] };
      } catch (err) {
        run.fail(err);
      }
    } else {
      await run.writeCheckpoint();
      if (run.errors.length === 0) run.fail(new OffsiteError('E_INCOMPLETE', `${run.name}: not every file was copied`, { kind: 'fatal' }));
    }
    emit({ type: 'destination-done', destination: run.name, status: 'failed' });
    return { ...counts(), status: 'failed', errors: run.errors };
  };

  /**
   * A destination prepared, its plan announced, and its run made from it. A function of its own:
   * the plan (an action object per file) is then held by no frame during the copy. (A variable
   * cleared in the caller's frame was not enough: a suspended async function keeps what it
   * awaited in a register, and held 100,000 actions that way for the whole run.)
   */
  const startRun = async (driver: Driver, index: number): Promise<{ run: DestinationRun; lock: PreparedDestination['lock']; ahead: HashCursor | undefined }> => {
    const preparation = preparing[index] ?? prepareSlim(driver);
    preparing[index] = undefined;
    const prepared = await preparation;
    emit({ type: 'plan', plan: prepared.plan });
    try {
      // Only a dry run reports the plan's actions (one object per file); a run keeps a byte per file.
      const run = new DestinationRun(driver, prepared.plan.destinations[0], context, fanout, prepared.journal, dryRun);
      run.reuse = prepared.reuse;
      return { run, lock: prepared.lock, ahead: prepared.hashAhead };
    } catch (err) {
      prepared.hashAhead?.close();
      await prepared.lock?.release();
      throw err;
    }
  };

  /**
   * One destination's whole run: prepared on its own (./destination-state.ts), then copied as soon
   * as it is ready, whatever the others are doing. One that cannot be prepared fails alone.
   */
  const runDestination = async (driver: Driver, index: number): Promise<DestinationResult> => {
    let started;
    try {
      started = await startRun(driver, index);
    } catch (err) {
      if (!dryRun) fanout.withdraw();
      emit({ type: 'destination-failed', destination: driver.name, message: errorMessage(err) });
      emit({ type: 'destination-done', destination: driver.name, status: 'failed' });
      return {
        name: driver.name, description: driver.description, status: 'failed', filesCopied: 0, filesAdopted: 0, filesSkipped: 0, filesReused: 0, bytesReused: 0,
        bytesWritten: 0, bytesResumed: 0, bytesSkipped: 0, detachments: 0, bytesReadAlone: 0, errors: [problem(err)],
      };
    }
    const { run } = started;
    let held = started.lock;
    const lock = {
      release: async () => { const l = held; held = undefined; await l?.release(); },
      releaseAfter: async (work: Promise<unknown>) => { const l = held; held = undefined; await (l ? l.releaseAfter(work) : work.catch(() => undefined)); },
    };
    try {
      runs.push(run);
      for (const m of missing) {
        const action = run.needs(m.path);
        if (action !== undefined && action !== 'adopt') run.fail(m.error, m.path);
      }
      return await copyTo(run, lock, started.ahead);
    } finally {
      await lock.release();
    }
  };

  let results;
  try {
    results = await Promise.all(options.destinations.map(runDestination));
  } finally {
    hashAhead?.close();
    fanout.close();
  }
  return {
    backup, source: source.description, dryRun, files: files.length, bytes: totalBytes,
    bytesRead: fanout.bytesRead + (hashAhead?.bytesRead ?? 0), detachments: runs.reduce((sum, r) => sum + r.detachments, 0),
    destinationsReadAlone: runs.filter((r) => r.bytesReadAlone > 0).length, peakBufferBytes: pool.peakBytes,
    durationMs: Date.now() - started, destinations: results, ...(options.shard ? { shard: { index: options.shard.index, count: options.shard.count } } : {}),
  };
}
