/**
 * SFTP request tracer for benchmarks: preloaded into an offsite process
 * (`node --import ./dist/bench/sftp-trace.js`, with `OFFSITE_SFTP_TRACE=<file>`), it reads every
 * SFTP packet ssh2 sends and receives (before encryption: the byte-counting proxy only sees
 * ciphertext) and, when the process exits, writes to that file the requests and bytes by kind:
 * data of sent files, requests of reused files, manifests, checkpoints, listings, folders, and
 * when each kind's first request went out and its last was answered (what the time went to). The
 * proxy's total minus these is the SSH layer (handshake, framing, padding, MACs, window
 * adjusts). Bench-only: it patches ssh2's internals (`SFTP.prototype.push`,
 * `Protocol.prototype.channelData`), which are not an API.
 */
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** SFTP packet types (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it). */
const NAMES: Record<number, string> = {
  3: 'OPEN', 4: 'CLOSE', 5: 'READ', 6: 'WRITE', 7: 'LSTAT', 8: 'FSTAT', 9: 'SETSTAT', 10: 'FSETSTAT', 11: 'OPENDIR', 12: 'READDIR',
  13: 'REMOVE', 14: 'MKDIR', 15: 'RMDIR', 16: 'REALPATH', 17: 'STAT', 18: 'RENAME', 19: 'READLINK', 20: 'SYMLINK', 200: 'EXTENDED',
};
const PATH_FIRST = new Set([3, 7, 9, 11, 13, 14, 15, 16, 17, 18, 19, 20]);
const HANDLE_FIRST = new Set([4, 5, 6, 8, 10, 12]);
/** Extended requests whose first argument (after the name) is a handle; others name paths. */
const EXT_HANDLE_FIRST = new Set(['fsync@openssh.com', 'copy-data', 'fstatvfs@openssh.com']);

interface Request {
  op: string;
  /** The file or folder the request is about (temp names mapped to their final name). */
  path: string;
  dir: boolean;
  out: number;
  in: number;
  /** When it was sent and answered: ms since the process started. */
  sentAt: number;
  answeredAt: number;
  /** The channel (numbered in the order they were first used): requests on one run in order at OpenSSH. */
  channel: number;
}

