/** The script of the CPU pool's worker threads (./cpu-pool.ts): serves the tasks of ./cpu-tasks.ts. */
import { CPU_TASKS, serveTasks } from './cpu-tasks.js';

serveTasks(CPU_TASKS);
