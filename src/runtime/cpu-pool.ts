/**
 * One small pool of worker threads for CPU-bound work on buffers (issues 14 and 16): the MD5 of
 * every S3 part (Content-MD5) and the sealing of encrypted parts. On the main thread that work
 * delays everything else the event loop does, so a destination that spends CPU (an S3 bucket,
 * an encrypted copy) slowed the others beside it (a NAS over SFTP) and its own network IO.
 *
 * - **Shared and small.** One pool per process (`cpuPool()`), `availableParallelism() - 1`
 *   threads (at least 1, at most `MAX_WORKERS`; `OFFSITE_CPU_THREADS` overrides, 0 = everything
 *   on the main thread), started lazily on the first task that needs one, or earlier by `warm`.
 * - **Never keeps the process alive.** An idle worker is unref'd; a worker is ref'd only while it
 *   runs a task, so that a run waiting on one does not end early. `close()` terminates them.
 * - **Small inputs inline.** Below `inlineBelowBytes` (256 KiB) the task runs on the calling
 *   thread: the round trip would cost more than the work. A task with a large fixed cost per call
 *   (sealing: a cipher and several MACs set up per file) says so with a lower threshold per call.
 * - **Workers never wait for this thread.** A worker is given its next tasks before it answers
 *   the one it runs (up to `MAX_TASKS_PER_WORKER`, and about a megabyte of input ahead), so it
 *   goes on while this thread is busy; the smallest queued task goes first (see `#pump`).
 * - **Shared or copied, never transferred.** The fan-out hands the same pooled chunk to several
 *   destinations and reuses it once they are done, so the caller's buffer is never detached. An
 *   input in shared memory (a `SharedArrayBuffer`: the fan-out's pooled chunks, the parts the
 *   object-store driver holds until `commit`) goes to the worker as it is, without a copy; any other
 *   input is copied when the task is given to a worker, into a shared buffer kept for the next (sized in powers
 *   of two, so that it is not allocated again for each slightly larger input: fresh memory costs a
 *   page fault per 4 KiB, measured at ~5 ms per MiB on a virtual machine, against ~0.2 ms per MiB
 *   for copying into memory already mapped). A worker's output is shared or transferred back,
 *   never copied (a sealed part is transferred, not shared: a buffer that a worker also
 *   refers to stays allocated until that worker's next garbage collection, which is rare in a
 *   thread that allocates little). Tasks must not return views of their input. A task that
 *   writes bytes (sealing) writes them into the caller's output buffer (`RunOptions.output`, shared
 *   memory the caller reuses): a fresh buffer per task cost more than the task itself (page
 *   faults, garbage collections for external memory). A task with an output settles only once its
 *   worker is done with the output, even when aborted, so the caller may reuse it at once.
 * - **Secrets go to a worker once.** `secret(owner, material)` registers key material under a
 *   number; a task naming it gets it delivered to its worker before the first such task, never
 *   per task. Secrets never appear in messages; they are dropped from the workers by `forget`
 *   or when the owner object is garbage collected.
 * - **No task is lost.** A task that throws rejects with `CpuTaskError` (its message says which
 *   task failed and why); a worker that dies (crash, `process.exit`, out of memory) rejects the
 *   task it was running and is replaced; the tasks it had been given but not started are queued
 *   again. `close()` rejects what is still queued or running. Nothing waits forever on a worker
 *   that is gone.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { AbortedError, OffsiteError, type ErrorKind } from '../errors.js';
import { CPU_TASKS, forgetCached, type CpuTaskName, type CpuTaskParams, type CpuTaskResult, type TaskContext, type TaskFailure, type TaskReply, type TaskRequest } from './cpu-tasks.js';

/** Most worker threads a pool starts. */
export const MAX_WORKERS = 4;
/** Inputs shorter than this run on the calling thread. */
export const INLINE_BELOW_BYTES = 256 * 1024;
/** A worker keeps its input buffer up to this size for the next task; a larger one is dropped after use. */
const KEPT_SCRATCH_BYTES = 64 * 1024 * 1024;
/** Free input buffers a worker keeps for the next tasks. */
const KEPT_SCRATCHES = 2;
/** Smallest input buffer a worker gets (inputs below `inlineBelowBytes` do not need one). */
const MIN_SCRATCH_BYTES = 1024 * 1024;
/** Most tasks a worker is given at once: the one it runs and those queued behind it in its thread. */
export const MAX_TASKS_PER_WORKER = 8;
/** Input bytes a worker is given behind the task it runs (a few milliseconds of sealing): enough that it never waits for this thread, few enough that a small task queued here later can still go first. */
const AHEAD_BYTES = 1024 * 1024;
/** A task queued here this long goes next whatever its size (smaller ones otherwise go first). */
export const MAX_QUEUED_MS = 100;

