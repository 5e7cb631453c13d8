/**
 * A lock per destination copy, `NAME/.offsite/lock.json`, so that two runs writing the same
 * backup to the same destination at once do not trip over each other (both would write the same
 * temp names and multipart uploads; nothing would be corrupted, since every final object is
 * committed whole and hash-checked, but one run would fail at random).
 *
 * The lock records owner, host, pid, time and a random token. A run takes it by writing it and
 * reading it back after a short settle delay (two racing writers: the last write wins and the
 * other sees a foreign token and backs off). The holder rewrites it every `refreshMs`; a lock
 * not refreshed for `staleMs` (a crashed run elsewhere), or taken on this host by a process that
 * no longer exists (a run killed here), is taken over. It lives at the destination, so it
 * works across machines; it is advisory (a run that ignores it is not stopped).
 *
 * A stop must not wait for the lock: its writes are `unpaced` (they never queue behind the
 * bandwidth limit), `release` aborts a refresh in flight, and release's own read and delete give
 * up after `RELEASE_TIMEOUT_MS` (the lock then expires, or is taken over by the next run here).
 */
import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import type { Driver } from '../drivers/types.js';
import { readBytes, writeBytes } from '../drivers/io.js';
import { errorKind, OffsiteError } from '../errors.js';
import { getHasher } from '../hash/xxh64.js';
import { OFFSITE_DIR } from '../manifest/manifest.js';

export interface LockInfo {
  readonly token: string;
  readonly owner: string;
  readonly host: string;
  readonly pid: number;
  /** When it was last written (ISO). */
  readonly time: string;
}

export interface LockOptions {
  /** A lock older than this is taken over. @default 10 min */
  readonly staleMs?: number;
  /** How often the holder rewrites it. @default 60 s */
  readonly refreshMs?: number;
  /** Wait between writing and reading back. @default 200 ms */
  readonly settleMs?: number;
  /** Where the lock lives. @default `NAME/.offsite/lock.json` (`lockKey`); a shard's own lock is in its folder (./shard.ts) */
  readonly key?: string;
  readonly signal?: AbortSignal;
  /**
   * Called once this run's lock is written, before the settle delay and the read-back: work that
   * must see the destination as left by every earlier holder (a run reads it again), started
   * then, costs no round trip beyond the lock's own. Its result counts only if the lock is taken.
   */
  readonly onWritten?: () => void;
}

export interface HeldLock {
  readonly info: LockInfo;
  /** Removes the lock if this run still holds it (read back first). Never rejects: a lock that cannot be removed is a warning. */
  release(): Promise<void>;
  /**
   * `release` once `work` has ended (either way), its read-back made meanwhile: the lock stays at
   * the destination until `work` is over, and the end of a run (the manifest written, then the
   * lock removed) costs one round trip less. The lock is still removed only if this run holds it
   * as of a read made after its last write of it (refreshes stop at the call). Never rejects.
   */
  releaseAfter(work: Promise<unknown>): Promise<void>;
}

/** Longest time `release` spends on the destination. */
export const RELEASE_TIMEOUT_MS = 5000;

/**
 * Tokens of the locks this process holds. A lock at the destination with this process's pid and
 * host but another token is a leftover of its own lost race (two local or SFTP writers of one lock
 * share its temp name, so one's commit can publish the other's bytes): it is taken over, not
 * waited for until it is stale.
 */
const heldTokens = new Set<string>();

export function lockKey(backup: string): string {
  return `${backup}/${OFFSITE_DIR}/lock.json`;
}

async function readLock(driver: Driver, key: string, signal?: AbortSignal): Promise<LockInfo | undefined> {
  try {
    const parsed = JSON.parse((await readBytes(driver, key, { signal })).toString('utf8')) as LockInfo;
    return typeof parsed?.token === 'string' ? parsed : undefined;
  } catch (err) {
    if (errorKind(err) === 'not-found' || err instanceof SyntaxError) return undefined;
    throw err;
  }
}

async function writeLock(driver: Driver, key: string, info: LockInfo, signal?: AbortSignal): Promise<void> {
  const bytes = Buffer.from(`${JSON.stringify(info)}\n`);
  await writeBytes(driver, key, bytes, (await getHasher()).hash(bytes), { signal, unpaced: true });
}

