/**
 * A local cache of the earlier copies' manifests that a reuse night reads at a destination
 * (issue 12): each night the index of the earlier copies (./reuse-copies.ts) read their manifests whole,
 * over the wire (~0.5 KB per file: ~170 KB for 500 files, tens of MB for 100,000), although a
 * complete copy's manifest never changes once written.
 *
 * A cached manifest is used only while the destination still holds the same one, by two checks
 * that cost no more round trips than reading it: the listing that finds the copies (taken anyway)
 * shows the same size and fingerprint (size + mtime over SFTP, the ETag on object stores), and the
 * last bytes of the manifest at the destination, which hold its digest (the XXH64 of its whole
 * canonical body, written last), read by one ranged read, equal the cached copy's. Anything else
 * (a copy pruned and made again, a manifest replaced, an unreadable cache) reads the manifest
 * from the destination, as without a cache, and caches what was read once its digest checked.
 * The cached bytes go through the same reader as the destination's (digest, and signature at an
 * encrypted destination): a damaged cache file is an unusable manifest, never a trusted one.
 *
 * What a cache hit cannot see is the one thing no fingerprint shows: a manifest at the
 * destination damaged in place (bit rot) without a change of size, mtime or its last bytes. The
 * cached copy is then the manifest as it was written, which is what the reuse needs (each reused
 * file is still checked against its recorded size and fingerprint at the copy); `verify` and
 * `audit` read the destination's own manifest, never this cache.
 *
 * Best effort: a cache that cannot be read or written only costs reading the manifest. Local
 * destinations are not cached (the manifest is on this machine already). Entries of a destination
 * not used by its latest index, and any entry unused for `MAX_AGE_MS`, are removed.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, utimes, writeFile, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CommitOptions, Committed, Driver, Entry, ReadOptions, SignalOptions, WriteOptions, WriteSession } from '../drivers/types.js';
import { ForwardingDriver, ForwardingWriteSession } from '../drivers/wrappers/forwarding.js';
import type { ManifestReader } from '../manifest/read.js';

/** Bytes compared at the end of a manifest: its `"digest":"xxh64:..."}` and then some. */
const TAIL_BYTES = 256;
/** An entry nobody used for this long is removed (a destination no longer configured). */
const MAX_AGE_MS = 30 * 24 * 3600 * 1000;

/**
 * The cache folder: `$OFFSITE_CACHE_DIR`, else `$XDG_CACHE_HOME/offsite`, else `~/.cache/offsite`;
 * `undefined` (no cache) when `OFFSITE_CACHE_DIR` is `off`.
 */
export function cacheDirOf(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const given = env['OFFSITE_CACHE_DIR'];
  if (given === 'off') return undefined;
  if (given) return given;
  return join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'offsite');
}


/** One manifest being read: where from, and what to do once its reader said whether it was valid. */
export interface CachedRead {
  readonly reader: ManifestReader;
  /** True when the bytes come from the cache. */
  readonly hit: boolean;
  /** Call once the manifest read valid (caches or keeps it) or not (drops it). Never throws. */
  settle(valid: boolean): Promise<void>;
}

interface Meta {
  readonly place: string;
  readonly key: string;
  readonly size: number;
  /** What the listing showed when it was cached (absent when cached as written and the driver gave none): it must show the same. */
  readonly fingerprint?: string;
  /** The manifest's last bytes, base64. */
  readonly tail: string;
}

/** What an entry's meta records besides the manifest's last bytes. */
type CacheEntry = Omit<Meta, 'tail' | 'fingerprint'> & { readonly fingerprint: string | undefined };

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Which destination an entry belongs to: a hash of the driver's location. */
function placeOf(driver: Driver): string {
  return sha256(JSON.stringify(driver.location));
}

/** The name of the entry caching `key` at `place` (its files are `ID.json` and `ID.meta`). */
function entryId(place: string, key: string): string {
  return sha256(`${place}\n${key}`).slice(0, 40);
}

/** The manifests of earlier copies, cached under `dir/manifests/`. */
export class ManifestCache {
  readonly #folder: string;
  /** Entry ids used by this process, per place. */
  readonly #used = new Map<string, Set<string>>();

  constructor(dir: string) {
    this.#folder = join(dir, 'manifests');
  }

