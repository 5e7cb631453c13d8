/**
 * `offsite pull NAME --from DEST --to TARGET`: brings a copy back so that `milvus-backup restore`
 * can use it.
 *
 * 1. DEST's manifest for NAME must be valid (else: no complete copy there, nothing is written).
 * 2. The files are copied through the replication engine in origin mode: each must read back to
 *    the manifest's hash or it is not committed, so a damaged copy is never restored from (try
 *    another `--from`). Interrupted pulls resume like replicate runs.
 * 3. TARGET is then checked twice: every byte is read back against the manifest, and the result
 *    must pass milvus-backup's completion rule (meta present and parseable, every binlog that
 *    full_meta.json lists present with its size).
 * 4. When TARGET is the source or a plain folder, offsite's own `NAME/.offsite/` is removed at
 *    the end, so the layout is exactly what milvus-backup wrote (`ROOT/NAME/...`). When TARGET is
 *    a configured destination, the manifest stays: it is then a complete copy like any other.
 *
 * TARGET is `source` (the configured source: usually the MinIO bucket milvus-backup reads), the
 * name of a destination, or a folder path (starting with `/`, `./`, `../` or `~`). Pull never
 * overwrites: a TARGET that already holds files under `NAME/` that a pull did not put there is
 * refused.
 */
import { inspectBackupState } from '../backup/index.js';
import type { OffsiteConfig } from '../config/config.js';
import { replicate, type DestinationResult } from '../core/replicate.js';
import { verifyCopy, type VerifyResult } from '../core/verify.js';
import type { Driver } from '../drivers/types.js';
import { DriverRuntime, type TransferOptions } from '../runtime/drivers.js';
import { refuseOverlappingPlaces } from '../drivers/overlap.js';
import { placeOf } from '../runtime/overlap.js';
import { BackupError, ConfigError, OffsiteError, UsageError } from '../errors.js';
import { OriginTable } from '../core/origin-table.js';
import { manifestKey, OFFSITE_DIR, progressKey } from '../manifest/manifest.js';
import { streamManifestAt, type ManifestSummary } from '../manifest/read.js';
import { readRecord, writeRecord } from './state.js';

export interface PullOptions extends TransferOptions {
  readonly backup: string;
  readonly from: string;
  readonly to: string;
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
  readonly onBytes?: (phase: 'copy' | 'verify', bytes: number) => void;
}

export interface PullResult {
  readonly backup: string;
  readonly from: string;
  readonly fromDescription: string;
  readonly to: string;
  readonly toDescription: string;
  readonly files: number;
  readonly bytes: number;
  readonly bytesWritten: number;
  /** Bytes found already in place (a resumed pull) and not sent again. */
  readonly bytesResumed: number;
  /** The read-back at the target. */
  readonly verify: VerifyResult;
  /**
   * The target already held exactly this copy (an earlier pull finished): nothing was sent, every
   * file was hashed in place and read back.
   */
  readonly alreadyThere: boolean;
  /** milvus-backup's completion rule at the target. */
  readonly completion: 'complete';
  /** Whether offsite's manifest was left at the target (targets that are destinations). */
  readonly keptManifest: boolean;
  /** The command to run next, and where milvus-backup must look. */
  readonly restoreCommand: string;
  readonly restoreHint: string;
}

/** Marks `NAME/` at a target as being filled by a pull, so a resumed pull may continue it. */
function pullMarkerKey(backup: string): string {
  return `${backup}/${OFFSITE_DIR}/pull.json`;
}

function isPath(spec: string): boolean {
  return /^(\/|\.\.?\/|~)/.test(spec);
}

/** Opens TARGET: `source`, a destination name, or a folder path (with the same retry and bandwidth layers as every driver). */
async function openTarget(runtime: DriverRuntime, spec: string): Promise<{ driver: Driver; isDestination: boolean }> {
  const { config } = runtime;
  if (spec === 'source') return { driver: await runtime.source(), isDestination: false };
  if (isPath(spec)) return { driver: await runtime.folder('target', spec), isDestination: false };
  if (!config.destinations[spec]) {
    throw new UsageError(`unknown target "${spec}": give source, a destination name (${Object.keys(config.destinations).join(', ')}) or a folder path like ./restore`);
  }
  const [driver] = await runtime.destinations([spec]);
  return { driver: driver as Driver, isDestination: true };
}

/** Where milvus-backup must read backups from to see what was pulled, in its own config terms. */
function restoreHintFor(target: Driver): string {
  if (target.location.kind === 'filesystem') {
    const root = target.location.root;
    return `in milvus-backup's backup.yaml: minio.backupStorageType: local and minio.backupRootPath: ${root} (v2 schema: backup.storage.provider: local, rootPath: ${root})`;
  }
  return `milvus-backup must read backups from ${target.description}: in its backup.yaml, minio.backupBucketName and minio.backupRootPath (v2 schema: backup.storage.bucketName and rootPath)`;
}

