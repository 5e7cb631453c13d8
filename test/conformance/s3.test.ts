/**
 * The conformance suite for the `s3` driver against a real Ceph RADOS Gateway (started by
 * scripts/run-tests.mjs from test/servers/rgw.ts): every test gets a bucket of its own, half of
 * them with a prefix (a folder inside the bucket), so both layouts are covered.
 */
import { createS3Driver } from '../../src/drivers/s3/index.js';
import { freshBucket, removeFreshBuckets, requireServer, s3Section, skipOptions } from '../s3/server.js';
import { runConformance } from './suite.js';

runConformance('s3 (bucket root)', () => {
  const server = requireServer(); // no server: every test fails with the reason
  return {
    create: async () => createS3Driver('cloud', s3Section(server, await freshBucket(server, 'conf-s3'))),
    cleanup: removeFreshBuckets,
  };
}, skipOptions());

runConformance('s3 (prefix inside the bucket, pages of 2 keys, multipart copies above 1 MiB)', () => {
  const server = requireServer();
  return {
    create: async () => createS3Driver('cloud', s3Section(server, await freshBucket(server, 'conf-s3p'), { prefix: '/prod/milvus/', listPageSize: 2, multipartCopyThresholdBytes: 1024 * 1024 })),
    cleanup: removeFreshBuckets,
  };
}, skipOptions());