export interface CpuPoolOptions {
  /** Worker threads. @default `OFFSITE_CPU_THREADS`, else availableParallelism() - 1 within 1..MAX_WORKERS */
  readonly workers?: number;
  /** Inputs of fewer bytes run on the calling thread. @default INLINE_BELOW_BYTES */
  readonly inlineBelowBytes?: number;
  /** The worker script (tests give one with extra tasks). @default ./cpu-worker.js */
  readonly workerUrl?: URL;
  /** A task queued this long goes next whatever its size. @default MAX_QUEUED_MS */
  readonly maxQueuedMs?: number;
}

export interface RunOptions {
  readonly signal?: AbortSignal;
  /** The secret the task reads (from `secret()`), delivered to its worker first if it has not got it yet. */
  readonly secret?: number;
  /**
   * Where the task writes its bytes: a view of shared memory (`SharedArrayBuffer`; any buffer
   * when the task runs inline), written in place by the worker. The caller leaves it alone until the promise settles (which, for a task
   * already running, waits for its worker even when `signal` fires).
   */
  readonly output?: Uint8Array;
  /** Inputs of fewer bytes run on the calling thread. @default the pool's `inlineBelowBytes` */
  readonly inlineBelowBytes?: number;
}

/** A task that failed in the pool (it threw, or its worker stopped). */
export class CpuTaskError extends OffsiteError {
  constructor(message: string, kind: ErrorKind = 'fatal', options: { cause?: unknown } = {}) {
    super('E_CPU_TASK', message, { kind, ...options });
  }
}

/** The worker count for this machine: `OFFSITE_CPU_THREADS` when set, else one less than the cores within 1..MAX_WORKERS. */
export function defaultWorkers(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.OFFSITE_CPU_THREADS;
  if (text !== undefined && text.trim() !== '') {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0 || n > 64) throw new OffsiteError('E_USAGE', `OFFSITE_CPU_THREADS must be a whole number from 0 to 64 (0 = no worker threads), got ${JSON.stringify(text)}`, { kind: 'permanent' });
    return n;
  }
  return Math.min(MAX_WORKERS, Math.max(1, availableParallelism() - 1));
}

interface Pending {
  readonly task: string;
  readonly params: unknown;
  readonly input: Uint8Array;
  readonly output: Uint8Array | undefined;
  readonly secret: number | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
  settled: boolean;
  /** Aborted once given to a worker (a task with an output): rejects once the worker answers. */
  abortedRunning: boolean;
  readonly unlisten: () => void;
  /** The number its worker answers under, once given to one. */
  id: number;
  /** The worker's input buffer it was copied into (an input not in shared memory), while given to a worker. */
  scratch: SharedArrayBuffer | undefined;
  /** When it was queued (`performance.now()`). */
  readonly queuedAt: number;
}

interface Slot {
  readonly worker: Worker;
  readonly secrets: Set<number>;
  /** Input buffers for inputs not in shared memory, free for the next task (one per task given at once at most). */
  readonly scratches: SharedArrayBuffer[];
  /** The tasks given to the worker and not answered yet, in the order it runs them (the first one runs). */
  readonly tasks: Pending[];
  /** Input bytes of `tasks`. */
  bytes: number;
  gone: boolean;
  /** Was sent the warm-up message (`warm`). */
  warmed: boolean;
}

