/**
 * The real servers the test suite starts (scripts/run-tests.mjs reads this list). Each entry
 * starts its server on 127.0.0.1, returns the environment variables its tests read, and stops
 * exactly the processes it started, by PID.
 */
import { rgwServer } from './rgw.js';
import { sshdServer } from './sshd.js';

export interface ServerHandle {
  /** Variables handed to the test processes (connection facts, never printed secrets). */
  readonly env: Record<string, string>;
  stop(): Promise<void>;
}

export interface ServerSpec {
  readonly name: string;
  /** Set to the reason when the server could not start; tests fail with it. */
  readonly errorEnv: string;
  /** Whether a compiled test file needs this server. */
  neededBy(testFile: string): boolean;
  start(workDir: string): Promise<ServerHandle>;
}

export const servers: ServerSpec[] = [];
servers.push(sshdServer);
servers.push(rgwServer);
