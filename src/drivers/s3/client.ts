/**
 * `ObjectStore` (../object-store/store.ts) on the AWS SDK v3 (@aws-sdk/client-s3): the client
 * adapter of the `s3` flavour of the object-store driver.
 *
 * - No retries here (`maxAttempts: 1`): retry is a wrapper around drivers, driven by error kinds.
 * - Timeouts that really fire: NodeHttpHandler with `throwOnRequestTimeout` (without it a
 *   blackholed request only logs a warning and hangs for about a minute).
 * - Flexible checksums only where the vendor table says the server supports them; every upload
 *   still carries a digest the server verifies: `Content-MD5`, or, for a direct upload to a server
 *   that checks signed payloads, the signed SHA-256 of its body (../object-store/store.ts `PayloadDigest`).
 * - Uploads are not hashed a second time for the signature: a request that carries `Content-MD5`
 *   is signed with `x-amz-content-sha256: UNSIGNED-PAYLOAD` (see `signUploadsUnsigned`).
 * - PutObject, UploadPart and CopyObject (one per reused file) skip the SDK's middleware where
 *   the requests are the same (a path-style endpoint, checksums `WHEN_REQUIRED`):
 *   ./direct-request.ts signs them with the SDK's own signer and sends them on its HTTP handler.
 * - No `Expect: 100-continue`: with our own agents the SDK sends the body at once anyway
 *   (it only waits for "100 Continue" on agents it made itself), so the header only cost an
 *   interim response per upload.
 * - Requests go through `#send`, which reuses the resolved middleware chain of a command class
 *   (what the SDK's `cacheMiddleware` does, but also for requests that carry an abort signal).
 * - Storage class is applied to final objects (PutObject, CopyObject) but never to multipart
 *   uploads: those are completed under a temp key and then copied, and a GLACIER/DEEP_ARCHIVE
 *   temp object could not be copied without a restore.
 */
import type * as Sdk from '@aws-sdk/client-s3';
import type * as HttpHandler from '@smithy/node-http-handler';
import { createRequire } from 'node:module';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import type { S3Failure } from '../object-store/errors.js';
import { socketsFor } from '../object-store/options.js';
import {
  cleanEtag, copyPartBytes, sha256Hex, type LockConfiguration, type ObjectStore, type PayloadDigest, type OpenUpload, type Retention, type StoredBody, type StoredFolder, type StoredObject, type StoredPart, type StoredVersion,
  type VersioningState,
} from '../object-store/store.js';
import { DirectRequests, directTarget, objectHeaders } from './direct-request.js';
import { describeAwsError } from './errors.js';
import type { S3Options } from './options.js';

// Loaded with require(): an ES `import` of these CommonJS packages makes Node scan their sources
// for export names first (cjs-module-lexer), ~0.1 s of CPU at every start for the SDK's size.
const load = createRequire(import.meta.url);
const {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CopyObjectCommand, CreateMultipartUploadCommand, DeleteObjectCommand,
  GetBucketVersioningCommand, GetObjectCommand, GetObjectLockConfigurationCommand, HeadBucketCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectVersionsCommand, ListObjectsV2Command, ListPartsCommand,
  PutObjectCommand, PutObjectRetentionCommand, S3Client, UploadPartCommand, UploadPartCopyCommand,
} = load('@aws-sdk/client-s3') as typeof Sdk;
const { NodeHttpHandler } = load('@smithy/node-http-handler') as typeof HttpHandler;

/**
 * Signs requests that carry `Content-MD5` with `x-amz-content-sha256: UNSIGNED-PAYLOAD` instead
 * of the SHA-256 of the body (PutObject, UploadPart): SigV4 allows it, and the SDK's signer
 * (@smithy/signature-v4 `getPayloadHash`) uses a value already in that header instead of hashing
 * the body, which saves hashing every uploaded byte a second time. Integrity is unchanged: the
 * server still checks the body against Content-MD5, a signed header (so it cannot be altered on the
 * way without breaking the signature, over HTTP as over HTTPS), and the engine compares its own
 * XXH64. Requests without Content-MD5 (small XML bodies such as CompleteMultipartUpload) are
 * signed as before, as is a request whose hash header another middleware already set.
 */
