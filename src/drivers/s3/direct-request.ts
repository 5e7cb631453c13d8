/**
 * The `s3` flavour's most frequent requests sent without the AWS SDK's middleware stack:
 * PutObject and UploadPart (one per small file, one per part) and CopyObject (one per file a
 * reuse night keeps, issue 12). Each is signed by the SDK's own SigV4 signer
 * (`@smithy/signature-v4`, with the client's credentials provider, hash and clock offset) and
 * handed to the client's own `NodeHttpHandler` (same agents, same connect/request/socket
 * timeouts, same abort handling).
 *
 * Why: through the SDK each of these requests costs about 1.5-2 ms of client CPU outside of the
 * network and the signature (schema serialization, endpoint rules evaluated per request, a dozen
 * middlewares, the answer's deserialization). Measured against Ceph RGW, that was about a fifth
 * of the client's CPU for a 256 MiB backup of 672 files (issue 13: the client's CPU must not
 * exceed rclone's), and most of a reuse night's client CPU.
 *
 * The requests are those the SDK sends, header for header: uploads carry `Content-MD5` (the
 * server checks the bytes; S3 requires it with Object Lock) and `x-amz-content-sha256:
 * UNSIGNED-PAYLOAD` (as ./client.ts `signUploadsUnsigned` makes the SDK sign them), or, where the
 * server checks signed payloads (../object-store/quirks.ts `signedPayloads`), no Content-MD5 and
 * the body's SHA-256 as `x-amz-content-sha256` (as the SDK signs a body without Content-MD5); a
 * copy has no body and is signed alike; user metadata, storage class, encryption and Object Lock headers as
 * the SDK makes them of the command's fields. Errors are shaped like the SDK's (`name`/`Code` =
 * the S3 error code, `$metadata.httpStatusCode`; socket errors, timeouts and aborts are the
 * handler's own), so ./errors.ts classifies them alike. A CopyObject answered 200 whose body is
 * an `<Error>` is an error with that code, as the SDK's S3 middleware makes it (S3 sends the
 * status before the copy is done).
 *
 * Used only where the URL and the signature cannot differ from the SDK's: a configured endpoint
 * with path-style addressing (every self-hosted S3, R2, the vendor table's default), the
 * flexible checksums off (`WHEN_REQUIRED`: the SDK adds none to these requests then), and the
 * SDK's own endpoint rules giving `ENDPOINT/BUCKET` signed with plain SigV4 for service `s3`
 * (`directTarget`). Anything else (AWS itself, virtual-hosted buckets) goes through the SDK, as
 * does a request whose metadata is not printable ASCII (the SDK's header handling decides then).
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import type * as Signer from '@smithy/signature-v4';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { encodeKeyPath, encodeRfc3986, type PayloadDigest, type Retention } from '../object-store/store.js';

// Loaded with require() as ./client.ts loads the SDK (no export scan of CommonJS sources at start).
const { SignatureV4 } = createRequire(import.meta.url)('@smithy/signature-v4') as typeof Signer;

/** Where direct requests go and how they are signed. */
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

/** What `directTarget` needs of the store's options. */
export interface DirectTargetOptions {
  readonly endpoint?: string | undefined;
  readonly bucket: string;
  readonly region: string;
  readonly forcePathStyle: boolean;
  readonly requestChecksumCalculation: string;
}

/**
 * The target of direct requests for these options, or `undefined` when they must go through the
 * SDK (see the file comment). Asks the SDK's own endpoint rules, so that a bucket name or an
 * endpoint they treat specially falls back on the SDK.
 */
export function directTarget(client: S3Client, options: DirectTargetOptions): DirectTarget | undefined {
  if (options.endpoint === undefined || !options.forcePathStyle || options.requestChecksumCalculation !== 'WHEN_REQUIRED') return undefined;
  try {
    const url = new URL(options.endpoint);
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== '' || url.search !== '' || (url.pathname !== '/' && url.pathname !== '')) return undefined;
    const bucketPath = `/${encodeRfc3986(options.bucket)}`;
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

/** What a new object carries besides its bytes, as the store's options and the call give it. */
export interface ObjectFields {
  readonly metadata: Readonly<Record<string, string>>;
  readonly storageClass?: string | undefined;
  readonly sse?: string | undefined;
  readonly sseKmsKeyId?: string | undefined;
  readonly retention?: Retention | undefined;
}

/** Printable ASCII: a metadata value that goes into a header as is. */
const HEADER_SAFE = /^[\x20-\x7e]*$/;

/**
 * The headers the SDK makes of PutObject's (or CopyObject's) `Metadata`, `StorageClass`,
 * encryption and Object Lock fields; `undefined` when a metadata value is not printable ASCII
 * (the request then goes through the SDK).
 */
export function objectHeaders(fields: ObjectFields): Record<string, string> | undefined {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(fields.metadata)) {
    if (!HEADER_SAFE.test(value)) return undefined;
    headers[`x-amz-meta-${name.toLowerCase()}`] = value;
  }
  if (fields.storageClass !== undefined) headers['x-amz-storage-class'] = fields.storageClass;
  if (fields.sse !== undefined) headers['x-amz-server-side-encryption'] = fields.sse;
  if (fields.sseKmsKeyId !== undefined) headers['x-amz-server-side-encryption-aws-kms-key-id'] = fields.sseKmsKeyId;
  if (fields.retention !== undefined) {
    headers['x-amz-object-lock-mode'] = fields.retention.mode;
    headers['x-amz-object-lock-retain-until-date'] = new Date(fields.retention.untilMs).toISOString().replace('.000Z', 'Z');
  }
  return headers;
}

