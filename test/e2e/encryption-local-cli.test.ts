/** Client-side encryption end to end on a local folder destination (./encryption-suite.ts). */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { filesUnder, tempDir } from '../helpers/cli.js';
import { encryptionSuite } from './encryption-suite.js';

encryptionSuite('local folder', async (label) => {
  const root = join(tempDir(label), 'vault');
  mkdirSync(root, { recursive: true });
  return {
    section: { type: 'local', root },
    stored: {
      keys: async (prefix) => filesUnder(root).filter((k) => k.startsWith(prefix)),
      read: async (key) => readFileSync(join(root, key)),
      write: async (key, bytes) => { mkdirSync(dirname(join(root, key)), { recursive: true }); writeFileSync(join(root, key), bytes); },
    },
  };
});
