/**
 * Hand-made audit results for the report and metrics tests: 4 backups x 3 destinations with
 * every copy state, damage whose messages and paths hold `<script>`, `&` and quotes, a repaired
 * copy, a destination in error; and smaller results for the other exit states.
 */
import type { AuditCopy, AuditDestination, AuditResult, CopyState } from '../../src/ops/audit-result.js';

/** The moment "N days ago" is counted from. */
export const NOW = new Date('2024-01-20T12:00:00.000Z');

export const B1 = 'full_backup_20240101';
export const B2 = 'full_backup_20240108';
export const B3 = 'full_backup_20240115';
export const B4 = 'backup_2024_01_16_03_00_00';

export const EVIL_PATH = 'files/a&b<c>"d".bin';
export const EVIL_MESSAGE = '<script>document.title="pwned"</script> bytes differ & "chunk" <b>3</b>';
export const CLOUD_MESSAGE = 'connect ECONNREFUSED 127.0.0.1:9000 <after 5 retries> & gave up';
export const ERROR_COPY_MESSAGE = 'AccessDenied: <Code>AccessDenied</Code> & "no"';
export const INCOMPLETE_MESSAGE = '37 files and no manifest; no replicate run holds the lock';

const MiB = 1024 * 1024;

function copy(backup: string, destination: string, state: CopyState, extra: Partial<AuditCopy> = {}): AuditCopy {
  const files = state === 'absent' ? 0 : 40;
  return {
    backup, destination, state,
    files, bytes: files * 3 * MiB,
    filesRead: 0, bytesRead: 0,
    damage: [], repaired: [],
    ...extra,
  };
}

/** Exit 4: disk has damage (and a repaired copy), nas an incomplete copy, cloud could not be checked. */
export function mixedResult(): AuditResult {
  const copies: AuditCopy[] = [
    copy(B1, 'disk', 'ok', { filesRead: 6, bytesRead: 18 * MiB, lastFullRead: '2024-01-10T03:00:00.000Z' }),
    copy(B2, 'disk', 'repaired', {
      filesRead: 7, bytesRead: 21 * MiB, lastFullRead: '2024-01-20T11:30:00.000Z',
      damage: [
        { path: 'binlogs/insert_log/1/2/3/4/5', problem: 'chunk', chunk: 2, offset: 16 * MiB, length: 8 * MiB, message: 'binlogs/insert_log/1/2/3/4/5: chunk 2 (bytes 16777216..25165823) differs: expected 0123456789abcdef, found fedcba9876543210' },
        { path: 'meta/collection_meta.json', problem: 'missing', message: 'meta/collection_meta.json: missing' },
      ],
      repaired: ['binlogs/insert_log/1/2/3/4/5', 'meta/collection_meta.json'],
      repairedFrom: 'nas',
    }),
    copy(B3, 'disk', 'damaged', {
      filesRead: 5, bytesRead: 15 * MiB, lastFullRead: '2023-12-01T00:00:00.000Z',
      damage: [
        { path: EVIL_PATH, problem: 'hash', message: EVIL_MESSAGE },
        { path: 'meta/partition_meta.json', problem: 'size', message: 'meta/partition_meta.json: 12 bytes, manifest says 4096' },
      ],
      message: 'repair failed: no intact copy of files/a&b<c>"d".bin elsewhere',
    }),
    copy(B4, 'disk', 'in-progress', { files: 0, bytes: 0 }),

    copy(B1, 'nas', 'ok', { filesRead: 4, bytesRead: 12 * MiB }), // never fully read
    copy(B2, 'nas', 'ok', { filesRead: 4, bytesRead: 12 * MiB, lastFullRead: '2024-01-19T02:00:00.000Z' }),
    copy(B3, 'nas', 'incomplete', { files: 0, bytes: 0, message: INCOMPLETE_MESSAGE }),
    copy(B4, 'nas', 'absent'),

    copy(B1, 'cloud', 'error', { message: ERROR_COPY_MESSAGE }),
    copy(B2, 'cloud', 'error', { message: CLOUD_MESSAGE }),
    copy(B3, 'cloud', 'ok', { filesRead: 3, bytesRead: 9 * MiB, lastFullRead: '2024-01-05T00:00:00.000Z' }),
    copy(B4, 'cloud', 'ok', { filesRead: 2, bytesRead: 6 * MiB }),
  ];
  const destinations: AuditDestination[] = [
    { name: 'disk', description: 'local /mnt/backup-disk/milvus', status: 'damaged', copies: 4, filesChecked: 120, filesRead: 18, bytesRead: 54 * MiB, slice: { n: 3, t: 7 }, lastSuccess: '2024-01-12T03:00:00.000Z' },
    { name: 'nas', description: 'sftp backup@nas.lan:/volume1/milvus', status: 'damaged', copies: 3, filesChecked: 80, filesRead: 8, bytesRead: 24 * MiB, slice: { n: 3, t: 7 } },
    { name: 'cloud', description: 's3 milvus-offsite/prod/', status: 'error', copies: 4, filesChecked: 80, filesRead: 5, bytesRead: 15 * MiB, slice: { n: 3, t: 7 }, lastSuccess: '2024-01-18T03:00:00.000Z', message: CLOUD_MESSAGE },
  ];
  return {
    startedAt: '2024-01-20T11:00:00.000Z',
    finishedAt: '2024-01-20T11:42:30.500Z',
    source: 'local /var/lib/milvus-backup',
    mode: { kind: 'rotate', t: 7 },
    repair: true,
    backups: [B4, B1, B2, B3].sort(),
    destinations,
    copies,
    exitCode: 4,
  };
}

