/**
 * SSH connections of the sftp driver: connecting with ssh2-sftp-client (host key checked on
 * every connect, TCP no-delay set before the handshake), promise wrappers around the raw ssh2
 * SFTP calls (which keep the numeric SFTP status codes the error classification needs), and a
 * small lazily-filled pool.
 */
import { readFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import SftpClient from 'ssh2-sftp-client';
import type { ConnectConfig, SFTPWrapper } from 'ssh2';
import { ConfigError, DriverError, OffsiteError, throwIfAborted } from '../../errors.js';
import { driverClosedError } from '../toolkit/index.js';
import { classifySftpError, SFTP_STATUS, sftpStatusOf, where, type ErrorContext } from './errors.js';
import { fingerprintOf, judgeHostKey, keyTypeOf, parseKnownHosts, preferredHostKeyAlgorithms, withoutKeyTypes, type HostKeyPolicy, type HostKeyVerdict } from './hostkeys.js';
import type { SftpOptions } from './options.js';
import { coalesceSmallPackets } from './coalesce.js';
import { CopyChannels } from './copy-channels.js';
import { poolPackets, recyclePacketsOnWrite } from './packet-pool.js';

/** Things tests and benchmarks may observe or replace. */
export interface SftpHooks {
  /** Receives one-line warnings (insecure host key acceptance). @default writes to stderr */
  readonly warn?: (line: string) => void;
}

/** One SSH connection with its SFTP channel. */
export class SftpConnection {
  #alive = true;
  /** Sessions, streams and calls using this connection now (the pool balances on it). */
  users = 0;

  private constructor(
    private readonly client: SftpClient,
    readonly sftp: SFTPWrapper,
    private readonly driverName: string,
    private readonly secrets: readonly (string | undefined)[],
    /** For a side channel (`openChannel`): the connection it runs on, which it does not own. */
    private readonly carrier?: SftpConnection,
  ) {}

  /** False once the connection or its channel closed or failed; then every call rejects. */
  get alive(): boolean {
    return this.#alive && (this.carrier?.alive ?? true);
  }

  set alive(value: boolean) {
    this.#alive = value;
  }

  /**
   * True when the connection compresses what it sends (`zlib@openssh.com` negotiated, see
   * `open`), as ssh2 shows it (an undocumented field: false when it is not there).
   */
  get compressed(): boolean {
    const protocol = (this.client as unknown as { client?: { _protocol?: { _packetRW?: { write?: object } } } }).client?._protocol;
    return protocol?._packetRW?.write?.constructor.name === 'ZlibPacketWriter';
  }

  /**
   * Opens another SFTP channel on this connection: another sftp-server process at the server
   * (OpenSSH runs one per channel, each one request at a time), at the cost of a channel request
   * and the SFTP version exchange, no new handshake. It dies with the connection; `close` ends
   * only the channel. Rejects when the server refuses another session (OpenSSH's `MaxSessions`,
   * 10 by default) or the connection is gone.
   */
  async openChannel(): Promise<SftpConnection> {
    const context: ErrorContext = { driver: this.driverName, action: 'open another SFTP channel' };
    const ssh = (this.client as unknown as { client: { sftp(cb: (err: Error | undefined, sftp: SFTPWrapper) => void): void } }).client;
    const sftp = await this.call<SFTPWrapper>(context, (_sftp, done) => ssh.sftp(done));
    coalesceSmallPackets(sftp);
    const channel = new SftpConnection(this.client, sftp, this.driverName, this.secrets, this);
    sftp.on('close', () => {
      channel.alive = false;
    });
    sftp.on('error', () => {
      channel.alive = false;
    });
    return channel;
  }

  /**
   * Connects, checks the host key, authenticates and opens the SFTP channel. Rejects with kind
   * `auth` for a refused host key or credentials, `retryable` for timeouts and network errors,
   * and `ConfigError` for an unreadable key or known_hosts file.
   *
   * A server has one key per type and shows the one the handshake negotiates, so a host pinned
   * by the fingerprint of its RSA key that would rather show its ed25519 key is not refused at
   * once: the handshake is repeated without the key types already refused, until a key matches
   * the pin (or known_hosts), or the server has no other type left (then the key has CHANGED).
   * Every key accepted matches the pin; the type that matched is offered first from then on.
   * With `compress`, SSH compression is asked for (used where the server offers it).
   */
  static async open(name: string, options: SftpOptions, hooks: SftpHooks = {}, { compress = false }: { readonly compress?: boolean } = {}): Promise<SftpConnection> {
    const context: ErrorContext = { driver: name, action: `connect to ${options.host}:${options.port}` };
    const secrets = [options.password, options.passphrase];
    const policy = await hostKeyPolicy(name, options);
    const privateKey = options.privateKey === undefined ? undefined : await readConfigFile(name, 'privateKey', options.privateKey);
    const server = `${options.host}:${options.port}`;
    const learned = trustedKeyTypes.get(server);
    let algorithms = preferredHostKeyAlgorithms(policy, learned ? [learned] : []);
    const refused: HostKeyRefusal[] = [];
    for (;;) {
      let attempt: Handshake;
      try {
        attempt = await handshake(name, options, hooks, policy, privateKey, algorithms, compress);
      } catch (err) {
        // No key of another type left at the server: the refused keys are all it has.
        if (refused.length > 0 && /no matching host key/i.test(String((err as Error)?.message))) throw hostKeyError(name, options, refused);
        const classified = classifySftpError(err, context, secrets);
        if (classified.code === 'E_BAD_KEY_FILE') {
          const reason = classified.message.slice(classified.message.indexOf('(') + 1, -1);
          throw new DriverError('E_BAD_KEY_FILE', `${name}: cannot use the private key ${options.privateKey ?? ''} (${reason})`, { kind: 'auth', cause: err });
        }
        throw classified;
      }
      if ('refused' in attempt) {
        refused.push(attempt.refused);
        const next = withoutKeyTypes(algorithms, new Set(refused.map((r) => keyTypeOf(r.key))));
        // Only a known host (pinned, or listed in known_hosts) may have its key among the other types.
        if (attempt.refused.verdict.reason !== 'changed' || next.length === 0) throw hostKeyError(name, options, refused);
        algorithms = next;
        continue;
      }
      if (attempt.offered && !options.insecureAcceptAnyHostKey) trustedKeyTypes.set(server, keyTypeOf(attempt.offered));
      const conn = new SftpConnection(attempt.client, attempt.sftp, name, secrets);
      attempt.holder.connection = conn;
      attempt.sftp.on('close', () => {
        conn.alive = false;
      });
      attempt.sftp.on('error', () => {
        conn.alive = false;
      });
      return conn;
    }
  }

  /**
   * Runs one raw ssh2 SFTP call as a promise; errors are classified (kind from the SFTP status,
   * errno or ssh2 level) and name `context`. Rejects at once when the connection is gone (ssh2
   * would otherwise queue the request on a dead channel forever).
   */
  call<T>(context: ErrorContext, run: (sftp: SFTPWrapper, done: (err: Error | undefined | null, value?: T) => void) => void): Promise<T> {
    if (!this.alive) return Promise.reject(new DriverError('E_TRANSIENT', `${where(context)}: connection closed`, { kind: 'retryable' }));
    return new Promise<T>((resolve, reject) => {
      try {
        run(this.sftp, (err, value) => {
          if (err) reject(this.classify(err, context));
          else resolve(value as T);
        });
      } catch (err) {
        reject(this.classify(err, context));
      }
    });
  }

  /**
   * True when the server announced the SFTP extension `name` (`copy-data`...). ssh2 keeps the
   * announced extensions in an undocumented field: when it is not there, true, and the request
   * itself tells (ssh2 refuses to send an extension the server did not announce).
   */
  supports(name: string): boolean {
    const announced = (this.sftp as unknown as { _extensions?: Record<string, unknown> })._extensions;
    return announced === undefined || typeof announced !== 'object' ? true : name in announced;
  }

  /**
   * True when the server is OpenSSH's, whose sftp-server handles one request at a time in the
   * order they arrive (the protocol lets other servers reorder requests): a request may then be
   * sent before the answer to one it must follow, when a failure of the first makes the second
   * harmless. From the server's version string, as ssh2 reads it (it counts dropbear in, which
   * serves SFTP with OpenSSH's sftp-server).
   */
  get runsInOrder(): boolean {
    return (this.sftp as unknown as { _isOpenSSH?: unknown })._isOpenSSH === true;
  }

  /** Opens a file (`open`; `wx`: created exclusively) or a folder (`opendir`) and wraps its handle; see `SftpHandle`. */
  async open(context: ErrorContext, path: string, flags: 'r' | 'r+' | 'w' | 'wx' | 'dir'): Promise<SftpHandle> {
    const raw = await this.call<Buffer>(context, (sftp, done) => (flags === 'dir' ? sftp.opendir(path, done) : sftp.open(path, flags, done)));
    return new SftpHandle(this, raw);
  }

  classify(err: unknown, context: ErrorContext): OffsiteError {
    if (!this.alive && !(err instanceof OffsiteError) && typeof (err as { code?: unknown })?.code !== 'number') {
      // Whatever ssh2 says after the connection died, it is a lost connection.
      return new DriverError('E_TRANSIENT', `${where(context)}: connection lost (${(err as Error)?.message ?? String(err)})`, { kind: 'retryable', cause: err });
    }
    return classifySftpError(err, context, this.secrets);
  }

  /** Closes the connection (a side channel: the channel only); never throws. */
  async close(): Promise<void> {
    this.alive = false;
    if (this.carrier !== undefined) {
      try {
        this.sftp.end();
      } catch {
        /* already gone */
      }
      return;
    }
    try {
      await this.client.end();
    } catch {
      /* already gone */
    }
  }

  get driver(): string {
    return this.driverName;
  }
}

/**
 * An open file or folder handle on one connection. Every request naming the handle goes through
 * `call`, and none is sent once `close` has begun: OpenSSH's sftp-server gives a freed handle
 * value to the next OPEN at once, so a WRITE sent after the CLOSE (a part still in flight, or a
 * continuation ssh2 sends from a reply) could land in another file opened since on the same
 * connection. The handle also carries its connection, so it can never be sent on another one.
 */
export class SftpHandle {
  #closing: Promise<void> | undefined;
  #inFlight = 0;
  #drained: (() => void) | undefined;

  constructor(readonly conn: SftpConnection, private readonly raw: Buffer) {}

  /** False once `close` has begun or the connection has gone. */
  get usable(): boolean {
    return this.#closing === undefined && this.conn.alive;
  }

  /** Runs one request naming this handle; rejects (`retryable`, `E_STALE_HANDLE`) once `close` has begun. */
  call<T>(context: ErrorContext, run: (sftp: SFTPWrapper, handle: Buffer, done: (err: Error | undefined | null, value?: T) => void) => void): Promise<T> {
    return this.callWith(this, context, (sftp, handle, _same, done) => run(sftp, handle, done));
  }

  /** `call` for a request naming two handles of the same connection (`copy-data`). */
  callWith<T>(other: SftpHandle, context: ErrorContext, run: (sftp: SFTPWrapper, handle: Buffer, otherHandle: Buffer, done: (err: Error | undefined | null, value?: T) => void) => void): Promise<T> {
    if (this.#closing || other.#closing) return Promise.reject(new DriverError('E_STALE_HANDLE', `${where(context)}: the file was closed meanwhile`, { kind: 'retryable' }));
    if (other.conn !== this.conn) return Promise.reject(new DriverError('E_BAD_ARGUMENT', `${where(context)}: two handles of different connections`, { kind: 'fatal' }));
    const both = other === this ? [this] : [this, other];
    for (const handle of both) handle.#inFlight++;
    return this.conn.call<T>(context, (sftp, done) => run(sftp, this.raw, other.raw, done)).finally(() => {
      for (const handle of both) if (--handle.#inFlight === 0) handle.#drained?.();
    });
  }

  /**
   * Closes the handle once the requests already sent have been answered; never sends another
   * request with it. Idempotent; rejects only when `quiet` is false and the CLOSE fails.
   */
  close(context: ErrorContext, quiet = true): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => { this.#drained = resolve; });
      await this.conn.call<void>(context, (sftp, done) => sftp.close(this.raw, done));
    })();
    return quiet ? this.#closing.catch(() => undefined) : this.#closing;
  }
}

/**
 * Up to `options.connections` connections, opened on demand: `acquire` hands out an idle live
 * connection, or opens a new one while below the limit, or shares the least used one. Dead
 * connections are dropped and replaced on the next `acquire`.
 */
export class ConnectionPool {
  private readonly connections: SftpConnection[] = [];
  private readonly opening = new Set<Promise<SftpConnection>>();
  /** Where server-side copies run (`acquireForCopy`), copies running elsewhere meanwhile, and those waiting. */
  private readonly copies: CopyChannels;
  private spilledCopies = 0;
  private readonly waitingCopies: Array<() => void> = [];
  /** When a connection opened while others served (`acquire`) last failed: not tried again for a while. */
  private failedInBackgroundAt = 0;
  private closed = false;

  constructor(
    private readonly name: string,
    private readonly options: SftpOptions,
    private readonly hooks: SftpHooks = {},
  ) {
    this.copies = new CopyChannels(() => SftpConnection.open(name, options, hooks, { compress: true }), () => this.#wakeCopies());
  }

  /** Opens the copy connection and its channels ahead of the copies (./copy-channels.ts `warm`). Never throws. */
  prepareCopies(): void {
    if (!this.closed) this.copies.warm();
  }

  /**
   * A channel for one server-side copy: one of the copy channels (./copy-channels.ts). Until one
   * is up, a few copies at a time (`SPILLED_COPIES_PER_CONNECTION` per connection) run on the
   * connections files are sent on, and the others wait: a sftp-server runs its requests one at a
   * time, so dozens of copies there (an fsync each) would hold up the files being sent. Where the
   * copy connection cannot be opened, every copy runs there. `release` the lease once done.
   */
  async acquireForCopy(signal?: AbortSignal): Promise<CopyLease> {
    for (;;) {
      this.checkOpen();
      throwIfAborted(signal, `${this.name}: copy`);
      const channel = this.copies.pick();
      if (channel !== undefined) {
        this.take(channel);
        return { conn: channel, release: () => this.release(channel) };
      }
      if (this.copies.failed || this.spilledCopies < SPILLED_COPIES_PER_CONNECTION * this.options.connections) {
        this.spilledCopies++;
        let conn: SftpConnection;
        try {
          conn = await this.acquire();
        } catch (err) {
          this.#endSpill();
          throw err;
        }
        let released = false;
        return {
          conn,
          release: () => {
            if (released) return;
            released = true;
            this.release(conn);
            this.#endSpill();
          },
        };
      }
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        this.waitingCopies.push(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }

  #endSpill(): void {
    this.spilledCopies--;
    this.#wakeCopies();
  }

  /** Copies waiting for a channel look again (one came up, a spilled copy ended, the copy connection failed, the pool closed). */
  #wakeCopies(): void {
    for (const wake of this.waitingCopies.splice(0)) wake();
  }

  /** A live connection with `users` already counted; give it back with `release`. */
  async acquire(): Promise<SftpConnection> {
    this.checkOpen();
    for (let i = this.connections.length - 1; i >= 0; i--) {
      if (!this.connections[i]?.alive) this.connections.splice(i, 1);
    }
    const idle = this.connections.find((conn) => conn.users === 0);
    if (idle) return this.take(idle);
    const mayOpen = this.connections.length + this.opening.size < this.options.connections;
    if (this.connections.length > 0) {
      // A busy connection takes more requests at once, at no cost: it serves this caller now,
      // while the next one connects for later callers (a handshake is several round trips).
      if (mayOpen && Date.now() - this.failedInBackgroundAt > BACKGROUND_RETRY_MS) {
        this.openOne().catch(() => {
          this.failedInBackgroundAt = Date.now();
        });
      }
      return this.take(this.connections.reduce((a, b) => (b.users < a.users ? b : a)));
    }
    if (mayOpen) return this.take(await this.openOne());
    // Everything is still connecting: share whichever connection comes up first.
    return this.take(await Promise.race(this.opening));
  }

  private async openOne(): Promise<SftpConnection> {
    const opening = SftpConnection.open(this.name, this.options, this.hooks);
    this.opening.add(opening);
    try {
      const conn = await opening;
      if (this.closed) {
        await conn.close();
        this.checkOpen();
      }
      this.connections.push(conn);
      return conn;
    } finally {
      this.opening.delete(opening);
    }
  }

  private take(conn: SftpConnection): SftpConnection {
    this.checkOpen();
    conn.users++;
    return conn;
  }

  private checkOpen(): void {
    if (this.closed) throw driverClosedError({ driver: this.name, action: 'connect' });
  }

  release(conn: SftpConnection): void {
    conn.users = Math.max(0, conn.users - 1);
  }

  /** Closes every connection. Idempotent; never throws. */
  async close(): Promise<void> {
    this.closed = true;
    this.#wakeCopies();
    const all = this.connections.splice(0);
    await Promise.all([this.copies.close(), ...all.map((conn) => conn.close())]);
  }
}

/** A channel of a copy (`ConnectionPool.acquireForCopy`), given back with `release` (once; later calls do nothing). */
export interface CopyLease {
  readonly conn: SftpConnection;
  release(): void;
}

/** Copies at once on each connection files are sent on, while no copy channel is up. */
const SPILLED_COPIES_PER_CONNECTION = 4;

/** How long a connection that failed to open while others served is not tried again. */
const BACKGROUND_RETRY_MS = 10_000;

/** Host key types that matched the pin or known_hosts, per `host:port`, in this process: offered first. */
const trustedKeyTypes = new Map<string, string>();

/** A host key the server showed and the policy refused. */
interface HostKeyRefusal {
  readonly key: Buffer;
  readonly verdict: Exclude<HostKeyVerdict, { trusted: true }>;
}

type Handshake =
  | { readonly client: SftpClient; readonly sftp: SFTPWrapper; readonly offered?: Buffer; readonly holder: { connection?: SftpConnection } }
  | { readonly refused: HostKeyRefusal };

/**
 * One SSH handshake offering `algorithms` (ssh2's default when `undefined`) for the host key.
 * Resolves with the open channel, or with the refusal when the server showed a key the policy
 * does not trust; rejects with ssh2's raw error otherwise (nothing is left open).
 */
async function handshake(
  name: string, options: SftpOptions, hooks: SftpHooks, policy: HostKeyPolicy, privateKey: Buffer | undefined, algorithms: readonly string[] | undefined, compress: boolean,
): Promise<Handshake> {
  let verdict: HostKeyVerdict | undefined;
  let offered: Buffer | undefined;
  let rawError: unknown;
  const holder: { connection?: SftpConnection } = {};
  const markDead = (): void => {
    if (holder.connection) holder.connection.alive = false;
  };
  const client = new SftpClient(name, { error: markDead, end: markDead, close: markDead });
  client.on('error', (err: unknown) => {
    rawError ??= err;
  });

  // Our own socket so that Nagle is off before the first byte: ssh2 leaves it on, which
  // stalls every small SFTP request by ~40 ms.
  const sock = netConnect({ host: options.host, port: options.port, noDelay: true });
  sock.on('error', () => {
    /* reported through ssh2's 'error' event */
  });
  batchWrites(sock);
  recyclePacketsOnWrite(sock);
  const config: ConnectConfig = {
    sock,
    host: options.host,
    port: options.port,
    username: options.username,
    readyTimeout: options.readyTimeoutMs,
    keepaliveInterval: 15_000,
    keepaliveCountMax: 4,
    algorithms: {
      ...(algorithms ? { serverHostKey: [...algorithms] as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] } : {}),
      // Compression where the server offers it, else none (./copy-channels.ts says when).
      ...(compress ? { compress: ['zlib@openssh.com', 'zlib', 'none'] as NonNullable<ConnectConfig['algorithms']>['compress'] } : {}),
    },
    ...(privateKey ? { privateKey } : {}),
    ...(options.passphrase ? { passphrase: options.passphrase } : {}),
    ...(options.agent ? { agent: options.agent } : {}),
    ...(options.password ? { password: options.password } : {}),
    hostVerifier: (key: Buffer): boolean => {
      offered = key;
      if (options.insecureAcceptAnyHostKey) {
        (hooks.warn ?? warnOnStderr)(
          `offsite: WARNING: ${name}: accepting the SSH host key of ${options.host}:${options.port} (${keyTypeOf(key)} ${fingerprintOf(key)}) without checking it, because insecureAcceptAnyHostKey is true; anyone on the network path could impersonate this server`,
        );
        return true;
      }
      verdict = judgeHostKey(key, policy);
      return verdict.trusted;
    },
  };
  try {
    const sftp = await client.connect(config);
    poolPackets((client as unknown as { client?: { _protocol?: unknown } }).client?._protocol);
    coalesceSmallPackets(sftp);
    return { client, sftp, holder, ...(offered ? { offered } : {}) };
  } catch (err) {
    sock.destroy();
    void client.end().catch(() => undefined);
    if (verdict && !verdict.trusted && offered) return { refused: { key: offered, verdict } };
    throw rawError ?? err;
  }
}

/**
 * ssh2 writes every SSH packet to the socket on its own: with the server's 32 KiB packet size,
 * one 255 KiB SFTP WRITE is eight `write` system calls, each with the whole TCP send path.
 * Packets written in one turn of the event loop are gathered instead (the socket is corked at
 * the first and uncorked on the next tick) and leave in one `writev`. Nothing waits longer than
 * the current tick, so no request is delayed.
 */
function batchWrites(sock: Socket): void {
  const write = sock.write.bind(sock) as (chunk: unknown, ...rest: unknown[]) => boolean;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    sock.uncork();
  };
  sock.write = ((chunk: unknown, ...rest: unknown[]): boolean => {
    if (!corked) {
      corked = true;
      sock.cork();
      process.nextTick(uncork);
    }
    return write(chunk, ...rest);
  }) as Socket['write'];
}

