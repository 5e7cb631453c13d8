/**
 * The run's signals take any number of listeners (src/errors.ts `eitherSignal`): a sharded run
 * under load once printed node's MaxListenersExceededWarning on stderr, because a signal combined
 * with `AbortSignal.any` kept node's default limit of 10 while every concurrent read of a
 * destination's preparation listened on it.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { eitherSignal } from '../../src/errors.js';
import { projectRoot } from '../helpers/cli.js';

/** Adds `count` abort listeners to `signal` and returns the process warnings that followed. */
async function warningsAfterListeners(signal: AbortSignal, count: number): Promise<string[]> {
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { warnings.push(`${w.name}: ${w.message}`); };
  process.on('warning', onWarning);
  try {
    for (let i = 0; i < count; i++) signal.addEventListener('abort', () => undefined, { once: true });
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  } finally {
    process.off('warning', onWarning);
  }
  return warnings;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : name.endsWith('.ts') ? [path] : [];
  });
}

describe('eitherSignal', () => {
  it('fires when either signal does, and takes 100 listeners without a warning', async () => {
    const outer = new AbortController();
    const own = new AbortController();
    const both = eitherSignal(own.signal, outer.signal);
    assert.deepEqual(await warningsAfterListeners(both, 100), []);
    assert.equal(both.aborted, false);
    outer.abort();
    assert.equal(both.aborted, true);

    const second = new AbortController();
    const fromOwn = eitherSignal(second.signal, new AbortController().signal);
    second.abort();
    assert.equal(fromOwn.aborted, true);
  });

  it('without an outer signal is its own, and takes 100 listeners without a warning', async () => {
    const own = new AbortController();
    const alone = eitherSignal(own.signal, undefined);
    assert.equal(alone, own.signal);
    assert.deepEqual(await warningsAfterListeners(alone, 100), []);
  });

  it('is the only way src/ combines signals (a bare AbortSignal.any keeps the limit of 10)', () => {
    const users = sourceFiles(join(projectRoot, 'src'))
      .filter((file) => /AbortSignal\.any\(/.test(readFileSync(file, 'utf8')))
      .map((file) => file.slice(projectRoot.length + 1));
    assert.deepEqual(users, ['src/errors.ts']);
  });
});
