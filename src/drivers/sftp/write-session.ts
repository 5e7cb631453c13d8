/**
 * Writing one key on the `sftp` driver: a temp file next to the final one, named from the final
 * name (`.<name>.offsite-partial`, src/drivers/toolkit/temp-names.ts), so a later run on any
 * machine finds it and resumes it. Parts are written at their offsets with pipelined SFTP WRITE
 * requests; `commit` checks the size, fsyncs (`fsync@openssh.com` when offered) and renames
 * atomically onto the final name (`posix-rename@openssh.com`; plain SFTP rename after removing
 * the old file otherwise).
 *
 * A session sees the driver only through `SessionSetup`: what it was opened with, the pool,
 * and the two tree operations it needs (check/make the key's folders, create the temp file).
 */
import type { SFTPWrapper, Stats } from 'ssh2';
import { DriverError, throwIfAborted } from '../../errors.js';
import { isNotFound, PartLedger, Semaphore, sessionClosedError, sftpFingerprint, sizeMismatchError, type ErrorContext, type PartRange } from '../toolkit/index.js';
import type { CommitOptions, Committed, SignalOptions, WriteSession } from '../types.js';
import { settle, type ConnectionPool, type SftpConnection, type SftpHandle } from './connection.js';
import { SFTP_STATUS, sftpStatusOf } from './errors.js';
import { readRange, type ReadShape, type SftpTransferCounters } from './read.js';
import { fsyncHandle, replaceFile, tempStats } from './tree.js';
import { sendWrite } from './write-request.js';

/** Everything a session needs, given by the driver when it opens one. */
export interface SessionSetup {
  /** The driver instance's name, for messages. */
  readonly driver: string;
  readonly key: string;
  readonly finalPath: string;
  readonly tempPath: string;
  readonly size: number;
  readonly partBytes: number;
  readonly pool: ConnectionPool;
  /** WRITE (and `matches` READ) requests in flight per file, and bytes per request. */
  readonly concurrencyPerFile: number;
  readonly requestBytes: number;
  readonly counters: SftpTransferCounters;
  /** Checks and makes the key's folders (./tree.ts `checkFolder` with `create`). */
  readonly prepareFolder: (conn: SftpConnection, context: ErrorContext) => Promise<'ok' | 'missing' | 'created'>;
  /** Opens the temp file for writing, truncated; makes the folders again when they have gone. */
  readonly createTemp: (conn: SftpConnection, context: ErrorContext) => Promise<SftpHandle>;
}

/**
 * A write in progress. Parts go into the temp file at their offsets; a `PartLedger` records
 * which parts this session wrote or confirmed (`matches`), so that `commit` refuses a file with
 * holes. Pinned to one connection (SFTP handles belong to one channel); when that connection
 * dies the next call reopens the temp file on a fresh one. Every request naming the temp file
 * goes through its `SftpHandle`, which sends none once its CLOSE has begun (./connection.ts).
 */
export class SftpWriteSession implements WriteSession {
  readonly key: string;
  readonly size: number;
  readonly partBytes: number;
  readonly resumableParts: ReadonlySet<number>;
  private readonly parts: PartLedger;
  private readonly slots: Semaphore;
  /** The connection this session holds (counted in the pool's `users`). */
  private conn: SftpConnection | undefined;
  /** The open temp file (on its own connection, usually `conn`). */
  private handle: SftpHandle | undefined;
  /** Bytes in the temp file when it was opened: `matches` cannot succeed beyond it. */
  private existingBytes = 0;
  /** The rename of a commit was sent: a failed commit may have happened all the same. */
  private renameSent = false;
  /** Reopens after lost connections so far. */
  private reopens = 0;
  /** A reopen after a lost connection, shared by the parts that noticed it. */
  private reopening: Promise<SftpHandle> | undefined;
  private state: 'open' | 'committed' | 'suspended' | 'aborted' = 'open';
  private readonly resumable = new Set<number>();

