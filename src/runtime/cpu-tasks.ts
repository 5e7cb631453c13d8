/**
 * The tasks the CPU pool (./cpu-pool.ts) runs, and the loop a worker thread runs them in
 * (`serveTasks`, started by ./cpu-worker.ts). The same functions run inline on the calling thread
 * for small inputs, so a worker's answer is by construction what the main thread would compute.
 *
 * A task gets its parameters (plain data), its input bytes (a view of a buffer the pool reuses:
 * never keep or return a view of it), a context (the secrets registered with the pool, and a
 * cache for what is derived from them, keyed `<secret id>:...` so `forget` can drop it) and, when
 * the caller gave one, the output buffer it writes its bytes into (the caller's, in shared memory:
 * see `RunOptions.output` in ./cpu-pool.ts). It returns `{ result, transfer }`: `transfer` lists
 * ArrayBuffers of the result that a worker hands over instead of copying (each must be the
 * result's own, not a pooled slab).
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { fileMac, FileSealer, sealPart, type SealedPart } from '../crypto/format.js';
import { DestinationKey } from '../crypto/keys.js';
import type { ErrorKind } from '../errors.js';
import { getHasher } from '../hash/xxh64.js';

export interface TaskContext {
  /** The bytes registered under `id` (throws when there are none). */
  secret(id: number): Buffer;
  /** What tasks derive from secrets, keyed `<secret id>:...`. */
  readonly cache: Map<string, unknown>;
}

export interface TaskOutput<R> {
  readonly result: R;
  readonly transfer?: ArrayBuffer[];
}

/** What `seal` needs besides the plain part. */
export interface SealParams {
  /** The destination key's secret id in the pool. */
  readonly secret: number;
  /** The destination's name (messages only). */
  readonly destination: string;
  /** The file's key in the destination (its identity in every chunk). */
  readonly fileId: string;
  readonly chunkBytes: number;
  /** Index of the part's first chunk in the file. */
  readonly firstChunk: number;
  /** Chunks in the whole file. */
  readonly chunks: number;
  /** Also the MD5 of the sealed part (the S3 part's Content-MD5), taken in the same pass. */
  readonly md5?: boolean;
  /** Also the XXH64 of the whole sealed part (the file's stored hash when the part is the whole file). */
  readonly hash?: boolean;
  /** Also the SHA-256 of the sealed part (the signed payload hash of its upload), taken in the same pass. */
  readonly sha256?: boolean;
}

/** The destination key of `params.secret`, made once per secret. */
function keyOf(params: SealParams, context: TaskContext): DestinationKey {
  const keyName = `${params.secret}:key`;
  let key = context.cache.get(keyName) as DestinationKey | undefined;
  if (key === undefined) {
    key = new DestinationKey(params.destination, context.secret(params.secret));
    context.cache.set(keyName, key);
  }
  return key;
}

/** The `FileSealer` of a file, kept per secret for the file last sealed (parts of one file come in runs). */
function sealerOf(params: SealParams, context: TaskContext): FileSealer {
  const name = `${params.secret}:sealer`;
  const cached = context.cache.get(name) as FileSealer | undefined;
  if (cached !== undefined && cached.fileId === params.fileId && cached.chunkBytes === params.chunkBytes) return cached;
  const sealer = new FileSealer(keyOf(params, context), params.fileId, params.chunkBytes);
  context.cache.set(name, sealer);
  return sealer;
}

/** A sealed part, and the file's plaintext MAC when the part is the whole file. */
export interface SealResult extends SealedPart {
  /** `fileMac` of the file, when the part holds all of its chunks (most files of a backup are one part). */
  readonly fileMac?: string;
}

export const CPU_TASKS = {
  /** MD5 of the input: an S3 part's Content-MD5 (base64) and the ETag it should get (hex). */
  md5(_params: Record<string, never>, input: Uint8Array): TaskOutput<{ hex: string; base64: string }> {
    const digest = createHash('md5').update(input).digest();
    return { result: { hex: digest.toString('hex'), base64: digest.toString('base64') } };
  },

  /**
   * The stored bytes of one plain part of an encrypted file, written into `output` (at least
   * `storedSize(input.length)` bytes), with each sealed chunk's XXH64 and plaintext MAC, and the
   * part's MD5, SHA-256 and XXH64 as `params` ask. A part that is the whole file also gets the
   * file's plaintext MAC: the caller's thread then makes no HMAC of its own for the file.
   */
  async seal(params: SealParams, input: Uint8Array, context: TaskContext, output?: Uint8Array): Promise<TaskOutput<SealResult>> {
    if (output === undefined) throw new Error('seal needs an output buffer (RunOptions.output)');
    const sealed = sealPart(sealerOf(params, context), await getHasher(), params.firstChunk, params.chunks, input, output, { md5: params.md5 === true, hash: params.hash === true, sha256: params.sha256 === true });
    if (params.firstChunk !== 0 || sealed.macs.length !== params.chunks) return { result: sealed };
    return { result: { ...sealed, fileMac: fileMac(keyOf(params, context), input.length, params.chunkBytes, sealed.macs) } };
  },
} as const;

