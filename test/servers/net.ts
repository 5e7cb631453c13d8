/** Small network helpers for the test servers (all on 127.0.0.1). */
import { connect, createServer } from 'node:net';

/** A port that was free a moment ago (the OS picks it for port 0). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A port nothing listens on (bound, then closed): a connection to it is refused. */
export const closedPort = freePort;

/** Whether something accepts connections on 127.0.0.1:port. */
export async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}
