/**
 * CopyObject as one signed HTTP request, without the SDK's middleware (./client.ts `copy`).
 *
 * Why: a reuse night (issue 12) makes one CopyObject per kept file, hundreds or thousands in a
 * row, and through the SDK each costs ~2 ms of client CPU (serializing, endpoint and signing
 * middleware, XML parsing of the answer, the check for a 200 answer with an error body), about
 * four times what the request itself needs. On a small machine that CPU is taken from the server
 * and from hashing the source. This request is signed with the SDK's own credentials provider
 * and clock offset (AWS Signature V4, `UNSIGNED-PAYLOAD`: the request has no body) and sent on
 * the client's own keep-alive agents, so credentials, sockets and timeouts stay one thing.
 *
 * Failures are shaped like the SDK's (`name` and `Code` the S3 error code, `$metadata.httpStatusCode`),
 * so ./errors.ts classifies them as any other: a 200 answer whose body is an `<Error>` is an error
 * with that code, as the SDK's S3 middleware makes it; a 412 is `PreconditionFailed`.
 */
import { createHash, createHmac } from 'node:crypto';
import { request as httpRequest, type Agent as HttpAgent } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';

/** Credentials as the SDK's provider resolves them. */
export interface SigningCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export interface CopyRequestSetup {
  /** `http(s)://host[:port]`, path-style addressing (`/BUCKET/KEY`). */
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: () => Promise<SigningCredentials>;
  /** The SDK's correction of this machine's clock (ms), read at each request. */
  readonly clockOffsetMs: () => number;
  readonly httpAgent: HttpAgent;
  readonly httpsAgent: HttpsAgent;
  readonly requestTimeoutMs: number;
}

/** What a CopyObject carries besides the keys: `x-amz-*` headers, names in lower case. */
export type CopyHeaders = Record<string, string>;

const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');
const hmac = (key: string | Buffer, text: string): Buffer => createHmac('sha256', key).update(text).digest();

/** RFC 3986 encoding of each path segment, as Signature V4 wants it for S3 (slashes kept). */
export function encodePath(path: string): string {
  return path.split('/').map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/');
}

/** The text of `<name>` in an XML answer, entities decoded (`&quot;` around an ETag). */
function xmlText(body: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(body);
  return match?.[1]?.replace(/&quot;|&#34;/g, '"').replace(/&apos;|&#39;/g, '\'').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

function failure(status: number | undefined, code: string | undefined, message: string): Error {
  return Object.assign(new Error(message), { name: code ?? (status !== undefined ? String(status) : 'Error'), ...(code !== undefined ? { Code: code } : {}), $metadata: { httpStatusCode: status } });
}

/** Signing keys by day, region and secret: one HMAC chain a day instead of one per request. */
const keys = new Map<string, Buffer>();

function signingKey(secret: string, day: string, region: string): Buffer {
  const cacheKey = `${day}\n${region}\n${secret}`;
  let key = keys.get(cacheKey);
  if (key === undefined) {
    if (keys.size > 16) keys.clear();
    key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), 's3'), 'aws4_request');
    keys.set(cacheKey, key);
  }
  return key;
}

/**
 * CopyObject of `/bucket/fromKey` onto `toKey` with `headers` (metadata directive, metadata,
 * storage class, encryption, copy conditions). Resolves with the ETag of the answer's
 * `CopyObjectResult` (quotes and all, as the SDK gives it), `undefined` when it has none.
 */
export async function copyRequest(setup: CopyRequestSetup, bucket: string, fromKey: string, toKey: string, headers: CopyHeaders, signal?: AbortSignal): Promise<string | undefined> {
  const url = new URL(setup.endpoint);
  const path = `/${encodePath(bucket)}/${encodePath(toKey)}`;
  const credentials = await setup.credentials();
  const amzDate = new Date(Date.now() + setup.clockOffsetMs()).toISOString().replace(/[:-]|\.\d{3}/g, '');
  const day = amzDate.slice(0, 8);
  const all: Record<string, string> = {
    ...headers,
    host: url.host,
    'x-amz-copy-source': `${bucket}/${encodeURIComponent(fromKey).replace(/%2F/g, '/')}`,
    'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
    'x-amz-date': amzDate,
    ...(credentials.sessionToken !== undefined ? { 'x-amz-security-token': credentials.sessionToken } : {}),
  };
  const names = Object.keys(all).sort();
  const canonical = ['PUT', path, '', ...names.map((n) => `${n}:${(all[n] as string).trim()}`), '', names.join(';'), 'UNSIGNED-PAYLOAD'].join('\n');
  const scope = `${day}/${setup.region}/s3/aws4_request`;
  const signature = createHmac('sha256', signingKey(credentials.secretAccessKey, day, setup.region))
    .update(['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonical)].join('\n')).digest('hex');
  all['authorization'] = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  all['content-length'] = '0';
  const https = url.protocol === 'https:';
  const request = https ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request({
      protocol: url.protocol, hostname: url.hostname, port: url.port, method: 'PUT', path, headers: all,
      agent: https ? setup.httpsAgent : setup.httpAgent, ...(signal !== undefined ? { signal } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        // A 200 answer may still be an error (S3 sends the status before the copy is done).
        if (status === 200 && !body.includes('<Error>')) return resolve(xmlText(body, 'ETag'));
        const code = xmlText(body, 'Code') ?? (status === 412 ? 'PreconditionFailed' : status === 404 ? 'NotFound' : undefined);
        reject(failure(status, code, xmlText(body, 'Message') ?? `CopyObject answered ${status}${code !== undefined ? ` ${code}` : ''}`));
      });
    });
    req.setTimeout(setup.requestTimeoutMs, () => req.destroy(Object.assign(new Error(`CopyObject got no answer within ${setup.requestTimeoutMs} ms`), { name: 'TimeoutError' })));
    req.on('error', (err: Error & { code?: string }) => reject(err.name === 'AbortError' || err.code === 'ABORT_ERR' ? Object.assign(err, { name: 'AbortError' }) : err));
    req.end();
  });
}