export type CpuTaskName = keyof typeof CPU_TASKS;
export type CpuTaskParams<K extends CpuTaskName> = Parameters<(typeof CPU_TASKS)[K]>[0];
export type CpuTaskResult<K extends CpuTaskName> = Awaited<ReturnType<(typeof CPU_TASKS)[K]>>['result'];

/** A task as a worker receives it: the input is `input[offset, offset + length)`. */
export interface TaskRequest {
  readonly type: 'task';
  readonly id: number;
  readonly task: string;
  readonly params: unknown;
  readonly input: SharedArrayBuffer;
  readonly offset: number;
  readonly length: number;
  /** The output buffer, when the caller gave one: `output[outputOffset, outputOffset + outputLength)`. */
  readonly output?: SharedArrayBuffer;
  readonly outputOffset?: number;
  readonly outputLength?: number;
}

/** What a failed task reports: never a stack or the input, only its message and kind. */
export interface TaskFailure {
  readonly message: string;
  readonly code?: string;
  readonly kind?: ErrorKind;
}

export type TaskReply = { readonly id: number; readonly ok: true; readonly result: unknown } | { readonly id: number; readonly ok: false; readonly error: TaskFailure };

/** Drops what tasks cached for secret `id`. */
export function forgetCached(cache: Map<string, unknown>, id: number): void {
  for (const name of cache.keys()) if (name.startsWith(`${id}:`)) cache.delete(name);
}

/** What a worker loads when the pool warms it up (`CpuPool.warm`), before its first task needs it: the hash's WebAssembly module. */
export async function CPU_WARM_UP(): Promise<void> {
  await getHasher();
}

type Message = TaskRequest | { readonly type: 'secret'; readonly id: number; readonly bytes: Uint8Array } | { readonly type: 'forget'; readonly id: number } | { readonly type: 'warm' };

type AnyTask = (params: unknown, input: Uint8Array, context: TaskContext, output?: Uint8Array) => Promise<TaskOutput<unknown>> | TaskOutput<unknown>;

/**
 * The worker side: runs each task message with `tasks` and answers it. Messages are handled one
 * at a time in the order sent (the pool may send several tasks before the first is answered), so
 * a secret sent before a task is known when the task runs.
 */
export function serveTasks(tasks: Readonly<Record<string, unknown>>, warmUp: () => Promise<void> = CPU_WARM_UP): void {
  const port = parentPort;
  if (port === null) throw new Error('serveTasks runs in a worker thread');
  const secrets = new Map<number, Buffer>();
  const context: TaskContext = {
    cache: new Map(),
    secret(id) {
      const bytes = secrets.get(id);
      if (bytes === undefined) throw new Error(`secret ${id} was not sent to this worker`);
      return bytes;
    },
  };
  let chain: Promise<void> = Promise.resolve();
  port.on('message', (message: Message) => {
    chain = chain.then(() => handle(message));
  });
  async function handle(message: Message): Promise<void> {
    if (message.type === 'secret') {
      secrets.set(message.id, Buffer.from(message.bytes));
      return;
    }
    if (message.type === 'warm') {
      // A warm-up that fails leaves the failure to the first task that needs the same thing.
      await warmUp().catch(() => undefined);
      return;
    }
    if (message.type === 'forget') {
      secrets.get(message.id)?.fill(0);
      secrets.delete(message.id);
      forgetCached(context.cache, message.id);
      return;
    }
    const run = tasks[message.task] as AnyTask | undefined;
    try {
      if (run === undefined) throw new Error(`no task named ${JSON.stringify(message.task)} in this worker`);
      const target = message.output === undefined ? undefined : new Uint8Array(message.output, message.outputOffset, message.outputLength);
      const output = await run(message.params, new Uint8Array(message.input, message.offset, message.length), context, target);
      (port as NonNullable<typeof port>).postMessage({ id: message.id, ok: true, result: output.result } satisfies TaskReply, output.transfer ?? []);
    } catch (err) {
      const e = err as { message?: unknown; code?: unknown; kind?: unknown };
      const error: TaskFailure = {
        message: typeof e?.message === 'string' ? e.message : String(err),
        ...(typeof e?.code === 'string' ? { code: e.code } : {}),
        ...(typeof e?.kind === 'string' ? { kind: e.kind as ErrorKind } : {}),
      };
      (port as NonNullable<typeof port>).postMessage({ id: message.id, ok: false, error } satisfies TaskReply);
    }
  }
}
