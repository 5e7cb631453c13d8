/**
 * The conformance suite against a real OpenSSH sshd (started by scripts/run-tests.mjs from
 * test/servers/sshd.ts), with a fresh root folder per test.
 */
import { createSftpDriver } from '../../src/drivers/sftp/index.js';
import { freshRoot, removeFreshRoots, requireServer, sectionFor, testServer } from '../sftp/server.js';
import { runConformance } from './suite.js';

const found = testServer();

runConformance(
  'sftp',
  () => {
    const server = requireServer(); // no server: every test fails with the reason
    return {
      // The root does not exist yet: the driver creates it on the first write.
      create: async () => createSftpDriver('nas', sectionFor(server, await freshRoot(server, 'conformance'))),
      cleanup: removeFreshRoots,
    };
  },
  'skip' in found && found.skip ? { skipReason: found.error } : {},
);

runConformance('sftp, one request in flight per file (concurrencyPerFile: 1)', () => {
  const server = requireServer();
  return {
    create: async () => createSftpDriver('nas1', sectionFor(server, await freshRoot(server, 'conformance-serial'), { concurrencyPerFile: 1, requestBytes: 4096 })),
    cleanup: removeFreshRoots,
  };
}, 'skip' in found && found.skip ? { skipReason: found.error } : {});

runConformance('sftp, SFTP-only account on a server without copy-data, posix-rename and fsync', () => {
  const server = requireServer();
  const username = server.sftpOnlyUsername;
  const base = server.sftpOnlyRoot;
  if (!username || !base) throw new Error('the test sshd has no SFTP-only account (it must run as root to create one)');
  return {
    create: async () => createSftpDriver('old', sectionFor(server, await freshRoot(server, 'conformance-limited', base), { username })),
    cleanup: removeFreshRoots,
  };
}, 'skip' in found && found.skip ? { skipReason: found.error } : {});
