/**
 * A shard spec (`--shard i/n` or `auto`) and its checks: split out of ./shard.ts, which loads the
 * planner and the manifest code, so that the CLI can parse the option without loading them.
 */
import { UsageError } from '../errors.js';

/** Which share of the backup one worker copies: files whose path hashes to `index`, of `count` shards. */
export interface ShardSpec {
  /** 0 .. count-1 (a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`). */
  readonly index: number;
  /** The number of shards (the Job's `completions`). */
  readonly count: number;
}

/** Most shards one copy may be split into. */
export const MAX_SHARDS = 10_000;

export function checkShardSpec(spec: ShardSpec): void {
  if (!Number.isInteger(spec.count) || spec.count < 1 || spec.count > MAX_SHARDS) {
    throw new UsageError(`the number of shards must be a whole number from 1 to ${MAX_SHARDS}, got ${spec.count}`);
  }
  if (!Number.isInteger(spec.index) || spec.index < 0 || spec.index >= spec.count) {
    throw new UsageError(`shard index ${spec.index} is out of range for ${spec.count} shards: indexes run from 0 to ${spec.count - 1}`);
  }
}

/**
 * `i/n` (0 <= i < n), or `auto`: the index from `JOB_COMPLETION_INDEX` (set by Kubernetes in each
 * pod of an Indexed Job) and the count from `JOB_COMPLETIONS` (set it in the Job's pod template to
 * the Job's `completions`: Kubernetes does not).
 */
export function parseShardSpec(text: string, env: NodeJS.ProcessEnv = process.env): ShardSpec {
  if (text === 'auto') {
    const index = env['JOB_COMPLETION_INDEX'];
    const count = env['JOB_COMPLETIONS'];
    if (index === undefined || count === undefined || index === '' || count === '') {
      const unset = [index ? '' : 'JOB_COMPLETION_INDEX', count ? '' : 'JOB_COMPLETIONS'].filter(Boolean).join(' and ');
      throw new UsageError(`--shard auto needs JOB_COMPLETION_INDEX and JOB_COMPLETIONS in the environment, and ${unset} ${unset.includes(' and ') ? 'are' : 'is'} not set: in a Kubernetes Indexed Job (completionMode: Indexed) Kubernetes sets JOB_COMPLETION_INDEX; set JOB_COMPLETIONS in the pod template to the Job's completions; elsewhere give --shard i/n`);
    }
    const spec = { index: Number(index), count: Number(count) };
    if (!/^[0-9]+$/.test(index) || !/^[0-9]+$/.test(count)) {
      throw new UsageError(`--shard auto: JOB_COMPLETION_INDEX (${JSON.stringify(index)}) and JOB_COMPLETIONS (${JSON.stringify(count)}) must be whole numbers`);
    }
    checkShardSpec(spec);
    return spec;
  }
  const match = /^([0-9]+)\/([0-9]+)$/.exec(text);
  if (!match) throw new UsageError(`--shard expects i/n (shard i of n, counting from 0, e.g. 0/4) or auto, got ${JSON.stringify(text)}`);
  const spec = { index: Number(match[1]), count: Number(match[2]) };
  checkShardSpec(spec);
  return spec;
}
