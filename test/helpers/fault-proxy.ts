/**
 * A TCP fault proxy for tests (issue 5): listens on 127.0.0.1, forwards every connection to a
 * target (sshd, RGW, any TCP server), and injects faults that can be switched at runtime while
 * transfers run: latency, a rate limit, a reset after N bytes, a blackhole, refused connections.
 * It needs no privileges and nothing outside the project (toxiproxy and netem are not available
 * here, see ../shared/TEST-SERVERS.md).
 *
 *     const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: sshdPort } });
 *     // point the driver at 127.0.0.1:proxy.port, then during the transfer:
 *     proxy.setFault({ resetAfterBytes: 200_000 });
 *     ...
 *     proxy.clearFaults();
 *     await proxy.close();
 *
 * Semantics (each `setFault` call replaces the whole fault set; `clearFaults()` = `setFault({})`):
 * - `latencyMs`: every chunk is delivered `latencyMs` after it arrived, in each direction (so a
 *   request/response round trip gains twice that). Order is kept.
 * - `bytesPerSecond`: each direction of the proxy is one link of this speed, shared by all
 *   connections (like an uplink). Data is paced in slices of at most 16 KiB, and a sender that
 *   outruns the link is paused (TCP backpressure), so memory stays bounded.
 * - `resetAfterBytes`: PER CONNECTION, counting the bytes it carried in the `resetCounting`
 *   direction (default `upload` = client to server) since the later of its opening and this
 *   `setFault` call. The first byte beyond N stops that connection and, 30 ms later (so that the
 *   client has read what it was sent), resets both sides with a TCP RST
 *   (`socket.resetAndDestroy()`): the client sees ECONNRESET. At most N bytes pass. Per connection, so that a client that reconnects and
 *   resumes makes progress on every connection: a transfer of S bytes is interrupted about S/N
 *   times. New connections count from zero; to interrupt exactly once, clear the fault after
 *   the first reset (`stats().resets`).
 * - `blackhole`: nothing is forwarded in either direction and nothing is answered, on existing
 *   and new connections (new ones are accepted, but the target is not even dialled). Data is
 *   held, not dropped: clearing the blackhole delivers it, like a network partition that heals.
 *   A client with a timeout times out.
 * - `refuse`: new connections are accepted and reset at once (the client sees ECONNRESET, or a
 *   close, rather than ECONNREFUSED); existing connections are not touched.
 * - When the target refuses or resets, the client's connection is reset too.
 *
 * `close()` destroys every socket, clears every timer and stops listening: nothing of the proxy
 * runs after it resolves.
 */
import { createServer, Socket, type AddressInfo, type Server } from 'node:net';

export interface FaultSettings {
  /** One-way delay added to every chunk, in each direction, milliseconds. */
  readonly latencyMs?: number;
  /** Speed of each direction of the proxy (shared by all connections), bytes per second. */
  readonly bytesPerSecond?: number;
  /** Reset a connection when it carries byte N+1 in the counted direction (see the file comment). */
  readonly resetAfterBytes?: number;
  /** Which bytes count towards `resetAfterBytes`. @default 'upload' (client to server) */
  readonly resetCounting?: 'upload' | 'download' | 'both';
  /**
   * Stop resetting after this many resets (counted since this `setFault`). A deterministic reset
   * every N bytes can starve parts that share a connection (each gets N/k bytes through before
   * every reset); a bound keeps such a test about recovery, not about luck.
   */
  readonly maxResets?: number;
  /** Forward nothing, answer nothing (data is held until the blackhole is cleared). */
  readonly blackhole?: boolean;
  /** Reset new connections as soon as they are accepted. */
  readonly refuse?: boolean;
}