/** What one direct upload sends besides its body. */
export interface DirectUpload {
  readonly key: string;
  readonly body: Uint8Array;
  /** Sent as `Content-MD5` (the payload then signed as UNSIGNED-PAYLOAD), or as the signed `x-amz-content-sha256`. */
  readonly digest: PayloadDigest;
  /** `partNumber` and `uploadId` for UploadPart. */
  readonly query?: Readonly<Record<string, string>>;
  /** Further headers, lower-case names (from `objectHeaders`). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** An answer: its status, headers and, for a copy, its body's text. */
interface Answer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly body: Readable;
}

/** Signs and sends direct requests for one client (see the file comment). */
export class DirectRequests {
  readonly #signer: InstanceType<typeof SignatureV4>;

  constructor(private readonly client: S3Client, private readonly handler: NodeHttpHandler, readonly target: DirectTarget) {
    const config = client.config;
    this.#signer = new SignatureV4({
      credentials: config.credentials, region: target.region, service: 's3', sha256: config.sha256,
      // S3 signs the path as sent (no second encoding), and the payload hash is the header we set.
      uriEscapePath: false, applyChecksum: false,
    });
  }

  /** Sends a PUT of `upload`; resolves with the ETag header as the server sent it ('' when none). */
  async put(upload: DirectUpload, signal: AbortSignal | undefined): Promise<string> {
    const answer = await this.#send(upload.key, upload.query ?? {}, {
      'content-length': String(upload.body.byteLength),
      ...(upload.digest.md5Base64 !== undefined ? { 'content-md5': upload.digest.md5Base64 } : { 'x-amz-content-sha256': upload.digest.sha256Hex }),
      'content-type': 'application/octet-stream',
      ...upload.headers,
    }, Buffer.from(upload.body.buffer, upload.body.byteOffset, upload.body.byteLength), signal);
    if (answer.status >= 200 && answer.status < 300) {
      answer.body.resume();
      return answer.headers['etag'] ?? '';
    }
    throw serviceError(answer.status, await collect(answer.body, signal));
  }

  /**
   * CopyObject of `fromKey` (in this bucket) onto `toKey`, with `headers` (from `objectHeaders`)
   * and the metadata replaced; `ifSourceEtag` makes it conditional on the source's ETag.
   * Resolves with the ETag of the answer's `CopyObjectResult` (quotes and all, as the SDK gives
   * it), `undefined` when it has none.
   */
  async copy(fromKey: string, toKey: string, headers: Readonly<Record<string, string>>, ifSourceEtag: string | undefined, signal: AbortSignal | undefined): Promise<string | undefined> {
    const answer = await this.#send(toKey, {}, {
      'content-length': '0',
      'x-amz-copy-source': `${this.target.bucketPath.slice(1)}/${encodeKeyPath(fromKey)}`,
      'x-amz-metadata-directive': 'REPLACE',
      ...(ifSourceEtag !== undefined ? { 'x-amz-copy-source-if-match': `"${ifSourceEtag}"` } : {}),
      ...headers,
    }, undefined, signal);
    const body = await collect(answer.body, signal);
    if (answer.status === 200 && !/<Error>/.test(body)) return xmlText(body, 'ETag');
    throw serviceError(answer.status, body);
  }

  async #send(key: string, query: Readonly<Record<string, string>>, headers: Record<string, string>, body: Buffer | undefined, signal: AbortSignal | undefined): Promise<Answer> {
    const request = {
      protocol: this.target.protocol, hostname: this.target.hostname, port: this.target.port, method: 'PUT',
      path: `${this.target.bucketPath}/${encodeKeyPath(key)}`, query: { ...query },
      headers: { host: this.target.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', ...headers },
      ...(body !== undefined ? { body } : {}),
    };
    const signingDate = new Date(Date.now() + (this.client.config.systemClockOffset ?? 0));
    const signed = await this.#signer.sign(request as never, { signingDate });
    const { response } = await this.handler.handle(signed as never, signal === undefined ? {} : { abortSignal: signal as never });
    return { status: response.statusCode, headers: response.headers, body: response.body as Readable };
  }
}

/** The body of an answer as text (a few hundred bytes of XML; at most 64 KiB kept). */
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

/** The text of `<name>` in an XML answer, entities decoded (`&quot;` around an ETag). */
function xmlText(xml: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  return match?.[1]?.replace(/&quot;|&#34;/g, '"').replace(/&apos;|&#39;/g, '\'').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** An error answer shaped as the SDK shapes it: `name` and `Code` the S3 code (or `Unknown`), the status in `$metadata`. */
function serviceError(status: number, xml: string): Error {
  const code = xmlText(xml, 'Code') ?? (status === 412 ? 'PreconditionFailed' : undefined);
  const message = xmlText(xml, 'Message') ?? code ?? `HTTP ${status}`;
  return Object.assign(new Error(message), {
    name: code ?? 'UnknownError',
    ...(code !== undefined ? { Code: code } : {}),
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
  });
}
