/**
 * Reuse in the replicate engine (issue 12, src/core/replicate.ts): a file that another complete
 * copy at the destination holds byte for byte is created there by a server-side copy
 * (`Driver.copyWithin`) instead of being sent.
 *
 * The decision waits for the file's hashes, which come from the one source read as always: the
 * destination takes part in the read but only hashes (it drops each chunk at once, except the only
 * chunk of a small file, which it keeps so that a miss costs no second read; a larger one would
 * hold a whole chunk of the budget while the copy waits on the server, and so limit how many
 * copies run at once). Once the whole
 * file and chunk hashes are known, the destination's index (./reuse-index.ts) is asked for a copy with
 * the same size, whole-file hash and chunk hashes. The candidate is used only while it still is
 * what its manifest recorded (same size, same stored hash where the driver keeps one, same
 * fingerprint: `copyWithin`'s `expect`, which the driver checks on the look at the source it takes
 * anyway, or an object store with a conditional copy), and the copy is made with the driver's temp
 * name + commit (nothing half-copied under the final name). The copy's fingerprint comes back from
 * `copyWithin`: a reuse costs S3 one CopyObject, and no stat of the engine's own. The record is the source's hashes, which equal the candidate's: a file
 * whose hashes differ is never recorded as reused, it is sent. A miss (no match, a candidate gone
 * or changed, a copy the driver refused or found wrong) sends the file: from the kept chunk, or
 * by reading the file again for this destination alone.
 *
 * At an encrypted destination the source read also gives the file's keyed plaintext MAC (the
 * destination's `encryption.plaintextMac`), and the index matches by path, size and MAC
 * (./reuse-index.ts): the sealed file of the same path in an earlier copy holds exactly the bytes a
 * send would store, so the new record takes that copy's stored record (hashes of the stored
 * bytes, which the copy is checked against as usual) and the MAC.
 */
import type { ReusePolicy } from '../config/config.js';
import type { Driver, Entry } from '../drivers/types.js';
import { errorKind, errorMessage, OffsiteError } from '../errors.js';
import type { ManifestFile } from '../manifest/manifest.js';
import type { ObjectHashes } from './chunks.js';
import type { DestinationRun, RunReuse } from './destination-run.js';
import type { Fanout, FeedFile, FeedItem, Subscription } from './fanout.js';
import type { ReplicateEvent } from './replicate.js';
import type { ManifestCache } from './manifest-cache.js';
import { buildReuseIndex, reusableCopies } from './reuse-copies.js';
import type { ReuseMatch } from './reuse-index.js';

/** What trying a reuse needs of the run. */
export interface ReuseContext {
  readonly backup: string;
  readonly chunkBytes: number;
  readonly fanout: Fanout;
  readonly signal?: AbortSignal;
  /** Told about a destination that cannot reuse after all. */
  readonly emit?: (event: ReplicateEvent) => void;
}

/** A file as the engine has it: the fingerprint its record keeps at the source. */
export type ReuseFile = FeedFile & { readonly recordedSource?: string };

/**
 * `done`: the file is recorded (reused) or the destination failed. Else it must be sent: its
 * hashes when it was read (a second read must give the same) and, for a one-chunk file, that
 * chunk, charged to the destination (the caller writes it or gives it back with `Fanout.drop`);
 * no hashes when it was not read (known to differ: it is sent like any file, in a shared read).
 */
export type ReuseOutcome =
  | { readonly done: true }
  | { readonly done: false; readonly hashes?: ObjectHashes; readonly held?: Buffer };

/** A feed that replays a kept one-chunk file (the shape of a `Subscription` the engine reads). */
export type Feed = Pick<Subscription, 'next' | 'leave'>;

/** The feed of a one-chunk file whose only chunk was kept: the chunk, then its end. */
export function keptFeed(chunk: Buffer, hashes: ObjectHashes, giveBack: (chunk: Buffer) => void): Feed {
  const items: FeedItem[] = [{ type: 'chunk', chunk, hash: hashes.chunks[0] ?? hashes.hash }, { type: 'end', hash: hashes.hash, chunks: hashes.chunks }];
  let taken = 0;
  return {
    next: () => Promise.resolve(items[Math.min(taken++, 1)] as FeedItem),
    leave: () => { if (taken === 0) giveBack(chunk); },
  };
}

