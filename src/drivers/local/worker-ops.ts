/**
 * The local driver's file-system calls made on a thread of their own (./fs-worker.ts), in batches.
 *
 * Why: copying 100,000 small files makes about ten calls per file (open, fstat, read, close at
 * the source; mkdir, open, write, fstat, close, rename at the destination). Made synchronously on
 * the main thread (./fsops.ts `SYNC_OPS`) they were half of its time, with the second core idle;
 * through libuv's thread pool each call costs two thread hand-offs, more than the call itself.
 * Here every call made during one turn of the event loop goes to one thread in one message, and
 * its answers come back in one message: the system calls of many files run beside the main
 * thread's hashing and bookkeeping, for one hand-off per batch, not per call.
 *
 * - The calls of a batch run in order. One batch is out at a time: calls made meanwhile gather
 *   into the next, which is sent when the answer comes, so the busier the thread, the larger (and
 *   fewer) the messages: a message costs more than the calls in it.
 * - Reads and writes of file data above `SMALL_DATA_BYTES` go to libuv's thread pool as before
 *   (descriptors belong to the process, not to a thread): they keep the disk busy without holding
 *   up the small calls queued behind them. Small ones are copied into the message (a small file's
 *   bytes), so the caller's buffer is never handed over.
 * - The thread is shared by every local driver of the process, started on the first call, and
 *   never keeps the process alive: it is ref'd only while calls are in flight.
 * - A thread that dies (or cannot start) rejects the calls it had; later calls are made by
 *   `fallback` (the synchronous calls), so nothing waits forever on a thread that is gone.
 */
import { constants } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { isMissing } from './errors.js';
import { adaptiveOps, pread, pwrite, SMALL_DATA_BYTES, type DirEntry, type FileInfo, type FileInfoBig, type FsOps } from './fsops.js';

/** One call as sent to the thread. */
export type WireCall =
  | readonly ['lstat' | 'stat' | 'lstatBig' | 'statBig' | 'realpath' | 'mkdir' | 'readdir', string]
  | readonly ['fstat' | 'fstatBig' | 'close', number]
  | readonly ['open', string, number, number | undefined]
  | readonly ['ftruncate', number, number]
  | readonly ['rename', string, string]
  | readonly ['pread', number, number, number]
  | readonly ['pwrite', number, Uint8Array, number];

/**
 * One call's answer: stats as `[mode, size, mtimeMs, ino]` (numbers) or `[mode, size, mtimeMs,
 * mtimeNs, ino]` (bigints after the mode), folder entries as `[names, types]`, bytes read, a
 * number, a path, or null.
 */
export type WireResult = null | number | string | Uint8Array | readonly unknown[];

/** The errno fields of a failed call. */
export interface WireError {
  readonly message: string;
  readonly code?: string | undefined;
  readonly errno?: number | undefined;
  readonly syscall?: string | undefined;
  readonly path?: string | undefined;
  readonly dest?: string | undefined;
}

interface WireReply {
  readonly results: WireResult[];
  readonly failed: (WireError | undefined)[];
}

interface Pending {
  readonly resolve: (value: WireResult) => void;
  readonly reject: (err: Error) => void;
}

/** The file type bits of a mode, as fs.Stats reads them. */
function typeChecks(mode: number) {
  const type = mode & constants.S_IFMT;
  return {
    isFile: () => type === constants.S_IFREG,
    isDirectory: () => type === constants.S_IFDIR,
    isSymbolicLink: () => type === constants.S_IFLNK,
    isFIFO: () => type === constants.S_IFIFO,
    isSocket: () => type === constants.S_IFSOCK,
    isBlockDevice: () => type === constants.S_IFBLK,
    isCharacterDevice: () => type === constants.S_IFCHR,
  };
}

function fileInfo(wire: WireResult): FileInfo {
  const [mode, size, mtimeMs, ino] = wire as [number, number, number, number];
  return { ...typeChecks(mode), mode, size, mtimeMs, ino };
}