/** A stream of SFTP packets (length-prefixed) cut into whole packets. */
class Framer {
  #pending: Buffer = Buffer.alloc(0);
  constructor(private readonly onPacket: (packet: Buffer) => void) {}
  feed(data: Buffer): void {
    this.#pending = this.#pending.length === 0 ? Buffer.from(data) : Buffer.concat([this.#pending, data]);
    while (this.#pending.length >= 4) {
      const length = this.#pending.readUInt32BE(0);
      if (this.#pending.length < 4 + length) return;
      try {
        this.onPacket(this.#pending.subarray(0, 4 + length));
      } catch {
        /* a packet this tracer does not understand: not counted */
      }
      this.#pending = this.#pending.subarray(4 + length);
    }
  }
}

function stringAt(packet: Buffer, offset: number): { value: Buffer; next: number } {
  const length = packet.readUInt32BE(offset);
  return { value: packet.subarray(offset + 4, offset + 4 + length), next: offset + 4 + length };
}

/** A temp name (`.NAME.offsite-partial`, `.NAME.offsite-copy-HEX`) as its final name. */
function finalPath(path: string): string {
  const slash = path.lastIndexOf('/');
  const base = path.slice(slash + 1);
  const match = /^\.(.+)\.offsite-(?:partial|copy-[0-9a-f]{16})$/s.exec(base);
  return match ? `${path.slice(0, slash + 1)}${match[1]}` : path;
}

/** One SFTP channel's bookkeeping. */
class Channel {
  readonly requests = new Map<number, Request>();
  readonly handles = new Map<string, { path: string; dir: boolean }>();
  readonly out = new Framer((packet) => this.sent(packet));
  readonly in = new Framer((packet) => this.received(packet));
  constructor(private readonly done: Request[], readonly number: number) {}

  sent(packet: Buffer): void {
    const type = packet[4] as number;
    if (type === 1) return; // INIT
    const id = packet.readUInt32BE(5);
    let op = NAMES[type] ?? `TYPE${type}`;
    let path = '';
    let dir = false;
    const first = (offset: number, isHandle: boolean): void => {
      if (offset + 4 > packet.length) return; // no argument (limits@openssh.com)
      const { value } = stringAt(packet, offset);
      if (isHandle) {
        const handle = this.handles.get(value.toString('hex'));
        path = handle?.path ?? '?';
        dir = handle?.dir ?? false;
      } else path = value.toString('utf8');
    };
    if (PATH_FIRST.has(type)) first(9, false);
    else if (HANDLE_FIRST.has(type)) first(9, true);
    else if (type === 200) {
      const name = stringAt(packet, 9);
      op = name.value.toString('utf8');
      if (op === 'copy-data') {
        // read handle, offset, length, write handle: the request belongs to the target.
        const read = stringAt(packet, name.next);
        first(read.next + 16, true);
      } else first(name.next, EXT_HANDLE_FIRST.has(op));
    }
    if (type === 11) dir = true;
    const request: Request = { op, path: finalPath(path), dir, out: packet.length, in: 0, sentAt: performance.now(), answeredAt: 0, channel: this.number };
    if (type === 3 || type === 11) (request as Request & { opened?: boolean }).opened = true;
    this.requests.set(id, request);
  }

  received(packet: Buffer): void {
    const type = packet[4] as number;
    if (type === 2) return; // VERSION
    const id = packet.readUInt32BE(5);
    const request = this.requests.get(id);
    if (!request) return;
    this.requests.delete(id);
    request.in = packet.length;
    request.answeredAt = performance.now();
    if (type === 102) this.handles.set(stringAt(packet, 9).value.toString('hex'), { path: request.path, dir: request.dir });
    this.done.push(request);
  }
}

const file = process.env.OFFSITE_SFTP_TRACE;
if (file !== undefined && file !== '') {
  const done: Request[] = [];
  let numbered = 0;
  const channels = new WeakMap<object, Map<number, Channel>>();
  const channelOf = (protocol: object, id: number): Channel => {
    let byId = channels.get(protocol);
    if (!byId) channels.set(protocol, (byId = new Map()));
    let channel = byId.get(id);
    if (!channel) byId.set(id, (channel = new Channel(done, numbered++)));
    return channel;
  };
  const { SFTP } = require('ssh2/lib/protocol/SFTP.js') as { SFTP: { prototype: { push(data: Buffer | null): unknown } } };
  const Protocol = require('ssh2/lib/protocol/Protocol.js') as { prototype: { channelData(id: number, data: Buffer): unknown } };
  const channelData = Protocol.prototype.channelData;
  Protocol.prototype.channelData = function (this: object, id: number, data: Buffer) {
    channelOf(this, id).out.feed(data);
    return channelData.call(this, id, data);
  };
  const push = SFTP.prototype.push;
  SFTP.prototype.push = function (this: { _protocol: object; outgoing: { id: number } }, data: Buffer | null) {
    if (data !== null) channelOf(this._protocol, this.outgoing.id).in.feed(data);
    return push.call(this, data);
  };
  process.on('exit', () => {
    writeFileSync(file, JSON.stringify(summarize(done)));
    // Every request, for a closer look by hand: a folder in OFFSITE_SFTP_TRACE_REQUESTS gets one file per process.
    const all = process.env.OFFSITE_SFTP_TRACE_REQUESTS;
    if (all !== undefined && all !== "") writeFileSync(`${all}/requests-${process.pid}.json`, JSON.stringify(done));
  });
}

/** One kind of request within a kind of path: how many, and their SFTP bytes each way. */
export interface OpFigures {
  requests: number;
  out: number;
  in: number;
}

/** What the benchmark prints: per kind, requests and bytes each way, and per op. */
export interface TraceSummary {
  readonly kinds: Record<string, { files: number; requests: number; out: number; in: number; ops: Record<string, OpFigures>; first: number; last: number }>;
  /** When the first request went out and the last was answered (ms since the process started). */
  readonly first: number;
  readonly last: number;
}

/**
 * Kinds: a data file is `reused` when it was the target of a `copy-data`, `sent` when written;
 * other data paths (copy sources, folders looked at or made) are `other data paths`; under
 * `.offsite/`: `manifests`, `checkpoints` (progress.json and its journal), `other .offsite`;
 * folder handles are `listings`. Requests answered only after the process ended are not counted.
 */
function summarize(requests: readonly Request[]): TraceSummary {
  const byPath = new Map<string, Request[]>();
  for (const r of requests) byPath.set(r.path, [...(byPath.get(r.path) ?? []), r]);
  const kinds: TraceSummary['kinds'] = {};
  for (const [path, list] of byPath) {
    const base = path.slice(path.lastIndexOf('/') + 1);
    let kind: string;
    if (list.some((r) => r.dir)) kind = 'listings';
    else if (path.includes('/.offsite/')) {
      kind = base.startsWith('manifest') ? 'manifests' : base.startsWith('progress') ? 'checkpoints' : 'other .offsite';
    } else if (list.some((r) => r.op === 'copy-data')) kind = 'reused';
    else if (list.some((r) => r.op === 'WRITE')) kind = 'sent';
    else kind = 'other data paths';
    const into = (kinds[kind] ??= { files: 0, requests: 0, out: 0, in: 0, ops: {}, first: Infinity, last: 0 });
    into.files++;
    for (const r of list) {
      into.first = Math.min(into.first, r.sentAt);
      into.last = Math.max(into.last, r.answeredAt);
      into.requests++;
      into.out += r.out;
      into.in += r.in;
      const op = (into.ops[r.op] ??= { requests: 0, out: 0, in: 0 });
      op.requests++;
      op.out += r.out;
      op.in += r.in;
    }
  }
  return { kinds, first: Math.min(...requests.map((r) => r.sentAt)), last: Math.max(...requests.map((r) => r.answeredAt)) };
}