/**
 * Reads the file's hashes from the source read (or takes those read ahead, `hashed`: ./hash-ahead.ts),
 * then creates it by a server-side copy when a copy holds the same bytes. Never throws.
 */
export async function tryReuse(ctx: ReuseContext, run: DestinationRun, file: ReuseFile, hashed?: Promise<ObjectHashes>): Promise<ReuseOutcome> {
  const known = run.reuse?.index.known(file.path, file.size, file.fingerprint, ctx.chunkBytes);
  // Source option `trustEtags`: the source's ETag is the MD5 of its bytes, and so was the one the
  // newest copy recorded for this path. Another one: other bytes, sent in one shared read.
  if (known?.same === false) return { done: false };
  if (known !== undefined && run.reuse !== undefined) {
    // The same one: the recorded hashes are this file's, so the source is not read for this
    // destination. A miss (the copy there gone or changed) reads it as usual.
    ctx.fanout.pass(run, file.path);
    const hashes = { hash: known.hash, chunks: known.chunks };
    const match = run.reuse.index.match({ path: file.path, size: file.size, ...hashes }, ctx.chunkBytes);
    if (match !== undefined && await copyFrom(ctx, run, run.reuse, file, match, hashes)) return { done: true };
    if (run.dead) return { done: true };
  }
  if (hashed !== undefined && known === undefined && run.reuse !== undefined && run.driver.encryption === undefined) {
    // Hashed ahead: this destination does not take part in a read of it. A miss sends it from a
    // read of its own, which must give the same hash (./copy-file.ts); a failed read fails the
    // file here, as a shared read's error does.
    ctx.fanout.pass(run, file.path);
    let hashes: ObjectHashes;
    try {
      hashes = await hashed;
    } catch (err) {
      run.fail(err, file.path);
      return { done: true };
    }
    const reuse = run.reuse as RunReuse | undefined;
    if (run.dead || reuse === undefined) return run.dead ? { done: true } : { done: false, hashes };
    const match = reuse.index.match({ path: file.path, size: file.size, hash: hashes.hash, chunks: hashes.chunks }, ctx.chunkBytes);
    if (match !== undefined && await copyFrom(ctx, run, reuse, file, match, hashes)) return { done: true };
    return run.dead ? { done: true } : { done: false, hashes };
  }
  let feed: Feed = ctx.fanout.subscribe(run, file);
  let held: Buffer | undefined;
  const giveBack = (): void => {
    if (held !== undefined) ctx.fanout.drop(run, held);
    held = undefined;
  };
  let end: { readonly hash: string; readonly chunks: readonly string[] } | undefined;
  const encryption = run.driver.encryption;
  let mac = encryption?.plaintextMac(file.size);
  try {
    for (;;) {
      const item = await feed.next();
      if (item.type === 'error') throw item.error;
      if (item.type === 'detached') {
        giveBack();
        feed = ctx.fanout.readAlone(run, file);
        mac = encryption?.plaintextMac(file.size);
        continue;
      }
      if (item.type === 'end') {
        end = item;
        break;
      }
      mac?.update(item.chunk);
      if (held === undefined && file.size <= ctx.fanout.ctx.pool.smallBytes) held = item.chunk;
      else ctx.fanout.drop(run, item.chunk);
    }
  } catch (err) {
    giveBack();
    run.fail(err, file.path);
    return { done: true };
  } finally {
    feed.leave();
  }
  const hashes: ObjectHashes = { hash: end.hash, chunks: [...end.chunks] };
  const reuse = run.reuse;
  if (run.dead || reuse === undefined) {
    giveBack();
    return run.dead ? { done: true } : { done: false, hashes };
  }
  const plaintextMac = mac?.digest();
  const match = reuse.index.match({ path: file.path, size: file.size, hash: hashes.hash, chunks: hashes.chunks, ...(plaintextMac !== undefined ? { mac: plaintextMac } : {}) }, ctx.chunkBytes);
  if (match !== undefined && await copyFrom(ctx, run, reuse, file, match, hashes, plaintextMac)) {
    giveBack();
    return { done: true };
  }
  return held === undefined ? { done: false, hashes } : { done: false, hashes, held };
}

/**
 * Creates the file by copying `match` at the destination. True when handled (recorded, or the
 * destination failed); false when the file must be sent instead.
 */