function fileInfoBig(wire: WireResult): FileInfoBig {
  const [mode, size, mtimeMs, mtimeNs, ino] = wire as [number, bigint, bigint, bigint, bigint];
  return { ...typeChecks(mode), mode: BigInt(mode), size, mtimeMs, mtimeNs, ino };
}

const ENTRY_TYPES = [0, constants.S_IFREG, constants.S_IFDIR, constants.S_IFLNK];

function dirEntries(wire: WireResult): DirEntry[] {
  const [names, types] = wire as [string[], number[]];
  return names.map((name, i) => ({ name, ...typeChecks(ENTRY_TYPES[types[i] as number] as number) }));
}

function errorOf(wire: WireError): Error {
  const err = new Error(wire.message) as NodeJS.ErrnoException & { dest?: string };
  if (wire.code !== undefined) err.code = wire.code;
  if (wire.errno !== undefined) err.errno = wire.errno;
  if (wire.syscall !== undefined) err.syscall = wire.syscall;
  if (wire.path !== undefined) err.path = wire.path;
  if (wire.dest !== undefined) err.dest = wire.dest;
  return err;
}

const missing = (err: unknown): undefined => {
  if (isMissing(err)) return undefined;
  throw err;
};

/** The thread and its batches: the one being gathered, and those sent and not yet answered (in order). */
class FsThread {
  #worker: Worker | undefined;
  #gone = false;
  #gathering: { calls: WireCall[]; pending: Pending[]; transfer: ArrayBuffer[] } | undefined;
  /** Batches sent and not yet answered: at most one (see `call`). */
  readonly #sent: Pending[][] = [];
  #sendScheduled = false;

  constructor(readonly workerUrl: URL) {}

  /** False once the thread is gone (or could not start): use the fallback. */
  get usable(): boolean {
    return !this.#gone;
  }

