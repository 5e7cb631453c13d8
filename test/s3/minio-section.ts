/** A `type: minio` section (milvus-backup's keys) for the test RGW. */
import type { S3TestServer } from '../servers/rgw.js';

export function minioSection(server: S3TestServer, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const url = new URL(server.endpoint);
  const section: Record<string, unknown> = {
    type: 'minio',
    address: url.hostname,
    port: Number(url.port),
    useSSL: url.protocol === 'https:',
    accessKeyID: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    requestTimeoutMs: 30_000,
    ...overrides,
  };
  for (const [key, value] of Object.entries(section)) if (value === undefined) delete section[key];
  return section;
}
