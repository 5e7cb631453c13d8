/**
 * The channels that server-side copies (`copyWithin`, ./copy.ts) run on: a connection of their
 * own and more SFTP channels on it, opened on demand, apart from the connections files are sent
 * on. Why:
 *
 * - OpenSSH runs one sftp-server process per channel, and it serves one request at a time. A
 *   copy costs the server little CPU but an fsync and a folder creation, which wait on the disk;
 *   on two channels a reuse night's copies queued behind each other's fsyncs and in front of
 *   the files being sent. Each channel here is a process of its own, so they wait side by side
 *   (and the file system commits their fsyncs together).
 * - A copy is a handful of small requests, each naming long paths that differ from the last
 *   copy's in a few characters: on a link where every byte counts (issue 12: a reuse night may
 *   cost 1.1 x its changed bytes), they are most of what the night sends besides the changed
 *   files. This connection asks for SSH compression (`zlib@openssh.com`, which OpenSSH servers
 *   offer by default), which shrinks such a stream several times over for little CPU. File data
 *   is never sent on it: the backups' files are compressed already, and deflating them would
 *   only cost CPU.
 *
 * Channels are opened in the background, when the copies come or ahead of them (`warm`, when the
 * engine says copies are coming: `Driver.prepareCopies`): until the first is up, and when the server refuses
 * the connection, copies run on the connections files are sent on (`pick` answers `undefined`).
 * A server that refuses another channel (OpenSSH's `MaxSessions`, 10 by default) keeps those
 * there are. A dead connection takes its channels with it; the next copies open new ones.
 */
import type { SftpConnection } from './connection.js';

/** Channels (sftp-server processes) for copies, on the one copy connection. */
export const COPY_CHANNELS = 8;

/**
 * Copies in flight per copy channel (`capabilities.copyConcurrency` is this times
 * `COPY_CHANNELS`). A copy is four round trips (look and create, open, copy + fsync, close +
 * rename) and about one fsync of server time: a few per channel keep its process busy on a
 * WAN-like link (20 ms round trips, fsyncs of a few ms) without a long queue in front of it.
 */
export const COPIES_PER_CHANNEL = 8;

/** What the copy channels did in this process, for tests (an ssh2 upgrade must not silently turn compression off). */
export const copyChannelCounters = { connections: 0, compressed: 0, channels: 0 };

/** How long after a failed attempt to connect the copy connection is not tried again. */
const RETRY_AFTER_MS = 10_000;

export class CopyChannels {
  readonly #channels: SftpConnection[] = [];
  /** The copy connection (its own channel is the first copy channel). */
  #carrier: SftpConnection | undefined;
  #connecting: Promise<SftpConnection> | undefined;
  #opening = 0;
  #limit = COPY_CHANNELS;
  #failedAt = -Infinity;
  #closed = false;

  /** `connect` opens the copy connection (compressed); `changed` is told when a channel comes up or the connection fails. */
  constructor(private readonly connect: () => Promise<SftpConnection>, private readonly changed: () => void) {}

  /** True for a while after the copy connection failed to open (copies then run elsewhere). */
  get failed(): boolean {
    return performance.now() - this.#failedAt < RETRY_AFTER_MS;
  }

  /**
   * The copy channel with the fewest users (counting none: the caller does), or `undefined`
   * while none is up. Starts opening more when every channel has users, up to the limit.
   */
  pick(): SftpConnection | undefined {
    for (let i = this.#channels.length - 1; i >= 0; i--) {
      if (!this.#channels[i]?.alive) this.#channels.splice(i, 1);
    }
    const idle = this.#channels.find((channel) => channel.users === 0);
    if (idle) return idle;
    if (this.#channels.length + this.#opening < this.#limit) this.#openOne();
    return this.#channels.length === 0 ? undefined : this.#channels.reduce((a, b) => (b.users < a.users ? b : a));
  }

  /**
   * Opens the copy connection and its channels now (up to the limit), ahead of the copies
   * (`Driver.prepareCopies`): on a distant server the connection takes several round trips and
   * the channels one or two more, which the first copies would otherwise wait for. Never throws.
   */
  warm(): void {
    while (this.#channels.length + this.#opening < this.#limit && !this.#closed && !this.failed) this.#openOne();
  }

  #openOne(): void {
    if (this.#closed || this.failed) return;
    this.#opening++;
    void (async () => {
      let carrier: SftpConnection | undefined;
      try {
        carrier = this.#carrier?.alive ? this.#carrier : await this.#connectOnce();
        // The first to see the new connection takes its own channel; the others open one more each.
        const fresh = !this.#channels.includes(carrier) && carrier !== this.#carrier;
        if (fresh) {
          copyChannelCounters.connections++;
          if (carrier.compressed) copyChannelCounters.compressed++;
        }
        const channel = fresh ? carrier : await carrier.openChannel();
        copyChannelCounters.channels++;
        this.#carrier = carrier;
        if (this.#closed) await channel.close();
        else this.#channels.push(channel);
      } catch {
        // A refused channel on a live connection: as many as there are. A failed connection: later.
        if (carrier?.alive === true) this.#limit = Math.max(1, this.#channels.length);
        else this.#failedAt = performance.now();
      } finally {
        this.#opening--;
        this.changed();
      }
    })();
  }

  /** One connection attempt at a time, shared by the channels waiting for it. */
  #connectOnce(): Promise<SftpConnection> {
    this.#connecting ??= this.connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  /** Closes every channel and the copy connection; channels still opening are closed when they come. Never throws. */
  async close(): Promise<void> {
    this.#closed = true;
    const channels = this.#channels.splice(0).filter((channel) => channel !== this.#carrier);
    await Promise.all(channels.map((channel) => channel.close()));
    await this.#carrier?.close();
    const late = await this.#connecting?.catch(() => undefined);
    await late?.close();
  }
}