  call(call: WireCall, transfer?: ArrayBuffer): Promise<WireResult> {
    return new Promise((resolve, reject) => {
      if (this.#gathering === undefined) {
        this.#gathering = { calls: [], pending: [], transfer: [] };
        // While a batch is out, the next one grows until its answer comes (`#answer` sends it).
        if (this.#sent.length === 0) this.#sendSoon();
      }
      this.#gathering.calls.push(call);
      this.#gathering.pending.push({ resolve, reject });
      if (transfer !== undefined) this.#gathering.transfer.push(transfer);
    });
  }

  /** Sends the batch being gathered after this turn of the event loop: the calls its callbacks make join it. */
  #sendSoon(): void {
    if (this.#sendScheduled) return;
    this.#sendScheduled = true;
    setImmediate(() => {
      this.#sendScheduled = false;
      this.#send();
    });
  }

  #send(): void {
    const batch = this.#gathering;
    if (batch === undefined || this.#sent.length > 0) return;
    this.#gathering = undefined;
    let worker: Worker;
    try {
      worker = this.#start();
    } catch (err) {
      this.#lost(err as Error, [batch.pending]);
      return;
    }
    if (this.#sent.length === 0) worker.ref();
    this.#sent.push(batch.pending);
    worker.postMessage(batch.calls, batch.transfer);
  }

  #start(): Worker {
    if (this.#gone) throw new Error('the local file-system thread is gone');
    if (this.#worker !== undefined) return this.#worker;
    const worker = new Worker(this.workerUrl);
    worker.unref();
    worker.on('message', (reply: WireReply) => this.#answer(reply));
    const lost = (why: string) => (cause?: Error) => this.#lost(new Error(`the local file-system thread stopped (${why}${cause ? `: ${cause.message}` : ''}); the run can be started again`, { cause }), this.#sent.splice(0));
    worker.on('error', lost('it threw'));
    worker.on('messageerror', lost('its answer could not be read'));
    worker.on('exit', (code: number) => lost(`it exited with code ${code}`)());
    this.#worker = worker;
    return worker;
  }

  #answer(reply: WireReply): void {
    const pending = this.#sent.shift() ?? [];
    if (this.#gathering !== undefined) this.#sendSoon();
    else this.#worker?.unref();
    for (let i = 0; i < pending.length; i++) {
      const failed = reply.failed[i];
      const one = pending[i] as Pending;
      if (failed === undefined) one.resolve(reply.results[i] as WireResult);
      else one.reject(errorOf(failed));
    }
  }

  #lost(err: Error, batches: Pending[][]): void {
    this.#gone = true;
    this.#worker?.unref();
    for (const batch of batches) for (const one of batch) one.reject(err);
  }
}

let shared: FsThread | undefined;

/**
 * The calls made on the shared file-system thread (see the file comment); `fallback` makes them
 * once that thread is gone. `workerUrl` is for tests.
 */
export function workerOps(fallback: FsOps = adaptiveOps(), workerUrl = new URL('./fs-worker.js', import.meta.url)): FsOps {
  const thread = workerUrl.href === new URL('./fs-worker.js', import.meta.url).href ? (shared ??= new FsThread(workerUrl)) : new FsThread(workerUrl);
  const on = <T>(call: WireCall, decode: (wire: WireResult) => T, instead: () => Promise<T>, transfer?: ArrayBuffer): Promise<T> =>
    (thread.usable ? thread.call(call, transfer).then(decode) : instead());
  const same = <T>(wire: WireResult): T => wire as T;
  const maybe = <T>(decode: (wire: WireResult) => T) => (wire: WireResult): T | undefined => (wire === null ? undefined : decode(wire));
  return {
    synchronous: false,
    lstat: (path) => on(['lstat', path], maybe(fileInfo), () => fallback.lstat(path)).catch(missing),
    stat: (path) => on(['stat', path], maybe(fileInfo), () => fallback.stat(path)).catch(missing),
    lstatBig: (path) => on(['lstatBig', path], maybe(fileInfoBig), () => fallback.lstatBig(path)).catch(missing),
    statBig: (path) => on(['statBig', path], maybe(fileInfoBig), () => fallback.statBig(path)).catch(missing),
    realpath: (path) => on(['realpath', path], same<string>, () => fallback.realpath(path)).catch(missing),
    readdir: (path) => on(['readdir', path], dirEntries, () => fallback.readdir(path) as Promise<DirEntry[]>).catch(missing),
    mkdir: (path) => on(['mkdir', path], () => undefined, () => fallback.mkdir(path)),
    open: (path, flags, mode) => on(['open', path, flags, mode], same<number>, () => fallback.open(path, flags, mode)),
    fstat: (fd) => on(['fstat', fd], fileInfo, () => fallback.fstat(fd)),
    fstatBig: (fd) => on(['fstatBig', fd], fileInfoBig, () => fallback.fstatBig(fd)),
    ftruncate: (fd, length) => on(['ftruncate', fd, length], () => undefined, () => fallback.ftruncate(fd, length)),
    close: (fd) => on(['close', fd], () => undefined, () => fallback.close(fd)),
    rename: (from, to) => on(['rename', from, to], () => undefined, () => fallback.rename(from, to)),
    pread: (fd, buffer, offset, length, position) => {
      if (length > SMALL_DATA_BYTES) return pread(fd, buffer, offset, length, position);
      return on(['pread', fd, length, position], (wire) => {
        const bytes = wire as Uint8Array;
        buffer.set(bytes, offset);
        return bytes.length;
      }, () => fallback.pread(fd, buffer, offset, length, position));
    },
    pwrite: (fd, buffer, offset, length, position) => {
      if (length > SMALL_DATA_BYTES) return pwrite(fd, buffer, offset, length, position);
      const copy = new Uint8Array(length);
      copy.set(buffer.subarray(offset, offset + length));
      return on(['pwrite', fd, copy, position], same<number>, () => fallback.pwrite(fd, buffer, offset, length, position), copy.buffer as ArrayBuffer);
    },
  };
}
