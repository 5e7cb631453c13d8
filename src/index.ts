/**
 * The offsite library API. The CLI uses exactly these functions.
 */
export { listCommand, replicateCommand, verifyCommand, inspectCommand, watchCommand, pickLatest } from './commands/index.js';
export type { ListResult, ReplicateCommandOptions, ReplicateCommandResult, VerifyCommandOptions, WatchCommandOptions } from './commands/index.js';
export { finishShardsCommand, keyCommand } from './commands/index.js';
export type { KeyCommandResult, DestinationPublicKey } from './commands/index.js';
export type { FinishShardsOptions, FinishShardsResult } from './commands/index.js';
export { DriverRuntime, withRuntime, wrapDriver, openSource, openDestinations, closeAll } from './runtime/drivers.js';
export type { TransferOptions } from './runtime/drivers.js';
export { loadConfig, parseConfig, findConfigPath } from './config/config.js';
export type { OffsiteConfig, Settings } from './config/config.js';
export { replicate, readDestinationState, DEFAULT_CHUNK_BYTES } from './core/replicate.js';
export type { ReplicateOptions, ReplicateResult, DestinationResult, ReplicateEvent } from './core/replicate.js';
export { planReplication } from './core/plan.js';
export { finishSet, parseShardSpec, shardOfPath, fileListDigest } from './core/shard.js';
export type { ShardSpec, ShardSetReport } from './core/shard.js';
export type { ReplicationPlan, DestinationPlan, FileAction } from './core/plan.js';
export { verifyCopy } from './core/verify.js';
export type { VerifyResult, VerifyOptions, Damage } from './core/verify.js';
export { inspectBackup, listBackups, assertComplete } from './backup/index.js';
export { createDriver, driverTypes } from './drivers/index.js';
export type { Driver, Capabilities, Entry, WriteSession, ObjectLock, ObjectLockMode, KeyRetention } from './drivers/types.js';
export * from './errors.js';
export { pruneCommand } from './ops/prune.js';
export type { PruneOptions, PruneResult, PruneDestinationResult, PruneKept, PruneRemoved, PruneSkipped, PruneError, PruneEvent } from './ops/prune.js';
export { applyRetention, parseRetentionDuration, describePolicy } from './ops/retention.js';
export type { RetentionPolicy, RetentionDuration, RetentionItem, RetentionDecision } from './ops/retention.js';
export { auditCommand, assignSlices, DEFAULT_SLICES } from './ops/audit.js';
export type { AuditOptions, AuditState } from './ops/audit.js';
export type { AuditResult, AuditCopy, AuditDestination, AuditLock, AuditMode, CopyState } from './ops/audit-result.js';
export { renderAuditHtml } from './ops/report.js';
export { renderAuditMetrics } from './ops/metrics.js';
export { pullCommand } from './ops/pull.js';
export type { PullOptions, PullResult } from './ops/pull.js';
export { waitForBackup } from './ops/wait.js';
export type { WaitEvent, WaitForBackupOptions } from './ops/wait.js';
export { watchBackups } from './ops/watch.js';
export type { WatchEvent, WatchOptions, WatchSummary } from './ops/watch.js';
