/**
 * Writing one key on the `local` driver: the partial file `.<basename>.offsite-partial` next to
 * the final name (src/drivers/toolkit/temp-names.ts), written with positional writes, renamed
 * onto the final name at `commit`. The name is deterministic, so a later run on any machine
 * finds what an interrupted one left and resumes it.
 *
 * A session sees the driver only through `SessionSetup` (what it was opened with, plus two
 * callbacks): it never reaches into the driver or its tree.
 */
import { constants } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { DriverError, throwIfAborted } from '../../errors.js';
import {
  localFingerprint, PartLedger, partialName, sessionClosedError, sizeMismatchError, splitKey, type ErrorContext,
} from '../toolkit/index.js';
import type { CommitOptions, Committed, SignalOptions, WriteSession } from '../types.js';
import { classifyFsError, errnoOf, isMissing } from './errors.js';
import type { FsOps } from './fsops.js';
import { childPath, type LocalTree } from './tree.js';

/** Temp files are opened without following a symlink planted under their name. */
const TEMP_OPEN_FLAGS = constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW;

/** Everything a session needs, given by the driver when it opens one. */
export interface SessionSetup {
  readonly driver: string;
  readonly key: string;
  /** Real path of the key's folder, the partial file and the final file. */
  readonly folder: string;
  readonly temp: string;
  readonly final: string;
  readonly size: number;
  readonly partBytes: number;
  readonly resumable: ReadonlySet<number>;
  /** The calls to use (./fsops.ts). */
  readonly ops: FsOps;
  /** The partial file, already open. */
  readonly fd: number;
  /** Re-creates the key's folders (a concurrent `delete` may have removed them as empty). */
  readonly prepareFolder: () => Promise<string>;
  /** Called after the rename: the file and its folder still need `sync()` to be durable. */
  readonly committed: (file: string, folder: string) => void;
}

/**
 * Prepares writing `key` (arguments already checked): creates the root (one level) and parent
 * folders, and opens the partial file, created empty when there is none (O_EXCL: no stat in the
 * usual case). Parts fully inside what an earlier run left there are reported as resumable (a
 * partial file longer than `size` is first cut to `size`).
 */
export async function openLocalWrite(
  tree: LocalTree, key: string, size: number, partBytes: number, context: ErrorContext,
  committed: (file: string, folder: string) => void,
): Promise<LocalWriteSession> {
  let folder = await tree.prepareFolder(key, context);
  const basename = key.slice(key.lastIndexOf('/') + 1);
  const takenError = (cause?: unknown): DriverError =>
    new DriverError('E_FS', `${context.driver}: ${key}: the temp name ${partialName(basename)} is taken by something that is not a file; remove it`, { kind: 'permanent', cause });
  // The temp file is opened (created when missing) here: what an earlier run left in it is resumed.
  let temp = childPath(folder, partialName(basename));
  const ops = tree.ops;
  let opened: { fd: number; size: number };
  try {
    opened = await openTemp(ops, temp, takenError);
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT' || !tree.forget(splitKey(key).folders)) throw err;
    folder = await tree.prepareFolder(key, context); // the remembered folder was gone
    temp = childPath(folder, partialName(basename));
    opened = await openTemp(ops, temp, takenError);
  }
  const { fd } = opened;
  let found: number;
  try {
    if (opened.size > size) await ops.ftruncate(fd, size);
    found = Math.min(opened.size, size);
  } catch (err) {
    await ops.close(fd).catch(() => undefined);
    throw err;
  }
  return new LocalWriteSession({
    driver: context.driver, key, folder, temp, final: childPath(folder, basename), size, partBytes,
    resumable: new PartLedger(size, partBytes).partsWithin(found), ops, fd,
    prepareFolder: () => {
      tree.forget(splitKey(key).folders); // the remembered folder is gone: look again
      return tree.prepareFolder(key, context);
    },
    committed,
  });
}

/**
 * Opens a temp file for writing, never through a symlink, and returns its size: created with
 * O_EXCL in the usual case (no partial file: size 0, no stat needed), else opened as it is.
 * `taken` is the error for a name taken by something that is not a file.
 */
