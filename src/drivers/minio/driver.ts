/**
 * The `minio` driver is the shared object-store driver (../s3/driver.ts: resumable multipart
 * writes, stored hash, temp key + server-side copy at commit) over `MinioStore` (./client.ts).
 * This file exists so that every driver folder has the same files; the behaviour is documented
 * there.
 */
export { ObjectDriver as MinioDriver } from '../s3/driver.js';