/** Takes the lock of `backup` at `driver`, or throws `E_LOCKED` naming the holder. */
export async function acquireLock(driver: Driver, backup: string, options: LockOptions = {}): Promise<HeldLock> {
  const key = options.key ?? lockKey(backup);
  const staleMs = options.staleMs ?? 10 * 60_000;
  const existing = await readLock(driver, key, options.signal);
  if (existing) {
    const age = Date.now() - Date.parse(existing.time);
    if (!(age > staleMs) && !deadHere(existing)) {
      throw new OffsiteError('E_LOCKED', `${driver.name}: ${backup} is being written by another offsite run (${existing.owner}@${existing.host}, pid ${existing.pid}, lock refreshed ${Math.round(age / 1000)} s ago); try again later, or remove ${key} if that run is gone (it expires after ${Math.round(staleMs / 1000)} s)`, { kind: 'permanent' });
    }
  }
  const info = (): LockInfo => ({ token, owner: safeUser(), host: hostname(), pid: process.pid, time: new Date().toISOString() });
  const token = randomUUID();
  try {
    await writeLock(driver, key, info(), options.signal);
  } catch (err) {
    // Runs writing the lock at the same moment share its temp file (a deterministic name, see
    // src/drivers/toolkit/temp-names.ts): another's commit took it away (not found), or another's
    // open cut it short under this one's size check (integrity). That run got there first.
    const kind = errorKind(err);
    if (kind !== 'not-found' && kind !== 'integrity') throw err;
    throw new OffsiteError('E_LOCKED', `${driver.name}: ${backup} is being written by another offsite run that started at the same moment (both wrote the lock at once and that one's write won); try again later`, { kind: 'permanent', cause: err });
  }
  options.onWritten?.();
  await new Promise((resolve) => setTimeout(resolve, options.settleMs ?? 200));
  const after = await readLock(driver, key, options.signal);
  if (after?.token !== token) {
    throw new OffsiteError('E_LOCKED', `${driver.name}: ${backup} is being written by another offsite run that started at the same moment (${after ? `${after.owner}@${after.host}, pid ${after.pid}` : 'unknown'}); try again later`, { kind: 'permanent' });
  }
  let refreshing: Promise<void> = Promise.resolve();
  const stopRefresh = new AbortController();
  const timer = setInterval(() => {
    refreshing = refreshing.then(() => writeLock(driver, key, info(), stopRefresh.signal)).catch(() => undefined);
  }, options.refreshMs ?? 60_000);
  timer.unref();
  heldTokens.add(token);
  let releasing: Promise<void> | undefined;
  const release = async (work?: Promise<unknown>): Promise<void> => {
    clearInterval(timer);
    stopRefresh.abort();
    const bound = AbortSignal.timeout(RELEASE_TIMEOUT_MS);
    await Promise.race([refreshing, new Promise((resolve) => bound.addEventListener('abort', resolve, { once: true }))]);
    // Read after this run's last write of the lock (refreshes stopped, the one in flight ended).
    const reading = readLock(driver, key, bound).catch(() => undefined);
    await work?.catch(() => undefined);
    // Until now a lock of this token at the destination is this run's (not taken over on this host).
    heldTokens.delete(token);
    const current = await reading;
    if (current?.token !== token) return;
    try {
      // Its own bound: `work` may have taken longer than the release's (a large manifest).
      await driver.delete(key, { signal: work === undefined ? bound : AbortSignal.timeout(RELEASE_TIMEOUT_MS) });
    } catch (err) {
      // The run's work is done: a lock that cannot be removed is a warning, with what to do.
      const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
      process.stderr.write(`offsite: WARNING: ${driver.name}: could not release the lock ${key}: ${why}; remove ${key} by hand (until then a run from another host waits until it is ${Math.round(staleMs / 1000)} s old; on this host it is taken over once this process has ended)\n`);
    }
  };
  return {
    info: info(),
    release: () => (releasing ??= release()),
    releaseAfter: (work) => (releasing ??= release(work)),
  };
}

/** The live holder of `backup`'s lock at `driver` (not stale, not dead here), if any. */
export async function lockHolder(driver: Driver, backup: string, options: { staleMs?: number; signal?: AbortSignal } = {}): Promise<LockInfo | undefined> {
  const existing = await readLock(driver, lockKey(backup), options.signal);
  if (!existing) return undefined;
  const age = Date.now() - Date.parse(existing.time);
  return age > (options.staleMs ?? 10 * 60_000) || deadHere(existing) ? undefined : existing;
}

/** A lock taken on this host by a process that no longer exists (a crashed or killed run), or by this process without holding it (see `heldTokens`). */
function deadHere(lock: LockInfo): boolean {
  if (lock.host !== hostname() || !Number.isInteger(lock.pid) || lock.pid <= 0) return false;
  if (lock.pid === process.pid) return !heldTokens.has(lock.token);
  try {
    process.kill(lock.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
