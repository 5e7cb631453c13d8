/**
 * Headless Chromium for tests that must see a page the way a browser does (the audit's
 * `--report` HTML): the DOM after parsing, and a screenshot.
 *
 *   const chromium = await chromiumOrSkip(t);           // in a node:test test; undefined = skipped
 *   const { dom } = await renderInChromium('/abs/report.html', { screenshot: '/abs/report.png' });
 *
 * Installs the Debian package `chromium` with apt-get when `/usr/bin/chromium` is missing (as
 * test/servers/rgw.ts does for Ceph: noninteractive, waiting for the dpkg lock). Chromium runs
 * with `--headless --no-sandbox --disable-gpu` (the sandbox cannot start as root), a private
 * throwaway profile folder, networking pointed at a dead proxy (a page that tries to fetch
 * something gets nothing), and a timeout; it is killed by the PID it was started with.
 *
 * When Chromium cannot be installed or started, `renderInChromium` throws with the reason
 * (Chromium's stderr). Under CI (`CI` set) that fails the test; outside CI, with
 * OFFSITE_TEST_ALLOW_SKIP=1, `chromiumOrSkip` skips the test loudly with the reason instead
 * (the same rule as the sshd and RGW tests).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { aptInstall, sh } from '../servers/shell.js';


export const CHROMIUM = '/usr/bin/chromium';
const DEFAULT_TIMEOUT_MS = 60_000;
const INSTALL_TIMEOUT_MS = 900_000;

export interface RenderOptions {
  /** Also write a PNG screenshot of the page here (created or replaced). */
  readonly screenshot?: string;
  /** Window size for the screenshot, `[width, height]` in CSS pixels. @default [1280, 900] */
  readonly windowSize?: readonly [number, number];
  /** Give up (and kill Chromium) after this long, per Chromium run. @default 60000 */
  readonly timeoutMs?: number;
}

export interface RenderResult {
  /** The serialized DOM after Chromium parsed the page (and ran its scripts): `--dump-dom`. */
  readonly dom: string;
}


let installing: Promise<void> | undefined;

/** Installs the `chromium` package when `/usr/bin/chromium` is missing (once per process). */
export function ensureChromiumInstalled(): Promise<void> {
  if (existsSync(CHROMIUM)) return Promise.resolve();
  installing ??= aptInstall(['chromium'], [CHROMIUM], INSTALL_TIMEOUT_MS);
  installing.catch(() => { installing = undefined; });
  return installing;
}

/** `Chromium 1xx.0.... built on Debian ...`, installing it first when needed. */
export async function chromiumVersion(): Promise<string> {
  await ensureChromiumInstalled();
  return (await sh(CHROMIUM, ['--version'], process.env, 30_000)).trim();
}

interface Ran {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs Chromium once, headless, with a throwaway profile; kills it (by PID) on timeout. */
async function runChromium(extraArgs: readonly string[], url: string, timeoutMs: number): Promise<Ran> {
  const profile = await mkdtemp(join(tmpdir(), 'offsite-chromium-'));
  const args = [
    '--headless',
    '--no-sandbox', // the sandbox cannot start as root (and needs user namespaces in containers)
    '--disable-gpu',
    '--disable-dev-shm-usage', // small /dev/shm in containers makes renderers crash
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-extensions',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--mute-audio',
    '--hide-scrollbars',
    // Any request the page makes goes nowhere: a self-contained page needs none.
    '--proxy-server=http://127.0.0.1:9',
    '--proxy-bypass-list=<-loopback>',
    `--user-data-dir=${profile}`,
    ...extraArgs,
    url,
  ];
  try {
    return await new Promise<Ran>((resolvePromise, reject) => {
      const child = spawn(CHROMIUM, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: profile } });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
      child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      const timer = setTimeout(() => {
        timedOut = true;
        if (child.pid !== undefined) {
          try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
        }
      }, timeoutMs);
      child.on('error', (err) => { clearTimeout(timer); reject(new Error(`cannot start ${CHROMIUM}: ${err.message}`)); });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (timedOut) reject(new Error(`chromium did not finish within ${timeoutMs} ms: ${lastLines(stderr)}`));
        else resolvePromise({ code, signal, stdout, stderr });
      });
    });
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

/** The last meaningful lines of Chromium's stderr (it logs a lot of harmless noise first). */
function lastLines(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.slice(-5).join(' | ') || '(no output on stderr)';
}

/**
 * Opens `htmlPath` (a local file) in headless Chromium and returns the DOM it built
 * (`--dump-dom`); with `screenshot`, also saves a PNG of the first `windowSize` of the page.
 * Installs Chromium first when missing. Throws with Chromium's stderr when it cannot start,
 * exits with an error, times out, or writes no screenshot.
 */
export async function renderInChromium(htmlPath: string, options: RenderOptions = {}): Promise<RenderResult> {
  await ensureChromiumInstalled();
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const url = pathToFileURL(isAbsolute(htmlPath) ? htmlPath : resolve(htmlPath)).href;

  const dumped = await runChromium(['--dump-dom'], url, timeoutMs);
  if (dumped.code !== 0 || !/<html[\s>]/i.test(dumped.stdout)) {
    throw new Error(`chromium --dump-dom ${url} failed (exit ${dumped.code ?? dumped.signal}): ${lastLines(dumped.stderr)}`);
  }

  if (options.screenshot !== undefined) {
    const png = isAbsolute(options.screenshot) ? options.screenshot : resolve(options.screenshot);
    const [width, height] = options.windowSize ?? [1280, 900];
    await rm(png, { force: true });
    const shot = await runChromium([`--screenshot=${png}`, `--window-size=${width},${height}`], url, timeoutMs);
    const written = await stat(png).then((s) => s.size, () => 0);
    if (shot.code !== 0 || written === 0) {
      throw new Error(`chromium --screenshot ${url} failed (exit ${shot.code ?? shot.signal}, ${written} bytes written): ${lastLines(shot.stderr)}`);
    }
  }
  return { dom: dumped.stdout };
}

/** Whether a missing or broken Chromium may skip a test here (never under CI). */
export function maySkipWithoutChromium(): boolean {
  return process.env['OFFSITE_TEST_ALLOW_SKIP'] === '1' && !process.env['CI'];
}

/**
 * For a node:test test: makes sure Chromium is installed and starts. Returns true when it does;
 * otherwise throws the reason (the test fails), or, when skipping is allowed (outside CI with
 * OFFSITE_TEST_ALLOW_SKIP=1), marks the test skipped, prints the reason, and returns false.
 */
export async function chromiumOrSkip(t: { skip(message?: string): void }): Promise<boolean> {
  try {
    await chromiumVersion();
    return true;
  } catch (err) {
    const reason = `no headless chromium: ${(err as Error).message}`;
    if (!maySkipWithoutChromium()) throw new Error(reason, { cause: err });
    console.error(`# SKIPPING: ${reason}`);
    t.skip(reason);
    return false;
  }
}
