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
