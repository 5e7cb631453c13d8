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

/** Installed per Protocol object, so a second call (a rekey, another channel) changes nothing. */
const installed = new WeakSet<object>();

/** What gathering did in this process, for tests (an ssh2 upgrade must not silently turn it off). */
export const coalesceCounters = { channelsCoalesced: 0, payloadsGathered: 0, packetsSent: 0 };

/**
 * Makes the SFTP channel `sftp` gather its small payloads into shared SSH packets (see the file
 * comment). Returns false, and changes nothing, when ssh2's internals are not as expected.
 */
export function coalesceSmallPackets(sftp: unknown): boolean {
  const chan = sftp as Partial<ChannelInternals>;
  const protocol = chan._protocol;
  const outgoing = chan.outgoing;
  if (protocol === undefined || typeof outgoing?.id !== 'number' || typeof outgoing.packetSize !== 'number' || outgoing.packetSize < SMALL_PAYLOAD_BYTES) return false;
  if (typeof protocol.channelData !== 'function' || typeof protocol.channelEOF !== 'function' || typeof protocol.channelClose !== 'function') return false;
  if (installed.has(protocol)) return true;
  installed.add(protocol);
  coalesceCounters.channelsCoalesced++;

  const send = protocol.channelData.bind(protocol);
  const eof = protocol.channelEOF.bind(protocol);
  const close = protocol.channelClose.bind(protocol);
  const id = outgoing.id;
  let gathered: Buffer | undefined;
  let used = 0;
  let scheduled = false;

  const flush = (): void => {
    if (gathered === undefined || used === 0) return;
    const packet = gathered.subarray(0, used);
    used = 0;
    coalesceCounters.packetsSent++;
    // ssh2 copies the payload into the packet before it returns: the buffer is free again.
    send(id, packet);
  };
  const flushLater = (): void => {
    scheduled = false;
    flush();
  };

  protocol.channelData = (target: number, data: Buffer | string): void => {
    if (target !== id || !Buffer.isBuffer(data) || data.length > SMALL_PAYLOAD_BYTES) {
      flush();
      send(target, data);
      return;
    }
    // Allocated at the first request, when ssh2 knows the channel's packet size.
    gathered ??= Buffer.allocUnsafe(outgoing.packetSize);
    if (used + data.length > gathered.length) flush();
    data.copy(gathered, used);
    used += data.length;
    coalesceCounters.payloadsGathered++;
    if (!scheduled) {
      scheduled = true;
      setImmediate(flushLater);
    }
  };
  protocol.channelEOF = (target: number): void => {
    flush();
    eof(target);
  };
  protocol.channelClose = (target: number): void => {
    flush();
    close(target);
  };
  return true;
}