async function copyFrom(ctx: ReuseContext, run: DestinationRun, reuse: RunReuse, file: ReuseFile, match: ReuseMatch, hashes: ObjectHashes, mac?: string): Promise<boolean> {
  const driver = run.driver;
  if (driver.copyWithin === undefined) return false;
  // At an encrypted destination: the candidate's stored record, which the copy must match and the new record takes.
  const stored = driver.encryption ? match.stored : undefined;
  if (driver.encryption && (stored === undefined || mac === undefined)) return false;
  const fromKey = `${match.backup}/${match.path}`;
  const toKey = `${ctx.backup}/${file.path}`;
  let committed: string | undefined;
  try {
    // The driver makes sure the candidate still is what its manifest recorded (size, stored
    // hash, fingerprint): one changed since (or gone) is not copied from.
    const expect = { size: file.size, hash: stored?.hash ?? hashes.hash, ...(match.fingerprint !== undefined ? { fingerprint: match.fingerprint } : {}) };
    committed = (await driver.copyWithin(fromKey, toKey, { link: reuse.link, serverOnly: true, expect, signal: ctx.signal }))?.fingerprint;
  } catch (err) {
    if (err instanceof OffsiteError && err.code === 'E_NO_SERVER_COPY') {
      // Not possible at this destination: it sends every file from now on (one warning).
      if (run.reuse !== undefined) ctx.emit?.({ type: 'warning', destination: run.name, message: `reusing nothing more this run: ${errorMessage(err)}` });
      run.reuse = undefined;
      return false;
    }
    const kind = errorKind(err);
    // Gone or changed meanwhile (a prune), or a copy the driver found wrong and removed: send instead.
    if (kind === 'not-found' || kind === 'integrity' || kind === 'permanent') return false;
    run.fail(err, file.path);
    return true;
  }
  if (committed === undefined) {
    try {
      committed = (await driver.stat(toKey, { signal: ctx.signal }))?.fingerprint;
    } catch {
      committed = undefined; // a record without one is trusted on size, as older records are
    }
  }
  const record: ManifestFile = {
    path: file.path, size: file.size, reusedFrom: fromKey,
    ...(stored !== undefined ? { hash: stored.hash, chunks: stored.chunks, storedSize: stored.size, mac } : { hash: hashes.hash, chunks: hashes.chunks }),
    ...(file.recordedSource !== undefined ? { sourceFingerprint: file.recordedSource } : {}),
    ...(committed !== undefined ? { destinationFingerprint: committed } : {}),
  };
  run.record(record, 'reused');
  return true;
}

/**
 * The reuse index of a destination that may reuse (its policy is `copy` or `link` and its driver
 * has `copyWithin`), or `undefined`; a destination whose other copies cannot be read is told to
 * `emit` as a warning and sends every file this run. Each destination builds its own while it
 * prepares (src/core/destination-state.ts), so one slow to answer delays only itself; the index
 * reads one manifest at a time.
 */
export async function reuseIndexOf(
  driver: Driver, backup: string, policy: ReusePolicy | undefined, emit: (event: ReplicateEvent) => void, signal?: AbortSignal, sourceEtags = false, cache?: ManifestCache,
): Promise<RunReuse | undefined> {
  if (policy === undefined || policy === 'off' || !driver.capabilities.serverSideCopy || driver.copyWithin === undefined) return undefined;
  const encryption = driver.encryption;
  try {
    const manifests = new Map<string, Entry>();
    const copies = await reusableCopies(driver, backup, { signal, manifests });
    if (copies.length === 0) return undefined;
    const index = await buildReuseIndex(driver, copies, {
      signal, sourceEtags: sourceEtags && encryption === undefined, ...(cache ? { cache: { manifests: cache, listed: manifests } } : {}),
      ...(encryption ? { encrypted: { scheme: encryption.scheme, publicKey: encryption.publicKey } } : {}),
      onSkipped: (copy, reason) => emit({ type: 'warning', destination: driver.name, message: `not reusing files of ${copy}: ${reason}` }),
    });
    await cache?.tidy(driver);
    return index.size > 0 ? { index, link: policy === 'link' } : undefined;
  } catch (err) {
    if (signal?.aborted) throw err;
    emit({ type: 'warning', destination: driver.name, message: `every file is sent: its earlier copies could not be read for reuse (${errorMessage(err)})` });
    return undefined;
  }
}
