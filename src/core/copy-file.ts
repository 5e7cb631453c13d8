/**
 * One file to one destination, the engine's unit of work (./replicate.ts runs one per file and
 * destination, `fileConcurrency` at once): reused server-side (./reuse-file.ts), adopted when it is
 * already there with the source's bytes (hashed in place, never trusted on a stored hash), or
 * written from the source read it shares with the other destinations (./fanout.ts), and recorded
 * only once committed, with the fingerprints it was made with.
 */
import type { Committed, Driver } from '../drivers/types.js';
import { errorKind, OffsiteError } from '../errors.js';
import type { ManifestFile } from '../manifest/manifest.js';
import type { ChunkPool } from './buffers.js';
import { hashObject, type ObjectHashes } from './chunks.js';
import { type DestinationRun, FileSink, partBytesFor } from './destination-run.js';
import { type Fanout, sourceChanged } from './fanout.js';
import type { ReplicateEvent } from './replicate.js';
import { keptFeed, tryReuse, type Feed } from './reuse-file.js';
import type { EngineFile } from './run-files.js';

export interface EngineContext {
  readonly source: Driver;
  readonly backup: string;
  readonly chunkBytes: number;
  readonly partConcurrency: number;
  readonly pool: ChunkPool;
  readonly fanout: Fanout;
  readonly signal?: AbortSignal;
  readonly emit?: (event: ReplicateEvent) => void;
  /** Origin mode: the files the origin lacks (or holds with another size), with the error a copy of one gets. */
  readonly unavailable: ReadonlyMap<string, OffsiteError>;
}

function originDamaged(ctx: EngineContext, file: EngineFile, found: string): OffsiteError {
  return new OffsiteError('E_ORIGIN_DAMAGED', `${ctx.source.name}: ${ctx.backup}/${file.path} reads back as ${found}, its manifest says ${file.expected}: that copy is damaged; take the file from elsewhere`, { kind: 'integrity' });
}

/**
 * Checks a present-but-unrecorded file against the source hashes without rewriting it: its bytes
 * at the destination are read and hashed, always. A hash the driver keeps with the object
 * (`storedHash`, S3 metadata) is only a fingerprint: the bytes can be replaced while it stays.
 */
async function adopt(ctx: EngineContext, run: DestinationRun, file: EngineFile, hashes: ObjectHashes): Promise<boolean> {
  const key = `${ctx.backup}/${file.path}`;
  const encryption = run.driver.encryption;
  try {
    // The fingerprint before reading: if the file changes while it is read, the next run sees it.
    const before = await run.driver.stat(key, { signal: ctx.signal });
    // At an encrypted destination the one read opens every chunk (its tag checked) and also gives
    // the record of the stored bytes, which is what the manifest keeps.
    const inspected = encryption ? await encryption.inspect(key, file.size, { chunkBytes: ctx.chunkBytes, signal: ctx.signal }) : undefined;
    const there = inspected?.plain ?? await hashObject(run.driver, key, file.size, ctx.pool, ctx.signal);
    const same = there.hash === hashes.hash && there.chunks.length === hashes.chunks.length && there.chunks.every((c, i) => c === hashes.chunks[i]);
    const done = inspected ? { stored: inspected.stored } : undefined;
    if (same) run.record(fileRecord(run.driver, file, hashes.hash, hashes.chunks, done, file.recordedSource, before?.fingerprint), 'adopted');
    return same;
  } catch (err) {
    if (errorKind(err) === 'integrity' || errorKind(err) === 'not-found') return false;
    run.fail(err, file.path);
    return true; // handled: do not also try to copy to a failed destination
  }
}

/**
 * The record of a file just committed, with the fingerprints it was made with (each only when
 * known): the source's hashes, or at an encrypted destination the stored object's
 * (`Committed.stored`: its hashes and the keyed plaintext MAC, never a plaintext hash).
 */
function fileRecord(driver: Driver, file: EngineFile, hash: string, chunks: string[], done: Committed | void, source: string | undefined, destination: string | undefined): ManifestFile {
  const { path, size } = file;
  if (driver.encryption) {
    const stored = done?.stored;
    if (!stored) throw new OffsiteError('E_INTERNAL', `${driver.name}: ${path}: an encrypted destination's commit did not say what it stored`, { kind: 'fatal' });
    return {
      path, size, hash: stored.hash, chunks: [...stored.chunks], storedSize: stored.size, mac: stored.mac,
      ...(source !== undefined ? { sourceFingerprint: source } : {}), ...(destination !== undefined ? { destinationFingerprint: destination } : {}),
    };
  }
  // One object literal per shape, no spreads: one record per file and destination.
  if (source === undefined) return destination === undefined ? { path, size, hash, chunks } : { path, size, hash, chunks, destinationFingerprint: destination };
  return destination === undefined ? { path, size, hash, chunks, sourceFingerprint: source } : { path, size, hash, chunks, sourceFingerprint: source, destinationFingerprint: destination };
}