export interface FaultProxyStats {
  /** Connections accepted since the start (refused ones included). */
  readonly connections: number;
  /** Connections currently open. */
  readonly openConnections: number;
  /** Bytes delivered from clients to the target. */
  readonly bytesClientToServer: number;
  /** Bytes delivered from the target to clients. */
  readonly bytesServerToClient: number;
  /** Connections reset by `resetAfterBytes`. */
  readonly resets: number;
  /** Connections reset by `refuse`. */
  readonly refused: number;
}

export interface FaultProxy {
  /** Always 127.0.0.1 unless `listenHost` said otherwise. */
  readonly host: string;
  readonly port: number;
  setFault(faults: FaultSettings): void;
  clearFaults(): void;
  /** The current faults (a copy). */
  faults(): FaultSettings;
  stats(): FaultProxyStats;
  /** Destroys every connection and stops listening. Idempotent. */
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  readonly target: { readonly host: string; readonly port: number };
  /** @default '127.0.0.1' */
  readonly listenHost?: string;
  /** @default 0 (a free port) */
  readonly listenPort?: number;
  /** Faults active from the first connection. */
  readonly faults?: FaultSettings;
}

type Direction = 'up' | 'down';

/** Largest piece paced at once. */
const SLICE_BYTES = 16 * 1024;
/** Delay between stopping a connection's traffic and resetting it (see `scheduleReset`). */
const RESET_SETTLE_MS = 30;
/** A lane pauses its sender above this many queued bytes, and resumes it below a quarter. */
const QUEUE_HIGH_BYTES = 256 * 1024;

type Item =
  | { readonly type: 'data'; readonly bytes: Buffer; readonly arrivedAt: number; sendAt?: number }
  | { readonly type: 'end'; readonly arrivedAt: number }
  | { readonly type: 'reset'; readonly arrivedAt: number };

function checkFaults(faults: FaultSettings): FaultSettings {
  for (const name of ['latencyMs', 'bytesPerSecond', 'resetAfterBytes', 'maxResets'] as const) {
    const value = faults[name];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value < 0)) {
      throw new TypeError(`fault proxy: ${name} must be a non-negative number, got ${String(value)}`);
    }
  }
  if (faults.bytesPerSecond === 0) throw new TypeError('fault proxy: bytesPerSecond must be positive (use blackhole to stop traffic)');
  return { ...faults };
}

class ProxyState {
  faults: FaultSettings;
  /** Bumped by every setFault: connections restart their reset counters. */
  generation = 0;
  closed = false;
  readonly connections = new Set<Connection>();
  readonly timers = new Set<NodeJS.Timeout>();
  /** When each direction's link is free again (rate limit), in `now()` milliseconds. */
  readonly linkFreeAt: Record<Direction, number> = { up: 0, down: 0 };
  counters = { connections: 0, bytesClientToServer: 0, bytesServerToClient: 0, resets: 0, refused: 0 };
  /** Resets since the last `setFault` (for `maxResets`). */
  resetsSinceSet = 0;

  constructor(readonly target: { readonly host: string; readonly port: number }, faults: FaultSettings) {
    this.faults = checkFaults(faults);
  }

  now(): number {
    return performance.now();
  }

  setTimer(action: () => void, ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) action();
    }, Math.max(0, Math.ceil(ms)));
    this.timers.add(timer);
    return timer;
  }

  clearTimer(timer: NodeJS.Timeout | undefined): void {
    if (timer === undefined) return;
    clearTimeout(timer);
    this.timers.delete(timer);
  }
}

/** One direction of one connection: a queue of chunks delivered when latency and rate allow. */
class Lane {
  readonly queue: Item[] = [];
  queuedBytes = 0;
  ended = false;
  timer: NodeJS.Timeout | undefined;
  waitingForDrain = false;

  constructor(readonly state: ProxyState, readonly conn: Connection, readonly direction: Direction) {}

  get from(): Socket | undefined { return this.direction === 'up' ? this.conn.client : this.conn.upstream; }
  get to(): Socket | undefined { return this.direction === 'up' ? this.conn.upstream : this.conn.client; }