async function openTemp(ops: FsOps, temp: string, taken: (cause?: unknown) => Error): Promise<{ fd: number; size: number }> {
  try {
    return { fd: await ops.open(temp, TEMP_OPEN_FLAGS | constants.O_EXCL, 0o644), size: 0 };
  } catch (err) {
    if (errnoOf(err) !== 'EEXIST') throw err; // (a symlink or a folder there is EEXIST too)
  }
  let fd: number;
  try {
    fd = await ops.open(temp, TEMP_OPEN_FLAGS, 0o644);
  } catch (err) {
    throw ['ELOOP', 'EMLINK', 'EISDIR'].includes(errnoOf(err) ?? '') ? taken(err) : err;
  }
  try {
    const info = await ops.fstat(fd);
    if (!info.isFile()) throw taken();
    return { fd, size: info.size };
  } catch (err) {
    await ops.close(fd).catch(() => undefined);
    throw err;
  }
}

/**
 * A write into `.<basename>.offsite-partial` with positional writes: parts may be written in any
 * order and concurrently. `commit` requires every part to have been written in this session or
 * confirmed by `matches`; resumable parts that were never confirmed do not count.
 */
export class LocalWriteSession implements WriteSession {
  readonly key: string;
  readonly size: number;
  readonly partBytes: number;
  readonly resumableParts: ReadonlySet<number>;
  readonly #setup: SessionSetup;
  readonly #parts: PartLedger;
  /** The partial file's descriptor (being opened, or open), `undefined` when closed. */
  #fd: Promise<number> | undefined;
  /** Reads and writes in flight on `#fd`: it is closed only when there are none (a closed number can be reused by the next open). */
  #busy = 0;
  #idle: (() => void)[] = [];
  #state: 'open' | 'suspended' | 'aborted' | 'committed' = 'open';

  constructor(setup: SessionSetup) {
    this.#setup = setup;
    this.key = setup.key;
    this.size = setup.size;
    this.partBytes = setup.partBytes;
    this.resumableParts = setup.resumable;
    this.#parts = new PartLedger(setup.size, setup.partBytes);
    this.#fd = Promise.resolve(setup.fd);
  }

