/**
 * A tiny in-process TCP proxy for fault injection in the SFTP tests: forwards 127.0.0.1 to the
 * sshd, and can reset the connection after N client bytes, or accept and never answer.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface Proxy {
  readonly port: number;
  /** Bytes forwarded from client to server, over all connections. */
  readonly clientBytes: () => number;
  /** Connections accepted so far. */
  readonly connections: () => number;
  /** Resets (TCP RST) every open connection now. */
  resetAll(): void;
  close(): Promise<void>;
}

export interface ProxyOptions {
  /** Reset the first connection once it has sent this many bytes to the server. */
  readonly resetFirstAfterBytes?: number;
  /** Accept connections but never forward or answer anything. */
  readonly blackhole?: boolean;
  /** Delay every forwarded chunk by this many milliseconds, each way (RTT = 2x). */
  readonly delayMs?: number;
}

export async function startProxy(targetPort: number, options: ProxyOptions = {}): Promise<Proxy> {
  let forwarded = 0;
  let accepted = 0;
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    accepted++;
    const number = accepted;
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => undefined);
    if (options.blackhole) return;
    const upstream = connect({ host: '127.0.0.1', port: targetPort, noDelay: true });
    client.setNoDelay(true);
    open.add(upstream);
    upstream.on('close', () => {
      open.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    let sent = 0;
    const later = (send: () => void): void => {
      if (options.delayMs) setTimeout(send, options.delayMs);
      else send();
    };
    client.on('data', (data: Buffer) => {
      sent += data.length;
      forwarded += data.length;
      if (number === 1 && options.resetFirstAfterBytes !== undefined && sent > options.resetFirstAfterBytes) {
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      later(() => {
        if (!upstream.destroyed && !upstream.write(data)) {
          client.pause();
          upstream.once('drain', () => client.resume());
        }
      });
    });
    upstream.on('data', (data: Buffer) => {
      later(() => {
        if (!client.destroyed && !client.write(data)) {
          upstream.pause();
          client.once('drain', () => upstream.resume());
        }
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    clientBytes: () => forwarded,
    connections: () => accepted,
    resetAll: () => {
      for (const socket of open) {
        if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) socket.resetAndDestroy();
        else socket.destroy();
      }
    },
    close: async () => {
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
