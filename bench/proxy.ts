/**
 * A byte-counting TCP proxy for benchmarks: listens on 127.0.0.1 (a port of its own), forwards
 * every connection to one server, and counts the payload bytes that cross it each way. Put
 * between every contender and the server, it measures "bytes over the wire" the same way for
 * all of them (TLS, HTTP and SSH framing included; TCP/IP headers not).
 *
 * It runs in the benchmark's own event loop: start the contenders with an asynchronous spawn
 * (never spawnSync, which would stop the proxy with the loop).
 *
 * A WAN-like link, optionally: `delayMs` holds every piece that long in each direction (a round
 * trip costs twice that), and `bytesPerSecond` lets each direction carry at most that rate, all
 * connections together (one shared link, as an uplink is). A sender that gets more than 4 MiB
 * ahead of the link is paused until it drains, as TCP's window would.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface WireBytes {
  /** Client to server. */
  readonly up: number;
  /** Server to client. */
  readonly down: number;
}

export interface CountingProxy {
  readonly port: number;
  /** Bytes counted since the proxy started. */
  totals(): WireBytes;
  /** Bytes counted since `mark` (a `totals()` taken earlier). */
  since(mark: WireBytes): WireBytes;
  /** Connections accepted since the proxy started. */
  readonly connections: number;
  close(): Promise<void>;
}

export interface LinkOptions {
  /** One-way delay of every piece. @default 0 */
  readonly delayMs?: number;
  /** Most bytes per second each way, all connections together. @default unlimited */
  readonly bytesPerSecond?: number;
}

const MAX_AHEAD_BYTES = 4 * 1024 * 1024;

/** One direction of the link, all connections together: when each piece may arrive. */
class Lane {
  #freeAt = 0;
  constructor(private readonly link: LinkOptions) {}

  /** When a piece of `bytes` handed over now arrives (ms, `performance.now()` time). */
  arrival(bytes: number): number {
    const now = performance.now();
    const rate = this.link.bytesPerSecond;
    const sent = rate === undefined ? now : (this.#freeAt = Math.max(this.#freeAt, now) + (1000 * bytes) / rate);
    return sent + (this.link.delayMs ?? 0);
  }
}

/**
 * One direction of one connection: pieces leave in the order they came, each at its arrival
 * time (one timer at a time: timers of different lengths may fire out of order). `then` runs once
 * everything queued before it has been written.
 */
class Pipe {
  readonly #queue: { data?: Buffer; then?: () => void; at: number }[] = [];
  #timer: NodeJS.Timeout | undefined;
  #ahead = 0;
  constructor(private readonly lane: Lane, private readonly from: Socket, private readonly to: Socket) {}

  carry(data: Buffer): void {
    this.#queue.push({ data, at: this.lane.arrival(data.length) });
    this.#ahead += data.length;
    if (this.#ahead > MAX_AHEAD_BYTES) this.from.pause();
    this.#schedule();
  }

  after(then: () => void): void {
    this.#queue.push({ then, at: this.lane.arrival(0) });
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#queue.length === 0) return;
    const head = this.#queue[0] as { at: number };
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const now = performance.now();
      while (this.#queue.length > 0 && (this.#queue[0] as { at: number }).at <= now + 0.5) {
        const piece = this.#queue.shift() as { data?: Buffer; then?: () => void };
        if (piece.data !== undefined) {
          this.#ahead -= piece.data.length;
          if (!this.to.destroyed) this.to.write(piece.data);
        }
        piece.then?.();
      }
      if (this.#ahead <= MAX_AHEAD_BYTES && this.from.isPaused()) this.from.resume();
      this.#schedule();
    }, Math.max(0, head.at - performance.now()));
  }
}

/** Starts a proxy to `targetHost:targetPort`, optionally with a WAN-like `link` (see the file comment). */
export async function startCountingProxy(targetPort: number, targetHost = '127.0.0.1', link: LinkOptions = {}): Promise<CountingProxy> {
  let up = 0;
  let down = 0;
  let connections = 0;
  const open = new Set<Socket>();
  const shaped = (link.delayMs ?? 0) > 0 || link.bytesPerSecond !== undefined;
  const lanes = { up: new Lane(link), down: new Lane(link) };
  const server: Server = createServer((client) => {
    connections++;
    const upstream = connect({ host: targetHost, port: targetPort });
    open.add(client);
    open.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('data', (data: Buffer) => { up += data.length; });
    upstream.on('data', (data: Buffer) => { down += data.length; });
    const pipes = { up: new Pipe(lanes.up, client, upstream), down: new Pipe(lanes.down, upstream, client) };
    if (shaped) {
      client.on('data', (data: Buffer) => pipes.up.carry(data));
      upstream.on('data', (data: Buffer) => pipes.down.carry(data));
    } else {
      client.pipe(upstream);
      upstream.pipe(client);
    }
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', end);
    upstream.on('error', end);
    // A side that closes has sent all it had: close the other once that has crossed the link.
    client.on('close', () => (shaped ? pipes.up.after(end) : end()));
    upstream.on('close', () => (shaped ? pipes.down.after(end) : end()));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    totals: () => ({ up, down }),
    since: (mark) => ({ up: up - mark.up, down: down - mark.down }),
    get connections() { return connections; },
    close: () => new Promise<void>((resolve) => {
      for (const socket of open) socket.destroy();
      server.close(() => resolve());
    }),
  };
}
