/**
 * One destination's account in the fan-out's chunk budget (./fanout.ts, whose file comment gives
 * the rules): the bytes it holds and has reserved, how far behind it is, the reads it takes part
 * in, and how long it has held up shared reads that others were ready for.
 */
import type { Fanout } from './fanout.js';

/** Share of the time a destination may hold up the others' shared reads without falling behind (see `Ledger.lagMs`). */
const LAG_FORGIVENESS = 0.5;

/** One destination's share of the chunk budget. */
export class Ledger {
  /** Bytes charged: chunks held plus room reserved for reads it takes part in. */
  held = 0;
  /** Bytes (as charged) of chunks read for it that it has not taken yet: how far behind it is. */
  backlog = 0;
  /** Bytes of `held` reserved for pieces not read yet. */
  reserved = 0;
  /** Reads of multi-chunk files it takes part in. */
  openReads = 0;
  /** Time it held up shared reads that another destination was ready for, less what is forgiven (see `lagMs`). */
  private lag = 0;
  private lagAt = 0;
  /** The end of the last hold-up counted: reads held up at once count once. */
  private heldUpThrough = 0;
  constructor(private readonly fanout: Fanout) {}

  /**
   * How long it has held up shared reads that another destination was ready for, all reads together,
   * less `LAG_FORGIVENESS` of the time since: one that holds the others up more than that share of
   * the time is slower than they are, even if it frees a chunk just before each single wait ends.
   */
  lagMs(now: number): number {
    if (this.lagAt !== 0) this.lag = Math.max(0, this.lag - (now - this.lagAt) * LAG_FORGIVENESS);
    this.lagAt = now;
    return this.lag;
  }

  /** It held up a shared read from `from` to `to` (ms since the epoch) while another destination was ready. */
  heldUp(from: number, to: number): void {
    this.lagMs(to);
    const start = Math.max(from, this.heldUpThrough);
    if (to <= start) return;
    this.lag += to - start;
    this.heldUpThrough = to;
  }

  /** Within its share, or borrowing budget that no other destination's unused share needs. */
  fits(bytes: number, opening: boolean): boolean {
    if (opening && this.openReads >= this.fanout.maxOpenReads) return false;
    return this.held + bytes <= this.fanout.share || this.fanout.canLend(this, bytes);
  }

  /** Further behind than its share of the budget. */
  behind(bytes: number): boolean {
    return this.backlog + bytes > this.fanout.share;
  }

  charge(bytes: number): void {
    this.held += bytes;
  }

  uncharge(bytes: number): void {
    this.held -= bytes;
    this.fanout.notify();
  }
}
