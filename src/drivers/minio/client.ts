/**
 * `ObjectStore` (../object-store/store.ts) on the `minio` client: the client adapter of the
 * `minio` flavour. The shared object-store driver (../object-store/driver.ts) does the rest, so
 * `minio` and `s3` behave the same.
 *
 * The minio client has no AbortSignal and no request timeout that fails a request (its
 * `timeout` request option only emits an event), so every call here races the signal and a
 * `requestTimeoutMs` deadline (`#guard`): the caller gets a prompt `AbortedError` or a
 * `retryable` timeout, while the abandoned request dies with its socket. PutObject goes through
 * `makeRequestAsync` so that it carries `Content-MD5` and our metadata exactly as we set them.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Client } from 'minio';
import type { S3Failure } from '../object-store/errors.js';
import { socketsFor } from '../object-store/options.js';
import {
  cleanEtag, copyPartBytes, encodeKeyPath, encodeRfc3986, md5, type ObjectStore, type PayloadDigest, type OpenUpload, type StoredBody, type StoredFolder, type StoredObject, type StoredPart, type StoredVersion, type VersioningState,
} from '../object-store/store.js';
import { describeMinioError } from './errors.js';
import type { MinioOptions } from './options.js';

/** The client, with its (protected) complete ListParts made reachable. */
class PartsClient extends Client {
  async allParts(bucket: string, key: string, uploadId: string): Promise<Array<{ part: number; size: number; etag: string }>> {
    return this.listParts(bucket, key, uploadId);
  }
}

interface Deadline {
  readonly promise: Promise<never>;
  clear(): void;
}