function warnOnStderr(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function readConfigFile(name: string, option: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'unreadable';
    throw new ConfigError(`${name}: cannot read ${option} file ${path} (${code})`, { cause: err });
  }
}

async function hostKeyPolicy(name: string, options: SftpOptions): Promise<HostKeyPolicy> {
  if (options.knownHosts === undefined) return { host: options.host, port: options.port, hostKeys: options.hostKeys };
  const text = (await readConfigFile(name, 'knownHosts', options.knownHosts)).toString('utf8');
  return {
    host: options.host,
    port: options.port,
    hostKeys: options.hostKeys,
    knownHosts: { path: options.knownHosts, lines: parseKnownHosts(text) },
  };
}

function hostKeyError(name: string, options: SftpOptions, refused: readonly HostKeyRefusal[]): DriverError {
  const first = refused[0] as HostKeyRefusal;
  const { verdict } = first;
  const fingerprint = fingerprintOf(first.key);
  const server = `${options.host}:${options.port}`;
  const offered = refused.map((r) => `${keyTypeOf(r.key)} ${fingerprintOf(r.key)}`).join(' and ');
  const fix = `if this really is your server, set hostKey: "${fingerprint}" (check it on the server with "ssh-keygen -lf /etc/ssh/ssh_host_${keyTypeOf(first.key).replace(/^ssh-|-sha2-nistp\d+$/g, '')}_key.pub")`;
  const revoked = refused.find((r) => r.verdict.reason === 'revoked');
  const message =
    revoked
      ? `${name}: the SSH host key of ${server} (${keyTypeOf(revoked.key)} ${fingerprintOf(revoked.key)}) is revoked: ${revoked.verdict.detail}`
      : verdict.reason === 'changed'
        ? `${name}: the SSH host key of ${server} has CHANGED: the server offered ${offered} but ${verdict.detail}; this can be a man-in-the-middle attack; ${fix}`
        : `${name}: the SSH host key of ${server} is unknown: the server offered ${offered} and ${verdict.detail}; ${fix}, or add it to knownHosts`;
  return new DriverError('E_HOST_KEY', message, { kind: 'auth' });
}

type Settled<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };
export type { Settled };

/** A promise that never rejects: it may be started early and then dropped unawaited. */
export function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value): Settled<T> => ({ ok: true, value }),
    (error: unknown): Settled<T> => ({ ok: false, error }),
  );
}

/**
 * True when an extension request was not possible: ssh2 refuses to send it (the server did not
 * announce it), or the server answers "unsupported" or "permission denied" (OpenSSH's
 * `sftp-server -P` bans requests that way).
 */
export function extensionRefused(err: unknown): boolean {
  if (/does not support this extended request/i.test((err as Error)?.message ?? '')) return true;
  const status = sftpStatusOf((err as { cause?: unknown })?.cause);
  return status === SFTP_STATUS.OP_UNSUPPORTED || status === SFTP_STATUS.PERMISSION_DENIED;
}
