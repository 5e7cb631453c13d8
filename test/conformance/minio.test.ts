/**
 * The conformance suite for the `minio` driver (the `minio` client, configured with
 * milvus-backup's keys) against the same Ceph RADOS Gateway as the s3 tests: every test gets a
 * bucket of its own and a root path inside it.
 */
import { createMinioDriver } from '../../src/drivers/minio/index.js';
import { freshBucket, removeFreshBuckets, requireServer, skipOptions } from '../s3/server.js';
import { minioSection } from '../s3/minio-section.js';
import { runConformance } from './suite.js';

runConformance('minio', () => {
  const server = requireServer(); // no server: every test fails with the reason
  return {
    create: async () => createMinioDriver('source', minioSection(server, { bucketName: await freshBucket(server, 'conf-minio'), rootPath: 'backup', multipartCopyThresholdBytes: 1024 * 1024 })),
    cleanup: removeFreshBuckets,
  };
}, skipOptions());