/** The manifest of a copy as a pull holds it: its fields, and its records in a compact table (../core/origin-table.ts). */
interface OriginManifest {
  readonly summary: ManifestSummary;
  readonly files: OriginTable;
}

/** The manifest at `origin` read as a stream into a table, its digest (and signature, with `publicKey`) checked. */
async function readOriginTable(origin: Driver, backup: string, options: { signal?: AbortSignal; publicKey?: string }): Promise<OriginManifest | undefined> {
  const files = new OriginTable();
  const summary = await streamManifestAt(origin, manifestKey(backup), { ...options, onFile: (f) => { files.add(f); } });
  if (!summary) return undefined;
  files.seal(`${origin.name}: ${manifestKey(backup)}`);
  return { summary, files };
}

/**
 * The manifest of the copy to pull. An encrypted copy (its manifest has `encryption`) needs the
 * destination's key: none configured, or another one, is a `ConfigError` naming the destination,
 * before anything is written; its manifest must carry a valid signature by that key; and every
 * file must decrypt to the plaintext MAC its record keeps (the decrypting driver checks it at the
 * end of each read, on top of every chunk's tag).
 */
async function readOriginManifest(origin: Driver, backup: string, configPath: string, signal?: AbortSignal): Promise<OriginManifest> {
  const manifest = await readOriginTable(origin, backup, { signal });
  if (!manifest) {
    throw new BackupError('E_NO_COPY', `${origin.name} has no complete copy of ${backup} (no manifest at ${manifestKey(backup)}); see offsite list, or pull from another destination`);
  }
  if (manifest.summary.encryption === undefined) return manifest;
  const encryption = origin.encryption;
  if (!encryption) {
    throw new ConfigError(`${configPath}: destination "${origin.name}": its copy of ${backup} is encrypted: give this destination its key (encryption: { key: \${OFFSITE_KEY} } or { keyFile: PATH }) to pull it`);
  }
  if (manifest.summary.encryption.publicKey !== encryption.publicKey) {
    throw new ConfigError(`${configPath}: destination "${origin.name}": the encryption key configured for it does not open its copy of ${backup} (the copy was encrypted with another key): check encryption.key or encryption.keyFile of this destination`);
  }
  // Read again with the signature checked: a manifest forged without the key fails here.
  const signed = await readOriginTable(origin, backup, { signal, publicKey: encryption.publicKey });
  if (!signed) throw new BackupError('E_NO_COPY', `${origin.name}: the manifest of ${backup} disappeared while it was read (another run removed the copy?); pull from another destination`);
  const { files } = signed;
  for (let i = 0; i < files.count; i++) {
    const mac = files.macAt(i);
    if (mac === undefined) throw new OffsiteError('E_MANIFEST', `${origin.name}: ${manifestKey(backup)}: ${files.pathAt(i)} has no plaintext MAC, though the copy is encrypted: the manifest is damaged; pull from another destination`, { kind: 'integrity' });
    encryption.expect(`${backup}/${files.pathAt(i)}`, mac);
  }
  return signed;
}

/**
 * Steps 1 and 2 (see the file comment): reads the copy's manifest, makes sure the target may be
 * written, and copies. A function of its own so that only the counts outlive the copy: a
 * suspended async function keeps what it awaited in its registers, so the records read here
 * would otherwise stay alive through the read-back.
 */
