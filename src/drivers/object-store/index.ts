/**
 * The object-store driver shared by the `s3` and `minio` flavours (./driver.ts), and what a
 * flavour builds on: the client adapter interface (./store.ts), the error table (./errors.ts),
 * the vendor table (./quirks.ts) and the shared options (./options.ts).
 */
export { ObjectDriver, HASH_METADATA, tempKeyOf, type ObjectDriverSettings } from './driver.js';
export { cleanEtag, copyPartBytes, md5, multipartEtag, type ObjectStore, type OpenUpload, type StoredObject, type StoredPart } from './store.js';
export { classifyS3Error, isKnownS3Code, type BucketErrorContext, type S3Failure } from './errors.js';
export { S3_LIMITS, VENDORS, vendorFor, type ChecksumMode, type Vendor } from './quirks.js';
export { checkBucketName, normalizePrefix, TUNING_SCHEMA, tuningOf, type ObjectStoreTuning } from './options.js';
export { ByteStash } from './resources.js';
