/** Small helpers for paths found in config files. */
import { homedir } from 'node:os';
import { resolve } from 'node:path';

/** Expands a leading `~/` and resolves relative paths against `baseDir` (default: cwd). */
export function expandPath(path: string, baseDir = process.cwd()): string {
  if (path === '~') return homedir();
  if (path.startsWith('~/')) return resolve(homedir(), path.slice(2));
  return resolve(baseDir, path);
}