async function copyOrigin(config: OffsiteConfig, options: PullOptions, origin: Driver, to: Driver): Promise<{
  summary: ManifestSummary; alreadyThere: boolean; copied: Pick<DestinationResult, 'status' | 'errors' | 'bytesWritten' | 'bytesResumed'>;
}> {
  const { backup, signal } = options;
  const { summary, files } = await readOriginManifest(origin, backup, config.path, signal);
  // Never overwrite a backup that a pull did not start. Files that are exactly the copy's (the
  // same paths and sizes: a finished earlier pull) are no conflict: the pull goes on as a
  // resumed one, which hashes them in place instead of sending them, and reads them back.
  const marker = await readRecord<{ from: string }>(to, pullMarkerKey(backup), signal);
  let alreadyThere = false;
  if (!marker) {
    let existing = 0;
    let sameAsCopy = true;
    for await (const entry of to.list(`${backup}/`, { signal })) {
      if (entry.key.startsWith(`${backup}/${OFFSITE_DIR}/`)) continue;
      existing++;
      const at = files.indexOf(entry.key.slice(backup.length + 1));
      if (at < 0 || files.sizeAt(at) !== entry.size) sameAsCopy = false;
    }
    alreadyThere = existing > 0 && sameAsCopy && existing === files.count;
    if (existing > 0 && !alreadyThere) {
      throw new BackupError('E_TARGET_EXISTS', `${to.description} already has ${existing} file(s) under ${backup}/ that a pull did not put there (and they are not this copy's files); pull never overwrites a backup: remove it first, or pull into another target (e.g. --to ./restore)`);
    }
    await writeRecord(to, pullMarkerKey(backup), { from: origin.description, started: new Date().toISOString() }, signal);
  }
  // Only the numbers of the engine's result are kept: its plan has an action per file.
  const result = await replicate({
    source: origin, backup, destinations: [to],
    origin: { files, chunkBytes: summary.chunkBytes, source: summary.source, ...(summary.backupTime ? { backupTime: summary.backupTime } : {}) },
    fileConcurrency: options.concurrency ?? config.settings.concurrency, memoryBudgetBytes: config.settings.memoryBudgetBytes, signal,
    onEvent: (e) => { if (e.type === 'bytes') options.onBytes?.('copy', e.bytes); },
  });
  const { status, errors, bytesWritten, bytesResumed } = result.destinations[0] as DestinationResult;
  return { summary, alreadyThere, copied: { status, errors, bytesWritten, bytesResumed } };
}

export async function pullCommand(config: OffsiteConfig, options: PullOptions): Promise<PullResult> {
  const { backup, signal } = options;
  if (options.from === options.to) throw new UsageError(`--from and --to are both "${options.from}"; pull copies from a destination to another place`);
  const runtime = new DriverRuntime(config, options);
  try {
    const [from] = await runtime.destinations([options.from]);
    const origin = from as Driver;
    const target = await openTarget(runtime, options.to);
    const to = target.driver;
    // Never write into the copy being read (a folder path or destination that is it, inside it, or around it).
    await refuseOverlappingPlaces([placeOf(origin, 'destination'), placeOf(to, 'target')], { file: config.path, signal });
    // The records are held until the copy is made (by `copyOrigin` alone); after it only the counts (`fileCount`, `totalBytes`).
    const { summary, alreadyThere, copied } = await copyOrigin(config, options, origin, to);
    if (copied.status !== 'complete' && copied.status !== 'up-to-date') {
      const first = copied.errors[0];
      throw new OffsiteError('E_PULL_FAILED', `pull of ${backup} from ${origin.name} to ${options.to} did not complete: ${first ? `${first.path ? `${first.path}: ` : ''}${first.message}` : 'unknown error'}${copied.errors.length > 1 ? ` (and ${copied.errors.length - 1} more)` : ''}; run the same pull again to resume, or pull from another destination`, { kind: first?.kind ?? 'fatal' });
    }

    const verify = await verifyCopy({ driver: to, backup, level: 'deep', concurrency: config.settings.concurrency, expectedFiles: summary.fileCount, signal, onBytes: (n) => options.onBytes?.('verify', n) });
    if (verify.status !== 'ok') {
      throw new OffsiteError('E_PULL_VERIFY', `the pulled copy at ${to.description} does not read back intact: ${verify.message ?? verify.damage[0]?.message ?? verify.status}; run the pull again`, { kind: 'integrity' });
    }
    // The rule's verdict only: a listing kept compact (not an object per file), meta read as a stream.
    const inspection = await inspectBackupState(to, backup, { quietPeriodMs: 0, expectedFiles: summary.fileCount, signal });
    if (inspection.state !== 'complete') {
      throw new OffsiteError('E_PULL_INCOMPLETE', `the pulled copy at ${to.description} reads back intact but is not a complete milvus-backup backup: ${inspection.reason ?? inspection.state}. The copy at ${origin.name} was made from an incomplete backup`, { kind: 'integrity' });
    }
    await to.delete(pullMarkerKey(backup), { signal });
    await to.delete(progressKey(backup), { signal });
    if (!target.isDestination) await to.delete(manifestKey(backup), { signal });
    return {
      backup, from: origin.name, fromDescription: origin.description, to: options.to, toDescription: to.description,
      files: summary.fileCount, bytes: summary.totalBytes, bytesWritten: copied.bytesWritten, bytesResumed: copied.bytesResumed,
      verify, completion: 'complete', keptManifest: target.isDestination, alreadyThere,
      restoreCommand: `milvus-backup restore -n ${backup}`,
      restoreHint: restoreHintFor(to),
    };
  } finally {
    await runtime.close();
  }
}
