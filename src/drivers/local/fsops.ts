/**
 * The file-system calls of the local driver, in two flavours with one interface.
 *
 * Why: every asynchronous node:fs call is handed to libuv's thread pool and its answer handed
 * back to the event loop, two thread wake-ups that cost 40-70 us of CPU on a small virtual
 * machine, while the call itself (an lstat, an open, a rename on a local disk) takes a few
 * microseconds. Copying 100,000 small files makes about ten such calls per file: the hand-offs,
 * not the disk, were the run's time. On a local file system (ext4, xfs, btrfs, tmpfs...) the
 * metadata calls are therefore made synchronously (`SYNC_OPS`): no hand-off, and a blocked
 * event loop for microseconds. On a network file system (NFS, SMB, sshfs and any other FUSE
 * mount) a metadata call can wait for a round trip, so they stay asynchronous (`ASYNC_OPS`),
 * as do large reads and writes of file data everywhere (`pread` above `SMALL_READ_BYTES`, `pwrite` above
 * `SMALL_DATA_BYTES`, `copyFile` above `SMALL_COPY_BYTES`: they may wait for the disk).
 * The choice is made once per driver from /proc/self/mountinfo (`opsFor`); anything unknown,
 * and every platform but Linux, gets the asynchronous calls. Even on a local disk a call can be
 * slow (a cold cache on a spinning disk, a stalled device): `adaptiveOps` times each synchronous
 * call and, once three of the last eight took more than 1 ms each, makes the asynchronous calls
 * for the next second before it tries again, so the event loop is never held long and slow
 * metadata reads still overlap.
 *
 * Files are plain descriptors (numbers), not `FileHandle`s: a descriptor opened synchronously
 * cannot become one. Each user closes its descriptors exactly once.
 */
import {
  close, closeSync, copyFile, copyFileSync, fstat, fstatSync, ftruncate, ftruncateSync, link, linkSync, lstat, lstatSync, mkdir, mkdirSync, open, openSync, read, readSync,
  readdir, readdirSync, realpath, realpathSync, rename, renameSync, stat, statSync, unlink, unlinkSync, write, writeSync, type BigIntStats, type Dirent, type Stats,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isMissing } from './errors.js';

