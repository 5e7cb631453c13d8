/**
 * Layers that wrap any driver with a cross-cutting concern, like restic's retry and limiter
 * backends: each returns a `Driver` with the same name, description and capabilities.
 * Recommended order: `withRetry(withBandwidthLimit(driver, limiters), policy)`, so that bytes
 * sent again after a failure are charged to the limit again.
 */
export { backoffDelayMs, DEFAULT_RETRY_POLICY, withRetry, type RetryInfo, type RetryOperation, type RetryPolicy } from './retry.js';
export {
  createRateLimiter, takeFromAll, withBandwidthLimit, MAX_DEFAULT_BURST_BYTES, RATE_LIMIT_SLICE_BYTES,
  type BandwidthLimitOptions, type RateLimiter, type RateLimiterOptions,
} from './bwlimit.js';
