/**
 * A minimal S3 CopyObject client for benchmarks (bench/reuse.ts `--floor`): one signed HTTP request
 * per copy (signed by the SDK's SigV4 signer alone, `UNSIGNED-PAYLOAD`, keep-alive sockets), no SDK client. It measures
 * what server-side copies cost the server and the link alone, without the per-request CPU of a full
 * client, so that a reuse night's time can be compared with the floor that the server sets.
 * Bench-only: path-style endpoints, plain HTTP, static credentials.
 */
import { SignatureV4 } from '@smithy/signature-v4';
import type { SourceData } from '@smithy/types';
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { Agent, request } from 'node:http';

export interface RawCopyClient {
  /** CopyObject `from` onto `to` in `bucket` (metadata copied); rejects on any answer but a 200 without an error body. */
  copy(bucket: string, from: string, to: string): Promise<void>;
  close(): void;
}

/** SHA-256 (or its HMAC, given a secret) in the shape the signer wants. */
class Sha256 {
  readonly #hash: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData): void {
    this.#hash.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.#hash.digest());
  }
}
const bytes = (data: SourceData): string | Buffer =>
  typeof data === 'string' ? data : ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
const encodeKey = (key: string): string => key.split('/').map(encodeURIComponent).join('/');

export function rawCopyClient(options: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string; sockets: number }): RawCopyClient {
  const url = new URL(options.endpoint);
  if (url.protocol !== 'http:') throw new Error(`raw copy client: ${options.endpoint}: only plain http endpoints`);
  const agent = new Agent({ keepAlive: true, maxSockets: options.sockets });
  const signer = new SignatureV4({
    credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey }, region: options.region, service: 's3', sha256: Sha256,
    uriEscapePath: false, applyChecksum: false,
  });
  return {
    copy: (bucket, from, to) => {
      const path = `/${bucket}/${encodeKey(to)}`;
      const unsigned = {
        method: 'PUT', protocol: 'http:', hostname: url.hostname, path, query: {},
        headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'x-amz-copy-source': `/${bucket}/${encodeKey(from)}`, 'x-amz-metadata-directive': 'COPY' },
      };
      return signer.sign(unsigned as never).then((signed) => new Promise((resolve, reject) => {
        const { headers } = signed as unknown as { headers: Record<string, string> };
        const req = request({ host: url.hostname, port: url.port, method: 'PUT', path, headers, agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (text: string) => { body += text; });
          res.on('end', () => (res.statusCode === 200 && !body.includes('<Error>') ? resolve() : reject(new Error(`CopyObject ${from}: ${res.statusCode}: ${body.slice(0, 300)}`))));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      }));
    },
    close: () => agent.destroy(),
  };
}
