/** The `sftp` driver's factory: a folder on an SSH server (NAS or remote host). */
import type { DriverFactory } from '../types.js';
import { SftpDriver } from './driver.js';
import { parseSftpOptions } from './options.js';

export { SftpDriver, type SftpTransferCounters } from './driver.js';
export { parseSftpOptions, type SftpOptions } from './options.js';
export type { SftpHooks } from './connection.js';

/** Validates the section and builds the driver. No IO: the first call that needs it connects. */
export const createSftpDriver: DriverFactory = async (name, section) => new SftpDriver(name, parseSftpOptions(name, section));
