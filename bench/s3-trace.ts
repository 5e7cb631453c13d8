/**
 * S3 request tracer for benchmarks: preloaded into an offsite process
 * (`node --import ./dist/bench/s3-trace.js`, with `OFFSITE_S3_TRACE=<file>`), it follows every HTTP
 * request the process makes (node's `http.client.*` diagnostics channels, so the SDK's and the
 * direct requests alike) and, when the process exits, writes to that file the requests by kind
 * (server-side copies, uploads, manifests and checkpoints, listings, HEADs...), when each kind's
 * first request went out and its last was answered, how many copies were in flight over time, and
 * when the process started its first request and ended: what a reuse night's time went to.
 * Bench-only.
 */
import { subscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import type { ClientRequest, IncomingMessage } from 'node:http';

/** One kind of request, summed up. */
export interface S3TraceKind {
  requests: number;
  /** When the first went out and the last was answered: ms since the process started. */
  first: number;
  last: number;
  /** Time the requests were in flight, added up (ms). */
  busy: number;
}

export interface S3TraceSummary {
  readonly kinds: Record<string, S3TraceKind>;
  /** ms since the process started: its first request, its last answer, its exit. */
  readonly first: number;
  readonly last: number;
  readonly exit: number;
  /** Copies in flight, sampled every `step` ms from `first`: the most at once in each step. */
  readonly step: number;
  readonly copiesInFlight: number[];
  /** Uploads (PUT with a body, multipart parts) in flight, likewise. */
  readonly uploadsInFlight: number[];
  /** CPU seconds of the process (user + system) before its first request, before its first copy, and in all. */
  readonly cpu: { readonly beforeFirstRequest: number; readonly beforeFirstCopy: number; readonly total: number };
  /** TCP connections opened. */
  readonly connections: number;
}

const started = new WeakMap<ClientRequest, { kind: string; at: number }>();
const spans: Array<{ kind: string; from: number; to: number }> = [];
const kinds: Record<string, S3TraceKind> = {};

function kindOf(request: ClientRequest): string {
  const path = request.path;
  const method = request.method;
  if (request.getHeader('x-amz-copy-source') !== undefined) return 'copy';
  if (path.includes('/.offsite/')) return `${method} .offsite/${/\/\.offsite\/([^?/]+)/.exec(path)?.[1] ?? ''}`;
  if (method === 'GET' && /[?&](list-type|prefix|delimiter)=/.test(path)) return 'list';
  if (method === 'GET' && /[?&]uploads/.test(path)) return 'list uploads';
  if (method === 'PUT' && /[?&]partNumber=/.test(path)) return 'upload part';
  if (method === 'POST') return /[?&]uploadId=/.test(path) ? 'complete multipart' : 'create multipart';
  if (method === 'PUT') return 'put object';
  return method;
}

const cpuSeconds = (): number => {
  const used = process.cpuUsage();
  return (used.user + used.system) / 1e6;
};
let cpuBeforeFirstRequest: number | undefined;
let cpuBeforeFirstCopy: number | undefined;
let connections = 0;

subscribe('http.client.request.start', (message) => {
  const { request } = message as { request: ClientRequest };
  const kind = kindOf(request);
  cpuBeforeFirstRequest ??= cpuSeconds();
  if (kind === 'copy') cpuBeforeFirstCopy ??= cpuSeconds();
  started.set(request, { kind, at: performance.now() });
});
subscribe('net.client.socket', () => { connections++; });

const finish = (request: ClientRequest): void => {
  const start = started.get(request);
  if (start === undefined) return;
  started.delete(request);
  const at = performance.now();
  spans.push({ kind: start.kind, from: start.at, to: at });
  const kind = (kinds[start.kind] ??= { requests: 0, first: start.at, last: at, busy: 0 });
  kind.requests++;
  kind.first = Math.min(kind.first, start.at);
  kind.last = Math.max(kind.last, at);
  kind.busy += at - start.at;
};
subscribe('http.client.response.finish', (message) => finish((message as { request: ClientRequest; response: IncomingMessage }).request));
subscribe('http.client.request.error', (message) => finish((message as { request: ClientRequest }).request));

/** The most spans of `matching` kinds open at once in each `step` ms from `from` to `to`. */
function inFlight(matching: (kind: string) => boolean, from: number, to: number, step: number): number[] {
  const events: Array<[number, number]> = [];
  for (const span of spans) if (matching(span.kind)) events.push([span.from, 1], [span.to, -1]);
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const most = new Array<number>(Math.max(1, Math.ceil((to - from) / step))).fill(0);
  let open = 0;
  for (const [at, change] of events) {
    open += change;
    const slot = Math.min(most.length - 1, Math.max(0, Math.floor((at - from) / step)));
    most[slot] = Math.max(most[slot] as number, open);
  }
  // A step with no event keeps what was open through it.
  open = 0;
  let e = 0;
  for (let slot = 0; slot < most.length; slot++) {
    while (e < events.length && (events[e] as [number, number])[0] < from + slot * step) open += (events[e++] as [number, number])[1];
    most[slot] = Math.max(most[slot] as number, open);
  }
  return most;
}

const file = process.env.OFFSITE_S3_TRACE;
if (file !== undefined) {
  process.on('exit', () => {
    const first = Math.min(...spans.map((s) => s.from));
    const last = Math.max(...spans.map((s) => s.to));
    const step = 250;
    const summary: S3TraceSummary = {
      kinds, first, last, exit: performance.now(), step,
      copiesInFlight: inFlight((k) => k === 'copy', first, last, step),
      uploadsInFlight: inFlight((k) => k === 'put object' || k === 'upload part', first, last, step),
      cpu: { beforeFirstRequest: cpuBeforeFirstRequest ?? 0, beforeFirstCopy: cpuBeforeFirstCopy ?? 0, total: cpuSeconds() }, connections,
    };
    writeFileSync(file, JSON.stringify(summary));
  });
}