/** Exit 0: every copy ok or repaired. */
export function intactResult(): AuditResult {
  const copies = [
    copy(B1, 'disk', 'ok', { filesRead: 40, bytesRead: 120 * MiB, lastFullRead: '2024-01-20T11:00:00.000Z' }),
    copy(B1, 'nas', 'repaired', {
      filesRead: 41, bytesRead: 123 * MiB, lastFullRead: '2024-01-20T11:00:00.000Z',
      damage: [{ path: 'meta/a.json', problem: 'missing', message: 'meta/a.json: missing' }], repaired: ['meta/a.json'], repairedFrom: 'source',
    }),
  ];
  return {
    startedAt: '2024-01-20T11:00:00.000Z', finishedAt: '2024-01-20T11:00:05.000Z',
    source: 'local /var/lib/milvus-backup', mode: { kind: 'sample', percent: 100 }, repair: true,
    backups: [B1],
    destinations: [
      { name: 'disk', description: 'local /mnt/d', status: 'ok', copies: 1, filesChecked: 40, filesRead: 40, bytesRead: 120 * MiB, lastSuccess: '2024-01-20T11:00:05.000Z' },
      { name: 'nas', description: 'sftp nas', status: 'ok', copies: 1, filesChecked: 40, filesRead: 41, bytesRead: 123 * MiB, lastSuccess: '2024-01-20T11:00:05.000Z' },
    ],
    copies,
    exitCode: 0,
  };
}

/** Exit 3: damage left, every destination checked. */
export function damagedResult(): AuditResult {
  return {
    startedAt: '2024-01-20T11:00:00.000Z', finishedAt: '2024-01-20T11:01:00.000Z',
    source: 'minio backups/', mode: { kind: 'slice', n: 2, t: 5 }, repair: false,
    backups: [B1, B2],
    destinations: [{ name: 'disk', description: 'local /mnt/d', status: 'damaged', copies: 2, filesChecked: 80, filesRead: 8, bytesRead: 24 * MiB, slice: { n: 2, t: 5 } }],
    copies: [
      copy(B1, 'disk', 'ok', { filesRead: 4, bytesRead: 12 * MiB }),
      copy(B2, 'disk', 'damaged', { filesRead: 4, bytesRead: 12 * MiB, damage: [{ path: 'x', problem: 'unreadable', message: 'x: EIO' }] }),
    ],
    exitCode: 3,
  };
}

/** Names no config allows, to prove the renderers escape whatever they are given. */
export const HOSTILE_DESTINATION = 'we"ird\\na\nme <b>&amp;';
export const HOSTILE_BACKUP = 'back"up\\\n<i>';

export function hostileResult(): AuditResult {
  return {
    startedAt: '2024-01-20T11:00:00.000Z', finishedAt: '2024-01-20T11:00:01.000Z',
    source: '<img src=x onerror=alert(1)> "src"', mode: { kind: 'rotate', t: 1 }, repair: false,
    backups: [HOSTILE_BACKUP],
    destinations: [{ name: HOSTILE_DESTINATION, description: '"><script>x()</script>', status: 'ok', copies: 1, filesChecked: 1, filesRead: 1, bytesRead: 1 }],
    copies: [copy(HOSTILE_BACKUP, HOSTILE_DESTINATION, 'ok', { filesRead: 1, bytesRead: 1, lastFullRead: '2024-01-20T11:00:01.000Z' })],
    exitCode: 0,
  };
}
