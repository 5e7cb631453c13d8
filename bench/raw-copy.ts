/**
 * A minimal S3 CopyObject client for benchmarks (bench/reuse.ts `--floor`): one signed HTTP request
 * per copy (AWS Signature V4 by hand, `UNSIGNED-PAYLOAD`, keep-alive sockets), no SDK. It measures
 * what server-side copies cost the server and the link alone, without the per-request CPU of a full
 * client, so that a reuse night's time can be compared with the floor that the server sets.
 * Bench-only: path-style endpoints, plain HTTP, static credentials.
 */
import { createHash, createHmac } from 'node:crypto';
import { Agent, request } from 'node:http';

export interface RawCopyClient {
  /** CopyObject `from` onto `to` in `bucket` (metadata copied); rejects on any answer but a 200 without an error body. */
  copy(bucket: string, from: string, to: string): Promise<void>;
  close(): void;
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
const hmac = (key: string | Buffer, text: string): Buffer => createHmac('sha256', key).update(text).digest();
const encodeKey = (key: string): string => key.split('/').map(encodeURIComponent).join('/');

export function rawCopyClient(options: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string; sockets: number }): RawCopyClient {
  const url = new URL(options.endpoint);
  if (url.protocol !== 'http:') throw new Error(`raw copy client: ${options.endpoint}: only plain http endpoints`);
  const agent = new Agent({ keepAlive: true, maxSockets: options.sockets });
  const sign = (method: string, path: string, headers: Record<string, string>): void => {
    const amzDate = new Date().toISOString().replace(/[:-]|\.\d{3}/g, '');
    const day = amzDate.slice(0, 8);
    Object.assign(headers, { host: url.host, 'x-amz-date': amzDate, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' });
    const names = Object.keys(headers).sort();
    const canonical = [method, path, '', ...names.map((n) => `${n}:${(headers[n] as string).trim()}`), '', names.join(';'), 'UNSIGNED-PAYLOAD'].join('\n');
    const scope = `${day}/${options.region}/s3/aws4_request`;
    const key = hmac(hmac(hmac(hmac(`AWS4${options.secretAccessKey}`, day), options.region), 's3'), 'aws4_request');
    const signature = hmac(key, ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n')).toString('hex');
    headers['authorization'] = `AWS4-HMAC-SHA256 Credential=${options.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  };
  return {
    copy: (bucket, from, to) => {
      const path = `/${bucket}/${encodeKey(to)}`;
      const headers: Record<string, string> = { 'x-amz-copy-source': `/${bucket}/${encodeKey(from)}`, 'x-amz-metadata-directive': 'COPY' };
      sign('PUT', path, headers);
      return new Promise((resolve, reject) => {
        const req = request({ host: url.hostname, port: url.port, method: 'PUT', path, headers, agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (text: string) => { body += text; });
          res.on('end', () => (res.statusCode === 200 && !body.includes('<Error>') ? resolve() : reject(new Error(`CopyObject ${from}: ${res.statusCode}: ${body.slice(0, 300)}`))));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
    },
    close: () => agent.destroy(),
  };
}