/**
 * The destination's fingerprint of a file it just committed, when its `commit` did not tell (a
 * stat: local, sftp and object stores tell it, except when the server's answer had no ETag, as
 * Ceph RGW's to a CompleteMultipartUpload, which a copy above 5 GiB ends with). A failed stat
 * costs only a record without one (trusted on size, as records older than fingerprints are).
 */
async function committedFingerprint(driver: Driver, key: string, signal?: AbortSignal): Promise<string | undefined> {
  try {
    return (await driver.stat(key, { signal }))?.fingerprint;
  } catch {
    return undefined;
  }
}

/**
 * Copies one file to one destination, from a read shared with the others while it keeps up, or
 * from its own (see ./fanout.ts). `hashed`: its hashes read ahead for a reuse (./hash-ahead.ts).
 * Never throws: a failure is recorded for this destination.
 */
export async function copyFile(ctx: EngineContext, run: DestinationRun, file: EngineFile, hashed?: Promise<ObjectHashes>): Promise<void> {
  const action = run.needs(file.path);
  if (action === undefined) return;
  let firstPass: ObjectHashes | undefined;
  /** The only chunk of a one-chunk file kept by a reuse attempt that missed. */
  let kept: Buffer | undefined;
  if (action === 'reuse' && run.reuse) {
    const outcome = await tryReuse(ctx, run, file, hashed);
    if (outcome.done) return;
    firstPass = outcome.hashes;
    kept = outcome.held;
    // Already there but unrecorded, and not the bytes of the copy it was planned from: compared
    // in place (as `adopt`) before it is sent again.
    if (firstPass !== undefined && run.isPresent(file.path)) {
      if (kept) ctx.fanout.drop(run, kept);
      kept = undefined;
      if (await adopt(ctx, run, file, firstPass)) return;
    }
  } else if (action === 'adopt') {
    if (file.expected !== undefined && file.expectedChunks !== undefined) {
      // In origin mode the record is the truth: a file found in place is kept when its bytes hash to
      // it, whatever the origin holds (a repair's origin may lack or have damaged that very file).
      if (await adopt(ctx, run, file, { hash: file.expected, chunks: [...file.expectedChunks] })) return;
      const lacking = ctx.unavailable.get(file.path);
      if (lacking) {
        run.fail(lacking, file.path);
        return;
      }
    } else {
      try {
        firstPass = await ctx.fanout.hashSource(file);
      } catch (err) {
        run.fail(err, file.path);
        return;
      }
      if (await adopt(ctx, run, file, firstPass)) return;
    }
  }
  let sink: FileSink;
  try {
    const partBytes = partBytesFor(file.size, ctx.chunkBytes, run.driver);
    const session = await run.driver.openWrite(`${ctx.backup}/${file.path}`, { size: file.size, partBytes, signal: ctx.signal });
    sink = new FileSink(run, session, ctx.partConcurrency, ctx.pool, ctx.signal);
  } catch (err) {
    if (kept) ctx.fanout.drop(run, kept);
    run.fail(err, file.path);
    return;
  }
  // After a reuse miss the source was read once already: its kept chunk, or a read for this destination alone.
  let feed: Feed = kept ? keptFeed(kept, firstPass as ObjectHashes, (chunk) => ctx.fanout.drop(run, chunk))
    : action === 'reuse' && firstPass ? ctx.fanout.readAlone(run, file) : ctx.fanout.subscribe(run, file);
  /** Hashes of the chunks handed to the writer, in order. */
  const written: string[] = [];
  let index = 0;
  let offset = 0;
  try {
    for (;;) {
      const item = await feed.next();
      if (item.type === 'error') throw item.error;
      if (item.type === 'detached') {
        // Read the file again alone; the chunks already written are only compared.
        feed = ctx.fanout.readAlone(run, file);
        index = 0;
        offset = 0;
        continue;
      }
      if (item.type === 'end') {
        if (!sink.alive) break;
        if (firstPass && firstPass.hash !== item.hash) throw sourceChanged(ctx.backup, file.path);
        if (file.expected !== undefined && item.hash !== file.expected) throw originDamaged(ctx, file, item.hash);
        const done = await sink.finish(item.hash);
        const committed = done?.fingerprint ?? await committedFingerprint(run.driver, `${ctx.backup}/${file.path}`, ctx.signal);
        run.record(fileRecord(run.driver, file, item.hash, [...item.chunks], done, file.recordedSource, committed), 'copied');
        break;
      }
      offset += item.chunk.length;
      if (index < written.length) {
        ctx.fanout.drop(run, item.chunk);
        if (item.hash !== written[index++]) throw sourceChanged(ctx.backup, file.path);
        continue;
      }
      written.push(item.hash);
      index++;
      await sink.push(item.chunk, offset === file.size);
      if (!sink.alive) break;
    }
  } catch (err) {
    sink.error ??= err;
  } finally {
    feed.leave();
  }
  if (sink.error !== undefined) {
    run.fail(sink.error, file.path);
    await sink.release(sink.error).catch(() => undefined);
  } else if (run.dead) {
    await sink.release(undefined).catch(() => undefined);
  }
}
