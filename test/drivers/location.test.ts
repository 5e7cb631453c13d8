/**
 * Locations and identities (src/drivers/location.ts) as a table: each row builds two drivers
 * through their real factories (no IO) and states how the first place relates to the second.
 * Then identities on real folders: a symlink, a missing root under a symlinked folder, and a
 * bind mount (when this process may mount) are recognised, and unrelated folders are apart.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createDriver } from '../../src/drivers/index.js';
import { compareIdentities, compareLocations, normaliseHost, pathRelation, type Relation } from '../../src/drivers/location.js';
import { refuseOverlappingPlaces, OverlapError, type Place } from '../../src/drivers/overlap.js';
import type { Driver } from '../../src/drivers/types.js';
import { tempDir } from '../helpers/cli.js';

type Section = Record<string, unknown>;
const minio = (over: Section = {}): Section => ({ type: 'minio', address: '127.0.0.1', port: 9000, bucketName: 'a-bucket', rootPath: 'backup', ...over });
const s3 = (over: Section = {}): Section => ({ type: 's3', endpoint: 'http://localhost:9000', bucket: 'a-bucket', prefix: 'backup/', ...over });
const sftp = (over: Section = {}): Section => ({ type: 'sftp', host: 'nas.lan', username: 'backup', password: 'x', hostKey: `SHA256:${'A'.repeat(43)}`, root: '/volume1/milvus', ...over });
const local = (root: string): Section => ({ type: 'local', root });

const TABLE: readonly [what: string, a: Section, b: Section, expected: Relation][] = [
  ['minio and s3 on one endpoint, bucket and prefix (127.0.0.1 vs localhost)', minio(), s3(), 'same'],
  ['minio and s3, prefix without a trailing slash', minio(), s3({ prefix: 'backup' }), 'same'],
  ['minio and s3, prefix with a leading slash', minio({ rootPath: '/backup/' }), s3({ prefix: 'backup' }), 'same'],
  ['minio at localhost and s3 at [::1]', minio({ address: 'localhost' }), s3({ endpoint: 'http://[::1]:9000' }), 'same'],
  ['s3 with a host name in capitals', s3({ endpoint: 'http://LOCALHOST:9000/' }), s3(), 'same'],
  ['s3 https without a port = :443', s3({ endpoint: 'https://s3.example.com' }), s3({ endpoint: 'https://s3.example.com:443' }), 'same'],
  ['AWS regional endpoint and AWS default', s3({ endpoint: 'https://s3.eu-central-1.amazonaws.com' }), { type: 's3', region: 'us-east-1', bucket: 'a-bucket', prefix: 'backup' }, 'same'],
  ['s3 prefix inside the minio root', s3({ prefix: 'backup/prod' }), minio(), 'inside'],
  ['s3 at the top of the bucket holds the minio root', { type: 's3', endpoint: 'http://127.0.0.1:9000', bucket: 'a-bucket' }, minio(), 'contains'],
  ['prefix backup2 is not inside backup', s3({ prefix: 'backup2' }), minio(), 'apart'],
  ['another port', s3({ endpoint: 'http://localhost:9001' }), minio(), 'apart'],
  ['another bucket', s3({ bucket: 'b-bucket' }), minio(), 'apart'],
  ['another host', s3({ endpoint: 'http://minio.lan:9000' }), minio(), 'apart'],
  ['local /x and /x/', local('/srv/x'), local('/srv/x/'), 'same'],
  ['local with .. and .', local('/srv/y/../x/./'), local('/srv/x'), 'same'],
  ['local root inside another', local('/srv/x/mirror'), local('/srv/x'), 'inside'],
  ['local root around another', local('/srv'), local('/srv/x'), 'contains'],
  ['local /srv/xy is not inside /srv/x', local('/srv/xy'), local('/srv/x'), 'apart'],
  ['sftp root inside another on the same host and port', sftp({ root: '/volume1/milvus/prod' }), sftp(), 'inside'],
  ['sftp same root, trailing slash, host in capitals, port 22 given', sftp({ root: '/volume1/milvus/', host: 'NAS.LAN', port: 22 }), sftp(), 'same'],
  ['sftp on another port', sftp({ port: 2222 }), sftp(), 'apart'],
  ['sftp on another host', sftp({ host: 'nas2.lan' }), sftp(), 'apart'],
  ['sftp roots relative to the same login folder', sftp({ root: 'backups' }), sftp({ root: 'backups/', username: 'backup' }), 'same'],
  ['sftp roots relative to two users\' login folders', sftp({ root: 'backups' }), sftp({ root: 'backups', username: 'other' }), 'apart'],
  ['sftp on this machine vs a local root', sftp({ host: '127.0.0.1', root: '/srv/x/sub' }), local('/srv/x'), 'inside'],
  ['sftp on another machine vs a local root', sftp({ root: '/srv/x' }), local('/srv/x'), 'apart'],
  ['object store vs local', s3(), local('/backup'), 'apart'],
];

const built: Driver[] = [];
async function build(name: string, section: Section): Promise<Driver> {
  const driver = await createDriver(name, section);
  built.push(driver);
  return driver;
}
after(async () => { await Promise.all(built.map((d) => d.close())); });

describe('locations: one place however it is spelled', () => {
  for (const [what, a, b, expected] of TABLE) {
    it(`${what}: ${expected}`, async () => {
      const x = await build('a', a);
      const y = await build('b', b);
      assert.equal(compareLocations(x.location, y.location), expected, `${JSON.stringify(x.location)} vs ${JSON.stringify(y.location)}`);
      const back = expected === 'inside' ? 'contains' : expected === 'contains' ? 'inside' : expected;
      assert.equal(compareLocations(y.location, x.location), back, 'and the other way round');
    });
  }

  it('host names: every loopback spelling is one host, others are lower-cased', () => {
    for (const h of ['localhost', '127.0.0.1', '127.0.1.1', '::1', '[::1]', 'LOCALHOST.', '0.0.0.0']) assert.equal(normaliseHost(h, new Set()), 'localhost', h);
    assert.equal(normaliseHost('NAS.Lan.', new Set()), 'nas.lan');
    assert.equal(normaliseHost('10.0.0.5', new Set(['10.0.0.5'])), 'localhost', 'an address of this machine');
  });

  it('path relations are by segment, not by string prefix', () => {
    assert.equal(pathRelation('/a/b', '/a/bc'), 'apart');
    assert.equal(pathRelation('/', '/a'), 'contains');
    assert.equal(pathRelation('', 'a/b'), 'contains');
  });
});

describe('identities of local roots', () => {
  const dir = tempDir('identity');
  const source = join(dir, 'source');
  mkdirSync(join(source, 'deep'), { recursive: true });
  mkdirSync(join(dir, 'other'));
  symlinkSync(source, join(dir, 'link'));
  const mounts: string[] = [];
  after(() => {
    for (const m of mounts.reverse()) execFileSync('umount', [m]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function relation(a: string, b: string): Promise<Relation> {
    const x = await build('a', local(a));
    const y = await build('b', local(b));
    assert.equal(compareLocations(x.location, y.location), 'apart', 'the paths alone look apart');
    return compareIdentities(await (x.identify as NonNullable<Driver['identify']>)(), await (y.identify as NonNullable<Driver['identify']>)());
  }

  it('a root that is a symlink to another is the same place', async () => {
    assert.equal(await relation(join(dir, 'link'), source), 'same');
  });
  it('a missing root under a symlink to another root is inside it', async () => {
    assert.equal(await relation(join(dir, 'link', 'new', 'copy'), source), 'inside');
  });
  it('a root holding another through a symlink contains it', async () => {
    symlinkSync(join(source, 'deep'), join(dir, 'deeplink'));
    assert.equal(await relation(source, join(dir, 'deeplink')), 'contains');
  });
  it('unrelated folders are apart', async () => {
    assert.equal(await relation(join(dir, 'other'), source), 'apart');
  });

  it('a bind mount of the source, of its parent, or of a folder inside it is recognised by device and inode', async (t) => {
    const bind = (from: string, to: string): boolean => {
      mkdirSync(to, { recursive: true });
      try {
        execFileSync('mount', ['--bind', from, to], { stdio: 'ignore' });
        mounts.push(to);
        return true;
      } catch {
        return false;
      }
    };
    if (!bind(source, join(dir, 'mnt', 'same'))) {
      t.skip('mount --bind is not allowed here (needs root): the device/inode route is covered by the symlink cases only');
      return;
    }
    assert.equal(await relation(join(dir, 'mnt', 'same'), source), 'same');
    assert.equal(await relation(join(dir, 'mnt', 'same', 'sub'), source), 'inside');
    assert.ok(bind(dir, join(tempDir('identity-parent'), 'p')));
    assert.equal(await relation(mounts[mounts.length - 1] as string, source), 'contains');
    assert.ok(bind(join(source, 'deep'), join(dir, 'mnt', 'deep')));
    assert.equal(await relation(source, join(dir, 'mnt', 'deep')), 'contains');
  });

  it('refuseOverlappingPlaces names both places and the real path', async () => {
    const place = async (role: Place['role'], name: string, root: string): Promise<Place> => {
      const d = await build(name, local(root));
      return { role, name, description: d.description, location: d.location, identify: (o) => (d.identify as NonNullable<Driver['identify']>)(o) };
    };
    await assert.rejects(
      refuseOverlappingPlaces([await place('source', 'source', source), await place('destination', 'mirror', join(dir, 'link'))], { file: 'offsite.yaml' }),
      (err: unknown) => err instanceof OverlapError && /^offsite\.yaml: destination "mirror" \(local:.*link\) is the same place as the source \(local:.*source\) \(through a symlink.*"mirror" is really .*source\)/.test(err.message),
    );
    await refuseOverlappingPlaces([await place('source', 'source', source), await place('destination', 'far', join(dir, 'other'))]);
  });
});
