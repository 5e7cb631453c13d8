/**
 * How the SFTP tests find the sshd that scripts/run-tests.mjs started (test/servers/sshd.ts),
 * and a recorder of the requests the driver sends (for tests of what an operation costs).
 * Where they find it:
 * `OFFSITE_TEST_SFTP` holds its connection facts. When it is missing the tests FAIL with the
 * reason from `OFFSITE_TEST_SSHD_ERROR`; they skip (loudly) only when OFFSITE_TEST_ALLOW_SKIP=1
 * and CI is not set.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { SFTPWrapper } from 'ssh2';
import { SftpConnection } from '../../src/drivers/sftp/connection.js';
import type { SftpTestServer } from '../servers/sshd.js';

export type { SftpTestServer };

/** The running server, or why there is none (`skip` = allowed to skip). */
export function testServer(): { server: SftpTestServer } | { error: string; skip: boolean } {
  const raw = process.env['OFFSITE_TEST_SFTP'];
  if (raw) return { server: JSON.parse(raw) as SftpTestServer };
  const reason = process.env['OFFSITE_TEST_SSHD_ERROR'] ?? 'OFFSITE_TEST_SFTP is not set: run the tests through scripts/run-tests.mjs, which starts sshd';
  const skip = process.env['OFFSITE_TEST_ALLOW_SKIP'] === '1' && !process.env['CI'];
  if (skip) console.error(`# SKIPPING SFTP tests: no sshd: ${reason}`);
  return { error: `no sshd for the SFTP tests: ${reason}`, skip };
}

/** The server, or throws the reason (so that the calling test fails with it). */
export function requireServer(): SftpTestServer {
  const found = testServer();
  if ('server' in found) return found.server;
  throw new Error(found.error);
}

/** A config section for the test server; `overrides` replace or (with `undefined`) drop keys. */
export function sectionFor(server: SftpTestServer, root: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const section: Record<string, unknown> = {
    type: 'sftp',
    host: server.host,
    port: server.port,
    username: server.username,
    privateKey: server.privateKey,
    hostKey: server.hostKeyFingerprint,
    root,
    ...overrides,
  };
  for (const [key, value] of Object.entries(section)) if (value === undefined) delete section[key];
  return section;
}

const made: string[] = [];

/**
 * A fresh (not yet existing) folder under the server's writable root, or under `base` (the
 * server is on this machine, so tests may look at it directly).
 */
export async function freshRoot(server: SftpTestServer, label: string, base = server.root): Promise<string> {
  const root = join(base, `${label}-${randomUUID()}`);
  made.push(root);
  return root;
}

/** Creates a folder for a test that needs it to exist up front. */
export async function makeFolder(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
}

/** Removes every folder `freshRoot` handed out. */
export async function removeFreshRoots(): Promise<void> {
  for (const root of made.splice(0)) await rm(root, { recursive: true, force: true });
}

/**
 * `describe(title)` with the server handed to `body`; without a server the block holds one
 * failing test with the reason (or is skipped, loudly, when skipping is allowed).
 */
export function describeWithServer(title: string, body: (server: SftpTestServer) => void): void {
  const found = testServer();
  if ('server' in found) {
    describe(title, () => body(found.server));
  } else if (found.skip) {
    describe(title, { skip: `SKIPPED: ${found.error}` }, () => {});
  } else {
    describe(title, () => {
      it('needs the test sshd', () => {
        throw new Error(found.error);
      });
    });
  }
}

const run = promisify(execFile);
const scratch: string[] = [];

/** A local temp folder, removed by `removeScratch`. */
export async function scratchDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'offsite-sftp-test-'));
  scratch.push(dir);
  return dir;
}

export async function removeScratch(): Promise<void> {
  for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
}

/** Generates an ed25519 key pair with OpenSSH's ssh-keygen; returns the private key path. */
export async function generateKey(dir: string, name: string, passphrase = ''): Promise<string> {
  const path = join(dir, name);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', name, '-f', path]);
  return path;
}

/** Runs a program and returns its stdout. */
export async function runProgram(file: string, args: string[]): Promise<string> {
  return (await run(file, args)).stdout;
}

/**
 * Records the SFTP requests every connection sends (by ssh2 method name) and how many round
 * trips they took: a round trip starts whenever a request goes out while none is in flight.
 * Requests sent before the last `reset` (a CLOSE sent without waiting) do not count.
 */
export function recordRequests(): {
  reset(): void;
  take(): { sent: string[]; roundTrips: number };
  /** The requests and round trips of `action` alone (`reset`, run it, `take`). */
  during(action: () => Promise<unknown>): Promise<{ sent: string[]; roundTrips: number }>;
  restore(): void;
} {
  const original = SftpConnection.prototype.call;
  let sent: string[] = [];
  let roundTrips = 0;
  let inFlight = 0;
  let generation = 0;
  SftpConnection.prototype.call = function call<T>(
    this: SftpConnection,
    context: Parameters<SftpConnection['call']>[0],
    run: (sftp: SFTPWrapper, done: (err: Error | undefined | null, value?: T) => void) => void,
  ): Promise<T> {
    return original.call(this, context, (sftp: SFTPWrapper, done: (err: Error | undefined | null, value?: T) => void) => {
      let counted: number | undefined;
      const spy = new Proxy(sftp, {
        get(target, property, receiver) {
          const value: unknown = Reflect.get(target, property, receiver);
          if (typeof value !== 'function') return value;
          return (...args: unknown[]) => {
            sent.push(String(property));
            counted = generation;
            if (inFlight++ === 0) roundTrips++;
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
      run(spy, (err, value) => {
        if (counted === generation) inFlight--;
        done(err, value);
      });
    }) as Promise<T>;
  };
  const reset = (): void => {
    sent = [];
    roundTrips = 0;
    inFlight = 0;
    generation++;
  };
  const take = (): { sent: string[]; roundTrips: number } => ({ sent, roundTrips });
  return {
    reset,
    take,
    during: async (action) => {
      reset();
      await action();
      return take();
    },
    restore: () => {
      SftpConnection.prototype.call = original;
    },
  };
}
