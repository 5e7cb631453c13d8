/**
 * Progress bars (cli-progress) on stderr when it is a TTY: one bar per destination with bytes,
 * rate and ETA. Silent when stderr is not a TTY, or with --quiet / --json.
 */
import { createRequire } from 'node:module';
import type cliProgressModule from 'cli-progress';
import { formatBytes } from '../config/units.js';

export interface ProgressBars {
  start(name: string, totalBytes: number): void;
  add(name: string, bytes: number): void;
  stop(): void;
}

const silent: ProgressBars = { start: () => undefined, add: () => undefined, stop: () => undefined };

export function createProgress(enabled: boolean): ProgressBars {
  if (!enabled || !process.stderr.isTTY) return silent;
  // Loaded here, not at the top: a run without bars (cron, --quiet, --json) never pays for it.
  const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof cliProgressModule;
  const multi = new cliProgress.MultiBar({
    stream: process.stderr,
    format: ' {name} |{bar}| {percentage}% {doneText}/{totalText} {rateText} ETA {eta_formatted}',
    barCompleteChar: '\u2588',
    barIncompleteChar: '\u2591',
    hideCursor: true,
    clearOnComplete: false,
    etaBuffer: 50,
    fps: 5,
  });
  const bars = new Map<string, { bar: cliProgressModule.SingleBar; done: number; total: number; started: number }>();
  const payload = (s: { done: number; total: number; started: number }, name: string) => {
    const seconds = Math.max((Date.now() - s.started) / 1000, 0.001);
    return { name, doneText: formatBytes(s.done), totalText: formatBytes(s.total), rateText: `${formatBytes(s.done / seconds)}/s` };
  };
  const width = 12;
  return {
    start(name, totalBytes) {
      const state = { bar: undefined as unknown as cliProgressModule.SingleBar, done: 0, total: Math.max(totalBytes, 1), started: Date.now() };
      state.bar = multi.create(state.total, 0, payload(state, name.padEnd(width)));
      bars.set(name, state);
    },
    add(name, bytes) {
      const state = bars.get(name);
      if (!state) return;
      state.done += bytes;
      state.bar.update(Math.min(state.done, state.total), payload(state, name.padEnd(width)));
    },
    stop() { multi.stop(); },
  };
}
