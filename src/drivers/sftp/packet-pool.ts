/**
 * Reused buffers for outgoing SSH packets. ssh2 allocates a fresh buffer for every packet it
 * sends (`allocPacket` of its cipher), copies the payload in, encrypts it in place and hands it
 * to the socket. For an upload that is one new ~32 KiB ArrayBuffer per packet: the memory is
 * fresh (page faults on every copy into it), and its external size makes V8 run a full garbage
 * collection every few dozen MiB sent (a profile of a 256 MiB upload showed ~24 of them, and the
 * page faults and copies into cold memory at about a tenth of the main thread).
 *
 * Here the cipher's `allocPacket` hands out views of recycled slabs instead, and the socket's
 * `write` gives a slab back once the kernel has taken its bytes (the write's callback). Only
 * the ciphers that encrypt in place and write the packet they allocated (ssh2's native
 * AES-GCM and chacha20-poly1305 bindings) are changed, and only after the packet layout we
 * write was checked against theirs; anything else keeps ssh2's own allocation. A slab that is
 * never written (a packet dropped on a closed socket) is simply left to the garbage collector.
 */
import { randomFillSync } from 'node:crypto';
import type { Socket } from 'node:net';

/** Room for one CHANNEL_DATA packet at OpenSSH's 32 KiB maximum, with header, padding and tag. */
const SLAB_BYTES = 33 * 1024;
/** Smaller packets come from Node's shared pool (Buffer.allocUnsafe below 4 KiB) at no cost. */
const SMALLEST_POOLED = 4096;
/** Slabs kept for reuse: enough for the packets in flight in a few 2 MiB SSH windows. */
const MOST_KEPT = 192;

const free: ArrayBuffer[] = [];
const slabs = new WeakSet<ArrayBuffer>();

/** What the pool did in this process, for tests (an ssh2 upgrade must not silently turn it off). */
export interface PacketPoolCounters {
  /** Outgoing ciphers whose packets come from the pool. */
  ciphersPooled: number;
  /** Outgoing ciphers left to ssh2's own allocation (unknown class or layout). */
  ciphersLeftAlone: number;
  /** Packets that reused a slab written earlier. */
  slabsReused: number;
}
export const packetPoolCounters: PacketPoolCounters = { ciphersPooled: 0, ciphersLeftAlone: 0, slabsReused: 0 };

/** Random bytes for padding, drawn in blocks (one `randomFillSync` per few hundred packets). */
const random = Buffer.allocUnsafeSlow(4096);
let randomUsed = random.length;

function takeSlab(): ArrayBuffer {
  const slab = free.pop();
  if (slab !== undefined) {
    packetPoolCounters.slabsReused++;
    return slab;
  }
  const fresh = new ArrayBuffer(SLAB_BYTES);
  slabs.add(fresh);
  return fresh;
}

/** Gives back the slab under `chunk` when it is one of ours; the caller is done with its bytes. */
function giveBack(chunk: unknown): void {
  if (!(chunk instanceof Uint8Array) || chunk.byteOffset !== 0) return;
  const slab = chunk.buffer;
  if (!(slab instanceof ArrayBuffer) || !slabs.has(slab) || free.length >= MOST_KEPT) return;
  free.push(slab);
}

function fillPadding(packet: Buffer, at: number, length: number): void {
  if (randomUsed + length > random.length) {
    randomFillSync(random);
    randomUsed = 0;
  }
  random.copy(packet, at, randomUsed, randomUsed + length);
  randomUsed += length;
}

/** The parts of an ssh2 1.x outgoing cipher this file touches. */
interface Cipher {
  allocPacket(payloadLength: number): Buffer;
}

/** Padding block and tag length of the ciphers whose packets are pooled, by ssh2 class name. */
const LAYOUTS: Record<string, { readonly block: number; readonly tag: number }> = {
  AESGCMCipherBinding: { block: 16, tag: 16 },
  ChaChaPolyCipherBinding: { block: 8, tag: 16 },
};

/** Ciphers already looked at: pooled (true) or left alone (false). */
const judged = new WeakMap<object, boolean>();

/**
 * Makes the current outgoing cipher of an ssh2 `Protocol` allocate from the pool, when it is
 * one whose layout is known and checked. Cheap to call before every send: a rekey replaces the
 * cipher, and the new one is looked at on its first use.
 */
export function poolPackets(protocol: unknown): void {
  const cipher = (protocol as { _cipher?: unknown } | undefined)?._cipher;
  if (typeof cipher !== 'object' || cipher === null || judged.has(cipher)) return;
  const layout = LAYOUTS[cipher.constructor.name];
  const original = (cipher as Partial<Cipher>).allocPacket;
  if (layout === undefined || typeof original !== 'function' || !sameLayout(original.bind(cipher), layout)) {
    judged.set(cipher, false);
    packetPoolCounters.ciphersLeftAlone++;
    return;
  }
  judged.set(cipher, true);
  packetPoolCounters.ciphersPooled++;
  (cipher as Cipher).allocPacket = (payloadLength: number): Buffer => {
    const { total, padding } = packetShape(payloadLength, layout);
    if (total > SLAB_BYTES) return original.call(cipher, payloadLength);
    // Small packets (WRITE headers, replies to the server) come from Node's shared pool; they
    // still save ssh2's `randomFillSync` per packet.
    const packet = total < SMALLEST_POOLED ? Buffer.allocUnsafe(total) : Buffer.from(takeSlab(), 0, total);
    packet.writeUInt32BE(total - layout.tag - 4, 0);
    packet[4] = padding;
    fillPadding(packet, 5 + payloadLength, padding);
    return packet;
  };
}

/** Length of the whole packet (with the tag) and of its padding, as ssh2 lays it out. */
function packetShape(payloadLength: number, layout: { readonly block: number; readonly tag: number }): { total: number; padding: number } {
  const unpadded = 4 + 1 + payloadLength;
  let padding = layout.block - ((unpadded - 4) & (layout.block - 1));
  if (padding < 4) padding += layout.block;
  return { total: unpadded + padding + layout.tag, padding };
}

/** True when ssh2's own `allocPacket` gives packets of our shape (length and header) for a range of payloads. */
function sameLayout(allocPacket: (payloadLength: number) => Buffer, layout: { readonly block: number; readonly tag: number }): boolean {
  for (const payloadLength of [0, 1, 7, 8, 9, 15, 16, 17, 4090, 32777]) {
    const theirs = allocPacket(payloadLength);
    const { total, padding } = packetShape(payloadLength, layout);
    if (theirs.length !== total || theirs.readUInt32BE(0) !== total - layout.tag - 4 || theirs[4] !== padding) return false;
  }
  return true;
}

/**
 * Wraps `sock.write` so that a pooled packet goes back to the pool once written. ssh2 writes
 * each packet with a bare `write(packet)`; the callback added here runs when the kernel has
 * the bytes (or the socket failed), after which nothing reads the slab.
 */
export function recyclePacketsOnWrite(sock: Socket): void {
  const write = sock.write.bind(sock) as (chunk: unknown, ...rest: unknown[]) => boolean;
  sock.write = ((chunk: unknown, ...rest: unknown[]): boolean => {
    if (rest.length === 0 && chunk instanceof Uint8Array && chunk.byteOffset === 0 && chunk.buffer instanceof ArrayBuffer && slabs.has(chunk.buffer)) {
      return write(chunk, () => giveBack(chunk));
    }
    return write(chunk, ...rest);
  }) as Socket['write'];
}
