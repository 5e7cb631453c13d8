/**
 * Small SFTP requests share SSH packets. ssh2 sends every SFTP request as an SSH packet of its
 * own, and each packet costs about 40 bytes on the wire besides the request (length, padding,
 * the CHANNEL_DATA header, the cipher's tag): for a request of 20 to 200 bytes (a CLOSE, an
 * FSTAT, a `copy-data`, an OPEN or a RENAME) that is a fifth to two thirds more. A reuse night
 * sends thousands of them, and the framing alone came to 2% of its bytes over the wire, a fifth
 * of what the whole night may cost beyond its changed bytes.
 *
 * SFTP is a byte stream inside its channel: where packets fall does not matter to the server.
 * So small payloads the channel sends in one turn of the event loop are gathered (copied
 * into the connection's one buffer at once: the caller may reuse its own) and leave as one
 * CHANNEL_DATA packet, no longer than the channel's packet size, at the end of the turn
 * (`setImmediate`: after the answers that arrived together have all been handled, so the
 * requests they trigger go together; nothing waits for more input). A large payload (file data) goes out as it comes,
 * after what is gathered, so the stream's order never changes and file data is never copied
 * here; so do the channel's EOF and CLOSE. The window was already counted by the sender, per
 * payload, and the sum is the same.
 *
 * This replaces `channelData` on ssh2's Protocol object of one connection (not an API: checked
 * by `coalesceSmallPackets`, left alone when it does not look as expected).
 */

/** Payloads up to this size are gathered; larger ones (file data) are sent as they come. */
const SMALL_PAYLOAD_BYTES = 2048;

/** The parts of ssh2 1.x's Protocol and SFTP channel this file uses. */
interface ProtocolInternals {
  channelData(chan: number, data: Buffer | string): void;
  channelEOF(chan: number): void;
  channelClose(chan: number): void;
}
interface ChannelInternals {
  outgoing: { id: number; packetSize: number };
  _protocol: ProtocolInternals;
}

/** What one channel has gathered, not sent yet. */
interface Gathering {
  readonly packetSize: number;
  buffer?: Buffer;
  used: number;
}

/** The channels gathering on each Protocol object (one connection), by the server's channel id. */
const installed = new WeakMap<object, Map<number, Gathering>>();

/** What gathering did in this process, for tests (an ssh2 upgrade must not silently turn it off). */
export const coalesceCounters = { channelsCoalesced: 0, payloadsGathered: 0, packetsSent: 0 };

/**
 * Makes the SFTP channel `sftp` gather its small payloads into shared SSH packets (see the file
 * comment); every channel of a connection may (a connection's copies run on channels of their
 * own: ./connection.ts). Returns false, and changes nothing, when ssh2's internals are not as
 * expected.
 */
export function coalesceSmallPackets(sftp: unknown): boolean {
  const chan = sftp as Partial<ChannelInternals>;
  const protocol = chan._protocol;
  const outgoing = chan.outgoing;
  if (protocol === undefined || typeof outgoing?.id !== 'number' || typeof outgoing.packetSize !== 'number' || outgoing.packetSize < SMALL_PAYLOAD_BYTES) return false;
  if (typeof protocol.channelData !== 'function' || typeof protocol.channelEOF !== 'function' || typeof protocol.channelClose !== 'function') return false;
  let channels = installed.get(protocol);
  if (channels === undefined) {
    channels = new Map();
    installed.set(protocol, channels);
    install(protocol, channels);
  }
  // A channel id the server gives again after a close starts afresh (its close flushed the old one).
  channels.set(outgoing.id, { packetSize: outgoing.packetSize, used: 0 });
  coalesceCounters.channelsCoalesced++;
  return true;
}

/** Replaces the Protocol's channel sends by gathering ones for the channels in `channels`. */
function install(protocol: ProtocolInternals, channels: Map<number, Gathering>): void {
  const send = protocol.channelData.bind(protocol);
  const eof = protocol.channelEOF.bind(protocol);
  const close = protocol.channelClose.bind(protocol);
  let scheduled = false;

  const flush = (id: number, gathering: Gathering | undefined): void => {
    if (gathering?.buffer === undefined || gathering.used === 0) return;
    const packet = gathering.buffer.subarray(0, gathering.used);
    gathering.used = 0;
    coalesceCounters.packetsSent++;
    // ssh2 copies the payload into the packet before it returns: the buffer is free again.
    send(id, packet);
  };
  const flushAll = (): void => {
    scheduled = false;
    for (const [id, gathering] of channels) flush(id, gathering);
  };

  protocol.channelData = (target: number, data: Buffer | string): void => {
    const gathering = channels.get(target);
    if (gathering === undefined || !Buffer.isBuffer(data) || data.length > SMALL_PAYLOAD_BYTES) {
      flush(target, gathering);
      send(target, data);
      return;
    }
    // Allocated at the channel's first request.
    gathering.buffer ??= Buffer.allocUnsafe(gathering.packetSize);
    if (gathering.used + data.length > gathering.buffer.length) flush(target, gathering);
    data.copy(gathering.buffer, gathering.used);
    gathering.used += data.length;
    coalesceCounters.payloadsGathered++;
    if (!scheduled) {
      scheduled = true;
      setImmediate(flushAll);
    }
  };
  protocol.channelEOF = (target: number): void => {
    flush(target, channels.get(target));
    eof(target);
  };
  protocol.channelClose = (target: number): void => {
    const gathering = channels.get(target);
    flush(target, gathering);
    if (gathering !== undefined) channels.delete(target);
    close(target);
  };
}