  #counts(): boolean {
    const counting = this.state.faults.resetCounting ?? 'upload';
    return counting === 'both' || (counting === 'upload') === (this.direction === 'up');
  }

  ingest(chunk: Buffer): void {
    if (this.conn.closed || this.conn.resetPending) return;
    const arrivedAt = this.state.now();
    let bytes = chunk;
    let reset = false;
    const { resetAfterBytes: limit, maxResets } = this.state.faults;
    if (limit !== undefined && this.#counts() && (maxResets === undefined || this.state.resetsSinceSet < maxResets)) {
      this.conn.syncGeneration();
      if (this.conn.countedBytes + bytes.length > limit) {
        bytes = bytes.subarray(0, Math.max(0, limit - this.conn.countedBytes));
        reset = true;
      }
      this.conn.countedBytes += bytes.length;
    }
    for (let start = 0; start < bytes.length; start += SLICE_BYTES) {
      const slice = bytes.subarray(start, start + SLICE_BYTES);
      this.queue.push({ type: 'data', bytes: slice, arrivedAt });
      this.queuedBytes += slice.length;
    }
    if (reset) {
      this.conn.resetPending = true;
      this.queue.push({ type: 'reset', arrivedAt });
    }
    if (this.queuedBytes > QUEUE_HIGH_BYTES) this.from?.pause();
    this.pump();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.queue.push({ type: 'end', arrivedAt: this.state.now() });
    this.pump();
  }

  pump(): void {
    if (this.conn.closed || this.timer !== undefined || this.waitingForDrain) return;
    const faults = this.state.faults;
    while (this.queue.length > 0) {
      const to = this.to;
      if (faults.blackhole || to === undefined) return; // kicked again when the faults change
      const item = this.queue[0] as Item;
      const now = this.state.now();
      let readyAt = item.arrivedAt + (faults.latencyMs ?? 0);
      if (item.type === 'data' && faults.bytesPerSecond !== undefined) {
        if (item.sendAt === undefined) {
          const start = Math.max(readyAt, this.state.linkFreeAt[this.direction]);
          item.sendAt = start + (item.bytes.length * 1000) / faults.bytesPerSecond;
          this.state.linkFreeAt[this.direction] = item.sendAt;
        }
        readyAt = Math.max(readyAt, item.sendAt);
      }
      if (readyAt > now + 0.5) {
        this.timer = this.state.setTimer(() => {
          this.timer = undefined;
          this.pump();
        }, readyAt - now);
        return;
      }
      this.queue.shift();
      if (item.type === 'reset') {
        this.conn.scheduleReset();
        return;
      }
      if (item.type === 'end') {
        if (!to.destroyed) to.end();
        continue;
      }
      this.queuedBytes -= item.bytes.length;
      if (to.destroyed) continue;
      if (this.direction === 'up') this.state.counters.bytesClientToServer += item.bytes.length;
      else this.state.counters.bytesServerToClient += item.bytes.length;
      const more = to.write(item.bytes);
      if (this.queuedBytes < QUEUE_HIGH_BYTES / 4 && !this.conn.resetPending) this.from?.resume();
      if (!more) {
        this.waitingForDrain = true;
        to.once('drain', () => {
          this.waitingForDrain = false;
          this.pump();
        });
        return;
      }
    }
  }

  stop(): void {
    this.state.clearTimer(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
    this.queuedBytes = 0;
  }
}

class Connection {
  upstream: Socket | undefined;
  readonly up: Lane;
  readonly down: Lane;
  closed = false;
  resetPending = false;
  countedBytes = 0;
  #generation: number;
  #resetTimer: NodeJS.Timeout | undefined;