export interface FsOps {
  /** True for the synchronous flavour. */
  readonly synchronous: boolean;
  /** lstat; `undefined` when the path (or a parent) is missing. */
  lstat(path: string): Promise<Stats | undefined>;
  /** stat (follows symlinks); `undefined` when missing. */
  stat(path: string): Promise<Stats | undefined>;
  /** stat with nanosecond times and exact inode numbers (for fingerprints); `undefined` when missing. */
  statBig(path: string): Promise<BigIntStats | undefined>;
  /** lstat with nanosecond times and exact inode numbers: of a regular file, what `statBig` gives, in one call; `undefined` when missing. */
  lstatBig(path: string): Promise<BigIntStats | undefined>;
  /** realpath; `undefined` when missing (a dangling symlink). */
  realpath(path: string): Promise<string | undefined>;
  /** mkdir of one level. */
  mkdir(path: string): Promise<void>;
  open(path: string, flags: number, mode?: number): Promise<number>;
  fstat(fd: number): Promise<Stats>;
  /** fstat with nanosecond times and exact inode numbers (for fingerprints). */
  fstatBig(fd: number): Promise<BigIntStats>;
  ftruncate(fd: number, length: number): Promise<void>;
  close(fd: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  /** link(2): a hard link `to` of the file `from`. */
  link(from: string, to: string): Promise<void>;
  /**
   * copyFile (libuv: a reflink where `mode` asks for one and the file system has them, else an
   * in-kernel `copy_file_range`) of a file of `sizeBytes`: synchronous only up to
   * `SMALL_COPY_BYTES`, as a copy of more bytes may wait for the disk.
   */
  copyFile(from: string, to: string, mode: number, sizeBytes: number): Promise<void>;
  /** The entries of a folder with their types; `undefined` when it is missing. */
  readdir(path: string): Promise<Dirent[] | undefined>;
  /** Positional read of file data; the number of bytes read. Synchronous only up to `SMALL_READ_BYTES`. */
  pread(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** Positional write of file data; the number of bytes written. Synchronous only up to `SMALL_DATA_BYTES`. */
  pwrite(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number>;
}

/**
 * Writes of file data up to this many bytes are made like the metadata calls (synchronously on a
 * local file system): a small file's one write into the page cache costs microseconds, less than
 * its two thread hand-offs. Larger ones always go to the thread pool (they may wait for the disk,
 * and they keep it busy while the event loop goes on). Reads: `SMALL_READ_BYTES`.
 */
export const SMALL_DATA_BYTES = 64 * 1024;

/**
 * Reads of file data up to this many bytes are made synchronously too (on a local file system,
 * while calls are fast: `adaptiveOps`). Such a read is a copy out of the page cache (~130 us per
 * MiB measured here, ~30 us for 256 KiB), which costs the event loop less than the two thread
 * hand-offs and the callback of an asynchronous read (issue 13: a deep verify of ~1,300 files, most
 * of them small). Larger reads stay on the thread pool: their copy then runs beside the event loop
 * (which hashes the pieces already read) instead of in it. A read that waits for the disk takes
 * more than `SLOW_CALL_MS`, and after a few such reads the next ones go to the thread pool again.
 */
export const SMALL_READ_BYTES = 256 * 1024;

/**
 * Server-side copies (`copyFile`) of files up to this many bytes are made synchronously too (on a
 * local file system, while calls are fast): a reused file of a few KB is a reflink, or a
 * `copy_file_range` inside the page cache, plus the open, fstat and close calls around it, which
 * cost less than its two thread hand-offs (issue 12: a night reusing 97,000 files). Larger copies
 * stay on the thread pool: without reflinks they copy every byte, and may wait for the disk.
 */
export const SMALL_COPY_BYTES = 256 * 1024;

function call<T>(run: (done: (err: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    run((err, value) => { if (err) reject(err); else resolve(value as T); });
  });
}

const missing = (err: unknown): undefined => {
  if (isMissing(err)) return undefined;
  throw err;
};

/** Every call on libuv's thread pool (callback API: lighter than fs/promises' FileHandle). */
export const ASYNC_OPS: FsOps = {
  synchronous: false,
  lstat: (path) => call<Stats>((done) => lstat(path, done)).catch(missing),
  stat: (path) => call<Stats>((done) => stat(path, done)).catch(missing),
  statBig: (path) => call<BigIntStats>((done) => stat(path, { bigint: true }, done)).catch(missing),
  lstatBig: (path) => call<BigIntStats>((done) => lstat(path, { bigint: true }, done)).catch(missing),
  realpath: (path) => call<string>((done) => realpath(path, done)).catch(missing),
  mkdir: (path) => call<void>((done) => mkdir(path, (err) => done(err))),
  open: (path, flags, mode) => call<number>((done) => open(path, flags, mode, done)),
  fstat: (fd) => call<Stats>((done) => fstat(fd, done)),
  fstatBig: (fd) => call<BigIntStats>((done) => fstat(fd, { bigint: true }, done)),
  ftruncate: (fd, length) => call<void>((done) => ftruncate(fd, length, done)),
  close: (fd) => call<void>((done) => close(fd, done)),
  rename: (from, to) => call<void>((done) => rename(from, to, done)),
  unlink: (path) => call<void>((done) => unlink(path, done)),
  link: (from, to) => call<void>((done) => link(from, to, done)),
  copyFile: (from, to, mode) => copyFileAsync(from, to, mode),
  readdir: (path) => call<Dirent[]>((done) => readdir(path, { withFileTypes: true }, done)).catch(missing),
  pread,
  pwrite,
};

/** Metadata calls made synchronously, for local file systems (see the file comment). */
export const SYNC_OPS: FsOps = {
  synchronous: true,
  lstat: async (path) => { try { return lstatSync(path); } catch (err) { return missing(err); } },
  stat: async (path) => { try { return statSync(path); } catch (err) { return missing(err); } },
  statBig: async (path) => { try { return statSync(path, { bigint: true }); } catch (err) { return missing(err); } },
  lstatBig: async (path) => { try { return lstatSync(path, { bigint: true }); } catch (err) { return missing(err); } },
  realpath: async (path) => { try { return realpathSync(path); } catch (err) { return missing(err); } },
  mkdir: async (path) => { mkdirSync(path); },
  open: async (path, flags, mode) => openSync(path, flags, mode),
  fstat: async (fd) => fstatSync(fd),
  fstatBig: async (fd) => fstatSync(fd, { bigint: true }),
  ftruncate: async (fd, length) => ftruncateSync(fd, length),
  close: async (fd) => closeSync(fd),
  rename: async (from, to) => renameSync(from, to),
  unlink: async (path) => unlinkSync(path),
  link: async (from, to) => linkSync(from, to),
  copyFile: async (from, to, mode, sizeBytes) => (sizeBytes <= SMALL_COPY_BYTES ? copyFileSync(from, to, mode) : copyFileAsync(from, to, mode)),
  readdir: async (path) => { try { return readdirSync(path, { withFileTypes: true }); } catch (err) { return missing(err); } },
  pread: async (fd, buffer, offset, length, position) => (length <= SMALL_READ_BYTES ? readSync(fd, buffer, offset, length, position) : pread(fd, buffer, offset, length, position)),
  pwrite: async (fd, buffer, offset, length, position) => (length <= SMALL_DATA_BYTES ? writeSync(fd, buffer, offset, length, position) : pwrite(fd, buffer, offset, length, position)),
};

/** A synchronous call slower than this is slow... */
const SLOW_CALL_MS = 1;
/**
 * ...and when this many of the last `SLOW_CALL_WINDOW` synchronous calls were slow, the next calls
 * go to the thread pool... A slow disk makes call after call slow (a stalled device every one, a
 * cold cache on a spinning disk one in two or more). A busy machine makes single calls look slow:
 * the kernel gave the CPU to another process in the middle of one (under a load of 10 per core,
 * for 4-30 ms), and then gives the process a whole time slice, tens of calls, before it takes the
 * CPU away again. The thread pool would not help with that (its threads wait for the CPU too, once
 * per hand-off) and costs much more CPU per call: issue 13 measured a copy of 100,000 small files
 * under a load of 10-15 per core that switched on two slow calls among four ~100 times, half of
 * its calls through the thread pool, for ~55% more CPU time (1.2 million context switches against
 * 0.1 million) than the same copy made synchronously; ~1,200 of its ~1,300 slow calls had no other
 * slow call among the four before them.
 */
const SLOW_CALLS_TO_SWITCH = 3;
const SLOW_CALL_WINDOW = 8;
/** ...for this long. */
const COOL_DOWN_MS = 1000;

/** Set bits in the low 8 bits (slow calls among the last eight). */
function slowIn(recent: number): number {
  let count = 0;
  for (let bits = recent & 0xff; bits !== 0; bits &= bits - 1) count++;
  return count;
}

/**
 * Synchronous calls while they are fast, asynchronous ones for a while after slow ones (see the
 * file comment and `SLOW_CALLS_TO_SWITCH`). `now` is injectable for tests.
 */
export function adaptiveOps(now: () => number = () => performance.now()): FsOps & { readonly slowCalls: number } {
  let asyncUntil = -Infinity;
  let slowCalls = 0;
  /** One bit per synchronous call, the latest lowest: set when it was slow. */
  let recent = 0;
  const pick = <T>(sync: () => Promise<T>, async: () => Promise<T>): Promise<T> => {
    const started = now();
    if (started < asyncUntil) return async();
    const result = sync(); // the system call has run when this returns
    const slow = now() - started > SLOW_CALL_MS;
    recent = ((recent << 1) | (slow ? 1 : 0)) & ((1 << SLOW_CALL_WINDOW) - 1);
    if (slow) {
      slowCalls++;
      if (slowIn(recent) >= SLOW_CALLS_TO_SWITCH) {
        asyncUntil = now() + COOL_DOWN_MS;
        recent = 0;
      }
    }
    return result;
  };
  return {
    synchronous: true,
    get slowCalls() { return slowCalls; },
    lstat: (path) => pick(() => SYNC_OPS.lstat(path), () => ASYNC_OPS.lstat(path)),
    stat: (path) => pick(() => SYNC_OPS.stat(path), () => ASYNC_OPS.stat(path)),
    statBig: (path) => pick(() => SYNC_OPS.statBig(path), () => ASYNC_OPS.statBig(path)),
    lstatBig: (path) => pick(() => SYNC_OPS.lstatBig(path), () => ASYNC_OPS.lstatBig(path)),
    realpath: (path) => pick(() => SYNC_OPS.realpath(path), () => ASYNC_OPS.realpath(path)),
    mkdir: (path) => pick(() => SYNC_OPS.mkdir(path), () => ASYNC_OPS.mkdir(path)),
    open: (path, flags, mode) => pick(() => SYNC_OPS.open(path, flags, mode), () => ASYNC_OPS.open(path, flags, mode)),
    fstat: (fd) => pick(() => SYNC_OPS.fstat(fd), () => ASYNC_OPS.fstat(fd)),
    fstatBig: (fd) => pick(() => SYNC_OPS.fstatBig(fd), () => ASYNC_OPS.fstatBig(fd)),
    ftruncate: (fd, length) => pick(() => SYNC_OPS.ftruncate(fd, length), () => ASYNC_OPS.ftruncate(fd, length)),
    close: (fd) => pick(() => SYNC_OPS.close(fd), () => ASYNC_OPS.close(fd)),
    rename: (from, to) => pick(() => SYNC_OPS.rename(from, to), () => ASYNC_OPS.rename(from, to)),
    unlink: (path) => pick(() => SYNC_OPS.unlink(path), () => ASYNC_OPS.unlink(path)),
    link: (from, to) => pick(() => SYNC_OPS.link(from, to), () => ASYNC_OPS.link(from, to)),
    copyFile: (from, to, mode, sizeBytes) => (sizeBytes <= SMALL_COPY_BYTES
      ? pick(() => SYNC_OPS.copyFile(from, to, mode, sizeBytes), () => copyFileAsync(from, to, mode))
      : copyFileAsync(from, to, mode)),
    readdir: (path) => pick(() => SYNC_OPS.readdir(path), () => ASYNC_OPS.readdir(path)),
    pread: (fd, buffer, offset, length, position) => (length <= SMALL_READ_BYTES
      ? pick(() => SYNC_OPS.pread(fd, buffer, offset, length, position), () => pread(fd, buffer, offset, length, position))
      : pread(fd, buffer, offset, length, position)),
    pwrite: (fd, buffer, offset, length, position) => (length <= SMALL_DATA_BYTES
      ? pick(() => SYNC_OPS.pwrite(fd, buffer, offset, length, position), () => pwrite(fd, buffer, offset, length, position))
      : pwrite(fd, buffer, offset, length, position)),
  };
}

/** Positional read of file data (always asynchronous); the number of bytes read. */
export function pread(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return call<number>((done) => read(fd, buffer, offset, length, position, done));
}

/** copyFile (always asynchronous). */
function copyFileAsync(from: string, to: string, mode: number): Promise<void> {
  return call<void>((done) => copyFile(from, to, mode, done));
}

/** Positional write of file data (always asynchronous); the number of bytes written. */
export function pwrite(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return call<number>((done) => write(fd, buffer, offset, length, position, done));
}

/** File systems whose metadata calls are answered by this machine's kernel and disks. */
export const LOCAL_FS_TYPES: ReadonlySet<string> = new Set([
  'ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'zfs', 'f2fs', 'bcachefs', 'jfs', 'reiserfs', 'nilfs2', 'tmpfs', 'ramfs', 'overlay',
]);

/** mountinfo escapes space, tab, newline and backslash as `\ooo`. */
function unescapeMountPath(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** The file system type of the mount holding `path` (an absolute real path), from mountinfo text. */
export function fsTypeOf(path: string, mountinfo: string): string | undefined {
  let best: string | undefined;
  let type: string | undefined;
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mount-point options [optional fields...] - type source super-options
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0 || fields.length < dash + 2 || fields[4] === undefined) continue;
    const mountPoint = unescapeMountPath(fields[4]);
    const inside = path === mountPoint || path.startsWith(mountPoint.endsWith('/') ? mountPoint : `${mountPoint}/`);
    // The deepest mount point wins; of equal ones, the later (it hides the earlier).
    if (inside && (best === undefined || mountPoint.length >= best.length)) {
      best = mountPoint;
      type = fields[dash + 1];
    }
  }
  return type;
}

/**
 * The calls for a driver whose root is the real path `realRoot`: `adaptiveOps()` on a local
 * file system (Linux), else `ASYNC_OPS`. `mode` forces one (`sync`: always synchronous).
 */
export async function opsFor(realRoot: string, mode: 'auto' | 'sync' | 'async' = 'auto'): Promise<FsOps> {
  if (mode !== 'auto') return mode === 'sync' ? SYNC_OPS : ASYNC_OPS;
  if (process.platform !== 'linux') return ASYNC_OPS;
  try {
    const type = fsTypeOf(realRoot, await readFile('/proc/self/mountinfo', 'utf8'));
    return type !== undefined && LOCAL_FS_TYPES.has(type) ? adaptiveOps() : ASYNC_OPS;
  } catch {
    return ASYNC_OPS;
  }
}
