/**
 * Layers that wrap any driver with a cross-cutting concern, like restic's retry and limiter
 * backends. Each extends the forwarding base (./forwarding.ts), so it passes every member of the
 * driver through (`sync`, `copyWithin`, the same name, description and capabilities...) and
 * overrides only what it changes. Recommended order: `withRetry(withBandwidthLimit(driver,
 * limiters), policy)`, so that bytes sent again after a failure are charged to the limit again.
 */
export { ForwardingDriver, ForwardingWriteSession } from './forwarding.js';
export { backoffDelayMs, DEFAULT_RETRY_POLICY, withRetry, type RetryInfo, type RetryOperation, type RetryPolicy } from './retry.js';
export {
  createRateLimiter, takeFromAll, withBandwidthLimit, MAX_DEFAULT_BURST_BYTES, RATE_LIMIT_SLICE_BYTES,
  type BandwidthLimitOptions, type RateLimiter, type RateLimiterOptions,
} from './bwlimit.js';
