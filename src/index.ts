/**
 * The offsite library API. The CLI uses exactly these functions.
 */
export { listCommand, replicateCommand, verifyCommand, inspectCommand, openSource, openDestinations, pickLatest } from './app.js';
export type { ListResult, ReplicateCommandOptions, VerifyCommandOptions } from './app.js';
export { loadConfig, parseConfig, findConfigPath } from './config/config.js';
export type { OffsiteConfig, Settings } from './config/config.js';
export { replicate, readDestinationState, DEFAULT_CHUNK_BYTES } from './core/replicate.js';
export type { ReplicateOptions, ReplicateResult, DestinationResult, ReplicateEvent } from './core/replicate.js';
export { planReplication } from './core/plan.js';
export type { ReplicationPlan, DestinationPlan, FileAction } from './core/plan.js';
export { verifyCopy } from './core/verify.js';
export type { VerifyResult, VerifyOptions, Damage } from './core/verify.js';
export { inspectBackup, listBackups, assertComplete } from './backup/index.js';
export { createDriver, driverTypes } from './drivers/index.js';
export type { Driver, Capabilities, Entry, WriteSession } from './drivers/types.js';
export * from './errors.js';
