/**
 * Each command as a library function returning plain data (the CLI in ../cli renders the data
 * and maps it to exit codes). audit, prune and pull live in ../ops with their helpers.
 */
export { pickLatest, checkBackupName } from './common.js';
export { inspectCommand } from './inspect.js';
export { keyCommand, type KeyCommandResult, type DestinationPublicKey } from './key.js';
export { listCommand, type ListResult } from './list.js';
export { replicateCommand, type ReplicateCommandOptions, type ReplicateCommandResult } from './replicate.js';
export { verifyCommand, type VerifyCommandOptions } from './verify.js';
export { watchCommand, type WatchCommandOptions } from './watch.js';
export { finishShardsCommand, type FinishShardsOptions, type FinishShardsResult, type FinishDestination } from './finish-shards.js';