/** The ETag in a CopyObject / UploadPartCopy answer body (unquoted, lower case); `undefined` when absent. */
function etagOfCopy(body: string): string | undefined {
  return cleanEtag(/<ETag>([^<]*)<\/ETag>/.exec(body)?.[1]?.replace(/&quot;|&#34;/g, '')) || undefined;
}

/**
 * A list marker as a query value, escaped as SigV4 wants it. With `encoding-type=url` a server may
 * send it back already escaped (AWS does, RGW does not): it is unescaped first.
 */
function queryEscape(value: string): string {
  let raw = value;
  try {
    raw = decodeURIComponent(value);
  } catch {
    // not escaped
  }
  return encodeRfc3986(raw);
}

/** The Content-MD5 of an upload: the caller's (this store's `payloadCheck` is `md5`), else computed here. */
function md5Of(body: Uint8Array, digest: PayloadDigest): string {
  return digest.md5Base64 ?? md5(body).base64;
}

export class MinioStore implements ObjectStore {
  readonly endpoint: string;
  /** The minio client signs every request's payload as it likes; the server checks Content-MD5. */
  readonly payloadCheck = 'md5';
  readonly bucket: string;
  readonly #client: PartsClient;
  readonly #options: MinioOptions;

  constructor(options: MinioOptions) {
    this.#options = options;
    this.bucket = options.bucketName;
    this.endpoint = `${options.useSSL ? 'https' : 'http'}://${options.address.includes(':') ? `[${options.address}]` : options.address}:${options.port}`;
    const agentOptions = { keepAlive: true, maxSockets: socketsFor(options.maxConcurrency) };
    this.#client = new PartsClient({
      endPoint: options.address,
      port: options.port,
      useSSL: options.useSSL,
      accessKey: options.accessKeyID ?? '',
      secretKey: options.secretAccessKey ?? '',
      ...(options.sessionToken !== undefined ? { sessionToken: options.sessionToken } : {}),
      region: options.region ?? 'us-east-1',
      pathStyle: true,
      transportAgent: options.useSSL ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions),
    });
  }

  #deadline(ms: number): Deadline {
    let timer: NodeJS.Timeout | undefined;
    const promise = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${ms} ms`), { timeout: true })), ms);
    });
    promise.catch(() => undefined);
    return { promise, clear: () => clearTimeout(timer) };
  }

  /** Runs one request against the signal and the request deadline. */
  async #guard<T>(signal: AbortSignal | undefined, run: () => Promise<T>): Promise<T> {
    if (signal?.aborted) throw Object.assign(new Error('aborted'), { aborted: true });
    const deadline = this.#deadline(this.#options.requestTimeoutMs);
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(Object.assign(new Error('aborted'), { aborted: true }));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => undefined);
    const work = run();
    work.catch(() => undefined);
    try {
      return await Promise.race([work, deadline.promise, aborted]);
    } finally {
      deadline.clear();
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<StoredObject | undefined> {
    try {
      const stat = await this.#guard(signal, () => this.#client.statObject(this.bucket, key));
      const metadata: Record<string, string> = {};
      for (const [name, value] of Object.entries(stat.metaData ?? {})) {
        if (typeof value === 'string') metadata[name.toLowerCase()] = value;
      }
      return { key, size: stat.size, mtimeMs: stat.lastModified.getTime(), etag: cleanEtag(stat.etag), metadata };
    } catch (err) {
      const failure = describeMinioError(err);
      if (failure.status === 404 || failure.code === 'NoSuchKey') return undefined;
      throw err;
    }
  }

  async bucketExists(signal?: AbortSignal): Promise<boolean> {
    return this.#guard(signal, () => this.#client.bucketExists(this.bucket));
  }

  /** GetObject through `makeRequestAsync`, so that it can carry `If-Match` and give back the answer's ETag. */
  async get(key: string, start: number, end: number | undefined, signal?: AbortSignal, ifMatch?: string): Promise<StoredBody> {
    const headers: Record<string, string> = {};
    if (start !== 0 || end !== undefined) headers['range'] = `bytes=${start}-${end === undefined ? '' : end - 1}`;
    if (ifMatch !== undefined) headers['if-match'] = `"${ifMatch}"`;
    const response = await this.#guard(signal, () => this.#client.makeRequestAsync({ method: 'GET', bucketName: this.bucket, objectName: key, headers }, '', [200, 206]));
    const etag = response.headers.etag;
    return { body: response, ...(typeof etag === 'string' && etag !== '' ? { etag: cleanEtag(etag) } : {}) };
  }

  list(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredObject> {
    return this.#pages(prefix, pageSize, '', signal) as AsyncIterable<StoredObject>;
  }

  listLevel(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredObject | StoredFolder> {
    return this.#pages(prefix, pageSize, '/', signal);
  }

  async *#pages(prefix: string, pageSize: number, delimiter: string, signal?: AbortSignal): AsyncIterable<StoredObject | StoredFolder> {
    let token = '';
    for (;;) {
      const page = await this.#guard(signal, () => this.#client.listObjectsV2Query(this.bucket, prefix, token, delimiter, pageSize, ''));
      for (const item of page.objects) {
        if (item.prefix) {
          yield { folder: item.prefix };
          continue;
        }
        if (!item.name) continue;
        yield { key: item.name, size: item.size ?? 0, mtimeMs: item.lastModified ? new Date(item.lastModified).getTime() : 0, ...(item.etag ? { etag: cleanEtag(item.etag) } : {}) };
      }
      if (!page.isTruncated || !page.nextContinuationToken) return;
      token = page.nextContinuationToken;
    }
  }

  async put(key: string, body: Uint8Array, digest: PayloadDigest, metadata: Record<string, string>, signal?: AbortSignal): Promise<string | undefined> {
    const headers: Record<string, string> = { 'Content-MD5': md5Of(body, digest), 'Content-Length': String(body.length) };
    for (const [name, value] of Object.entries(metadata)) headers[`x-amz-meta-${name}`] = value;
    return this.#guard(signal, async () => {
      const response = await this.#client.makeRequestAsync({ method: 'PUT', bucketName: this.bucket, objectName: key, headers }, Buffer.from(body.buffer, body.byteOffset, body.length), [200]);
      response.resume();
      const etag = response.headers.etag;
      return typeof etag === 'string' ? etag : undefined;
    });
  }

  async createUpload(key: string, signal?: AbortSignal): Promise<string> {
    return this.#guard(signal, () => this.#client.initiateNewMultipartUpload(this.bucket, key, {}));
  }

  async *listUploads(prefix: string, _pageSize: number, signal?: AbortSignal): AsyncIterable<OpenUpload> {
    // The client always asks for pages of 1000 uploads.
    let keyMarker = '';
    let uploadIdMarker = '';
    for (;;) {
      const page = await this.#guard(signal, () => this.#client.listIncompleteUploadsQuery(this.bucket, prefix, keyMarker, uploadIdMarker, ''));
      for (const upload of page.uploads) {
        const initiated = (upload as { initiated?: unknown }).initiated;
        yield { key: upload.key, uploadId: upload.uploadId, initiatedMs: initiated ? new Date(initiated as string).getTime() : 0 };
      }
      if (!page.isTruncated) return;
      keyMarker = page.nextKeyMarker ?? '';
      uploadIdMarker = page.nextUploadIdMarker ?? '';
      if (keyMarker === '' && uploadIdMarker === '') return;
    }
  }

  async *listParts(key: string, uploadId: string, _pageSize: number, signal?: AbortSignal): AsyncIterable<StoredPart> {
    // The client pages through ListParts itself (at most 10,000 small records).
    const parts = await this.#guard(signal, () => this.#client.allParts(this.bucket, key, uploadId));
    for (const part of parts.sort((a, b) => a.part - b.part)) yield { partNumber: part.part, size: part.size, etag: cleanEtag(part.etag) };
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array, digest: PayloadDigest, signal?: AbortSignal): Promise<string> {
    const out = await this.#guard(signal, () => this.#client.uploadPart({
      bucketName: this.bucket, objectName: key, uploadID: uploadId, partNumber, headers: { 'Content-MD5': md5Of(body, digest), 'Content-Length': String(body.length) },
    }, Buffer.from(body.buffer, body.byteOffset, body.length)));
    return cleanEtag(out.etag);
  }

  async completeUpload(key: string, uploadId: string, parts: ReadonlyArray<{ partNumber: number; etag: string }>, signal?: AbortSignal): Promise<void> {
    await this.#guard(signal, () => this.#client.completeMultipartUpload(this.bucket, key, uploadId, parts.map((p) => ({ part: p.partNumber, etag: p.etag }))));
  }

  async abortUpload(key: string, uploadId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.#guard(signal, () => this.#client.abortMultipartUpload(this.bucket, key, uploadId));
    } catch (err) {
      const failure = describeMinioError(err);
      if (failure.code === 'NoSuchUpload' || failure.status === 404) return;
      throw err;
    }
  }

  /**
   * CopyObject (or UploadPartCopy above the threshold) through `makeRequestAsync`: the client's
   * own copy helpers escape the source with `encodeURI`, which breaks keys with `?`, `#`, `&`...
   */
  async copy(fromKey: string, toKey: string, size: number, metadata: Record<string, string>, signal?: AbortSignal, _retention?: unknown, ifSourceEtag?: string): Promise<string | undefined> {
    const source = `/${this.bucket}/${encodeKeyPath(fromKey)}`;
    const condition: Record<string, string> = ifSourceEtag !== undefined ? { 'x-amz-copy-source-if-match': `"${ifSourceEtag}"` } : {};
    const meta: Record<string, string> = {};
    for (const [name, value] of Object.entries(metadata)) meta[`x-amz-meta-${name}`] = value;
    if (size <= this.#options.multipartCopyThresholdBytes) {
      const body = await this.#guard(signal, () => this.#request('PUT', toKey, '', { 'x-amz-copy-source': source, ...condition, 'x-amz-metadata-directive': 'REPLACE', ...meta }));
      return etagOfCopy(body);
    }
    const uploadId = await this.#guard(signal, () => this.#client.initiateNewMultipartUpload(this.bucket, toKey, meta));
    try {
      const step = copyPartBytes(size, 10_000);
      const parts: Array<{ partNumber: number; etag: string }> = [];
      for (let first = 0, partNumber = 1; first < size; first += step, partNumber++) {
        const range = `bytes=${first}-${Math.min(size, first + step) - 1}`;
        const body = await this.#guard(signal, () => this.#request('PUT', toKey, `partNumber=${partNumber}&uploadId=${encodeURIComponent(uploadId)}`,
          { 'x-amz-copy-source': source, ...condition, 'x-amz-copy-source-range': range }));
        parts.push({ partNumber, etag: etagOfCopy(body) ?? '' });
      }
      await this.completeUpload(toKey, uploadId, parts, signal);
      return undefined;
    } catch (err) {
      await this.abortUpload(toKey, uploadId).catch(() => undefined);
      throw err;
    }
  }

  /** One request; S3 may answer a copy with 200 and an <Error> body, which is thrown like the client does. */
  async #request(method: string, key: string, query: string, headers: Record<string, string>): Promise<string> {
    const response = await this.#client.makeRequestAsync({ method, bucketName: this.bucket, objectName: key, query, headers }, '', [200]);
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    if (body.includes('<Error>')) {
      const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? 'InternalError';
      throw Object.assign(new Error(/<Message>([^<]*)<\/Message>/.exec(body)?.[1] ?? code), { name: 'S3Error', code });
    }
    return body;
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    await this.#guard(signal, () => this.#client.removeObject(this.bucket, key));
  }

  async versioning(signal?: AbortSignal): Promise<VersioningState> {
    const config = await this.#guard(signal, () => this.#client.getBucketVersioning(this.bucket));
    const status = String((config as { Status?: unknown } | undefined)?.Status ?? '');
    return status === 'Enabled' ? 'enabled' : status === 'Suspended' ? 'suspended' : 'off';
  }

  async *listVersions(prefix: string, pageSize: number, signal?: AbortSignal): AsyncIterable<StoredVersion> {
    let keyMarker: string | undefined;
    let versionIdMarker: string | undefined;
    for (;;) {
      const page = await this.#guard(signal, () => this.#client.listObjectsQuery(this.bucket, prefix, '', {
        IncludeVersion: true, MaxKeys: pageSize, Delimiter: '',
        // The client puts both markers into the query unescaped (a `/` there breaks the signature).
        ...(keyMarker !== undefined ? { keyMarker: queryEscape(keyMarker) } : {}), ...(versionIdMarker !== undefined ? { versionIdMarker: queryEscape(versionIdMarker) } : {}),
      }));
      for (const item of page.objects) {
        const v = item as { name?: string; size?: number; versionId?: string; isDeleteMarker?: boolean; isLatest?: unknown };
        if (v.name && v.versionId) yield { key: v.name, versionId: v.versionId, size: v.size ?? 0, deleteMarker: v.isDeleteMarker === true, latest: String(v.isLatest) === 'true' };
      }
      if (!page.isTruncated || page.keyMarker === undefined) return;
      keyMarker = page.keyMarker;
      versionIdMarker = page.versionIdMarker;
    }
  }

  async deleteVersion(key: string, versionId: string, signal?: AbortSignal): Promise<void> {
    await this.#guard(signal, () => this.#client.removeObject(this.bucket, key, { versionId }));
  }

  describeError(err: unknown): S3Failure {
    return describeMinioError(err);
  }

  close(): void {
    // The keep-alive agent's idle sockets must not keep the process alive.
    const agent = (this.#client as unknown as { transportAgent?: { destroy?: () => void } }).transportAgent;
    agent?.destroy?.();
  }
}