export class CpuPool {
  readonly workers: number;
  readonly inlineBelowBytes: number;
  readonly #workerUrl: URL;
  readonly #maxQueuedMs: number;
  readonly #slots: Slot[] = [];
  readonly #queue: Pending[] = [];
  readonly #secrets = new Map<number, Buffer>();
  readonly #ids = new WeakMap<object, number>();
  readonly #inline: TaskContext;
  readonly #finalizer = new FinalizationRegistry<number>((id) => this.#drop(id));
  /** The flags workers start with (see `#start`). */
  #execArgv = process.execArgv.filter((flag) => !flag.startsWith('--input-type'));
  #nextSecret = 1;
  #nextTask = 1;
  #secretsSent = 0;
  #closed = false;

  constructor(options: CpuPoolOptions = {}) {
    const workers = options.workers ?? defaultWorkers();
    if (!Number.isInteger(workers) || workers < 0) throw new RangeError(`workers must be a whole number >= 0, got ${workers}`);
    this.workers = workers;
    this.inlineBelowBytes = options.inlineBelowBytes ?? INLINE_BELOW_BYTES;
    this.#workerUrl = options.workerUrl ?? new URL('./cpu-worker.js', import.meta.url);
    this.#maxQueuedMs = options.maxQueuedMs ?? MAX_QUEUED_MS;
    const secrets = this.#secrets;
    this.#inline = {
      cache: new Map(),
      secret(id: number): Buffer {
        const bytes = secrets.get(id);
        if (bytes === undefined) throw new CpuTaskError(`secret ${id} is not registered with the CPU pool (was its driver closed?)`);
        return bytes;
      },
    };
  }

  /** Worker threads running now (started lazily, replaced when one dies). */
  get started(): number {
    return this.#slots.length;
  }

  /** Times a secret was sent to a worker (once per secret and worker; tests check it is not per task). */
  get secretsSent(): number {
    return this.#secretsSent;
  }

  /**
   * The number under which `owner`'s key material is known to the workers; `material` is read
   * once, on the first call for this owner. Delivered to each worker once, before its first task
   * that names it.
   */
  secret(owner: object, material: () => Uint8Array): number {
    let id = this.#ids.get(owner);
    if (id === undefined) {
      id = this.#nextSecret++;
      this.#secrets.set(id, Buffer.from(material()));
      this.#ids.set(owner, id);
      this.#finalizer.register(owner, id, owner);
    }
    return id;
  }

  /**
   * Starts the pool's workers now, each loading what its tasks need (`CPU_WARM_UP`) and getting
   * secret `secret` when given, instead of on the first task: a process about to seal parts
   * (an encrypted destination being written) has the threads ready while it still lists, plans and
   * connects, when the cores have time to spare. Idle workers keep the process alive no more than
   * lazily started ones do. Does nothing when the pool runs everything inline or is closed; a
   * worker that cannot start is left for the first task to report.
   */
  warm(secret?: number): void {
    if (this.workers === 0 || this.#closed) return;
    try {
      while (this.#slots.length < this.workers) this.#start();
    } catch {
      return;
    }
    for (const slot of this.#slots) {
      if (slot.gone) continue;
      if (!slot.warmed) {
        slot.warmed = true;
        slot.worker.postMessage({ type: 'warm' });
      }
      if (secret !== undefined) this.#sendSecret(slot, secret);
    }
  }

  /** Delivers secret `id` to `slot`'s worker unless it has it; false when the secret is no longer registered. */
  #sendSecret(slot: Slot, id: number): boolean {
    if (slot.secrets.has(id)) return true;
    const bytes = this.#secrets.get(id);
    if (bytes === undefined) return false;
    slot.secrets.add(id);
    this.#secretsSent++;
    slot.worker.postMessage({ type: 'secret', id, bytes });
    return true;
  }

  /** Drops `owner`'s secret from the pool and its workers (a closed encrypted driver). */
  forget(owner: object): void {
    const id = this.#ids.get(owner);
    if (id === undefined) return;
    this.#ids.delete(owner);
    this.#finalizer.unregister(owner);
    this.#drop(id);
  }

  #drop(id: number): void {
    this.#secrets.get(id)?.fill(0);
    this.#secrets.delete(id);
    forgetCached(this.#inline.cache, id);
    for (const slot of this.#slots) {
      if (slot.secrets.delete(id)) slot.worker.postMessage({ type: 'forget', id });
    }
  }

  /**
   * Runs `task` on `input` in a worker thread (inline when `input` is small or the pool has no
   * workers). The caller keeps its buffer: the worker reads it in place when it is shared memory,
   * else a copy made when the task starts; either way it must stay unchanged until the promise
   * settles. Rejects with `CpuTaskError` when the task throws or its
   * worker dies, with `AbortedError` when `signal` fires first (the result is then dropped).
   */
  run<K extends CpuTaskName>(task: K, params: CpuTaskParams<K>, input: Uint8Array, options: RunOptions = {}): Promise<CpuTaskResult<K>> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(new AbortedError(`CPU task ${task}`));
    if (this.#closed) return Promise.reject(new CpuTaskError(`CPU task ${task}: the CPU pool is closed`));
    const { output } = options;
    if (this.workers === 0 || input.length < (options.inlineBelowBytes ?? this.inlineBelowBytes)) return this.#runInline(task, params, input, output);
    if (output !== undefined && !(output.buffer instanceof SharedArrayBuffer)) return Promise.reject(new RangeError(`CPU task ${task}: its output buffer must be shared memory (a SharedArrayBuffer) for a worker thread to write it`));
    return new Promise<CpuTaskResult<K>>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#queue.indexOf(pending);
        if (i >= 0) this.#queue.splice(i, 1);
        // A task given to a worker may still write its output: it settles when its worker answers.
        else if (output !== undefined) return void (pending.abortedRunning = true);
        settle(pending, undefined, new AbortedError(`CPU task ${task}`));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const pending: Pending = {
        task, params, input, output, secret: options.secret, settled: false, abortedRunning: false,
        resolve: resolve as (value: unknown) => void, reject,
        unlisten: () => signal?.removeEventListener('abort', onAbort),
        id: 0, scratch: undefined, queuedAt: performance.now(),
      };
      this.#queue.push(pending);
      this.#pump();
    });
  }

  async #runInline<K extends CpuTaskName>(task: K, params: CpuTaskParams<K>, input: Uint8Array, output: Uint8Array | undefined): Promise<CpuTaskResult<K>> {
    const run = CPU_TASKS[task] as unknown as (p: unknown, i: Uint8Array, c: TaskContext, o?: Uint8Array) => Promise<{ result: unknown }> | { result: unknown };
    if (run === undefined) throw new CpuTaskError(`CPU task ${task} does not exist`);
    try {
      return (await run(params, input, this.#inline, output)).result as CpuTaskResult<K>;
    } catch (err) {
      if (err instanceof OffsiteError) throw err;
      throw new CpuTaskError(`CPU task ${task} failed: ${(err as Error).message}`, 'fatal', { cause: err });
    }
  }

  /**
   * Hands queued tasks to workers: to an idle one first, starting workers up to the pool's size,
   * then to the one with the fewest input bytes given, as long as it has fewer than
   * `AHEAD_BYTES` waiting behind the task it runs. A worker runs the tasks it was given one after
   * the other without waiting for this thread: a worker given its next task only once this
   * thread had read its last answer sat idle while this thread was busy. The smallest queued task
   * goes first (most are one small file each, whose upload waits for it; a large part's seal
   * takes tens of milliseconds), unless one has waited `maxQueuedMs`.
   */
  #pump(): void {
    let canStart = true;
    while (this.#queue.length > 0) {
      let slot: Slot | undefined;
      for (const s of this.#slots) {
        if (s.gone || s.tasks.length >= MAX_TASKS_PER_WORKER || (s.tasks.length > 0 && s.bytes - (s.tasks[0] as Pending).input.length >= AHEAD_BYTES)) continue;
        if (slot === undefined || s.bytes < slot.bytes || (s.bytes === slot.bytes && s.tasks.length < slot.tasks.length)) slot = s;
      }
      if ((slot === undefined || slot.tasks.length > 0) && canStart && this.#slots.length < this.workers) {
        try {
          slot = this.#start();
        } catch (err) {
          canStart = false;
          if (this.#slots.every((s) => s.gone)) {
            // Nothing runs the queued tasks: each one rejects rather than waiting for a thread.
            for (const pending of this.#queue.splice(0)) settle(pending, undefined, err);
            return;
          }
        }
      }
      if (slot === undefined) return;
      this.#dispatch(slot, this.#next());
    }
  }

  /** Takes the queued task to run next (see `#pump`). */
  #next(): Pending {
    const queue = this.#queue;
    let best = 0;
    if (performance.now() - (queue[0] as Pending).queuedAt < this.#maxQueuedMs) {
      for (let i = 1; i < queue.length; i++) if ((queue[i] as Pending).input.length < (queue[best] as Pending).input.length) best = i;
    }
    return queue.splice(best, 1)[0] as Pending;
  }

  /**
   * A new worker thread. Node's flags pass on to it (`--cpu-prof` profiles it too), except one no
   * module may be run with; when Node refuses them for a thread (per-process flags such as
   * `--perf-basic-prof`), it starts without any. Throws `CpuTaskError` when no thread can start.
   */
  #start(): Slot {
    let worker: Worker;
    try {
      worker = new Worker(this.#workerUrl, { execArgv: this.#execArgv });
    } catch (err) {
      const refusedFlags = (err as { code?: unknown }).code === 'ERR_WORKER_INVALID_EXEC_ARGV' && this.#execArgv.length > 0;
      if (!refusedFlags) throw new CpuTaskError(`cannot start a worker thread of the CPU pool: ${(err as Error).message}; OFFSITE_CPU_THREADS=0 runs the tasks on the main thread`, 'fatal', { cause: err });
      this.#execArgv = [];
      return this.#start();
    }
    const slot: Slot = { worker, secrets: new Set(), scratches: [], tasks: [], bytes: 0, gone: false, warmed: false };
    worker.on('message', (reply: TaskReply) => this.#answer(slot, reply));
    worker.on('error', (err: Error) => this.#lost(slot, `it threw ${err.name}: ${err.message}`, err));
    worker.on('messageerror', (err: Error) => this.#lost(slot, `its answer could not be read (${err.message})`, err));
    worker.on('exit', (code: number) => this.#lost(slot, `it exited with code ${code}`, undefined));
    // After the listeners: adding a 'message' listener refs the worker's port again, and an idle
    // worker (one only warmed up, `warm`) must not keep the process alive.
    worker.unref();
    this.#slots.push(slot);
    return slot;
  }

  #dispatch(slot: Slot, pending: Pending): void {
    if (pending.secret !== undefined && !this.#sendSecret(slot, pending.secret)) {
      settle(pending, undefined, new CpuTaskError(`CPU task ${pending.task}: its secret is no longer registered (was its driver closed?)`));
      return;
    }
    const { input } = pending;
    const length = input.length;
    let shared: { buffer: SharedArrayBuffer; offset: number };
    if (input.buffer instanceof SharedArrayBuffer) {
      shared = { buffer: input.buffer, offset: input.byteOffset };
    } else {
      let scratch = slot.scratches.pop();
      if (scratch === undefined || scratch.byteLength < length) scratch = new SharedArrayBuffer(scratchBytesFor(length));
      new Uint8Array(scratch, 0, length).set(input);
      pending.scratch = scratch;
      shared = { buffer: scratch, offset: 0 };
    }
    if (slot.tasks.length === 0) slot.worker.ref();
    pending.id = this.#nextTask++;
    slot.tasks.push(pending);
    slot.bytes += length;
    const { output } = pending;
    const request: TaskRequest = {
      type: 'task', id: pending.id, task: pending.task, params: pending.params, input: shared.buffer, offset: shared.offset, length,
      ...(output !== undefined ? { output: output.buffer as SharedArrayBuffer, outputOffset: output.byteOffset, outputLength: output.byteLength } : {}),
    };
    slot.worker.postMessage(request);
  }

  #answer(slot: Slot, reply: TaskReply): void {
    // A worker answers its tasks in the order it was given them.
    const i = slot.tasks.findIndex((p) => p.id === reply.id);
    if (i < 0) return;
    const pending = slot.tasks.splice(i, 1)[0] as Pending;
    this.#finish(slot, pending);
    if (pending.abortedRunning) settle(pending, undefined, new AbortedError(`CPU task ${pending.task}`));
    else if (reply.ok) settle(pending, reply.result, undefined);
    else settle(pending, undefined, failureOf(pending.task, reply.error));
    this.#pump();
  }

  /**
   * The worker is gone or unusable: reject the task it ran, terminate it, and queue the tasks it
   * had not started again (at the front, in their order) for the other workers or a new one.
   */
  #lost(slot: Slot, why: string, cause: Error | undefined): void {
    if (slot.gone) return;
    slot.gone = true;
    const i = this.#slots.indexOf(slot);
    if (i >= 0) this.#slots.splice(i, 1);
    const [running, ...waiting] = slot.tasks.splice(0);
    slot.bytes = 0;
    if (running !== undefined) {
      settle(running, undefined, new CpuTaskError(`CPU task ${running.task} was not done: the worker thread running it stopped (${why}); the run can be started again`, 'fatal', { cause }));
    }
    const again: Pending[] = [];
    for (const pending of waiting) {
      pending.scratch = undefined;
      // Never started, so its output is untouched: one aborted meanwhile rejects now.
      if (pending.abortedRunning) settle(pending, undefined, new AbortedError(`CPU task ${pending.task}`));
      else if (!pending.settled) again.push(pending);
    }
    this.#queue.unshift(...again);
    void slot.worker.terminate().catch(() => undefined);
    if (!this.#closed) this.#pump();
  }

  /** `pending` was answered: its input buffer goes back to the worker's, and an idle worker no longer keeps the process alive. */
  #finish(slot: Slot, pending: Pending): void {
    slot.bytes -= pending.input.length;
    const { scratch } = pending;
    pending.scratch = undefined;
    if (scratch !== undefined && scratch.byteLength <= KEPT_SCRATCH_BYTES && slot.scratches.length < KEPT_SCRATCHES) slot.scratches.push(scratch);
    if (slot.tasks.length === 0 && !slot.gone) slot.worker.unref();
  }

  /** Terminates every worker; queued and running tasks reject. The pool cannot be used afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    const closed = new CpuTaskError('CPU task not done: the CPU pool was closed');
    for (const pending of this.#queue.splice(0)) settle(pending, undefined, closed);
    const slots = this.#slots.splice(0);
    const running: Pending[] = [];
    for (const slot of slots) {
      slot.gone = true;
      running.push(...slot.tasks.splice(0));
    }
    // Once their workers have stopped: a running task may still write its output until then.
    await Promise.all(slots.map((s) => s.worker.terminate().catch(() => undefined)));
    for (const pending of running) settle(pending, undefined, closed);
    for (const bytes of this.#secrets.values()) bytes.fill(0);
    this.#secrets.clear();
  }
}

/** The size of a worker's input buffer for an input of `length` bytes: the next power of two, at least MIN_SCRATCH_BYTES. */
function scratchBytesFor(length: number): number {
  let bytes = MIN_SCRATCH_BYTES;
  while (bytes < length) bytes *= 2;
  return bytes;
}

function settle(pending: Pending, value: unknown, err: unknown): void {
  if (pending.settled) return;
  pending.settled = true;
  pending.unlisten();
  if (err === undefined) pending.resolve(value);
  else pending.reject(err);
}

/** The error a failed task rejects with: as the inline run would throw it (an `OffsiteError` keeps its code and kind). */
function failureOf(task: string, error: TaskFailure): OffsiteError {
  if (error.code !== undefined) return new OffsiteError(error.code, error.message, { kind: error.kind ?? 'fatal' });
  return new CpuTaskError(`CPU task ${task} failed: ${error.message}`, error.kind ?? 'fatal');
}

let shared: CpuPool | undefined;

/** The process's pool (created on first use; its workers start on the first task that needs one). */
export function cpuPool(): CpuPool {
  shared ??= new CpuPool();
  return shared;
}

/** Closes the process's pool (tests; a process may also just exit); the next `cpuPool()` makes a new one. */
export async function closeCpuPool(): Promise<void> {
  const pool = shared;
  shared = undefined;
  await pool?.close();
}