  constructor(readonly state: ProxyState, readonly client: Socket) {
    this.#generation = state.generation;
    this.up = new Lane(state, this, 'up');
    this.down = new Lane(state, this, 'down');
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.up.ingest(chunk));
    client.on('end', () => this.up.end());
    client.on('error', () => this.#mirrorReset());
    client.on('close', () => this.#sideClosed());
    this.kick();
  }

  /** Restarts the reset counter when the faults changed since it last counted. */
  syncGeneration(): void {
    if (this.#generation === this.state.generation) return;
    this.#generation = this.state.generation;
    this.countedBytes = 0;
  }

  /** Applies the current faults: dial the target once the blackhole is gone, and deliver what waits. */
  kick(): void {
    if (this.closed) return;
    if (this.upstream === undefined && !this.state.faults.blackhole) this.#dial();
    this.up.pump();
    this.down.pump();
  }

  #dial(): void {
    const upstream = new Socket({ allowHalfOpen: true });
    this.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('data', (chunk: Buffer) => this.down.ingest(chunk));
    upstream.on('end', () => this.down.end());
    upstream.on('error', () => this.#mirrorReset());
    upstream.on('close', () => this.#sideClosed());
    upstream.connect(this.state.target.port, this.state.target.host);
  }

  /** One side failed (reset by its peer, refused): reset the other side too. */
  #mirrorReset(): void {
    if (this.closed) return;
    this.#finish();
    resetSocket(this.client);
    resetSocket(this.upstream);
  }

  /**
   * The `resetAfterBytes` fault: stops all traffic now and resets both sides a moment later.
   * The pause lets the peer read the bytes it was just sent: an RST that arrives together with
   * unread data shows up as a plain close rather than ECONNRESET on Linux.
   */
  scheduleReset(): void {
    if (this.closed || this.#resetTimer !== undefined) return;
    this.resetPending = true;
    this.state.counters.resets++;
    this.state.resetsSinceSet++;
    this.up.stop();
    this.down.stop();
    this.client.pause();
    this.upstream?.pause();
    this.#resetTimer = this.state.setTimer(() => {
      this.#resetTimer = undefined;
      if (this.closed) return;
      this.#finish();
      resetSocket(this.client);
      resetSocket(this.upstream);
    }, RESET_SETTLE_MS);
  }

  /** Destroys both sides (proxy shutdown). */
  destroy(): void {
    this.#finish();
    this.client.destroy();
    this.upstream?.destroy();
  }

  #sideClosed(): void {
    // A side that is gone ends the other direction too (after what is queued for it).
    if (this.client.destroyed) this.up.end();
    if (this.upstream?.destroyed) this.down.end();
    if (this.client.destroyed && (this.upstream === undefined || this.upstream.destroyed)) this.#finish();
  }

  #finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.state.clearTimer(this.#resetTimer);
    this.#resetTimer = undefined;
    this.up.stop();
    this.down.stop();
    this.state.connections.delete(this);
  }
}

function resetSocket(socket: Socket | undefined): void {
  if (socket === undefined || socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** Starts a proxy to `options.target` on 127.0.0.1 (a free port unless `listenPort`). */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const state = new ProxyState(options.target, options.faults ?? {});
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (client) => {
    state.counters.connections++;
    client.on('error', () => undefined);
    if (state.closed) {
      client.destroy();
      return;
    }
    if (state.faults.refuse) {
      state.counters.refused++;
      resetSocket(client);
      return;
    }
    state.connections.add(new Connection(state, client));
  });
  const host = options.listenHost ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listenPort ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;

  const apply = (faults: FaultSettings): void => {
    state.faults = checkFaults(faults);
    state.generation++;
    state.resetsSinceSet = 0;
    for (const conn of [...state.connections]) conn.kick();
  };

  return {
    host,
    port,
    setFault: apply,
    clearFaults: () => apply({}),
    faults: () => ({ ...state.faults }),
    stats: () => ({ ...state.counters, openConnections: state.connections.size }),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        state.closed = true;
        for (const timer of state.timers) clearTimeout(timer);
        state.timers.clear();
        for (const conn of [...state.connections]) conn.destroy();
        server.close(() => resolve());
      });
      return closing;
    },
  };
}
