/**
 * The TCP fault proxy (test/helpers/fault-proxy.ts) against a tiny echo server on 127.0.0.1:
 * forwarding, reset after N bytes, blackhole (and healing), latency, rate limit, refuse, and a
 * close that leaves nothing running.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { seededBytes } from '../conformance/suite.js';

interface Echo {
  readonly server: Server;
  readonly port: number;
  /** Bytes the server received, per connection, in accept order. */
  readonly received: number[];
  readonly sockets: Set<Socket>;
}

async function startEcho(): Promise<Echo> {
  const received: number[] = [];
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const index = received.push(0) - 1;
    sockets.add(socket);
    socket.on('data', (chunk: Buffer) => {
      received[index] = (received[index] ?? 0) + chunk.length;
      socket.write(chunk);
    });
    socket.on('end', () => socket.end());
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, received, sockets };
}

async function open(proxy: FaultProxy): Promise<Socket> {
  const socket = connect(proxy.port, proxy.host);
  socket.setNoDelay(true);
  await once(socket, 'connect');
  return socket;
}

/** Sends `bytes`, resolves with everything echoed once as many bytes came back. */
function echo(socket: Socket, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer): void => {
      parts.push(chunk);
      got += chunk.length;
      if (got >= bytes.length) {
        socket.off('data', onData);
        socket.off('error', reject);
        resolve(Buffer.concat(parts));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(bytes);
  });
}

/** Resolves on 'close' whatever came before (events.once would reject on 'error'). */
function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

