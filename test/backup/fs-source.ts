/**
 * A tiny read-only `Driver` over a local folder, for the backup tests: `list`, `stat` and
 * `openRead` only (everything else throws). It keeps these tests independent of the real local
 * driver, which is developed separately. It also counts calls, so tests can check that
 * inspection lists once and reads only meta files.
 */
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { DriverError } from '../../src/errors.js';
import { filesystemLocation } from '../../src/drivers/location.js';
import type { Capabilities, Driver, Entry, ReadOptions, SignalOptions, WriteSession } from '../../src/drivers/types.js';

export interface FsSource extends Driver {
  readonly calls: { list: string[]; stat: string[]; openRead: string[] };
}

const capabilities: Capabilities = {
  rangeReads: true, resumableWrites: false, atomicCommit: false, storedHash: false, serverSideCopy: false,
  minPartBytes: 1, maxPartBytes: 1 << 30, maxParts: Number.POSITIVE_INFINITY, parallelPartWrites: false, maxConcurrency: 8,
};

function isMissing(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

export function createFsSource(root: string, name = 'test-source'): FsSource {
  const calls = { list: [] as string[], stat: [] as string[], openRead: [] as string[] };
  const path = (key: string): string => join(root, ...key.split('/'));

  async function* walk(dir: string, keyPrefix: string): AsyncGenerator<Entry> {
    let names;
    try {
      names = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const dirent of names) {
      const full = join(dir, dirent.name);
      const key = `${keyPrefix}${dirent.name}`;
      if (dirent.isDirectory()) {
        yield* walk(full, `${key}/`);
      } else if (dirent.isFile()) {
        const st = await stat(full);
        yield { key, size: st.size, mtimeMs: st.mtimeMs };
      }
    }
  }

  const driver: FsSource = {
    name,
    description: `test folder ${root}`,
    location: filesystemLocation(root),
    capabilities,
    calls,
    async *list(prefix: string, _options?: SignalOptions): AsyncIterable<Entry> {
      calls.list.push(prefix);
      const slash = prefix.lastIndexOf('/');
      const dirKey = slash < 0 ? '' : prefix.slice(0, slash + 1);
      const start = dirKey === '' ? root : path(dirKey.slice(0, -1));
      for await (const entry of walk(start, dirKey)) {
        if (entry.key.startsWith(prefix)) yield entry;
      }
    },
    async stat(key: string): Promise<Entry | undefined> {
      calls.stat.push(key);
      try {
        const st = await stat(path(key));
        return st.isFile() ? { key, size: st.size, mtimeMs: st.mtimeMs } : undefined;
      } catch (err) {
        if (isMissing(err)) return undefined;
        throw err;
      }
    },
    async openRead(key: string, options: ReadOptions = {}): Promise<Readable> {
      calls.openRead.push(key);
      try {
        const st = await stat(path(key));
        if (!st.isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
      } catch (err) {
        if (isMissing(err)) throw new DriverError('E_NOT_FOUND', `${name}: ${key} not found`, { kind: 'not-found' });
        throw err;
      }
      const start = options.offset ?? 0;
      return createReadStream(path(key), {
        start,
        ...(options.length !== undefined ? { end: start + options.length - 1 } : {}),
      });
    },
    openWrite(): Promise<WriteSession> { return Promise.reject(new Error('fs-source is read-only')); },
    delete(): Promise<void> { return Promise.reject(new Error('fs-source is read-only')); },
    sync(): Promise<void> { return Promise.resolve(); },
    close(): Promise<void> { return Promise.resolve(); },
  };
  return driver;
}
