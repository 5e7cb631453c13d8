/**
 * The script of the local driver's file-system thread (./worker-ops.ts): runs each batch of calls
 * it is sent with the synchronous node:fs calls, in order, and answers the batch with one message.
 * A failed call answers with its errno fields (an Error's own properties do not survive a message).
 */
import {
  closeSync, fstatSync, ftruncateSync, lstatSync, mkdirSync, openSync, readdirSync, readSync, realpathSync, renameSync, statSync, writeSync,
  type BigIntStats, type Stats,
} from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { WireCall, WireError, WireResult } from './worker-ops.js';

const info = (s: Stats): WireResult => [s.mode, s.size, s.mtimeMs, s.ino];
const infoBig = (s: BigIntStats): WireResult => [Number(s.mode), s.size, s.mtimeMs, s.mtimeNs, s.ino];
const ifPresent = <T>(s: T | undefined, encode: (s: T) => WireResult): WireResult => (s === undefined ? null : encode(s));

function run(call: WireCall): WireResult {
  switch (call[0]) {
    case 'lstat': return ifPresent(lstatSync(call[1], { throwIfNoEntry: false }), info);
    case 'stat': return ifPresent(statSync(call[1], { throwIfNoEntry: false }), info);
    case 'lstatBig': return ifPresent(lstatSync(call[1], { bigint: true, throwIfNoEntry: false }), infoBig);
    case 'statBig': return ifPresent(statSync(call[1], { bigint: true, throwIfNoEntry: false }), infoBig);
    case 'fstat': return info(fstatSync(call[1]));
    case 'fstatBig': return infoBig(fstatSync(call[1], { bigint: true }));
    case 'realpath': return realpathSync(call[1]);
    case 'mkdir': mkdirSync(call[1]); return null;
    case 'open': return openSync(call[1], call[2], call[3]);
    case 'ftruncate': ftruncateSync(call[1], call[2]); return null;
    case 'close': closeSync(call[1]); return null;
    case 'rename': renameSync(call[1], call[2]); return null;
    case 'readdir': {
      const entries = readdirSync(call[1], { withFileTypes: true });
      return [entries.map((e) => e.name), entries.map((e) => (e.isFile() ? 1 : e.isDirectory() ? 2 : e.isSymbolicLink() ? 3 : 0))];
    }
    case 'pread': {
      // A buffer of its own (never a pooled slab), so that it is moved to the caller, not copied.
      const bytes = new Uint8Array(call[2]);
      const read = readSync(call[1], bytes, 0, bytes.length, call[3]);
      return bytes.subarray(0, read);
    }
    case 'pwrite': return writeSync(call[1], call[2], 0, call[2].length, call[3]);
  }
}

function failure(err: unknown): WireError {
  const e = err as NodeJS.ErrnoException;
  return { message: e.message, code: e.code, errno: e.errno, syscall: e.syscall, path: e.path, dest: (e as { dest?: string }).dest };
}

const port = parentPort;
if (port === null) throw new Error('the local file-system thread runs in a worker thread');
port.on('message', (calls: WireCall[]) => {
  const results: WireResult[] = [];
  const failed: (WireError | undefined)[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const call of calls) {
    try {
      const result = run(call);
      if (result instanceof Uint8Array) transfer.push(result.buffer as ArrayBuffer);
      results.push(result);
      failed.push(undefined);
    } catch (err) {
      results.push(null);
      failed.push(failure(err));
    }
  }
  port.postMessage({ results, failed }, transfer);
});
