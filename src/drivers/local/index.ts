/** The `local` driver's factory: a folder on a local disk or a mounted NAS share. */
import type { DriverFactory } from '../types.js';
import { LocalDriver } from './driver.js';
import { parseLocalOptions } from './options.js';

export { LocalDriver } from './driver.js';
export { parseLocalOptions, type LocalOptions } from './options.js';

/** Validates the section and builds the driver. No IO: the root is created on the first write. */
export const createLocalDriver: DriverFactory = async (name, section) => new LocalDriver(name, parseLocalOptions(name, section));
