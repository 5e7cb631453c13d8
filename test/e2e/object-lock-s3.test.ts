/**
 * S3 Object Lock on an `s3` destination (issue 14 item 1), through the CLI, on the real Ceph RGW:
 *
 * - startup refuses a bucket without Object Lock, or with a default retention rule, saying what
 *   to do, and writes nothing there;
 * - in a bucket created with Object Lock, every object of a copy (manifest included; multipart
 *   files too, which reach their final key by a server-side copy) carries the GOVERNANCE
 *   retention, and offsite's bookkeeping does not;
 * - deleting a locked version fails; a plain delete or an overwrite leaves the locked version intact;
 * - prune skips the copy the policy removes while it is locked ("kept until DATE (locked)"), and
 *   the first prune after that date removes it, every version and delete marker of it;
 * - audit reports each copy's lock; with a policy that keeps a copy longer than its lock it warns
 *   (a lock that ends too early, and objects no longer locked), and `--extend-locks` extends the
 *   lock (PutObjectRetention).
 *
 * - an encrypted copy in a locked bucket: every object sealed and locked; an auditor with only the
 *   public key (printed by `offsite key`) deep-verifies it and sees its lock.
 *
 * The retention each write sets is short (`RETAIN_S`) and checked on every object. For the runs
 * after that, every lock is set to last `WINDOW_S` (far longer than a run on a loaded machine);
 * for the prune that must find them passed, GOVERNANCE lets the test shorten them to a few
 * seconds (x-amz-bypass-governance-retention), so the test waits seconds, not the window. The
 * bucket is emptied at the end with the same bypass.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import {
  DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, PutObjectLockConfigurationCommand, PutObjectRetentionCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { generateBackup } from '../../scripts/gen-backup.js';
import { filesUnder, jsonOf, runCli, tempDir, writeConfig } from '../helpers/cli.js';
import { adminClient, freshBucket, keysIn, removeFreshBuckets, requireServer, versionsIn, type S3TestServer } from '../s3/server.js';

const NAMES = ['backup_2025_05_01_02_00_00', 'backup_2025_05_02_02_00_00'] as const;
const PREFIX = 'offsite/prod/';
const PART = 5 * 1024 * 1024;
/** The destination's retention (checked on every object written). */
const RETAIN_S = 15;
/** How long the locks last once the test sets them (> RETAIN_S + 1, so setting it extends): far longer than the CLI runs that must see them. */
const WINDOW_S = 600;

function configFor(dir: string, server: S3TestServer, bucket: string): string {
  return writeConfig(dir, [
    'source: { type: local, root: ./backups }',
    'destinations:',
    `  cloud: { type: s3, endpoint: "${server.endpoint}", region: ${server.region}, bucket: ${bucket}, prefix: ${PREFIX}, accessKeyId: "\${OFFSITE_TEST_KEY}", secretAccessKey: "\${OFFSITE_TEST_SECRET}", connectTimeoutMs: 2000, requestTimeoutMs: 20000, objectLock: { mode: GOVERNANCE, retain: ${RETAIN_S}s } }`,
    'options: { quietPeriod: 0s, chunkSize: 1MiB }',
  ].join('\n'));
}

async function makeBackups(dir: string): Promise<void> {
  let seed = 70;
  for (const name of NAMES) {
    await generateBackup({ root: join(dir, 'backups'), name, seed: seed++, totalBytes: 16 * 1024 * 1024, files: 6, mtimeMs: Date.now() - 3_600_000 });
    const largest = Math.max(...filesUnder(join(dir, 'backups', name)).map((p) => statSync(join(dir, 'backups', name, p)).size));
    assert.ok(largest > PART, `${name} has a file above one part (${largest} bytes): a multipart upload, then a copy onto the final key`);
  }
}

async function retentionOf(client: S3Client, bucket: string, key: string, versionId?: string): Promise<{ mode?: string; untilMs?: number }> {
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key, VersionId: versionId }));
  return { mode: head.ObjectLockMode, untilMs: head.ObjectLockRetainUntilDate?.getTime() };
}

async function rejects(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return (err as { name?: string }).name ?? 'error';
  }
  assert.fail('the request succeeded');
}