export function signUploadsUnsigned(stack: Sdk.S3Client['middlewareStack']): void {
  type Args = { readonly request?: { headers?: Record<string, string> } };
  const middleware = (next: (args: Args) => Promise<unknown>) => async (args: Args): Promise<unknown> => {
    const headers = args.request?.headers;
    if (headers !== undefined && hasHeader(headers, 'content-md5') && !hasHeader(headers, 'x-amz-content-sha256')) {
      headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
    }
    return next(args);
  };
  stack.addRelativeTo(middleware as unknown as Parameters<Sdk.S3Client['middlewareStack']['addRelativeTo']>[0], {
    name: 'offsiteUnsignedPayload', relation: 'before', toMiddleware: 'httpSigningMiddleware', override: true,
  });
}

/** `ContentMD5` of an SDK command for an MD5 `digest`; nothing for a SHA-256 one (the SDK then signs the body's own SHA-256). */
function contentMd5(digest: PayloadDigest): { ContentMD5?: string } {
  return digest.md5Base64 !== undefined ? { ContentMD5: digest.md5Base64 } : {};
}

function hasHeader(headers: Record<string, string>, lowerName: string): boolean {
  return Object.keys(headers).some((name) => name.toLowerCase() === lowerName);
}

/** What an AWS SDK client needs from the options; the `minio` driver builds the same from milvus-backup's keys. */
export type AwsStoreOptions = Pick<S3Options, 'endpoint' | 'region' | 'bucket' | 'forcePathStyle' | 'credentials' | 'storageClass' | 'sse' | 'sseKmsKeyId'
  | 'requestChecksumCalculation' | 'responseChecksumValidation' | 'connectTimeoutMs' | 'requestTimeoutMs' | 'maxConcurrency' | 'multipartCopyThresholdBytes' | 'maxParts'
  | 'signedPayloads'>;

type Handler<I, O> = (args: { readonly input: I }) => Promise<{ readonly output: O }>;

/** What `#send` needs of an SDK command (`Command.resolveMiddleware` is public in @smithy/types). */
interface Resolvable<I, O> {
  readonly input: I;
  resolveMiddleware(stack: Sdk.S3Client['middlewareStack'], config: Sdk.S3Client['config'], options: { abortSignal: AbortSignal } | undefined): Handler<I, O>;
}

export class AwsStore implements ObjectStore {
  readonly endpoint: string;
  readonly bucket: string;
  readonly #client: Sdk.S3Client;
  /** Resolved middleware chains by abort signal (or this store, for none), then command class. */
  readonly #handlers = new WeakMap<object, Map<unknown, Handler<object, unknown>>>();
  readonly #options: AwsStoreOptions;
  /** PutObject, UploadPart and CopyObject without the SDK's middleware, where they are the same requests (./direct-request.ts). */
  readonly #direct: DirectRequests | undefined;
  /** `sha256` when uploads go directly to a server that checks signed payloads (../object-store/quirks.ts). */
  payloadCheck: 'md5' | 'sha256';
  probeSignedPayloads?: (key: string, signal?: AbortSignal) => Promise<boolean>;