  /**
   * How to read the manifest at `key` of `driver`, whose listing showed `listed`: from the cache
   * when it holds that very manifest (see the file comment), else from the destination, keeping
   * what is read. Never throws: the destination's errors come from reading through `reader`.
   */
  async open(driver: Driver, key: string, listed: Entry | undefined, options: SignalOptions = {}): Promise<CachedRead> {
    const passThrough: CachedRead = { reader: driver, hit: false, settle: async () => undefined };
    if (driver.location.kind === 'filesystem' || listed === undefined) return passThrough;
    const place = placeOf(driver);
    const id = entryId(place, key);
    const data = join(this.#folder, `${id}.json`);
    const metaFile = join(this.#folder, `${id}.meta`);
    let used = this.#used.get(place);
    if (!used) this.#used.set(place, (used = new Set()));
    used.add(id);
    const meta = await readMeta(metaFile);
    if (meta && meta.place === place && meta.key === key && meta.size === listed.size && (meta.fingerprint === undefined || meta.fingerprint === listed.fingerprint) && (await sizeOf(data)) === listed.size) {
      const tail = Buffer.from(meta.tail, 'base64');
      // Any failure here (the manifest gone since the listing, a lost connection) is left to the
      // whole read below, which says what it means as it would without a cache.
      const there = await driver.openRead(key, { offset: listed.size - tail.length, length: tail.length, signal: options.signal }).then(readAll).catch(() => undefined);
      if (there?.equals(tail) === true) {
        return {
          hit: true,
          reader: { name: driver.name, openRead: async (_key: string, o: ReadOptions = {}) => localRead(data, o) },
          settle: async (valid) => {
            if (valid) await utimes(metaFile, new Date(), new Date()).catch(() => undefined);
            else await Promise.all([rm(metaFile, { force: true }), rm(data, { force: true })]).catch(() => undefined);
          },
        };
      }
    }
    // Read from the destination; the first whole read is kept in a temp file, cached once valid.
    const temp = `${data}.${process.pid}.${Date.now()}.partial`;
    let writing: { out: WriteStream; bytes: number; done: Promise<void> } | undefined;
    let last = Buffer.alloc(0);
    return {
      hit: false,
      reader: {
        name: driver.name,
        openRead: async (k: string, o: ReadOptions = {}): Promise<Readable> => {
          const stream = await driver.openRead(k, o);
          if (writing !== undefined || (o.offset ?? 0) !== 0 || o.length !== undefined) return stream;
          const made = await mkdir(this.#folder, { recursive: true }).then(() => true, () => false);
          if (!made) return stream;
          const out = createWriteStream(temp);
          const state = { out, bytes: 0, done: Promise.resolve() };
          state.done = new Promise<void>((resolve) => { out.once('close', resolve); out.once('error', () => resolve()); });
          writing = state;
          let failed = false;
          out.once('error', () => { failed = true; });
          const tee = new Transform({
            transform(piece: Buffer, _encoding, callback) {
              state.bytes += piece.length;
              last = Buffer.concat([last, piece]).subarray(-TAIL_BYTES);
              if (!failed) out.write(piece);
              callback(null, piece);
            },
            flush(callback) { out.end(); callback(); },
          });
          tee.once('error', () => out.destroy());
          stream.once('error', (err) => tee.destroy(err));
          return stream.pipe(tee);
        },
      },
      settle: async (valid) => {
        if (writing === undefined) return;
        if (!writing.out.writableFinished) writing.out.end();
        await writing.done;
        if (!valid || writing.bytes !== listed.size) return rm(temp, { force: true }).catch(() => undefined);
        await this.#keep(temp, id, { place, key, size: listed.size, fingerprint: listed.fingerprint }, last);
      },
    };
  }

  /**
   * `driver` for writing the manifest at `key`: what is written (one session, committed) is also
   * cached, so the next night, which reuses from this copy, reads only its last bytes. Writes
   * whatever the cache does; a local failure only leaves nothing cached.
   */
  recording(driver: Driver, key: string): Driver {
    if (driver.location.kind === 'filesystem') return driver;
    const place = placeOf(driver);
    const id = entryId(place, key);
    const folder = this.#folder;
    const keep = (temp: string, entry: CacheEntry, tail: Buffer): Promise<void> => this.#keep(temp, id, entry, tail);
    class RecordingSession extends ForwardingWriteSession {
      readonly #temp = join(folder, `${id}.json.${process.pid}.${Date.now()}.partial`);
      #file: Promise<FileHandle | undefined> | undefined;
      #failed = false;
      #opened(): Promise<FileHandle | undefined> {
        return (this.#file ??= mkdir(folder, { recursive: true }).then(() => open(this.#temp, 'w'), () => undefined).catch(() => undefined));
      }
      override async write(index: number, bytes: Uint8Array, options?: SignalOptions): Promise<void> {
        await super.write(index, bytes, options);
        const file = await this.#opened();
        if (file) await file.write(bytes, 0, bytes.length, index * this.partBytes).catch(() => { this.#failed = true; });
      }
      override async commit(options: CommitOptions): Promise<Committed | void> {
        const committed = await super.commit(options);
        await this.#written(committed).catch(() => undefined);
        return committed;
      }
      override async abort(): Promise<void> {
        await this.#drop();
        return super.abort();
      }
      override async suspend(): Promise<void> {
        await this.#drop();
        return super.suspend();
      }
      async #drop(): Promise<void> {
        await (await this.#opened())?.close().catch(() => undefined);
        await rm(this.#temp, { force: true }).catch(() => undefined);
      }
      async #written(committed: Committed | void): Promise<void> {
        const file = await this.#opened();
        if (!file) return;
        await file.close();
        const size = this.size;
        if (this.#failed || (await sizeOf(this.#temp)) !== size) return this.#drop();
        const tail = Buffer.alloc(Math.min(TAIL_BYTES, size));
        const reading = await open(this.#temp, 'r');
        try { await reading.read(tail, 0, tail.length, size - tail.length); } finally { await reading.close(); }
        await keep(this.#temp, { place, key, size, fingerprint: committed?.fingerprint }, tail);
      }
    }
    class RecordingDriver extends ForwardingDriver {
      override async openWrite(k: string, options: WriteOptions): Promise<WriteSession> {
        const session = await super.openWrite(k, options);
        return k === key ? new RecordingSession(session) : session;
      }
    }
    return new RecordingDriver(driver);
  }

  /**
   * Makes `temp`, a manifest read or written whole, the entry `id`, with its meta written last;
   * drops it instead when it is not `entry.size` bytes or its `tail` (last bytes) holds no digest
   * (cut short). Never throws.
   */
  async #keep(temp: string, id: string, entry: CacheEntry, tail: Buffer): Promise<void> {
    try {
      if ((await sizeOf(temp)) === entry.size && tail.toString('latin1').includes('"digest":')) {
        await rename(temp, join(this.#folder, `${id}.json`));
        const { fingerprint, ...rest } = entry;
        await writeMeta(join(this.#folder, `${id}.meta`), { ...rest, ...(fingerprint !== undefined ? { fingerprint } : {}), tail: tail.toString('base64') });
        return;
      }
    } catch { /* dropped below */ }
    await rm(temp, { force: true }).catch(() => undefined);
  }

  /**
   * Removes the entries of `driver`'s place that this process did not use (copies pruned, or no
   * longer among the newest indexed), and any entry unused for `MAX_AGE_MS`. Never throws.
   */
  async tidy(driver: Driver): Promise<void> {
    const place = placeOf(driver);
    const used = this.#used.get(place) ?? new Set<string>();
    const names = await readdir(this.#folder).catch(() => [] as string[]);
    const now = Date.now();
    // Leftovers of killed runs: data without its meta, temp files (not touched for a day: another
    // run may be writing them).
    const metas = new Set(names.filter((n) => n.endsWith('.meta')));
    await Promise.all(names.filter((n) => !n.endsWith('.meta') && !(n.endsWith('.json') && metas.has(`${n.slice(0, -'.json'.length)}.meta`))).map(async (name) => {
      const file = join(this.#folder, name);
      const age = now - ((await stat(file).catch(() => undefined))?.mtimeMs ?? now);
      if (age > 24 * 3600 * 1000) await rm(file, { force: true }).catch(() => undefined);
    }));
    await Promise.all([...metas].map(async (name) => {
      const id = name.slice(0, -'.meta'.length);
      if (used.has(id)) return;
      const metaFile = join(this.#folder, name);
      const meta = await readMeta(metaFile);
      const age = now - ((await stat(metaFile).catch(() => undefined))?.mtimeMs ?? 0);
      if (meta?.place === place || age > MAX_AGE_MS || meta === undefined) {
        await Promise.all([rm(metaFile, { force: true }), rm(join(this.#folder, `${id}.json`), { force: true })]).catch(() => undefined);
      }
    }));
  }
}

async function readMeta(file: string): Promise<Meta | undefined> {
  try {
    const meta = JSON.parse(await readFile(file, 'utf8')) as Partial<Meta>;
    return typeof meta.place === 'string' && typeof meta.key === 'string' && typeof meta.size === 'number' && (meta.fingerprint === undefined || typeof meta.fingerprint === 'string') && typeof meta.tail === 'string'
      ? meta as Meta : undefined;
  } catch {
    return undefined;
  }
}

/** Writes an entry's meta last and whole (temp name, rename): data without meta is never used. */
async function writeMeta(file: string, meta: Meta): Promise<void> {
  const temp = `${file}.${process.pid}.partial`;
  await writeFile(temp, JSON.stringify(meta));
  await rename(temp, file);
}

async function sizeOf(file: string): Promise<number | undefined> {
  return (await stat(file).catch(() => undefined))?.size;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const pieces: Buffer[] = [];
  await pipeline(stream, async (source: AsyncIterable<Buffer>) => { for await (const piece of source) pieces.push(piece); });
  return Buffer.concat(pieces);
}

/** The cached file as `openRead` gives a manifest: from `offset`, `length` bytes. */
function localRead(file: string, o: ReadOptions): Readable {
  const start = o.offset ?? 0;
  return createReadStream(file, { start, ...(o.length !== undefined ? { end: start + o.length - 1 } : {}), signal: o.signal });
}