interface AuditLockJson { state: string; objects: number; unlocked: number; protectedUntil?: string; lockedUntil?: string; modes: string[]; keptUntil?: string; extendedTo?: string; warning?: string }
interface AuditJson { copies: { backup: string; destination: string; state: string; lock?: AuditLockJson }[] }
interface PruneJson { destinations: { removed: { name: string }[]; kept: { name: string }[]; skipped: { name: string; reason: string; message: string; retainedUntil?: string }[]; errors: unknown[] }[] }

describe('s3 destination with Object Lock, on Ceph RGW (CLI)', () => {
  let server: S3TestServer;
  let admin: S3Client;
  let env: NodeJS.ProcessEnv;

  before(() => {
    server = requireServer();
    admin = adminClient(server);
    env = { OFFSITE_TEST_KEY: server.accessKeyId, OFFSITE_TEST_SECRET: server.secretAccessKey, TZ: 'UTC' };
  });
  after(async () => {
    admin?.destroy();
    await removeFreshBuckets();
  });

  it('startup refuses a bucket without Object Lock, says what to do, and writes nothing', async () => {
    const dir = tempDir('nolock-s3');
    await makeBackups(dir);
    const bucket = await freshBucket(server, 'nolock');
    const run = await runCli(['--config', configFor(dir, server, bucket), 'replicate', NAMES[0], '--to', 'cloud'], { env });
    assert.notEqual(run.code, 0, run.stdout);
    const said = run.stdout + run.stderr;
    assert.match(said, new RegExp(`cloud: bucket ${bucket} at \\S+ does not have Object Lock enabled, so objectLock cannot make the copies there immutable: create a bucket with it \\(aws s3api create-bucket --bucket NAME --object-lock-enabled-for-bucket`));
    assert.match(said, /or remove "objectLock" from destination cloud/);
    assert.deepEqual(await keysIn(admin, bucket, ''), [], 'nothing was written');
  });

  it('startup refuses a locked bucket with a default retention rule (it would lock offsite\'s own records), says what to do, and writes nothing', async () => {
    const dir = tempDir('defaultlock-s3');
    await generateBackup({ root: join(dir, 'backups'), name: NAMES[0], seed: 74, totalBytes: 256 * 1024 });
    const bucket = await freshBucket(server, 'defaultlock', { objectLock: true });
    await admin.send(new PutObjectLockConfigurationCommand({ Bucket: bucket, ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 1 } } } }));
    const run = await runCli(['--config', configFor(dir, server, bucket), 'replicate', NAMES[0], '--to', 'cloud'], { env });
    assert.notEqual(run.code, 0, run.stdout);
    const said = run.stdout + run.stderr;
    assert.match(said, new RegExp(`cloud: bucket ${bucket} .*has a default retention rule \\(GOVERNANCE, 1 days\\)`));
    assert.match(said, /so remove the rule \(aws s3api put-object-lock-configuration --bucket \S+ --object-lock-configuration ObjectLockEnabled=Enabled\)/);
    assert.deepEqual(await versionsIn(admin, bucket, ''), [], 'nothing was written');
  });

  it('locks every object of a copy; prune keeps it until the lock passes, then removes every version; audit reports and extends locks', async () => {
    const dir = tempDir('lock-s3');
    await makeBackups(dir);
    const bucket = await freshBucket(server, 'lock', { objectLock: true });
    const config = configFor(dir, server, bucket);
    const [older, newest] = NAMES;

    const spans = new Map<string, { from: number; to: number }>();
    for (const name of NAMES) {
      const from = Date.now();
      const run = await runCli(['--config', config, '--json', 'replicate', name, '--to', 'cloud'], { env });
      spans.set(name, { from, to: Date.now() });
      assert.equal(run.code, 0, `replicate ${name}: ${run.stderr}${run.stdout}`);
      assert.doesNotMatch(run.stderr, /WARNING/, 'no warning: versioning is what Object Lock needs');
    }

    // Every object of both copies is locked, manifest included; nothing else remains.
    const keys = await keysIn(admin, bucket, PREFIX);
    const copyKeys = keys.filter((k) => !k.slice(PREFIX.length).startsWith('.offsite/'));
    assert.ok(copyKeys.some((k) => k.endsWith('/.offsite/manifest.json')), 'manifests are there');
    assert.deepEqual(copyKeys.filter((k) => k.includes('/.offsite/') && !k.endsWith('/manifest.json')), [], 'no bookkeeping left in the copies');
    for (const key of copyKeys) {
      const r = await retentionOf(admin, bucket, key);
      assert.equal(r.mode, 'GOVERNANCE', `${key} is locked`);
      const span = spans.get(key.slice(PREFIX.length).split('/')[0] as string) as { from: number; to: number };
      assert.ok(r.untilMs !== undefined && r.untilMs >= span.from + RETAIN_S * 1000 && r.untilMs <= span.to + RETAIN_S * 1000 + 1000,
        `${key} is locked until its write + ${RETAIN_S}s (${String(r.untilMs)}, written between ${span.from} and ${span.to})`);
    }
    const sizes = await Promise.all(copyKeys.map(async (k) => (await admin.send(new HeadObjectCommand({ Bucket: bucket, Key: k }))).ContentLength ?? 0));
    assert.ok(sizes.some((s) => s > PART), 'a multipart file is among them (locked through the server-side copy)');

    // From here on the locks must be in force while the steps and CLI runs below happen (on a
    // loaded machine longer than RETAIN_S): every lock is set again (extended, as --extend-locks
    // would) to end WINDOW_S from now.
    const windowEnd = new Date(Math.ceil((Date.now() + WINDOW_S * 1000) / 1000) * 1000);
    for (const key of copyKeys) await admin.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: windowEnd } }));

    // A delete of the locked version fails; a plain delete and an overwrite leave it intact.
    const victim = copyKeys.find((k) => k.startsWith(`${PREFIX}${newest}/binlogs/`)) as string;
    const [original] = (await versionsIn(admin, bucket, victim)).filter((v) => v.key === victim);
    assert.ok(original);
    assert.match(await rejects(admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: victim, VersionId: original.versionId }))), /AccessDenied|Forbidden/);
    const bytesBefore = await (await admin.send(new GetObjectCommand({ Bucket: bucket, Key: victim }))).Body?.transformToByteArray();
    const note = Buffer.from('ransom note');
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: victim, Body: note, ContentMD5: createHash('md5').update(note).digest('base64') }));
    await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: victim }));
    const kept = await (await admin.send(new GetObjectCommand({ Bucket: bucket, Key: victim, VersionId: original.versionId }))).Body?.transformToByteArray();
    assert.deepEqual(Buffer.from(kept ?? []), Buffer.from(bytesBefore ?? []), 'the locked version still holds the original bytes');
    // Undo the attack (the versions on top are not locked): the copy is whole again.
    for (const v of await versionsIn(admin, bucket, victim)) {
      if (v.key === victim && v.versionId !== original.versionId) await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: victim, VersionId: v.versionId }));
    }

    // Prune: the policy removes the older copy, but it is locked: kept until the date, untouched.
    const olderVersions = await versionsIn(admin, bucket, `${PREFIX}${older}/`);
    const prune = await runCli(['--config', config, '--json', 'prune', '--keep-last', '1'], { env });
    assert.equal(prune.code, 0, prune.stderr + prune.stdout);
    const first = jsonOf<PruneJson>(prune).destinations[0];
    assert.deepEqual(first?.removed, []);
    assert.deepEqual(first?.skipped.map((s) => [s.name, s.reason]), [[older, 'retained']]);
    assert.match(first?.skipped[0]?.message ?? '', /^kept until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(locked: S3 Object Lock GOVERNANCE\); the first prune after that date removes it$/);
    const until = Date.parse(first?.skipped[0]?.retainedUntil ?? '');
    assert.equal(until, windowEnd.getTime(), 'the date is when the last lock ends');
    assert.deepEqual(await versionsIn(admin, bucket, `${PREFIX}${older}/`), olderVersions, 'not a version touched, no delete marker added');
    const text = await runCli(['--config', config, 'prune', '--keep-last', '1', '--dry-run'], { env });
    assert.match(text.stdout, new RegExp(`skip\\s+${older}\\s+retained: kept until .* \\(locked`));

    // Audit: both copies locked, nothing to warn about with a policy that keeps only the newest by count.
    const audit = await runCli(['--config', config, '--json', 'audit', '--keep-last', '1'], { env });
    assert.equal(audit.code, 0, audit.stderr + audit.stdout);
    for (const c of jsonOf<AuditJson>(audit).copies) {
      assert.equal(c.lock?.state, 'locked', `${c.backup}: ${JSON.stringify(c.lock)}`);
      assert.deepEqual(c.lock?.modes, ['GOVERNANCE']);
      assert.equal(c.lock?.unlocked, 0);
      assert.equal(c.lock?.warning, undefined);
      assert.ok(Date.parse(c.lock?.lockedUntil ?? '') > Date.now());
    }

    // A policy that keeps both copies for years: their locks (WINDOW_S) end long before it would
    // drop them: both are still locked, and audit warns that the lock ends too early.
    const short = await runCli(['--config', config, '--json', 'audit', '--keep-within', '3y'], { env });
    assert.equal(short.code, 0, short.stderr + short.stdout);
    for (const c of jsonOf<AuditJson>(short).copies) {
      assert.equal(c.lock?.state, 'locked', `${c.backup}: ${JSON.stringify(c.lock)}`);
      assert.ok(Date.parse(c.lock?.keptUntil ?? '') > Date.now() + 365 * 86_400_000, `${c.backup}: kept for years (${String(c.lock?.keptUntil)})`);
      assert.match(c.lock?.warning ?? '', /^the lock ends \d{4}-\d\d-\d\d, before the retention policy would drop this copy \(about \d{4}-\d\d-\d\d\); offsite audit --extend-locks extends it$/, c.backup);
    }
    const shortText = await runCli(['--config', config, 'audit', '--keep-within', '3y'], { env });
    assert.match(shortText.stdout, new RegExp(`lock: locked until ${windowEnd.toISOString().slice(0, 10)} \\(GOVERNANCE\\); the policy keeps the copy until about \\d{4}`));
    assert.match(shortText.stdout, /WARNING: the lock ends .* before the retention policy would drop this copy/);

    // After the lock has passed, prune removes the older copy: every version, no delete marker.
    // The locks are shortened to pass in 2 s (GOVERNANCE, bypassed; a date must be in the future).
    let lastEnd = 0;
    for (const key of copyKeys) {
      const end = new Date(Math.ceil((Date.now() + 2000) / 1000) * 1000);
      await admin.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: end }, BypassGovernanceRetention: true }));
      lastEnd = Math.max(lastEnd, end.getTime());
    }
    assert.ok(((await retentionOf(admin, bucket, victim)).untilMs ?? Infinity) <= lastEnd, 'the lock was shortened');
    await sleep(Math.max(0, lastEnd - Date.now()) + 1500);
    const second = await runCli(['--config', config, '--json', 'prune', '--keep-last', '1'], { env });
    assert.equal(second.code, 0, second.stderr + second.stdout);
    assert.deepEqual(jsonOf<PruneJson>(second).destinations[0]?.removed.map((r) => r.name), [older]);
    assert.deepEqual(await versionsIn(admin, bucket, `${PREFIX}${older}/`), [], 'no version or delete marker of the pruned copy remains');

    // Audit with a policy that keeps the newest copy for years: its lock has passed: warned; --extend-locks locks it again.
    const late = await runCli(['--config', config, '--json', 'audit', '--keep-within', '3y'], { env });
    const lateLock = jsonOf<AuditJson>(late).copies.find((c) => c.backup === newest)?.lock;
    assert.equal(lateLock?.state, 'unlocked', JSON.stringify(lateLock));
    assert.match(lateLock?.warning ?? '', /object\(s\) not locked .* though the retention policy keeps this copy/);
    const extend = await runCli(['--config', config, '--json', 'audit', '--keep-within', '3y', '--extend-locks'], { env });
    assert.equal(extend.code, 0, extend.stderr + extend.stdout);
    const extended = jsonOf<AuditJson>(extend).copies.find((c) => c.backup === newest)?.lock;
    assert.equal(extended?.state, 'locked', JSON.stringify(extended));
    assert.equal(extended?.warning, undefined);
    const target = Date.parse(extended?.extendedTo ?? '');
    assert.ok(target > Date.now() + 365 * 86_400_000, `extended to about 3 years after the backup (${String(extended?.extendedTo)})`);
    const manifest = `${PREFIX}${newest}/.offsite/manifest.json`;
    for (const key of [manifest, victim]) {
      const held = (await retentionOf(admin, bucket, key)).untilMs ?? 0;
      assert.ok(Math.abs(held - target) < 1000, `${key}: the server holds the new date (${new Date(held).toISOString()})`);
    }
    const [current] = (await versionsIn(admin, bucket, manifest)).filter((v) => v.key === manifest);
    assert.match(await rejects(admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: manifest, VersionId: current?.versionId }))), /AccessDenied|Forbidden/);
  });
  it('an encrypted copy in a locked bucket: every object sealed and locked, a delete of a locked version fails, keyless deep verify and audit see it whole and locked', async () => {
    const dir = tempDir('lock-enc-s3');
    const name = 'backup_2025_05_03_02_00_00';
    await generateBackup({ root: join(dir, 'backups'), name, seed: 73, totalBytes: 2 * 1024 * 1024, mtimeMs: Date.now() - 3_600_000 });
    const bucket = await freshBucket(server, 'lock-enc', { objectLock: true });
    const keyed = configFor(dir, server, bucket);
    writeFileSync(keyed, readFileSync(keyed, 'utf8').replace('objectLock: {', 'encryption: { key: "${OFFSITE_KEY}" }, objectLock: {'));
    const keyEnv = { ...env, OFFSITE_KEY: randomBytes(32).toString('hex') };
    const run = await runCli(['--config', keyed, '--json', 'replicate', name, '--to', 'cloud'], { env: keyEnv });
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const printed = await runCli(['--config', keyed, '--json', 'key', '--at', 'cloud'], { env: keyEnv });
    assert.equal(printed.code, 0, printed.stderr + printed.stdout);
    const publicKey = jsonOf<{ keys: { publicKey: string }[] }>(printed).keys[0]?.publicKey ?? '';
    const auditor = join(dir, 'auditor.yaml');
    writeFileSync(auditor, readFileSync(keyed, 'utf8').replace('encryption: { key: "${OFFSITE_KEY}" }', `encryption: { publicKey: "${publicKey}" }`));

    const copyKeys = (await keysIn(admin, bucket, `${PREFIX}${name}/`));
    const dataKeys = copyKeys.filter((k) => !k.includes('/.offsite/'));
    assert.ok(dataKeys.length > 5 && copyKeys.some((k) => k.endsWith('/.offsite/manifest.json')));
    for (const key of copyKeys) assert.equal((await retentionOf(admin, bucket, key)).mode, 'GOVERNANCE', `${key} is locked`);
    // The runs below must see the locks in force: they are set to last WINDOW_S (as in the test above).
    const windowEnd = new Date(Math.ceil((Date.now() + WINDOW_S * 1000) / 1000) * 1000);
    for (const key of copyKeys) await admin.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: key, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: windowEnd } }));
    for (const key of dataKeys) {
      const stored = Buffer.from(await (await admin.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body?.transformToByteArray() ?? []);
      assert.equal(stored.subarray(0, 4).toString('latin1'), 'OFSE', `${key} is sealed`);
    }
    const victim = dataKeys[0] as string;
    const [version] = (await versionsIn(admin, bucket, victim)).filter((v) => v.key === victim);
    assert.match(await rejects(admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: victim, VersionId: version?.versionId }))), /AccessDenied|Forbidden/);

    const verify = await runCli(['--config', auditor, '--json', 'verify', name, '--at', 'cloud', '--deep'], { env });
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
    const audit = await runCli(['--config', auditor, '--json', 'audit', '--sample', '100%', '--keep-last', '5'], { env });
    assert.equal(audit.code, 0, audit.stderr + audit.stdout);
    const [copy] = jsonOf<AuditJson>(audit).copies;
    assert.equal(copy?.state, 'ok');
    assert.equal(copy?.lock?.state, 'locked', JSON.stringify(copy?.lock));
    assert.equal(copy?.lock?.objects, copyKeys.length, 'every object of the copy, manifest included, is counted');
  });
});