  constructor(options: AwsStoreOptions) {
    this.#options = options;
    this.bucket = options.bucket;
    this.endpoint = options.endpoint ?? `AWS S3 (${options.region})`;
    const agentOptions = { keepAlive: true, maxSockets: socketsFor(options.maxConcurrency) };
    const requestHandler = new NodeHttpHandler({
      connectionTimeout: options.connectTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      socketTimeout: Math.min(options.requestTimeoutMs, 60_000),
      throwOnRequestTimeout: true,
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
    });
    this.#client = new S3Client({
      ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      ...(options.credentials !== undefined ? { credentials: options.credentials } : {}),
      requestChecksumCalculation: options.requestChecksumCalculation,
      responseChecksumValidation: options.responseChecksumValidation,
      maxAttempts: 1,
      expectContinueHeader: false,
      requestHandler,
    });
    signUploadsUnsigned(this.#client.middlewareStack);
    const target = directTarget(this.#client, options);
    this.#direct = target === undefined ? undefined : new DirectRequests(this.#client, requestHandler, target);
    this.payloadCheck = this.#direct !== undefined && options.signedPayloads === true ? 'sha256' : 'md5';
    if (this.#direct !== undefined && options.signedPayloads === 'probe') this.probeSignedPayloads = this.#probe.bind(this, this.#direct);
  }

  /** See ../object-store/store.ts `probeSignedPayloads`. Asked once per store: later calls answer at once. */
  async #probe(direct: DirectRequests, key: string, signal?: AbortSignal): Promise<boolean> {
    delete this.probeSignedPayloads;
    const body = Buffer.from('offsite: does this server check the signed SHA-256 of a body?\n');
    try {
      await direct.put({ key, body, digest: { sha256Hex: sha256Hex(Buffer.from('another body')) } }, signal);
    } catch (err) {
      if (describeAwsError(err).code === 'XAmzContentSHA256Mismatch') this.payloadCheck = 'sha256';
      return false;
    }
    return true;
  }

  /**
   * `client.send(command, { abortSignal })`, but the middleware chain the SDK resolves for a
   * command class (and abort signal) is built once and reused, as the SDK does itself with
   * `cacheMiddleware: true` for requests without options: resolving it costs about as much CPU
   * as the rest of a small request. The engine passes one signal for a whole run, so the cache
   * holds a chain per command class. The chain reads everything request-specific from the
   * command it is given.
   */
  #send<I extends object, O>(command: Resolvable<I, O>, signal: AbortSignal | undefined): Promise<O> {
    const key = signal ?? this;
    let handlers = this.#handlers.get(key);
    if (handlers === undefined) this.#handlers.set(key, (handlers = new Map()));
    let handler = handlers.get(command.constructor) as Handler<I, O> | undefined;
    if (handler === undefined) {
      handler = command.resolveMiddleware(this.#client.middlewareStack, this.#client.config, signal === undefined ? undefined : { abortSignal: signal });
      handlers.set(command.constructor, handler as Handler<object, unknown>);
    }
    return handler(command).then((result) => result.output);
  }

  #encryption(): { ServerSideEncryption?: Sdk.ServerSideEncryption; SSEKMSKeyId?: string } {
    const { sse, sseKmsKeyId } = this.#options;
    return {
      ...(sse !== undefined ? { ServerSideEncryption: sse as Sdk.ServerSideEncryption } : {}),
      ...(sseKmsKeyId !== undefined ? { SSEKMSKeyId: sseKmsKeyId } : {}),
    };
  }

  /** The Object Lock headers of a write (`x-amz-object-lock-mode`, `x-amz-object-lock-retain-until-date`). */
  #lock(retention: Retention | undefined): { ObjectLockMode?: Retention['mode']; ObjectLockRetainUntilDate?: Date } {
    return retention === undefined ? {} : { ObjectLockMode: retention.mode, ObjectLockRetainUntilDate: new Date(retention.untilMs) };
  }

  #storageClass(): { StorageClass?: Sdk.StorageClass } {
    return this.#options.storageClass !== undefined ? { StorageClass: this.#options.storageClass as Sdk.StorageClass } : {};
  }

  /** The headers of a new object's fields for a direct request, or `undefined` when it must go through the SDK. */
  #directHeaders(metadata: Record<string, string>, retention: Retention | undefined): Record<string, string> | undefined {
    const { storageClass, sse, sseKmsKeyId } = this.#options;
    return this.#direct === undefined ? undefined : objectHeaders({ metadata, storageClass, sse, sseKmsKeyId, retention });
  }

  async head(key: string, signal?: AbortSignal): Promise<StoredObject | undefined> {
    try {
      const out = await this.#send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), signal);
      return { key, size: out.ContentLength ?? 0, mtimeMs: out.LastModified?.getTime() ?? 0, etag: cleanEtag(out.ETag), metadata: out.Metadata ?? {} };
    } catch (err) {
      const failure = describeAwsError(err);
      if (failure.status === 404 || failure.code === 'NotFound' || failure.code === 'NoSuchKey') return undefined;
      throw err;
    }
  }

  async bucketExists(signal?: AbortSignal): Promise<boolean> {
    try {
      await this.#send(new HeadBucketCommand({ Bucket: this.bucket }), signal);
      return true;
    } catch (err) {
      const failure = describeAwsError(err);
      if (failure.status === 404 || failure.code === 'NotFound' || failure.code === 'NoSuchBucket') return false;
      throw err;
    }
  }

  async get(key: string, start: number, end: number | undefined, signal?: AbortSignal, ifMatch?: string): Promise<StoredBody> {
    const range = start === 0 && end === undefined ? undefined : `bytes=${start}-${end === undefined ? '' : end - 1}`;
    const out = await this.#send(new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range ? { Range: range } : {}), ...(ifMatch !== undefined ? { IfMatch: `"${ifMatch}"` } : {}) }), signal);
    const etag = out.ETag ? { etag: cleanEtag(out.ETag) } : {};
    const body = out.Body;
    if (body instanceof Readable) return { body, ...etag };
    if (body === undefined) return { body: Readable.from([]), ...etag };
    return { body: Readable.fromWeb((body as { transformToWebStream(): ReadableStream }).transformToWebStream() as never), ...etag };
  }

  list(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredObject> {
    return this.#pages(prefix, pageSize, undefined, signal) as AsyncIterable<StoredObject>;
  }

  listLevel(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredObject | StoredFolder> {
    return this.#pages(prefix, pageSize, '/', signal);
  }

  async *#pages(prefix: string, pageSize: number, delimiter: string | undefined, signal?: AbortSignal): AsyncIterable<StoredObject | StoredFolder> {
    let token: string | undefined;
    do {
      const out = await this.#send(new ListObjectsV2Command({
        Bucket: this.bucket, Prefix: prefix, MaxKeys: pageSize, ...(delimiter ? { Delimiter: delimiter } : {}), ...(token ? { ContinuationToken: token } : {}),
      }), signal);
      for (const item of out.Contents ?? []) {
        if (item.Key === undefined) continue;
        yield { key: item.Key, size: item.Size ?? 0, mtimeMs: item.LastModified?.getTime() ?? 0, ...(item.ETag ? { etag: cleanEtag(item.ETag) } : {}) };
      }
      for (const common of out.CommonPrefixes ?? []) if (common.Prefix) yield { folder: common.Prefix };
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * Through the SDK, a SHA-256 `digest` is not sent: without Content-MD5 the SDK signs the body's
   * SHA-256, which it computes itself (a direct request that fell back on the SDK, rare).
   */
  async put(key: string, body: Uint8Array, digest: PayloadDigest, metadata: Record<string, string>, signal?: AbortSignal, retention?: Retention): Promise<string | undefined> {
    const headers = this.#directHeaders(metadata, retention);
    if (this.#direct !== undefined && headers !== undefined) return (await this.#direct.put({ key, body, digest, headers }, signal)) || undefined;
    const out = await this.#send(new PutObjectCommand({
      Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length, ...contentMd5(digest), Metadata: metadata,
      ...this.#storageClass(), ...this.#encryption(), ...this.#lock(retention),
    }), signal);
    return out.ETag;
  }

  async createUpload(key: string, signal?: AbortSignal): Promise<string> {
    const out = await this.#send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, ...this.#encryption() }), signal);
    if (!out.UploadId) throw Object.assign(new Error('CreateMultipartUpload returned no UploadId'), { $metadata: { httpStatusCode: 500 } });
    return out.UploadId;
  }

  async *listUploads(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<OpenUpload> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const out = await this.#send(new ListMultipartUploadsCommand({
        Bucket: this.bucket, Prefix: prefix, MaxUploads: pageSize,
        ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}), ...(uploadIdMarker !== undefined ? { UploadIdMarker: uploadIdMarker } : {}),
      }), signal);
      for (const upload of out.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined) continue;
        yield { key: upload.Key, uploadId: upload.UploadId, initiatedMs: upload.Initiated?.getTime() ?? 0 };
      }
      if (!out.IsTruncated) break;
      keyMarker = out.NextKeyMarker;
      uploadIdMarker = out.NextUploadIdMarker;
    } while (keyMarker !== undefined);
  }

  async *listParts(key: string, uploadId: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredPart> {
    let marker: string | undefined;
    do {
      const out = await this.#send(new ListPartsCommand({
        Bucket: this.bucket, Key: key, UploadId: uploadId, MaxParts: pageSize, ...(marker !== undefined ? { PartNumberMarker: marker } : {}),
      }), signal);
      for (const part of out.Parts ?? []) {
        if (part.PartNumber === undefined) continue;
        yield { partNumber: part.PartNumber, size: part.Size ?? 0, etag: cleanEtag(part.ETag) };
      }
      marker = out.IsTruncated ? out.NextPartNumberMarker : undefined;
    } while (marker !== undefined);
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array, digest: PayloadDigest, signal?: AbortSignal): Promise<string> {
    if (this.#direct !== undefined) {
      return cleanEtag(await this.#direct.put({ key, body, digest, query: { partNumber: String(partNumber), uploadId } }, signal));
    }
    const out = await this.#send(new UploadPartCommand({
      Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length, ...contentMd5(digest),
    }), signal);
    return cleanEtag(out.ETag);
  }

  async completeUpload(key: string, uploadId: string, parts: ReadonlyArray<{ partNumber: number; etag: string }>, signal?: AbortSignal): Promise<void> {
    await this.#send(new CompleteMultipartUploadCommand({
      Bucket: this.bucket, Key: key, UploadId: uploadId,
      MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: `"${p.etag}"` })) },
    }), signal);
  }

  async abortUpload(key: string, uploadId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.#send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }), signal);
    } catch (err) {
      const failure = describeAwsError(err);
      if (failure.code === 'NoSuchUpload' || failure.status === 404) return;
      throw err;
    }
  }

  async copy(fromKey: string, toKey: string, size: number, metadata: Record<string, string>, signal?: AbortSignal, retention?: Retention, ifSourceEtag?: string): Promise<string | undefined> {
    const source = `${this.bucket}/${encodeURIComponent(fromKey).replace(/%2F/g, '/')}`;
    const condition = ifSourceEtag !== undefined ? { CopySourceIfMatch: `"${ifSourceEtag}"` } : {};
    const headers = this.#directHeaders(metadata, retention);
    if (size <= this.#options.multipartCopyThresholdBytes && this.#direct !== undefined && headers !== undefined) {
      return cleanEtag(await this.#direct.copy(fromKey, toKey, headers, ifSourceEtag, signal)) || undefined;
    }
    if (size <= this.#options.multipartCopyThresholdBytes) {
      // The SDK's S3 middleware turns a 200 answer with an <Error> body into a thrown error.
      const out = await this.#send(new CopyObjectCommand({
        Bucket: this.bucket, Key: toKey, CopySource: source, ...condition, MetadataDirective: 'REPLACE', Metadata: metadata,
        ...this.#storageClass(), ...this.#encryption(), ...this.#lock(retention),
      }), signal);
      return cleanEtag(out.CopyObjectResult?.ETag) || undefined;
    }
    const created = await this.#send(new CreateMultipartUploadCommand({
      Bucket: this.bucket, Key: toKey, Metadata: metadata, ...this.#storageClass(), ...this.#encryption(), ...this.#lock(retention),
    }), signal);
    const uploadId = created.UploadId as string;
    try {
      const step = copyPartBytes(size, this.#options.maxParts);
      const count = Math.ceil(size / step);
      const etags: string[] = new Array<string>(count);
      let next = 0;
      const worker = async (): Promise<void> => {
        for (let index = next++; index < count; index = next++) {
          const first = index * step;
          const last = Math.min(size, first + step) - 1;
          const out = await this.#send(new UploadPartCopyCommand({
            Bucket: this.bucket, Key: toKey, UploadId: uploadId, PartNumber: index + 1, CopySource: source, ...condition, CopySourceRange: `bytes=${first}-${last}`,
          }), signal);
          etags[index] = cleanEtag(out.CopyPartResult?.ETag);
        }
      };
      await Promise.all(Array.from({ length: Math.min(4, count) }, worker));
      await this.completeUpload(toKey, uploadId, etags.map((etag, i) => ({ partNumber: i + 1, etag })), signal);
      return undefined;
    } catch (err) {
      await this.abortUpload(toKey, uploadId).catch(() => undefined);
      throw err;
    }
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    await this.#send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), signal);
  }

  async versioning(signal?: AbortSignal): Promise<VersioningState> {
    const out = await this.#send(new GetBucketVersioningCommand({ Bucket: this.bucket }), signal);
    return out.Status === 'Enabled' ? 'enabled' : out.Status === 'Suspended' ? 'suspended' : 'off';
  }

  async *listVersions(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredVersion> {
    let keyMarker: string | undefined;
    let versionIdMarker: string | undefined;
    for (;;) {
      const out = await this.#send(new ListObjectVersionsCommand({
        Bucket: this.bucket, Prefix: prefix, MaxKeys: pageSize,
        ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}), ...(versionIdMarker !== undefined ? { VersionIdMarker: versionIdMarker } : {}),
      }), signal);
      for (const v of out.Versions ?? []) {
        if (v.Key !== undefined && v.VersionId !== undefined) yield { key: v.Key, versionId: v.VersionId, size: v.Size ?? 0, deleteMarker: false, latest: v.IsLatest === true };
      }
      for (const m of out.DeleteMarkers ?? []) {
        if (m.Key !== undefined && m.VersionId !== undefined) yield { key: m.Key, versionId: m.VersionId, size: 0, deleteMarker: true, latest: m.IsLatest === true };
      }
      if (!out.IsTruncated || out.NextKeyMarker === undefined) return;
      keyMarker = out.NextKeyMarker;
      versionIdMarker = out.NextVersionIdMarker;
    }
  }

  async deleteVersion(key: string, versionId: string, signal?: AbortSignal): Promise<void> {
    await this.#send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key, VersionId: versionId }), signal);
  }

  async lockConfiguration(signal?: AbortSignal): Promise<LockConfiguration> {
    try {
      const out = await this.#send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }), signal);
      const config = out.ObjectLockConfiguration;
      const rule = config?.Rule?.DefaultRetention;
      return {
        enabled: config?.ObjectLockEnabled === 'Enabled',
        ...(rule?.Mode !== undefined ? { defaultRule: { mode: rule.Mode, ...(rule.Days !== undefined ? { days: rule.Days } : {}), ...(rule.Years !== undefined ? { years: rule.Years } : {}) } } : {}),
      };
    } catch (err) {
      const failure = describeAwsError(err);
      if (failure.code === 'ObjectLockConfigurationNotFoundError' || failure.code === 'ObjectLockConfigurationNotFound') return { enabled: false };
      throw err;
    }
  }

  async retention(key: string, versionId: string | undefined, signal?: AbortSignal): Promise<Retention | undefined> {
    const out = await this.#send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, ...(versionId !== undefined ? { VersionId: versionId } : {}) }), signal).catch((err: unknown) => {
      const failure = describeAwsError(err);
      // 405: HEAD of a delete marker by version id.
      if (failure.status === 404 || failure.status === 405 || failure.code === 'NotFound' || failure.code === 'NoSuchKey' || failure.code === 'NoSuchVersion') return undefined;
      throw err;
    });
    if (out === undefined) return undefined;
    const mode = out.ObjectLockMode;
    const until = out.ObjectLockRetainUntilDate?.getTime();
    return (mode === 'GOVERNANCE' || mode === 'COMPLIANCE') && until !== undefined && Number.isFinite(until) ? { mode, untilMs: until } : undefined;
  }

  async putRetention(key: string, retention: Retention, signal?: AbortSignal): Promise<void> {
    await this.#send(new PutObjectRetentionCommand({
      Bucket: this.bucket, Key: key, Retention: { Mode: retention.mode, RetainUntilDate: new Date(retention.untilMs) },
    }), signal);
  }

  describeError(err: unknown): S3Failure {
    return describeAwsError(err);
  }

  close(): void {
    this.#client.destroy();
  }
}