  constructor(private readonly setup: SessionSetup) {
    this.key = setup.key;
    this.size = setup.size;
    this.partBytes = setup.partBytes;
    this.parts = new PartLedger(setup.size, setup.partBytes);
    this.slots = new Semaphore(setup.concurrencyPerFile);
    this.resumableParts = this.resumable;
  }

  private context(action: string): ErrorContext {
    return { driver: this.setup.driver, action, key: this.key };
  }

  /**
   * Checks (and makes) the key's folders, then finds or creates the temp file. The temp file's
   * LSTAT goes out with the folder check: it reads nothing, and is not needed when the folder
   * was just made.
   */
  async start(): Promise<void> {
    const conn = await this.setup.pool.acquire();
    this.conn = conn;
    try {
      const context = this.context('write');
      const temp = settle(this.statTemp(conn));
      const folder = await this.setup.prepareFolder(conn, context);
      let existing: Stats | undefined;
      if (folder !== 'created') {
        const found = await temp;
        if (!found.ok) throw found.error;
        existing = found.value;
      }
      if (existing && existing.size <= this.size && existing.size > 0) {
        this.handle = await this.openTemp(conn, 'r+');
        this.existingBytes = existing.size;
        for (const index of this.parts.partsWithin(existing.size)) this.resumable.add(index);
      } else {
        this.handle = await this.openTemp(conn, 'w');
      }
    } catch (err) {
      this.release();
      throw err;
    }
  }

  /** The temp file, `undefined` when there is none; rejects when something else holds its name. */
  private statTemp(conn: SftpConnection): Promise<Stats | undefined> {
    return tempStats(conn, this.setup.tempPath, this.context('write'));
  }

  /** Opens the temp file; `w` also makes the folders again when they have gone. */
  private async openTemp(conn: SftpConnection, flags: 'r+' | 'w'): Promise<SftpHandle> {
    if (flags === 'w') return this.setup.createTemp(conn, this.context('write'));
    return conn.open(this.context('write'), this.setup.tempPath, flags);
  }

  /** The open temp file, reopened after a lost connection. */
  private async ready(action: string): Promise<SftpHandle> {
    if (this.state !== 'open') throw sessionClosedError(this.context(action), this.state);
    if (this.handle?.usable) return this.handle;
    // Parts written in parallel all notice the lost connection: one reopens, the others wait for
    // it (one temp file handle at a time; each handle only ever goes out on its own connection).
    this.reopening ??= this.reopen().finally(() => { this.reopening = undefined; });
    return this.reopening;
  }

  /**
   * OpenSSH answers FAILURE for a handle it does not know. After this session reopened its temp
   * file on a new connection, a FAILURE on a handle call is treated as a handle the server no
   * longer knows: it is closed and dropped so that the retry reopens, and the retry layer tries
   * again. A real refusal fails again and is reported after the retries.
   */
  private staleHandle(handle: SftpHandle, err: unknown): unknown {
    if (this.reopens === 0 || sftpStatusOf((err as { cause?: unknown }).cause) !== SFTP_STATUS.FAILURE) return err;
    if (this.handle !== handle) return err; // already replaced
    this.handle = undefined;
    void handle.close(this.context('close'));
    this.release();
    return new DriverError('E_STALE_HANDLE', `${(err as Error).message} (after a reconnect: retrying with a fresh handle)`, { kind: 'retryable', cause: err });
  }

  private async reopen(): Promise<SftpHandle> {
    this.reopens++;
    void this.handle?.close(this.context('close'));
    this.handle = undefined;
    this.release();
    const conn = await this.setup.pool.acquire();
    try {
      const existing = await this.statTemp(conn);
      let handle: SftpHandle;
      if (existing) {
        handle = await this.openTemp(conn, 'r+');
      } else {
        // The temp file vanished: everything stored so far is gone with it.
        this.parts.clear();
        this.existingBytes = 0;
        handle = await this.openTemp(conn, 'w');
      }
      this.conn = conn;
      this.handle = handle;
      return handle;
    } catch (err) {
      this.setup.pool.release(conn);
      throw err;
    }
  }