function ms(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e6;
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('fault proxy', () => {
  let target: Echo;
  const proxies: FaultProxy[] = [];
  const clients: Socket[] = [];

  async function proxy(): Promise<FaultProxy> {
    const started = await startFaultProxy({ target: { host: '127.0.0.1', port: target.port } });
    proxies.push(started);
    return started;
  }
  async function client(p: FaultProxy): Promise<Socket> {
    const socket = await open(p);
    clients.push(socket);
    return socket;
  }

  before(async () => {
    target = await startEcho();
  });
  after(async () => {
    for (const socket of clients) socket.destroy();
    for (const p of proxies) await p.close();
    for (const socket of target.sockets) socket.destroy();
    target.server.close();
  });

  it('forwards bytes both ways and counts them', async () => {
    const p = await proxy();
    assert.equal(p.host, '127.0.0.1');
    assert.ok(p.port > 0);
    const socket = await client(p);
    const data = seededBytes(300_000, 1);
    assert.ok((await echo(socket, data)).equals(data));
    const stats = p.stats();
    assert.equal(stats.connections, 1);
    assert.equal(stats.openConnections, 1);
    assert.equal(stats.bytesClientToServer, data.length);
    assert.equal(stats.bytesServerToClient, data.length);
    socket.end();
    await closed(socket);
    await waitFor('the connection to be gone', () => p.stats().openConnections === 0);
  });

  it('resetAfterBytes resets the connection (ECONNRESET) after at most N client bytes, per connection', async () => {
    const p = await proxy();
    const first = target.received.length;
    p.setFault({ resetAfterBytes: 10_000 });
    const socket = await client(p);
    const errorSeen = once(socket, 'error');
    socket.write(seededBytes(200_000, 2));
    const [err] = (await errorSeen) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    await waitFor('the target side to close', () => target.sockets.size === 0);
    assert.ok((target.received[first] ?? 0) <= 10_000, `the target got ${target.received[first]} bytes`);
    assert.equal(p.stats().resets, 1);
    const again = await client(p);
    const small = seededBytes(8_000, 3);
    assert.ok((await echo(again, small)).equals(small), 'a new connection counts from zero');
  });

  it('resetCounting "download" counts the bytes coming back', async () => {
    const p = await proxy();
    p.setFault({ resetAfterBytes: 5_000, resetCounting: 'download' });
    const socket = await client(p);
    let back = 0;
    socket.on('data', (chunk: Buffer) => { back += chunk.length; });
    const errorSeen = once(socket, 'error');
    socket.write(seededBytes(50_000, 4));
    const [err] = (await errorSeen) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    assert.ok(back <= 5_000, `${back} bytes came back`);
  });

  it('blackhole: accepts, never answers (a client timeout fires), and delivers the held data once cleared', async () => {
    const p = await proxy();
    const acceptedBefore = target.received.length;
    p.setFault({ blackhole: true });
    const socket = await client(p);
    socket.setTimeout(150);
    let back = 0;
    socket.on('data', (chunk: Buffer) => { back += chunk.length; });
    socket.write(Buffer.from('hello?'));
    const started = process.hrtime.bigint();
    await once(socket, 'timeout');
    assert.ok(ms(started) >= 100);
    assert.equal(back, 0, 'no answer');
    assert.equal(target.received.length, acceptedBefore, 'the target was not even dialled');
    socket.setTimeout(0);
    p.clearFaults();
    await waitFor('the held bytes to be echoed', () => back === 6);
  });

  it('blackhole on an existing connection stalls it', async () => {
    const p = await proxy();
    const socket = await client(p);
    assert.equal((await echo(socket, Buffer.from('before'))).toString(), 'before');
    p.setFault({ blackhole: true });
    let back = 0;
    socket.on('data', (chunk: Buffer) => { back += chunk.length; });
    socket.write('during');
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(back, 0);
    p.clearFaults();
    await waitFor('the stalled bytes to arrive', () => back === 6);
  });

  it('latencyMs delays each direction', async () => {
    const p = await proxy();
    const socket = await client(p);
    await echo(socket, Buffer.from('warm up'));
    p.setFault({ latencyMs: 100 });
    const started = process.hrtime.bigint();
    await echo(socket, Buffer.from('ping'));
    const roundTrip = ms(started);
    assert.ok(roundTrip >= 190 && roundTrip < 1500, `round trip ${roundTrip} ms with 100 ms each way`);
  });

  it('bytesPerSecond slows the throughput', async () => {
    const p = await proxy();
    const socket = await client(p);
    const data = seededBytes(100_000, 5);
    let started = process.hrtime.bigint();
    await echo(socket, data);
    const free = ms(started);
    p.setFault({ bytesPerSecond: 200_000 });
    started = process.hrtime.bigint();
    assert.ok((await echo(socket, data)).equals(data));
    const limited = ms(started);
    assert.ok(limited >= 450 && limited < 3000, `100 kB each way at 200 kB/s: ${limited} ms`);
    assert.ok(limited > free);
  });

  it('refuse resets new connections at once and leaves existing ones alone', async () => {
    const p = await proxy();
    const existing = await client(p);
    p.setFault({ refuse: true });
    const refused = connect(p.port, p.host);
    clients.push(refused);
    refused.on('error', () => undefined);
    let back = 0;
    refused.on('data', (chunk: Buffer) => { back += chunk.length; });
    const started = process.hrtime.bigint();
    await closed(refused);
    assert.ok(ms(started) < 1000);
    assert.equal(back, 0);
    assert.equal(p.stats().refused, 1);
    assert.equal((await echo(existing, Buffer.from('still here'))).toString(), 'still here');
  });

  it('a target that is down resets the client', async () => {
    const dead = createServer();
    dead.listen(0, '127.0.0.1');
    await once(dead, 'listening');
    const port = (dead.address() as AddressInfo).port;
    dead.close();
    const p = await startFaultProxy({ target: { host: '127.0.0.1', port } });
    proxies.push(p);
    const socket = await client(p);
    let error: NodeJS.ErrnoException | undefined;
    socket.on('error', (err) => { error = err; });
    await closed(socket);
    assert.equal(error?.code, 'ECONNRESET');
  });

  it('close() destroys every connection, clears its timers, and stops listening', async () => {
    const p = await proxy();
    const socket = await client(p);
    socket.on('error', () => undefined);
    await echo(socket, Buffer.from('x'));
    const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    p.setFault({ latencyMs: 10_000 });
    socket.write(seededBytes(1000, 6)); // sits in the proxy for 10 s
    await waitFor('the delayed chunk to be scheduled', () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length > timersBefore);
    const socketClosed = closed(socket);
    const started = process.hrtime.bigint();
    await p.close();
    await socketClosed;
    assert.ok(ms(started) < 1000);
    assert.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, timersBefore, 'no proxy timer left');
    const late = connect(p.port, p.host);
    const [err] = (await once(late, 'error')) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNREFUSED');
    await p.close();
  });
});
