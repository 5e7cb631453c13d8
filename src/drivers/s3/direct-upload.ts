/**
 * PutObject and UploadPart of the `s3` flavour sent without the AWS SDK's middleware stack: a
 * request signed here with SigV4 and handed to the client's own `NodeHttpHandler` (same agents,
 * same connect/request/socket timeouts, same abort handling).
 *
 * Why: an upload is most of the requests of a copy (one PutObject per small file, one UploadPart
 * per part), and the SDK spends about 1.5 ms of CPU on each outside of the network and the
 * signature (schema serialization, endpoint rules evaluated per request, a dozen middlewares,
 * the response's deserialization): measured against Ceph RGW, about a fifth of the client's CPU
 * for a 256 MiB backup of 672 files (issue 13: the client's CPU must not exceed rclone's).
 *
 * The requests are those the SDK sends, header for header: `Content-MD5` (the server checks the
 * bytes; S3 requires it with Object Lock), `x-amz-content-sha256: UNSIGNED-PAYLOAD` (as
 * ./client.ts `signUploadsUnsigned` makes the SDK sign uploads), the user metadata, storage
 * class, encryption and Object Lock headers, `Content-Type: application/octet-stream`. Errors are
 * shaped like the SDK's (`name`/`Code` = the S3 error code, `$metadata.httpStatusCode`; socket
 * errors, timeouts and aborts are the handler's own), so ./errors.ts classifies them alike.
 *
 * Used only where the URL and the signature cannot differ from the SDK's: a configured endpoint
 * with path-style addressing (every self-hosted S3, R2, the vendor table's default), the
 * flexible checksums off (`WHEN_REQUIRED`: the SDK adds none to these requests then), and the
 * SDK's own endpoint rules giving `ENDPOINT/BUCKET` signed with plain SigV4 for service `s3`
 * (`directUploadTarget`). Anything else (AWS itself, virtual-hosted buckets) goes through the SDK.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import { createHash, createHmac } from 'node:crypto';
import type { Readable } from 'node:stream';

/** Where direct uploads go and how they are signed. */
export interface DirectTarget {
  readonly protocol: 'http:' | 'https:';
  readonly hostname: string;
  readonly port: number | undefined;
  /** The `Host` header: host name and port when the URL names one. */
  readonly host: string;
  /** `/bucket` (the URL path up to the key, encoded). */
  readonly bucketPath: string;
  readonly region: string;
}

/** What `directUploadTarget` needs of the store's options. */
export interface DirectTargetOptions {
  readonly endpoint?: string | undefined;
  readonly bucket: string;
  readonly region: string;
  readonly forcePathStyle: boolean;
  readonly requestChecksumCalculation: string;
}

/**
 * The target of direct uploads for these options, or `undefined` when uploads must go through
 * the SDK (see the file comment). Asks the SDK's own endpoint rules, so that a bucket name or
 * an endpoint they treat specially falls back on the SDK.
 */
export function directUploadTarget(client: S3Client, options: DirectTargetOptions): DirectTarget | undefined {
  if (options.endpoint === undefined || !options.forcePathStyle || options.requestChecksumCalculation !== 'WHEN_REQUIRED') return undefined;
  try {
    const url = new URL(options.endpoint);
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== '' || url.search !== '' || (url.pathname !== '/' && url.pathname !== '')) return undefined;
    const bucketPath = `/${encodeS3(options.bucket)}`;
    const resolved = client.config.endpointProvider({
      Bucket: options.bucket, Region: options.region, Endpoint: options.endpoint, ForcePathStyle: true,
      UseFIPS: false, UseDualStack: false, Accelerate: false, UseArnRegion: false, DisableMultiRegionAccessPoints: false,
    }) as { url: URL; properties?: { authSchemes?: ReadonlyArray<{ name?: string; signingName?: string; signingRegion?: string }> }; headers?: Record<string, unknown> };
    const scheme = resolved.properties?.authSchemes?.[0];
    const expected = `${url.protocol}//${url.host}${bucketPath}`;
    if (resolved.url.href.replace(/\/$/, '') !== expected || scheme?.name !== 'sigv4' || scheme.signingName !== 's3' || Object.keys(resolved.headers ?? {}).length > 0) return undefined;
    return {
      protocol: url.protocol, hostname: url.hostname, port: url.port === '' ? undefined : Number(url.port), host: url.host, bucketPath,
      region: scheme.signingRegion ?? options.region,
    };
  } catch {
    return undefined;
  }
}

/** What one direct upload sends besides its body. */
export interface DirectUpload {
  readonly key: string;
  readonly body: Uint8Array;
  readonly md5Base64: string;
  /** `partNumber` and `uploadId` for UploadPart. */
  readonly query?: Readonly<Record<string, string>>;
  /** Further headers, lower-case names (metadata, storage class, encryption, Object Lock). */
  readonly headers?: Readonly<Record<string, string>>;
}