  /**
   * True when the temp file already holds exactly `bytes` for part `index` (read back and
   * compared). A mismatch returns false and changes nothing; the part is then written again.
   * A bad index or a part of the wrong length rejects with `E_BAD_ARGUMENT` (`fatal`).
   */
  async matches(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<boolean> {
    const range = this.parts.checkPart(index, bytes, this.context('check part'));
    throwIfAborted(options.signal, `${this.setup.driver}: ${this.key}: check part`);
    if (range.end > this.existingBytes && !this.parts.has(index)) return false;
    const handle = await this.ready('check part');
    const context = this.context(`check part ${index}`);
    let position = 0;
    const { concurrencyPerFile, requestBytes } = this.setup;
    const shape: ReadShape = { concurrency: concurrencyPerFile, requestBytes, pieceBytes: requestBytes, allocate: Buffer.allocUnsafe };
    for await (const chunk of readRange(handle, range.start, range.end, shape, context, this.setup.counters, options.signal)) {
      if (!Buffer.from(bytes.buffer, bytes.byteOffset + position, chunk.length).equals(chunk)) return false;
      position += chunk.length;
    }
    if (position !== bytes.length) return false;
    this.parts.record(index);
    return true;
  }

  /**
   * Writes part `index` at its offset with up to `concurrencyPerFile` WRITE requests in flight
   * (shared by all parts of this file). A bad index or a part of the wrong length rejects with
   * `E_BAD_ARGUMENT` (`fatal`) before any IO. A failure (or an abort) waits for the requests
   * already sent, then rejects; the part can simply be written again.
   */
  async write(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<void> {
    const range: PartRange = this.parts.checkPart(index, bytes, this.context('write'));
    const what = `${this.setup.driver}: ${this.key}: write part ${index}`;
    throwIfAborted(options.signal, what);
    const handle = await this.ready('write');
    this.parts.forget(index);
    const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const context = this.context(`write part ${index}`);
    const { requestBytes, counters } = this.setup;
    const inFlight: Promise<void>[] = [];
    let failure: unknown;
    for (let offset = 0; offset < data.length && failure === undefined; offset += requestBytes) {
      await this.slots.acquire();
      if (failure !== undefined || options.signal?.aborted) {
        this.slots.release();
        break;
      }
      const length = Math.min(requestBytes, data.length - offset);
      const sent = handle
        .call<void>(context, (sftp: SFTPWrapper, raw, done) => sendWrite(sftp, raw, data, offset, length, range.start + offset, done))
        .then(
          () => {
            counters.bytesWritten += length;
          },
          (err: unknown) => {
            failure ??= this.staleHandle(handle, err);
          },
        )
        .finally(() => this.slots.release());
      inFlight.push(sent);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;
    throwIfAborted(options.signal, what);
    this.parts.record(index);
  }

  /**
   * Checks that every part was written or confirmed (else `E_MISSING_PART`, `fatal`, keeping
   * the temp file) and that the temp file has exactly `size` bytes (else `E_SIZE_MISMATCH`,
   * `integrity`), makes it durable (`fsync@openssh.com` when offered) and renames it onto the
   * key (atomic with `posix-rename@openssh.com`; otherwise the old file is removed first, so the
   * key is briefly missing but never partial). On failure nothing appears under the key. Two
   * round trips where the server runs requests in order (FSTAT + fsync, then CLOSE + rename),
   * four elsewhere: the rename is never sent before the size check and the fsync have answered.
   */
  async commit(options: CommitOptions): Promise<Committed | void> {
    const what = `${this.setup.driver}: ${this.key}: commit`;
    throwIfAborted(options.signal, what);
    if (this.renameSent) {
      if (await this.renamedEarlier()) {
        // A retry after a commit whose rename went through but whose answer was lost.
        this.state = 'committed';
        this.release();
        return;
      }
      this.renameSent = false; // it did not happen: the temp file is still there
    }
    if (this.state !== 'open') throw sessionClosedError(this.context('commit'), this.state);
    this.parts.requireComplete(this.context('commit'));
    const handle = await this.ready('commit');
    const { conn } = handle;
    // The FSTAT that checks the size and the fsync go out together where the server runs
    // requests in order (OpenSSH): the fsync is harmless when the size turns out wrong.
    const checked = settle(handle.call<Stats>(this.context('commit: size check'), (sftp, raw, done) => sftp.fstat(raw, done)));
    const early = conn.runsInOrder ? settle(fsyncHandle(handle, this.context('commit: fsync'))) : undefined;
    const found = await checked;
    if (!found.ok) {
      await early;
      throw this.staleHandle(handle, found.error);
    }
    const stats = found.value;
    if (stats.size !== this.size) {
      await early;
      throw sizeMismatchError(this.context('commit'), 'the temp file', stats.size, this.size);
    }
    const synced = await (early ?? settle(fsyncHandle(handle, this.context('commit: fsync'))));
    if (!synced.ok) throw synced.error;
    throwIfAborted(options.signal, what);
    // The handle is spent once CLOSE is sent, even if its answer is lost: a retry reopens. The
    // rename goes with the CLOSE where requests run in order (else it waits for its answer: a
    // server may refuse to rename an open file).
    this.handle = undefined;
    const closed = handle.close(this.context('commit: close'), false);
    if (!conn.runsInOrder) await closed;
    this.renameSent = true;
    await Promise.all([replaceFile(conn, this.setup.tempPath, this.setup.finalPath, this.context('commit: rename')), closed]);
    this.state = 'committed';
    this.release();
    // No write follows the size check, and close and rename keep the modification time: this
    // is what `stat` shows now, without another round trip.
    return { fingerprint: sftpFingerprint(stats.size, stats.mtime) };
  }

  /**
   * After a commit that failed once its rename was sent: true when the rename did happen (no
   * temp file any more, the key holds exactly `size` bytes), so that the retry must not recreate
   * an empty temp file and report it as damage.
   */
  private async renamedEarlier(): Promise<boolean> {
    if (!this.conn?.alive) {
      this.release();
      this.conn = await this.setup.pool.acquire();
    }
    const conn = this.conn;
    if (await this.statTemp(conn)) return false;
    try {
      const final = await conn.call<Stats>(this.context('commit'), (sftp, done) => sftp.lstat(this.setup.finalPath, done));
      return final.isFile() && final.size === this.size;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** Closes the temp file and keeps it for a later run. Never throws; idempotent. */
  async suspend(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'suspended';
    await this.handle?.close(this.context('suspend'));
    this.handle = undefined;
    this.release();
  }

  /**
   * Closes and removes the temp file (best effort: never throws; a later run overwrites or
   * removes what is left). An object committed earlier under the key is left alone. Idempotent.
   */
  async abort(): Promise<void> {
    if (this.state === 'aborted' || this.state === 'committed') return;
    this.state = 'aborted';
    await this.handle?.close(this.context('abort'));
    this.handle = undefined;
    this.release();
    await removeQuietly(this.setup.pool, this.setup.tempPath, this.context('abort'));
  }

  private release(): void {
    if (this.conn) this.setup.pool.release(this.conn);
    this.conn = undefined;
  }
}

/** Removes a file; best effort, never throws (already gone, or unreachable now). */
export async function removeQuietly(pool: ConnectionPool, path: string, context: ErrorContext): Promise<void> {
  let conn: SftpConnection | undefined;
  try {
    conn = await pool.acquire();
    const held = conn;
    await held.call<void>(context, (sftp, done) => sftp.unlink(path, done));
  } catch {
    /* already gone, or unreachable now */
  } finally {
    if (conn) pool.release(conn);
  }
}
