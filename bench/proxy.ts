/**
 * A byte-counting TCP proxy for benchmarks: listens on 127.0.0.1 (a port of its own), forwards
 * every connection to one server, and counts the payload bytes that cross it each way. Put
 * between every contender and the server, it measures "bytes over the wire" the same way for
 * all of them (TLS, HTTP and SSH framing included; TCP/IP headers not).
 *
 * It runs in the benchmark's own event loop: start the contenders with an asynchronous spawn
 * (never spawnSync, which would stop the proxy with the loop).
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

/** Starts a proxy to `targetHost:targetPort`. */
export async function startCountingProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<CountingProxy> {
  let up = 0;
  let down = 0;
  let connections = 0;
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    connections++;
    const upstream = connect({ host: targetHost, port: targetPort });
    open.add(client);
    open.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('data', (data: Buffer) => { up += data.length; });
    upstream.on('data', (data: Buffer) => { down += data.length; });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
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
