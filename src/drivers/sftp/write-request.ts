/**
 * SFTP WRITE requests without a copy of their data. ssh2's `SFTPWrapper.write` allocates a new
 * buffer for every request and copies the data into it, then copies it again into the SSH
 * packets: for a 255 KiB request that is a fresh allocation (page faults, and external memory
 * that only a full garbage collection gives back) and a pass over cold memory, which a profile
 * of an upload showed at about a tenth of the client's CPU. Here the request header goes out on
 * its own and the data as views of the caller's buffer, through the same channel, window and
 * queue that ssh2 uses (its `_buffer` of pending payloads, drained when the server opens the
 * window), so requests of both kinds stay in order.
 *
 * This leans on fields of ssh2's SFTP channel (checked by `zeroCopyWrites`, with ssh2's own
 * `write` as the fallback when they are not as expected). The caller must leave the data
 * unchanged until the request is answered (the write session awaits every answer anyway).
 */
import type { SFTPWrapper } from 'ssh2';
import { poolPackets } from './packet-pool.js';

/** The parts of ssh2 1.x's SFTP channel this file uses. */
interface ChannelInternals {
  _writeReqid: number;
  _requests: Record<number, { cb: (err?: Error) => void }>;
  _buffer: Buffer[];
  _waitWindow: boolean;
  _chunkcb: (() => void) | undefined;
  _maxWriteLen: number;
  server: boolean;
  outgoing: { id: number; state: string; window: number; packetSize: number };
  _protocol: { channelData(id: number, data: Buffer): void };
}

const MAX_REQID = 2 ** 32 - 1;
const SSH_FXP_WRITE = 6;

/** The channel's internals when they look like ssh2 1.x's, else `undefined`. */
export function zeroCopyWrites(sftp: SFTPWrapper): ChannelInternals | undefined {
  const c = sftp as unknown as Partial<ChannelInternals>;
  const ok = typeof c._writeReqid === 'number' && typeof c._requests === 'object' && c._requests !== null && Array.isArray(c._buffer) &&
    typeof c._maxWriteLen === 'number' && c.server === false && typeof c.outgoing?.window === 'number' && typeof c.outgoing.packetSize === 'number' &&
    typeof c._protocol?.channelData === 'function';
  return ok ? (c as ChannelInternals) : undefined;
}

/**
 * Sends one WRITE of `data[offset, offset + length)` at `position` of the file `handle`;
 * `done` gets the server's answer. Longer than the server's limit: the rest follows in another
 * request once the first is answered (as ssh2 does).
 */
export function sendWrite(sftp: SFTPWrapper, handle: Buffer, data: Buffer, offset: number, length: number, position: number, done: (err?: Error) => void): void {
  const chan = zeroCopyWrites(sftp);
  if (chan === undefined) {
    sftp.write(handle, data, offset, length, position, (err) => done(err ?? undefined));
    return;
  }
  if (length === 0) {
    process.nextTick(done);
    return;
  }
  // A rekey replaces the cipher: the new one is pooled on its first use.
  poolPackets(chan._protocol);
  const now = Math.min(length, chan._maxWriteLen);
  // uint32 length, byte type, uint32 id, string handle, uint64 offset, uint32 data length (the data follows)
  const header = Buffer.allocUnsafe(4 + 1 + 4 + 4 + handle.length + 8 + 4);
  const reqid = chan._writeReqid = (chan._writeReqid + 1) & MAX_REQID;
  let p = 0;
  header.writeUInt32BE(header.length - 4 + now, p);
  header[p += 4] = SSH_FXP_WRITE;
  header.writeUInt32BE(reqid >>> 0, p += 1);
  header.writeUInt32BE(handle.length, p += 4);
  handle.copy(header, p += 4);
  header.writeBigUInt64BE(BigInt(position), p += handle.length);
  header.writeUInt32BE(now, p + 8);
  chan._requests[reqid] = {
    cb: (err) => {
      if (err || now === length) done(err);
      else sendWrite(sftp, handle, data, offset + now, length - now, position + now, done);
    },
  };
  send(chan, header);
  send(chan, data.subarray(offset, offset + now));
}

/** Sends a payload as channel data as far as the window allows, and queues the rest behind what is queued. */
function send(chan: ChannelInternals, payload: Buffer): void {
  if (chan._buffer.length > 0 || chan.outgoing.window === 0) {
    queue(chan, payload);
    return;
  }
  const rest = sendNow(chan, payload);
  if (rest !== undefined) queue(chan, rest);
}

/** What is left of `payload` once the window is used up; nothing is sent on a closed channel (as ssh2 does). */
function sendNow(chan: ChannelInternals, payload: Buffer): Buffer | undefined {
  const { outgoing } = chan;
  if (outgoing.state !== 'open') return undefined;
  let p = 0;
  while (p < payload.length && outgoing.window > 0) {
    const n = Math.min(payload.length - p, outgoing.window, outgoing.packetSize);
    outgoing.window -= n;
    chan._protocol.channelData(outgoing.id, p === 0 && n === payload.length ? payload : payload.subarray(p, p + n));
    p += n;
  }
  return p < payload.length ? payload.subarray(p) : undefined;
}

/**
 * Queues a payload and makes sure something drains the queue when the window opens: ssh2's own
 * drain when it set one, else ours (the same loop over the same queue).
 */
function queue(chan: ChannelInternals, payload: Buffer): void {
  chan._buffer.push(payload);
  chan._waitWindow = true;
  chan._chunkcb ??= () => drain(chan);
}

function drain(chan: ChannelInternals): void {
  chan._chunkcb = undefined;
  while (chan._buffer.length > 0) {
    const payload = chan._buffer[0] as Buffer;
    const rest = sendNow(chan, payload);
    if (rest !== undefined) {
      chan._buffer[0] = rest;
      chan._waitWindow = true;
      chan._chunkcb ??= () => drain(chan);
      return;
    }
    chan._buffer.shift();
  }
}
