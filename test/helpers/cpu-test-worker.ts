/**
 * A CPU pool worker (src/runtime/cpu-pool.ts) with the real tasks plus ones that misbehave, for
 * test/runtime/cpu-pool.test.ts: a task that exits the thread, one that throws, one whose thread
 * dies of an uncaught error after answering nothing, one that blocks for a while, and one that
 * fills its output after a while.
 */
import { CPU_TASKS, serveTasks } from '../../src/runtime/cpu-tasks.js';

serveTasks({
  ...CPU_TASKS,
  exit(params: { code: number }): never {
    process.exit(params.code);
  },
  throw(params: { message: string }): never {
    throw new Error(params.message);
  },
  uncaught(params: { message: string }): Promise<never> {
    setImmediate(() => { throw new Error(params.message); });
    return new Promise<never>(() => undefined);
  },
  block(params: { ms: number }, input: Uint8Array): { result: number } {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, params.ms);
    return { result: input.length };
  },
  fillLate(params: { ms: number; value: number }, _input: Uint8Array, _context: unknown, output?: Uint8Array): { result: number } {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, params.ms);
    output?.fill(params.value);
    return { result: output?.length ?? 0 };
  },
});