  /**
   * Reads part `index` back from the partial file and compares it byte for byte. False when the
   * file is shorter, the bytes differ, or `bytes` has the wrong length. Rejects only on IO
   * errors, a bad index (`E_BAD_ARGUMENT`), or a session that is no longer open.
   */
  async matches(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<boolean> {
    const context = this.#context(`check part ${index}`);
    try {
      this.#checkUsable(options.signal, context);
      const { start, end } = this.#parts.checkIndex(index, context);
      this.#parts.forget(index);
      if (bytes.byteLength !== end - start) return false;
      const stored = Buffer.alloc(end - start);
      const filled = await this.#use(async (fd) => {
        let done = 0;
        while (done < stored.length) {
          const bytesRead = await this.#setup.ops.pread(fd, stored, done, stored.length - done, start + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done;
      });
      if (filled < stored.length) return false;
      const same = stored.equals(bytes);
      if (same) this.#parts.record(index);
      return same;
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Writes part `index` at its offset (positional write; parts may be written concurrently).
   * A bad index or a part of the wrong length rejects with `E_BAD_ARGUMENT` (`fatal`) before
   * any IO. A failed write leaves the part unconfirmed, so writing it again is a retry.
   */
  async write(index: number, bytes: Uint8Array, options: SignalOptions = {}): Promise<void> {
    const context = this.#context(`write part ${index}`);
    try {
      this.#checkUsable(options.signal, context);
      const { start } = this.#parts.checkPart(index, bytes, context);
      this.#parts.forget(index);
      await this.#use(async (fd) => {
        for (let written = 0; written < bytes.byteLength;) {
          throwIfAborted(options.signal, `${context.driver}: ${this.key}: write part ${index}`);
          written += await this.#setup.ops.pwrite(fd, bytes, written, bytes.byteLength - written, start + written);
        }
      });
      this.#parts.record(index);
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /**
   * Checks that every part is there and the file has exactly `size` bytes (as this session made
   * it: its size at open, extended by each write; the file is asked only when it had to be opened
   * again), closes it and renames it onto the final name (replacing an older file atomically);
   * the driver's `sync()` makes the file and the rename durable. A missing part rejects with
   * `E_MISSING_PART` (`fatal`) and a size mismatch with `E_SIZE_MISMATCH` (`integrity`); both
   * leave the partial file and the session open (write the missing part and commit again). The
   * hash is not stored (`storedHash` is false: the manifest keeps it).
   */
  async commit(options: CommitOptions): Promise<Committed> {
    const context = this.#context('commit');
    try {
      this.#checkUsable(options.signal, context);
      this.#parts.requireComplete(context);
      const fd = await this.#open();
      // One fstat gives the size check and the fingerprint `stat` will show after the rename
      // (a rename keeps the inode and the modification time).
      const info = await this.#setup.ops.fstatBig(fd);
      const size = Number(info.size);
      if (size !== this.size) throw sizeMismatchError(context, 'cannot commit: the partial file', size, this.size);
      await this.#closeHandle();
      throwIfAborted(options.signal, `${context.driver}: ${this.key}: commit`);
      await this.#setup.ops.rename(this.#setup.temp, this.#setup.final);
      this.#state = 'committed';
      this.#setup.committed(this.#setup.final, this.#setup.folder);
      return { fingerprint: localFingerprint(info.size, info.mtimeNs, info.ino) };
    } catch (err) {
      throw classifyFsError(err, context);
    }
  }

  /** Closes the file handle and keeps the partial file for a later run. Never throws; idempotent. */
  async suspend(): Promise<void> {
    if (this.#state === 'open') this.#state = 'suspended';
    await this.#closeHandle().catch(() => undefined);
  }

  /**
   * Closes the handle and removes the partial file (also one left by an earlier run). Resolves
   * when it is already gone; rejects only when it cannot be removed (e.g. permission denied).
   * Never touches the final name. Idempotent.
   */
  async abort(): Promise<void> {
    if (this.#state !== 'committed') this.#state = 'aborted';
    await this.#closeHandle().catch(() => undefined);
    try {
      await unlink(this.#setup.temp);
    } catch (err) {
      if (!isMissing(err)) throw classifyFsError(err, this.#context('abort'));
    }
  }

  #context(action: string): ErrorContext {
    return { driver: this.#setup.driver, key: this.key, action };
  }

  #checkUsable(signal: AbortSignal | undefined, context: ErrorContext): void {
    throwIfAborted(signal, `${context.driver}: ${this.key}: ${context.action}`);
    if (this.#state !== 'open') throw sessionClosedError(context, this.#state);
  }

  /** Opens (creating when missing, never truncating, never through a symlink) the partial file once. */
  #open(): Promise<number> {
    this.#fd ??= (async () => {
      const { ops } = this.#setup;
      let fd: number;
      try {
        fd = await ops.open(this.#setup.temp, TEMP_OPEN_FLAGS, 0o644);
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw err;
        await this.#setup.prepareFolder();
        fd = await ops.open(this.#setup.temp, TEMP_OPEN_FLAGS, 0o644);
      }
      if (this.#state !== 'open') {
        await ops.close(fd);
        throw sessionClosedError(this.#context('open'), this.#state);
      }
      return fd;
    })();
    const opening = this.#fd;
    opening.catch(() => { if (this.#fd === opening) this.#fd = undefined; });
    return opening;
  }

  /** Runs a read or write on the open descriptor, counted so that a close waits for it. */
  async #use<T>(action: (fd: number) => Promise<T>): Promise<T> {
    const fd = await this.#open();
    this.#busy++;
    try {
      return await action(fd);
    } finally {
      if (--this.#busy === 0) {
        const idle = this.#idle;
        this.#idle = [];
        for (const wake of idle) wake();
      }
    }
  }

  async #closeHandle(): Promise<void> {
    const opening = this.#fd;
    this.#fd = undefined;
    if (opening === undefined) return;
    const fd = await opening.catch(() => undefined);
    if (fd === undefined) return;
    while (this.#busy > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
    await this.#setup.ops.close(fd);
  }
}