type Credentials = { readonly accessKeyId: string; readonly secretAccessKey: string; readonly sessionToken?: string };

/** Signs and sends direct uploads for one client (see the file comment). */
export class DirectUploader {
  /** The last SigV4 signing key, by `date/secret`: derived once a day, not per request. */
  #signingKey: { readonly id: string; readonly key: Buffer } | undefined;

  constructor(private readonly client: S3Client, private readonly handler: NodeHttpHandler, readonly target: DirectTarget) {}

  /** Sends a PUT of `upload`; resolves with the ETag header as the server sent it ('' when none). */
  async put(upload: DirectUpload, signal: AbortSignal | undefined): Promise<string> {
    const credentials = await (this.client.config.credentials as () => Promise<Credentials>)();
    const path = `${this.target.bucketPath}/${encodeS3(upload.key).replace(/%2F/g, '/')}`;
    const query = upload.query ?? {};
    const now = new Date(Date.now() + (this.client.config.systemClockOffset ?? 0));
    const amzDate = now.toISOString().replace(/[-:]|\.\d{3}/g, '');
    const headers: Record<string, string> = {
      host: this.target.host,
      'content-length': String(upload.body.byteLength),
      'content-md5': upload.md5Base64,
      'content-type': 'application/octet-stream',
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
      'x-amz-date': amzDate,
      ...(credentials.sessionToken !== undefined ? { 'x-amz-security-token': credentials.sessionToken } : {}),
      ...upload.headers,
    };
    headers['authorization'] = this.#authorization('PUT', path, query, headers, amzDate, credentials);
    const request = {
      protocol: this.target.protocol, hostname: this.target.hostname, port: this.target.port, method: 'PUT', path, query, headers,
      body: Buffer.from(upload.body.buffer, upload.body.byteOffset, upload.body.byteLength),
    };
    const { response } = await this.handler.handle(request as unknown as Parameters<NodeHttpHandler['handle']>[0], signal === undefined ? {} : { abortSignal: signal as never });
    const body = response.body as Readable;
    if (response.statusCode >= 200 && response.statusCode < 300) {
      body.resume();
      return response.headers['etag'] ?? '';
    }
    throw serviceError(response.statusCode, await collect(body, signal));
  }

  /** The SigV4 `Authorization` header of a request whose headers are all signed (lower-case names). */
  #authorization(method: string, path: string, query: Readonly<Record<string, string>>, headers: Readonly<Record<string, string>>, amzDate: string, credentials: Credentials): string {
    const date = amzDate.slice(0, 8);
    const scope = `${date}/${this.target.region}/s3/aws4_request`;
    const names = Object.keys(headers).sort();
    const canonical = [
      method,
      path,
      Object.keys(query).sort().map((name) => `${encodeS3(name)}=${encodeS3(query[name] as string)}`).join('&'),
      names.map((name) => `${name}:${(headers[name] as string).trim().replace(/\s+/g, ' ')}\n`).join(''),
      names.join(';'),
      headers['x-amz-content-sha256'] as string,
    ].join('\n');
    const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${createHash('sha256').update(canonical).digest('hex')}`;
    const signature = createHmac('sha256', this.#keyFor(date, credentials.secretAccessKey)).update(toSign).digest('hex');
    return `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  }

  #keyFor(date: string, secret: string): Buffer {
    const id = `${date}/${secret}`;
    if (this.#signingKey?.id !== id) {
      let key = createHmac('sha256', `AWS4${secret}`).update(date).digest();
      for (const part of [this.target.region, 's3', 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
      this.#signingKey = { id, key };
    }
    return this.#signingKey.key;
  }
}

/** RFC 3986 encoding as SigV4 and S3 want it: everything but `A-Za-z0-9-._~` (so also `!'()*`). */
export function encodeS3(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The body of an error answer (a few hundred bytes of XML; at most 64 KiB kept). */
async function collect(body: Readable, signal: AbortSignal | undefined): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of body) {
    if (signal?.aborted) break;
    if (length < 65_536) chunks.push(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** An error answer shaped as the SDK shapes it: `name` and `Code` the S3 code (or `Unknown`), the status in `$metadata`. */
function serviceError(status: number, xml: string): Error {
  const field = (name: string): string | undefined => {
    const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
    return match?.[1]?.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, '\'').replace(/&amp;/g, '&');
  };
  const code = field('Code');
  const message = field('Message') ?? code ?? `HTTP ${status}`;
  return Object.assign(new Error(message), {
    name: code ?? 'UnknownError',
    ...(code !== undefined ? { Code: code } : {}),
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
  });
}
